//! `switchyard plugins new`: a plugin project that builds as generated, in Rust, JavaScript or
//! Python. Everything it needs to build is written into it — the WIT contract, and for Rust a
//! copy of the SDK — so it builds wherever it is created, without this repository.

use std::path::{Path, PathBuf};

use super::Lang;
use crate::cli::client::CliError;

/// A file of a new project: path inside it, contents (`{{name}}` becomes the plugin name).
type Template = (&'static str, &'static str);

const WIT: Template = (
    "wit/transformer.wit",
    include_str!("../../../../wit/transformer.wit"),
);

/// A sample event for `plugins dev`, and two cases for `plugins test`.
const SAMPLES: [Template; 3] = [
    ("event.json", include_str!("templates/event.json")),
    (
        "cases/deliver.json",
        include_str!("templates/case-deliver.json"),
    ),
    ("cases/skip.json", include_str!("templates/case-skip.json")),
];

const RUST: &[Template] = &[
    ("Cargo.toml", include_str!("templates/rust/Cargo.toml")),
    ("src/lib.rs", include_str!("templates/rust/lib.rs")),
    (
        "sdk/Cargo.toml",
        include_str!("templates/rust/sdk.Cargo.toml"),
    ),
    (
        "sdk/src/lib.rs",
        include_str!("../../../../plugin-sdk/src/lib.rs"),
    ),
    (
        "sdk/src/envelope.rs",
        include_str!("../../../../plugin-sdk/src/envelope.rs"),
    ),
    (
        "sdk/src/path.rs",
        include_str!("../../../../plugin-sdk/src/path.rs"),
    ),
    (
        "sdk/src/template.rs",
        include_str!("../../../../plugin-sdk/src/template.rs"),
    ),
    (
        "sdk/src/text.rs",
        include_str!("../../../../plugin-sdk/src/text.rs"),
    ),
    (".gitignore", "target/\n"),
];

const JS: &[Template] = &[
    ("package.json", include_str!("templates/js/package.json")),
    ("app.js", include_str!("templates/js/app.js")),
    (".gitignore", "node_modules/\nplugin.wasm\n"),
];

const JS_QUICKJS: &[Template] = &[
    (
        "package.json",
        include_str!("templates/js-quickjs/package.json"),
    ),
    ("app.js", include_str!("templates/js/app.js")),
    (".gitignore", "node_modules/\nplugin.wasm\n"),
];

const PYTHON: &[Template] = &[
    (
        "requirements.txt",
        include_str!("templates/python/requirements.txt"),
    ),
    ("app.py", include_str!("templates/python/app.py")),
    (".gitignore", ".venv/\n__pycache__/\nplugin.wasm\n"),
];

/// Writes a new `lang` project for plugin `name` into `dir` (which must not exist, or be
/// empty). Returns the files written.
///
/// # Errors
/// A name that is not a plugin name, a folder in the way, or a write that fails.
pub fn create(dir: &Path, name: &str, lang: Lang) -> Result<Vec<PathBuf>, CliError> {
    if !switchyard::plugins::valid_name(name) || !name.starts_with(|c: char| c.is_ascii_lowercase())
    {
        return Err(CliError::Input(format!(
            "{name:?} is not a plugin name: a lower-case letter, then a-z, 0-9, '_' or '-' (63 at most)"
        )));
    }
    let occupied = std::fs::read_dir(dir).is_ok_and(|mut entries| entries.next().is_some());
    if occupied {
        return Err(CliError::Input(format!(
            "{} already exists and is not empty",
            dir.display()
        )));
    }
    let own = match lang {
        Lang::Rust => RUST,
        Lang::Js => JS,
        Lang::JsQuickjs => JS_QUICKJS,
        Lang::Python => PYTHON,
    };
    let mut written = Vec::new();
    for (path, text) in own.iter().chain([&WIT]).chain(SAMPLES.iter()) {
        let target = dir.join(path);
        let io = |e: std::io::Error| CliError::Input(format!("{}: {e}", target.display()));
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent).map_err(io)?;
        }
        std::fs::write(&target, text.replace("{{name}}", name)).map_err(io)?;
        written.push(target);
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_project_is_written_with_its_contract_and_samples() {
        let dir = tempfile::tempdir().unwrap();
        let project = dir.path().join("hello");
        let files = create(&project, "hello", Lang::Js).unwrap();
        assert!(files.iter().any(|f| f.ends_with("wit/transformer.wit")));
        let package = std::fs::read_to_string(project.join("package.json")).unwrap();
        assert!(package.contains("\"name\": \"hello\""), "{package}");
        let again = create(&project, "hello", Lang::Js).unwrap_err();
        assert!(again.to_string().contains("not empty"), "{again}");
    }

    /// Each scaffold is built by its own engine: `build` tells them apart by the package.
    #[test]
    fn each_javascript_scaffold_is_detected_as_its_engine() {
        let dir = tempfile::tempdir().unwrap();
        for lang in [Lang::Js, Lang::JsQuickjs, Lang::Rust, Lang::Python] {
            let project = dir.path().join(format!("{lang:?}"));
            create(&project, "hello", lang).unwrap();
            assert_eq!(super::super::toolchain::detect(&project).unwrap(), lang);
        }
    }

    #[test]
    fn a_name_that_is_not_a_plugin_name_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        for bad in ["Hello", "1st", "a b", ""] {
            let err = create(&dir.path().join("x"), bad, Lang::Rust).unwrap_err();
            assert!(
                err.to_string().contains("not a plugin name"),
                "{bad}: {err}"
            );
        }
    }
}
