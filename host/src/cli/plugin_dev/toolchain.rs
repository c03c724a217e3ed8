//! `switchyard plugins build`: runs a project's own toolchain with the flags a Switchyard
//! component needs — cargo for Rust, componentize-js for JavaScript, componentize-py for
//! Python — installing the JavaScript and Python ones into the project the first time (pinned
//! by its `package.json` / `requirements.txt`) when they are not on `PATH`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::Lang;
use crate::cli::client::CliError;

/// A component just built.
pub struct Built {
    /// The `.wasm` file.
    pub path: PathBuf,
    /// How long the build took.
    pub took: Duration,
}

/// Which language the project in `dir` is in, from the files that mark it.
///
/// # Errors
/// None of `Cargo.toml`, `package.json`, `app.py` is there.
pub fn detect(dir: &Path) -> Result<Lang, CliError> {
    if dir.join("Cargo.toml").is_file() {
        Ok(Lang::Rust)
    } else if dir.join("package.json").is_file() {
        Ok(js_engine(&dir.join("package.json")))
    } else if dir.join("app.py").is_file() {
        Ok(Lang::Python)
    } else {
        Err(CliError::Input(format!(
            "{} is not a plugin project: no Cargo.toml, package.json or app.py (make one with `switchyard plugins new`)",
            dir.display()
        )))
    }
}

/// The engine a JavaScript project depends on decides its build: componentize-qjs alone in the
/// `package.json` at `manifest` (dependencies or devDependencies) means QuickJS; anything
/// else, a manifest that does not parse included, componentize-js.
fn js_engine(manifest: &Path) -> Lang {
    let json = std::fs::read_to_string(manifest)
        .ok()
        .and_then(|text| serde_json::from_str::<serde_json::Value>(&text).ok())
        .unwrap_or_default();
    let depends_on = |package: &str| {
        ["dependencies", "devDependencies"]
            .iter()
            .any(|field| json[field].get(package).is_some())
    };
    if depends_on("componentize-qjs") && !depends_on("@bytecodealliance/componentize-js") {
        Lang::JsQuickjs
    } else {
        Lang::Js
    }
}

/// Builds the project in `dir`. The toolchain's own output goes to stderr.
///
/// # Errors
/// No project there, the toolchain is missing and cannot be installed, or the build fails.
pub fn build(dir: &Path) -> Result<Built, CliError> {
    let started = Instant::now();
    let path = match detect(dir)? {
        Lang::Rust => build_rust(dir)?,
        Lang::Js => build_js(dir, &STARLINGMONKEY)?,
        Lang::JsQuickjs => build_js(dir, &QUICKJS)?,
        Lang::Python => build_python(dir)?,
    };
    Ok(Built {
        path,
        took: started.elapsed(),
    })
}

/// `cargo build --release --target wasm32-wasip2`; the component is the `.wasm` artefact cargo
/// reports (so `CARGO_TARGET_DIR` and workspaces work).
fn build_rust(dir: &Path) -> Result<PathBuf, CliError> {
    let output = Command::new("cargo")
        .args([
            "build",
            "--release",
            "--target",
            "wasm32-wasip2",
            "--message-format",
            "json-render-diagnostics",
        ])
        .current_dir(dir)
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| missing("cargo", "install Rust from https://rustup.rs", &e))?;
    if !output.status.success() {
        return Err(failed("cargo build", output.status));
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    stdout
        .lines()
        .filter_map(|line| serde_json::from_str::<Artifact>(line).ok())
        .filter(|a| a.reason == "compiler-artifact")
        .flat_map(|a| a.filenames)
        .rfind(|f| f.extension().is_some_and(|e| e == "wasm"))
        .ok_or_else(|| {
            CliError::Input(
                "cargo built no .wasm: the crate needs `crate-type = [\"cdylib\"]`".into(),
            )
        })
}

#[derive(serde::Deserialize)]
struct Artifact {
    reason: String,
    #[serde(default)]
    filenames: Vec<PathBuf>,
}

/// A JavaScript engine's build tool and its arguments.
struct JsEngine {
    tool: &'static str,
    args: &'static [&'static str],
}

