//! The plugins shipped inside the `switchyard` binary (built from `plugins/` by `build.rs`).

use std::path::Path;

/// `(name, component bytes)` of every bundled plugin.
pub const BUNDLED: &[(&str, &[u8])] = &[
    (
        "slack",
        include_bytes!(concat!(
            env!("SWITCHYARD_BUNDLED_PLUGINS_DIR"),
            "/slack.wasm"
        )),
    ),
    (
        "discord",
        include_bytes!(concat!(
            env!("SWITCHYARD_BUNDLED_PLUGINS_DIR"),
            "/discord.wasm"
        )),
    ),
    (
        "filter",
        include_bytes!(concat!(
            env!("SWITCHYARD_BUNDLED_PLUGINS_DIR"),
            "/filter.wasm"
        )),
    ),
    (
        "reshape",
        include_bytes!(concat!(
            env!("SWITCHYARD_BUNDLED_PLUGINS_DIR"),
            "/reshape.wasm"
        )),
    ),
    (
        "jq",
        include_bytes!(concat!(env!("SWITCHYARD_BUNDLED_PLUGINS_DIR"), "/jq.wasm")),
    ),
    (
        "js",
        include_bytes!(concat!(env!("SWITCHYARD_BUNDLED_PLUGINS_DIR"), "/js.wasm")),
    ),
];

/// Writes each bundled plugin into `dir` as `<name>.wasm` unless a file of that name exists.
/// The service calls it only when it creates the plugins folder (a first start), so a user's
/// later replacement or deletion of a bundled plugin sticks.
///
/// # Errors
/// When the folder cannot be written.
pub fn seed_bundled(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    for (name, bytes) in BUNDLED {
        let path = dir.join(format!("{name}.wasm"));
        if !path.exists() {
            super::folder::write_atomically(dir, &path, bytes)?;
        }
    }
    Ok(())
}
