//! Data-driven plugin tests: a case is a JSON file holding an event, a config and what the
//! plugin must do with them (deliver this body, skip with this reason, fail with this kind of
//! error, accept or refuse the config). [`run_case`] runs one through the same sandbox and
//! limits as a delivery, so a plugin that passes here behaves the same in the service.
//!
//! The repository's `tests/conformance/` folder holds the cases every example plugin passes,
//! whatever its language; `switchyard plugins test` runs a plugin author's own cases with the
//! same code. The format is described in `tests/conformance/README.md`.

mod case;

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::Value;

pub use case::{
    Call, Case, CaseEvent, ConformanceError, Expect, ExpectedDelivery, ExpectedError, ExpectedLog,
    load_case, load_dir,
};

use super::{Decision, LoadedPlugin, PluginError, PluginEvent, Runtime};

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
        case::check(&case)?;
        Ok(case)
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
