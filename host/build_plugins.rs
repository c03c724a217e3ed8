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
    if packages.contains(&"switchyard-plugin-js") {
        c_for_wasm(&mut cmd);
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

/// The bundled `js` plugin compiles QuickJS (C) into its component. rquickjs-sys would download
/// a wasi-sdk; instead it uses Debian's clang 19 (the first to know `wasm32-wasip2`) with the
/// WASI libc headers, linking against Rust's own wasip2 libc. `WASI_SDK` or `CC_wasm32_wasip2`
/// set by the caller take precedence.
fn c_for_wasm(cmd: &mut Command) {
    for var in ["WASI_SDK", "CC_wasm32_wasip2", "AR_wasm32_wasip2", "CFLAGS_wasm32_wasip2"] {
        println!("cargo:rerun-if-env-changed={var}");
    }
    if std::env::var_os("WASI_SDK").is_some() {
        return;
    }
    const HEADERS: &str = "/usr/include/wasm32-wasi";
    let cc = std::env::var("CC_wasm32_wasip2").unwrap_or_else(|_| "clang-19".to_owned());
    let ar = std::env::var("AR_wasm32_wasip2").unwrap_or_else(|_| "llvm-ar-19".to_owned());
    let runs = |tool: &str| {
        Command::new(tool)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    };
    let missing: Vec<&str> = [
        (!runs(&cc)).then_some(cc.as_str()),
        (!runs(&ar)).then_some(ar.as_str()),
        (!Path::new(HEADERS).join("stdlib.h").exists()).then_some(HEADERS),
    ]
    .into_iter()
    .flatten()
    .collect();
    if !missing.is_empty() {
        panic!(
            "the bundled js plugin compiles QuickJS (C) for wasm32-wasip2 and needs clang 19 and \
             the WASI libc headers; missing: {}. Install them with: \
             apt-get install -y clang-19 llvm-19 wasi-libc (or set WASI_SDK to a wasi-sdk folder)",
            missing.join(", ")
        );
    }
    cmd.env("RQUICKJS_SYS_NO_WASI_SDK", "1")
        .env("CC_wasm32_wasip2", cc)
        .env("AR_wasm32_wasip2", ar);
    if std::env::var_os("CFLAGS_wasm32_wasip2").is_none() {
        // No sysroot of its own: only the libc headers; the C objects link with Rust's libc.a.
        cmd.env(
            "CFLAGS_wasm32_wasip2",
            format!("--sysroot=/nonexistent -isystem {HEADERS}"),
        );
    }
}
