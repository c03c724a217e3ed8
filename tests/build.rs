//! Builds the test-only fixture plugins (`tests/fixtures/*`): never shipped, never committed.

include!("../host/build_plugins.rs");

fn main() {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let workspace = manifest
        .parent()
        .expect("tests/ sits in the workspace")
        .to_path_buf();
    let out = build_wasm_plugins(
        &workspace,
        &["fixture-hostile", "fixture-wrong-world"],
        &["wit", "plugin-sdk", "tests/fixtures"],
    );
    println!(
        "cargo:rustc-env=SWITCHYARD_FIXTURE_PLUGINS_DIR={}",
        out.display()
    );
}
