//! Switchyard `jq` plugin: the subscription's config is a jq program, run with
//! [jaq](https://github.com/01mf02/jaq) on the envelope `{"id", "type", "timestamp", "data"}`;
//! its output is the body to deliver. No toolchain, no upload: edit the program with a PATCH.
//!
//! Config: the program as a JSON string, or `{"program": "…", "args": {…}}` (`args` is `$args`
//! in the program, `{}` without). What the output means:
//!
//! - `null`, no output (`empty`), or `skip("why")`: nothing is sent (skipped, with a reason);
//! - an object whose keys are all among `body`, `headers`, `content_type`, with `body`
//!   present: the delivery spelled out (a string `body` is sent as text);
//! - anything else: the body, as compact JSON.
//!
//! The program is compiled (checked) when a subscription is created or changed, so a bad one
//! is refused with a 422 naming `line:column`. See README.md.

// Natively (unit tests, `cargo test --workspace`) the plugin glue below is unused: see the
// `export_plugin!` call at the end.
#![cfg_attr(not(target_family = "wasm"), allow(dead_code))]

mod calls;
mod natives;
mod output;
mod prelude;
mod program;

use serde::Deserialize;
use serde_json::Value;
use switchyard_plugin_sdk::envelope::envelope_text as envelope;
use switchyard_plugin_sdk::{Error, Event, Level, Outcome, Plugin};

/// The subscription's `plugin_config`: the program, and the value of `$args`.
#[derive(Debug, Deserialize)]
#[serde(try_from = "Value")]
struct Config {
    program: String,
    /// JSON text of `$args`.
    args: String,
}

impl TryFrom<Value> for Config {
    type Error = String;

    fn try_from(value: Value) -> Result<Self, String> {
        const SHAPE: &str = "the jq plugin's config is a jq program: a JSON string, or {\"program\": \"…\", \"args\": {…}}";
        let (program, args) = match value {
            Value::String(program) => (program, Value::Object(Default::default())),
            Value::Object(mut fields) => {
                let program = match fields.remove("program") {
                    Some(Value::String(program)) => program,
                    Some(_) => return Err("`program` must be a string".into()),
                    None => return Err(format!("missing `program`: {SHAPE}")),
                };
                let args = fields
                    .remove("args")
                    .unwrap_or_else(|| Value::Object(Default::default()));
                if let Some(key) = fields.keys().next() {
                    return Err(format!("unknown key `{key}`: {SHAPE}"));
                }
                (program, args)
            }
            _ => return Err(SHAPE.into()),
        };
        Ok(Self {
            program,
            args: args.to_string(),
        })
    }
}

/// The plugin.
struct Jq;

impl Plugin for Jq {
    type Config = Config;

    fn transform(event: Event, config: Config) -> Result<Outcome, Error> {
        transform(&event, &config)
    }

    fn validate_config(config: &Config) -> Result<(), Error> {
        program::compile(&config.program)
            .map(drop)
            .map_err(Error::msg)
    }
}

/// Compiles the program and runs it on the event's envelope.
fn transform(event: &Event, config: &Config) -> Result<Outcome, Error> {
    let program = program::compile(&config.program).map_err(Error::msg)?;
    let input = jaq_json::read::parse_single(envelope(event)?.as_bytes())
        .map_err(|e| Error::msg(format!("event data is not JSON: {e}")))?;
    let args = jaq_json::read::parse_single(config.args.as_bytes())
        .map_err(|e| Error::msg(format!("args: {e}")))?;
    output::run(&program, input, args).map_err(Error::msg)
}

/// A line in the plugin's log: the host's in a component, a test buffer natively.
fn log_line(level: Level, message: &str) {
    #[cfg(target_family = "wasm")]
    switchyard_plugin_sdk::bindings::switchyard::plugin::host::log(level, message);
    #[cfg(not(target_family = "wasm"))]
    NATIVE_LOG.with(|log| log.borrow_mut().push((level, message.to_owned())));
}

#[cfg(not(target_family = "wasm"))]
thread_local! {
    /// What `log_line` wrote natively (unit tests read it).
    static NATIVE_LOG: std::cell::RefCell<Vec<(Level, String)>> = const { std::cell::RefCell::new(Vec::new()) };
}

