//! The example plugins (`examples/plugins/*`), built from source: the Rust one by the build
//! (`host/build.rs`), the JavaScript and Python ones by `examples/plugins/build.sh` with their
//! pinned toolchains (installed under `target/plugin-toolchains`), once per test run.
//!
//! Without node/npm or python3 the script exits 77: in CI (`CI=true`) that fails the test,
//! elsewhere the test is skipped with a message saying what is missing.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// An example plugin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Example {
    /// `examples/plugins/rust` (built by `host/build.rs`).
    Rust,
    /// `examples/plugins/js`, built with componentize-js (StarlingMonkey): `npm run build`.
    Js,
    /// `examples/plugins/js`, built with componentize-qjs (QuickJS): `npm run build:qjs`.
    JsQuickJs,
    /// `examples/plugins/python`, built with componentize-py.
    Python,
}

impl Example {
    /// Every example.
    pub const ALL: [Example; 4] = [
        Example::Rust,
        Example::Js,
        Example::JsQuickJs,
        Example::Python,
    ];

    /// The name `build.sh` knows it by (also a fine plugin name).
    pub fn name(self) -> &'static str {
        match self {
            Example::Rust => "rust",
            Example::Js => "js",
            Example::JsQuickJs => "js-qjs",
            Example::Python => "python",
        }
    }
}

/// The workspace root.
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("host/ sits in the workspace")
        .to_owned()
}

/// Whether this runs in CI, where every example must build.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// The example's component bytes, or `None` (after printing why) when its toolchain is not
/// available outside CI. Panics when the build fails, or when the toolchain is missing in CI.
pub fn example(example: Example) -> Option<Vec<u8>> {
    let path = match example {
        Example::Rust => PathBuf::from(format!(
            "{}/example_rust.wasm",
            env!("SWITCHYARD_FIXTURE_PLUGINS_DIR")
        )),
        _ => built(example)?,
    };
    Some(std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
}

/// Every example that can be built here (all of them in CI).
pub fn all_examples() -> Vec<(Example, Vec<u8>)> {
    Example::ALL
        .into_iter()
        .filter_map(|e| example(e).map(|bytes| (e, bytes)))
        .collect()
}

/// Runs `build.sh` once per example per test process.
fn built(example: Example) -> Option<PathBuf> {
    static JS: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    static QJS: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    static PYTHON: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let cell = match example {
        Example::Rust => unreachable!("built by host/build.rs"),
        Example::Js => &JS,
        Example::JsQuickJs => &QJS,
        Example::Python => &PYTHON,
    };
    match cell.get_or_init(|| run_build(example)) {
        Ok(path) => Some(path.clone()),
        Err(why) if in_ci() => panic!(
            "the {} example cannot be built, and CI must build every example: {why}",
            example.name()
        ),
        Err(why) => {
            eprintln!(
                "SKIPPED: the {} example plugin cannot be built here ({why}); CI=true makes this a failure",
                example.name()
            );
            None
        }
    }
}

/// `Err` when the toolchain is unavailable (exit 77); panics when the build itself fails.
fn run_build(example: Example) -> Result<PathBuf, String> {
    let script = workspace().join("examples/plugins/build.sh");
    let output = Command::new("bash")
        .arg(&script)
        .arg(example.name())
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e}", script.display()));
    let stderr = String::from_utf8_lossy(&output.stderr);
    match output.status.code() {
        Some(0) => {
            let stdout = String::from_utf8_lossy(&output.stdout);
            let path = stdout.lines().last().unwrap_or_default().trim();
            Ok(PathBuf::from(path))
        }
        Some(77) => Err(stderr.trim().to_owned()),
        _ => panic!(
            "building the {} example failed ({}):\n{stderr}",
            example.name(),
            output.status
        ),
    }
}
