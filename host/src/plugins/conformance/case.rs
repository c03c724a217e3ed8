//! Conformance cases: their format (see `tests/conformance/README.md`) and reading them from
//! files, refusing a case that could not be checked (an expectation that does not fit its call).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::Value;

/// Cases larger than this are refused (a case is an event and a config, not a data set).
const MAX_CASE_BYTES: u64 = 4 << 20;

/// Why cases could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ConformanceError {
    /// A case file or folder could not be read.
    #[error("{path}: {message}")]
    Read {
        /// The file or folder.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// A case file is not a valid case.
    #[error("{path}: not a valid case: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },
}

/// One case: an input and what must come out.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Case {
    /// The case's name (its file stem, set by [`load_dir`]).
    #[serde(skip)]
    pub name: String,
    /// What the case checks, for the reader.
    #[serde(default)]
    pub description: Option<String>,
    /// Which export is called: `transform` (the default) or `validate_config`.
    #[serde(default)]
    pub call: Call,
    /// The event (ignored by `validate_config`).
    #[serde(default)]
    pub event: CaseEvent,
    /// The subscription's `plugin_config` (default `null`).
    #[serde(default)]
    pub config: Value,
    /// What the plugin must do.
    pub expect: Expect,
    /// The log lines the call must produce, in order (`host.log` and stdout/stderr), when set.
    #[serde(default)]
    pub logs: Option<Vec<ExpectedLog>>,
}

/// The export a case calls.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Call {
    /// `transform(event, config)`.
    #[default]
    Transform,
    /// `validate-config(config)`.
    ValidateConfig,
}

/// The event a case hands in. Defaults make small cases small.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaseEvent {
    /// The event type.
    #[serde(rename = "type", default = "default_type")]
    pub event_type: String,
    /// The event id (default `evt_01J`).
    #[serde(default = "default_id")]
    pub id: String,
    /// Unix seconds (default `1795446245`, 2026-11-23T15:04:05Z).
    #[serde(default = "default_timestamp")]
    pub timestamp: i64,
    /// The subscription id (default `sub_conformance`).
    #[serde(default = "default_subscription")]
    pub subscription_id: String,
    /// The event's `data` (default `null`).
    #[serde(default)]
    pub data: Value,
}

impl Default for CaseEvent {
    fn default() -> Self {
        Self {
            event_type: default_type(),
            id: default_id(),
            timestamp: default_timestamp(),
            subscription_id: default_subscription(),
            data: Value::Null,
        }
    }
}

fn default_type() -> String {
    "post.published".into()
}
fn default_id() -> String {
    "evt_01J".into()
}
fn default_timestamp() -> i64 {
    1_795_446_245
}
fn default_subscription() -> String {
    "sub_conformance".into()
}

/// What a case expects. Exactly one of the forms.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Expect {
    /// `transform` delivers this request.
    Deliver(ExpectedDelivery),
    /// `transform` skips, with exactly this reason.
    Skip(String),
    /// `validate_config` accepts the config (the value must be `true`).
    Valid(bool),
    /// The call fails with this kind of error.
    Error(ExpectedError),
}

/// A delivery a case expects.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExpectedDelivery {
    /// The content type (default `application/json`).
    #[serde(default = "default_content_type")]
    pub content_type: String,
    /// The body, byte for byte (as UTF-8 text).
    #[serde(default)]
    pub body: Option<String>,
    /// The body as JSON: equal as values (key order and spacing aside).
    #[serde(default)]
    pub json: Option<Value>,
    /// The extra headers, exactly (names lower-case; default none).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
}

fn default_content_type() -> String {
    "application/json".into()
}

/// An error a case expects.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExpectedError {
    /// The error's kind, as on delivery attempts: `plugin_error` (the plugin returned `err`),
    /// `trap`, `timeout`, `out_of_memory`, `invalid_header`, `output_too_large`, …
    pub kind: String,
    /// Text the message must contain.
    #[serde(default)]
    pub message_contains: Option<String>,
}

/// A log line a case expects.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExpectedLog {
    /// `trace` … `error`, or `stdout` / `stderr`.
    pub level: String,
    /// The text.
    pub message: String,
}

/// Reads every `*.json` case in `dir`, by name. A case's name is its file stem.
///
/// # Errors
/// The folder or a file cannot be read, or a file is not a valid case.
pub fn load_dir(dir: &Path) -> Result<Vec<Case>, ConformanceError> {
    let read_err = |path: &Path, e: std::io::Error| ConformanceError::Read {
        path: path.to_owned(),
        message: e.to_string(),
    };
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| read_err(dir, e))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    paths.sort();
    paths.iter().map(|p| load_case(p)).collect()
}

/// Reads one case file.
///
/// # Errors
/// The file cannot be read or is not a valid case.
pub fn load_case(path: &Path) -> Result<Case, ConformanceError> {
    let read_err = |message: String| ConformanceError::Read {
        path: path.to_owned(),
        message,
    };
    let size = std::fs::metadata(path)
        .map_err(|e| read_err(e.to_string()))?
        .len();
    if size > MAX_CASE_BYTES {
        return Err(read_err(format!(
            "{size} bytes; a case may have at most {MAX_CASE_BYTES}"
        )));
    }
    let text = std::fs::read_to_string(path).map_err(|e| read_err(e.to_string()))?;
    let mut case: Case = serde_json::from_str(&text).map_err(|e| ConformanceError::Parse {
        path: path.to_owned(),
        message: e.to_string(),
    })?;
    check(&case).map_err(|message| ConformanceError::Parse {
        path: path.to_owned(),
        message,
    })?;
    case.name = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    Ok(case)
}

/// Rules serde cannot express: the expectation must fit the call.
pub(super) fn check(case: &Case) -> Result<(), String> {
    match (&case.expect, case.call) {
        (Expect::Deliver(d), Call::Transform) if d.body.is_some() == d.json.is_some() => {
            Err("`expect.deliver` needs exactly one of `body` and `json`".into())
        }
        (Expect::Deliver(_) | Expect::Skip(_), Call::ValidateConfig) => {
            Err("a `validate_config` case expects `valid` or `error`".into())
        }
        (Expect::Valid(_), Call::Transform) => {
            Err("a `transform` case expects `deliver`, `skip` or `error`".into())
        }
        (Expect::Valid(false), _) => {
            Err("`valid` must be `true` (a refused config is an `error`)".into())
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn case(text: &str) -> Result<Case, String> {
        let case: Case = serde_json::from_str(text).map_err(|e| e.to_string())?;
        check(&case)?;
        Ok(case)
    }

    #[test]
    fn cases_parse_with_defaults_and_refuse_what_cannot_be_checked() {
        let c = case(r#"{"expect": {"skip": "no"}}"#).unwrap();
        assert_eq!(c.call, Call::Transform);
        assert_eq!(c.event, CaseEvent::default());
        assert_eq!(c.config, Value::Null);
        for bad in [
            r#"{"expect": {"deliver": {}}}"#,
            r#"{"expect": {"deliver": {"body": "x", "json": 1}}}"#,
            r#"{"call": "validate_config", "expect": {"skip": "x"}}"#,
            r#"{"expect": {"valid": true}}"#,
            r#"{"call": "validate_config", "expect": {"valid": false}}"#,
            r#"{"expect": {"skip": "x"}, "typo": 1}"#,
            r#"{"expect": {"skip": "x", "valid": true}}"#,
        ] {
            assert!(case(bad).is_err(), "{bad} must be refused");
        }
    }
}