// Only a wasm build exports the component: natively the cdylib cannot link the export names
// (they contain `:`), and there is no host to call them anyway.
#[cfg(target_family = "wasm")]
switchyard_plugin_sdk::export_plugin!(Jq);

#[cfg(test)]
mod readme;

#[cfg(test)]
mod tests {
    use super::*;

    /// `(content type, headers, body)` of a delivery.
    pub(crate) type Delivered = (String, Vec<(String, String)>, String);

    pub(crate) fn event(event_type: &str, data: &str) -> Event {
        Event {
            id: "evt_01J".into(),
            event_type: event_type.into(),
            timestamp: 1_795_446_245,
            subscription_id: "sub_1".into(),
            payload: data.into(),
        }
    }

    pub(crate) fn config(value: Value) -> Result<Config, String> {
        Config::try_from(value)
    }

    /// `Ok((content type, headers, body))` on a delivery, `Err("skip: …")` or the error.
    pub(crate) fn run(value: Value, event: &Event) -> Result<Delivered, String> {
        let config = config(value)?;
        match transform(event, &config).map_err(|e| e.message().to_owned())? {
            Outcome::Deliver(d) => Ok((
                d.content_type,
                d.headers,
                String::from_utf8(d.body).map_err(|e| e.to_string())?,
            )),
            Outcome::Skip(reason) => Err(format!("skip: {reason}")),
        }
    }

    fn body(program: &str, data: &str) -> String {
        match run(
            Value::String(program.into()),
            &event("post.published", data),
        ) {
            Ok((content_type, headers, body)) => {
                assert_eq!(content_type, "application/json");
                assert!(headers.is_empty());
                body
            }
            Err(e) => panic!("{program}: {e}"),
        }
    }

    #[test]
    fn sees_the_envelope() {
        assert_eq!(
            body(".", r#"{"n": 1.50, "big": 12345678901234567890}"#),
            r#"{"id":"evt_01J","type":"post.published","timestamp":"2026-11-23T15:04:05Z","data":{"n":1.50,"big":12345678901234567890}}"#
        );
        assert_eq!(body(".timestamp | fromdate", "{}"), "1795446245");
        assert_eq!(body("[.data[] | . * 2]", "[1, 2]"), "[2,4]");
    }

    #[test]
    fn config_forms() {
        let event = event("a", "{}");
        let with_args = json_config(r##"{"program": "{to: $args.to}", "args": {"to": "#ops"}}"##);
        assert_eq!(
            run(with_args, &event).map(|r| r.2),
            Ok(r##"{"to":"#ops"}"##.into())
        );
        let no_args = json_config(r#"{"program": "$args"}"#);
        assert_eq!(run(no_args, &event).map(|r| r.2), Ok("{}".into()));
        for bad in [
            "null",
            "1",
            "[]",
            "{}",
            r#"{"program": 1}"#,
            r#"{"program": ".", "x": 1}"#,
        ] {
            assert!(config(json_config(bad)).is_err(), "{bad} accepted");
        }
    }

    fn json_config(text: &str) -> Value {
        serde_json::from_str(text).unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    #[test]
    fn validate_config_compiles_the_program() {
        let validate = |program: &str| {
            let config = config(Value::String(program.into()))?;
            Jq::validate_config(&config).map_err(|e| e.message().to_owned())
        };
        assert_eq!(validate(".data | {title}"), Ok(()));
        assert_eq!(
            validate(".data | {a: }"),
            Err("jq program: 1:13: expected term, found `}`".into())
        );
    }

    #[test]
    fn debug_goes_to_the_log() {
        NATIVE_LOG.with(|log| log.borrow_mut().clear());
        assert_eq!(body(".data | debug | .a", r#"{"a": "x"}"#), r#""x""#);
        assert_eq!(body(r#""seen" | stderr | 1"#, "{}"), "1");
        let logged = NATIVE_LOG.with(|log| log.borrow().clone());
        assert_eq!(
            logged,
            [
                (Level::Debug, r#"{"a":"x"}"#.to_owned()),
                (Level::Info, "seen".to_owned())
            ]
        );
    }
}