/// `componentize-js app.js --wit wit --world-name transformer -o plugin.wasm`.
const STARLINGMONKEY: JsEngine = JsEngine {
    tool: "componentize-js",
    args: &[
        "app.js",
        "--wit",
        "wit",
        "--world-name",
        "transformer",
        "-o",
        "plugin.wasm",
    ],
};

/// `componentize-qjs --wit wit --world transformer --js app.js --sync -o plugin.wasm`
/// (`--sync`: the exports are plain functions, as the host calls them).
const QUICKJS: JsEngine = JsEngine {
    tool: "componentize-qjs",
    args: &[
        "--wit",
        "wit",
        "--world",
        "transformer",
        "--js",
        "app.js",
        "--sync",
        "-o",
        "plugin.wasm",
    ],
};

/// Builds with `engine`'s tool from the project's `node_modules` (installed with
/// `npm install` if absent) or `PATH`.
fn build_js(dir: &Path, engine: &JsEngine) -> Result<PathBuf, CliError> {
    let local = dir.join("node_modules/.bin").join(engine.tool);
    let tool = if local.is_file() {
        local
    } else if on_path(engine.tool) {
        PathBuf::from(engine.tool)
    } else {
        eprintln!("installing the JavaScript toolchain (npm install)…");
        run(
            Command::new("npm")
                .args(["install", "--no-audit", "--no-fund"])
                .current_dir(dir),
            "npm install",
            "install Node.js 20 or later",
        )?;
        local
    };
    run(
        Command::new(tool).args(engine.args).current_dir(dir),
        engine.tool,
        "run `npm install` in the project",
    )?;
    Ok(dir.join("plugin.wasm"))
}

/// `componentize-py -d wit -w transformer componentize app -o plugin.wasm`, from the project's
/// `.venv` (made and filled from `requirements.txt` if absent) or `PATH`.
fn build_python(dir: &Path) -> Result<PathBuf, CliError> {
    let venv = dir.join(".venv");
    let local = venv.join("bin/componentize-py");
    let tool = if local.is_file() {
        local
    } else if on_path("componentize-py") {
        PathBuf::from("componentize-py")
    } else {
        eprintln!("installing the Python toolchain into .venv (pip install -r requirements.txt)…");
        run(
            Command::new("python3")
                .args(["-m", "venv", ".venv"])
                .current_dir(dir),
            "python3 -m venv",
            "install Python 3.10 or later with venv",
        )?;
        run(
            Command::new(venv.join("bin/pip"))
                .args(["install", "--quiet", "-r", "requirements.txt"])
                .current_dir(dir),
            "pip install",
            "check that PyPI is reachable",
        )?;
        local
    };
    run(
        Command::new(tool)
            .args(["-d", "wit", "-w", "transformer", "componentize", "app"])
            .args(["-o", "plugin.wasm"])
            .current_dir(dir),
        "componentize-py",
        "pip install componentize-py (see requirements.txt)",
    )?;
    Ok(dir.join("plugin.wasm"))
}

/// Whether `tool` runs from `PATH`.
fn on_path(tool: &str) -> bool {
    Command::new(tool)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Runs a toolchain step with its output on stderr (stdout stays the command's own).
fn run(command: &mut Command, what: &str, hint: &str) -> Result<(), CliError> {
    let status = command
        .stdout(to_stderr())
        .stderr(Stdio::inherit())
        .status()
        .map_err(|e| missing(what, hint, &e))?;
    if status.success() {
        Ok(())
    } else {
        Err(failed(what, status))
    }
}

/// The toolchains' chatter goes to stderr: stdout is the command's answer (a path, or JSON).
fn to_stderr() -> Stdio {
    use std::os::fd::AsFd;
    std::io::stderr()
        .as_fd()
        .try_clone_to_owned()
        .map_or_else(|_| Stdio::inherit(), Stdio::from)
}

fn missing(what: &str, hint: &str, err: &std::io::Error) -> CliError {
    CliError::Input(format!("cannot run {what}: {err} ({hint})"))
}

fn failed(what: &str, status: std::process::ExitStatus) -> CliError {
    CliError::Input(format!("{what} failed ({status}); its output is above"))
}
