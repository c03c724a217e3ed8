//! Command-line input forms shared by the commands: `JSON`, `@file` or `@-` (standard input)
//! for JSON and text arguments, and `'name: value'` headers.

use std::io::Read;

use serde_json::Value;

use super::client::CliError;

/// The text of an argument that may be given inline, as `@path`, or as `@-` (stdin).
///
/// # Errors
/// When the file or stdin cannot be read.
pub fn text(arg: &str) -> Result<String, CliError> {
    match arg.strip_prefix('@') {
        Some("-") => {
            let mut text = String::new();
            std::io::stdin()
                .read_to_string(&mut text)
                .map_err(|e| CliError::Input(format!("reading standard input: {e}")))?;
            Ok(text)
        }
        Some(path) => {
            std::fs::read_to_string(path).map_err(|e| CliError::Input(format!("{path}: {e}")))
        }
        None => Ok(arg.to_owned()),
    }
}

/// A JSON argument (`JSON`, `@file`, `@-`), parsed.
///
/// # Errors
/// When it cannot be read or is not JSON.
pub fn json(arg: &str, what: &str) -> Result<Value, CliError> {
    let text = text(arg)?;
    serde_json::from_str(&text).map_err(|e| CliError::Input(format!("{what} is not JSON: {e}")))
}

/// `'name: value'` → (`name`, `value`), both trimmed.
///
/// # Errors
/// When there is no colon or the name is empty.
pub fn header(arg: &str) -> Result<(String, String), CliError> {
    match arg.split_once(':') {
        Some((name, value)) if !name.trim().is_empty() => {
            Ok((name.trim().to_owned(), value.trim().to_owned()))
        }
        _ => Err(CliError::Input(format!(
            "header {arg:?} is not of the form 'name: value'"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inline_and_file_forms() {
        assert_eq!(
            json(r#"{"a":1}"#, "data").unwrap(),
            serde_json::json!({"a": 1})
        );
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("d.json");
        std::fs::write(&path, "[1,2]").unwrap();
        let arg = format!("@{}", path.display());
        assert_eq!(json(&arg, "data").unwrap(), serde_json::json!([1, 2]));
        assert!(matches!(json("{nope", "data"), Err(CliError::Input(m)) if m.contains("data")));
        assert!(matches!(text("@/no/such/file"), Err(CliError::Input(_))));
    }

    #[test]
    fn headers() {
        assert_eq!(
            header("X-Token:  abc:def ").unwrap(),
            ("X-Token".to_owned(), "abc:def".to_owned())
        );
        assert!(header("no colon").is_err());
        assert!(header(": v").is_err());
    }
}
