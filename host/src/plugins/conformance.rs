//! Data-driven plugin tests: a case is a JSON file holding an event, a config and what the
//! plugin must do with them (deliver this body, skip with this reason, fail with this kind of
//! error, accept or refuse the config). [`run_case`] runs one through the same sandbox and
//! limits as a delivery, so a plugin that passes here behaves the same in the service.
//!
//! The repository's `tests/conformance/` folder holds the cases every example plugin passes,
//! whatever its language; `switchyard plugins test` runs a plugin author's own cases with the
//! same code. The format is described in `tests/conformance/README.md`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Deserialize;
use serde_json::Value;

use super::{Decision, LoadedPlugin, PluginError, PluginEvent, Runtime};

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

/// The outcome of one case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaseResult {
    /// The case's name.
    pub name: String,
    /// Why it failed; `None` when it passed.
    pub failure: Option<String>,
}

impl CaseResult {
    /// Whether the plugin did what the case expects.
    pub fn passed(&self) -> bool {
        self.failure.is_none()
    }
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
fn check(case: &Case) -> Result<(), String> {
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

/// Runs `case` on `plugin`, in a fresh sandbox under `runtime`'s limits.
pub async fn run_case(runtime: &Runtime, plugin: &Arc<LoadedPlugin>, case: &Case) -> CaseResult {
    let config = case.config.to_string();
    let (outcome, logs) = match case.call {
        Call::ValidateConfig => {
            let result = runtime.validate_config(plugin, &config).await;
            (result.map(|()| None), None)
        }
        Call::Transform => {
            let event = PluginEvent {
                id: case.event.id.clone(),
                event_type: case.event.event_type.clone(),
                timestamp: case.event.timestamp,
                subscription_id: case.event.subscription_id.clone(),
                payload: case.event.data.to_string(),
            };
            let report = runtime.transform(plugin, event, &config).await;
            (report.result.map(Some), Some(report.logs))
        }
    };
    let mut failure = compare(&case.expect, outcome);
    if failure.is_none()
        && let (Some(want), Some(got)) = (&case.logs, logs)
    {
        let got: Vec<(&str, &str)> = got.iter().map(|l| (l.level, l.message.as_str())).collect();
        let want: Vec<(&str, &str)> = want
            .iter()
            .map(|l| (l.level.as_str(), l.message.as_str()))
            .collect();
        if got != want {
            failure = Some(format!("logged {got:?}, expected {want:?}"));
        }
    }
    CaseResult {
        name: case.name.clone(),
        failure,
    }
}

/// Runs every case, in order.
pub async fn run_all(
    runtime: &Runtime,
    plugin: &Arc<LoadedPlugin>,
    cases: &[Case],
) -> Vec<CaseResult> {
    let mut results = Vec::with_capacity(cases.len());
    for case in cases {
        results.push(run_case(runtime, plugin, case).await);
    }
    results
}

/// `None` when `got` is what `expect` says; otherwise what differs.
fn compare(expect: &Expect, got: Result<Option<Decision>, PluginError>) -> Option<String> {
    match (expect, got) {
        (Expect::Valid(_), Ok(None)) => None,
        (Expect::Skip(want), Ok(Some(Decision::Skip(reason)))) => {
            (reason != *want).then(|| format!("skipped with {reason:?}, expected {want:?}"))
        }
        (Expect::Deliver(want), Ok(Some(Decision::Deliver(request)))) => {
            let mut diffs = Vec::new();
            if request.content_type != want.content_type {
                diffs.push(format!(
                    "content type {:?}, expected {:?}",
                    request.content_type, want.content_type
                ));
            }
            let headers: BTreeMap<String, String> = request.headers.into_iter().collect();
            if headers != want.headers {
                diffs.push(format!("headers {headers:?}, expected {:?}", want.headers));
            }
            let text = String::from_utf8_lossy(&request.body);
            if let Some(body) = &want.body
                && *text != **body
            {
                diffs.push(format!("body\n  {text}\nexpected\n  {body}"));
            }
            if let Some(json) = &want.json {
                match serde_json::from_slice::<Value>(&request.body) {
                    Ok(value) if value == *json => {}
                    Ok(value) => diffs.push(format!("body as JSON\n  {value}\nexpected\n  {json}")),
                    Err(e) => diffs.push(format!("body is not JSON ({e}): {text}")),
                }
            }
            (!diffs.is_empty()).then(|| diffs.join("; "))
        }
        (Expect::Error(want), Err(error)) => {
            let message = error.to_string();
            if error.kind() != want.kind {
                Some(format!(
                    "failed as {} ({message}), expected {}",
                    error.kind(),
                    want.kind
                ))
            } else {
                want.message_contains
                    .as_ref()
                    .filter(|part| !message.contains(part.as_str()))
                    .map(|part| format!("failed with {message:?}, which does not contain {part:?}"))
            }
        }
        (want, got) => Some(format!("{}, expected {}", describe(&got), what(want))),
    }
}

fn describe(got: &Result<Option<Decision>, PluginError>) -> String {
    match got {
        Ok(None) => "accepted the config".into(),
        Ok(Some(Decision::Skip(reason))) => format!("skipped ({reason})"),
        Ok(Some(Decision::Deliver(request))) => format!(
            "delivered {}",
            super::limits::truncate(String::from_utf8_lossy(&request.body).into_owned(), 300)
        ),
        Err(error) => format!("failed as {} ({error})", error.kind()),
    }
}

fn what(expect: &Expect) -> &'static str {
    match expect {
        Expect::Deliver(_) => "a delivery",
        Expect::Skip(_) => "a skip",
        Expect::Valid(_) => "the config accepted",
        Expect::Error(_) => "an error",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::PluginRequest;

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

    #[test]
    fn comparisons_say_what_differs() {
        let deliver = |body: &str| {
            Ok(Some(Decision::Deliver(PluginRequest {
                body: body.as_bytes().to_vec(),
                content_type: "application/json".into(),
                headers: Vec::new(),
            })))
        };
        let exact = case(r#"{"expect": {"deliver": {"body": "{\"a\":1}"}}}"#).unwrap();
        assert_eq!(compare(&exact.expect, deliver(r#"{"a":1}"#)), None);
        let diff = compare(&exact.expect, deliver(r#"{"a": 1}"#)).unwrap();
        assert!(diff.contains("body"), "{diff}");
        let json = case(r#"{"expect": {"deliver": {"json": {"a": 1}}}}"#).unwrap();
        assert_eq!(compare(&json.expect, deliver(r#"{ "a" : 1 }"#)), None);
        assert!(compare(&json.expect, deliver("{}")).is_some());
        let skip = case(r#"{"expect": {"skip": "draft"}}"#).unwrap();
        assert!(
            compare(&skip.expect, deliver("{}"))
                .unwrap()
                .contains("expected a skip")
        );
        let error =
            case(r#"{"expect": {"error": {"kind": "plugin_error", "message_contains": "`x`"}}}"#)
                .unwrap();
        let guest = |m: &str| Err(PluginError::Guest(m.into()));
        assert_eq!(compare(&error.expect, guest("bad `x`")), None);
        assert!(compare(&error.expect, guest("bad y")).is_some());
        assert!(
            compare(&error.expect, Err(PluginError::StackOverflow))
                .unwrap()
                .contains("stack_overflow")
        );
    }
}
