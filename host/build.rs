//! Builds the bundled plugins (`plugins/*`) so the `switchyard` binary can embed them, and the
//! test-only fixture plugins (`tests/fixtures/*`) the end-to-end suite of this package loads
//! (never embedded, never shipped, never committed).

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
            "switchyard-plugin-jq",
            "switchyard-plugin-js",
            "fixture-hostile",
            "fixture-wrong-world",
            "switchyard-example-rust",
        ],
        &[
            "wit",
            "plugin-sdk",
            "plugins",
            "tests/fixtures",
            "examples/plugins/rust",
        ],
    );
    println!(
        "cargo:rustc-env=SWITCHYARD_BUNDLED_PLUGINS_DIR={}",
        out.display()
    );
    println!(
        "cargo:rustc-env=SWITCHYARD_FIXTURE_PLUGINS_DIR={}",
        out.display()
    );
}
