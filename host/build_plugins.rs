// Shared by `host/build.rs` and `tests/build.rs` (through `include!`): builds plugin crates of
// this workspace as WebAssembly components (`wasm32-wasip2`, profile `plugin`), so that no
// `.wasm` is ever committed and every build, test and bench has them.
//
// The nested cargo uses its own target directory (`target/wasm-plugins`): sharing the outer
// one would deadlock on its lock.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Builds the given packages and returns the folder holding `<lib name>.wasm`.
fn build_wasm_plugins(workspace: &Path, packages: &[&str], watch: &[&str]) -> PathBuf {
    for dir in watch {
        println!("cargo:rerun-if-changed={}", workspace.join(dir).display());
    }
    // The lock file pins the plugins' dependencies; the manifest holds the `plugin` profile.
    for file in ["Cargo.lock", "Cargo.toml"] {
        println!("cargo:rerun-if-changed={}", workspace.join(file).display());
    }
    let target_dir = workspace.join("target").join("wasm-plugins");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(workspace)
        .args(["build", "--profile", "plugin", "--target", "wasm32-wasip2", "--locked"])
        .env("CARGO_TARGET_DIR", &target_dir)
        // Flags and wrappers meant for the host build (clippy, coverage…) must not leak in.
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("RUSTFLAGS")
        .env_remove("RUSTC_WORKSPACE_WRAPPER")
        .env_remove("RUSTC_WRAPPER")
        .env_remove("CARGO_BUILD_TARGET");
    for package in packages {
        cmd.args(["-p", package]);
    }
    let status = cmd.status().unwrap_or_else(|e| panic!("could not run cargo: {e}"));
    if !status.success() {
        panic!(
            "building the wasm plugins failed ({status}). Is the target installed? \
             Run: rustup target add wasm32-wasip2"
        );
    }
    target_dir.join("wasm32-wasip2").join("plugin")
}
