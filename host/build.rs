//! Builds the bundled plugins (`plugins/*`) so the `switchyard` binary can embed them.

include!("build_plugins.rs");

fn main() {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let workspace = manifest
        .parent()
        .expect("host/ sits in the workspace")
        .to_path_buf();
    let out = build_wasm_plugins(
        &workspace,
        &[
            "switchyard-plugin-slack",
            "switchyard-plugin-discord",
            "switchyard-plugin-filter",
            "switchyard-plugin-reshape",
        ],
        &["wit", "plugin-sdk", "plugins"],
    );
    println!(
        "cargo:rustc-env=SWITCHYARD_BUNDLED_PLUGINS_DIR={}",
        out.display()
    );
}
