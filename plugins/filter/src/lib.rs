//! Switchyard `filter` plugin: deliver an event only when it matches conditions
//! (Convoy/Hookdeck-style operators), otherwise skip it with a reason naming the first failed
//! condition.
//!
//! Config:
//!
//! ```json
//! {
//!   "match": {
//!     "type": "order.created",
//!     "data.total": {"$gte": 100},
//!     "$or": [{"data.country": {"$in": ["DE", "FR"]}}, {"data.vip": true}]
//!   },
//!   "output": "envelope"
//! }
//! ```
//!
//! - `match` (required): an object mapping dot paths into the envelope (`type`, `data.total`,
//!   `data.items.0.sku`) to a literal (equality) or an operator object, plus `$and` / `$or`
//!   holding non-empty arrays of such objects. All keys of one object must hold.
//! - Operators: `$eq`, `$neq`, `$gt`, `$gte`, `$lt`, `$lte` (numbers, or two strings compared
//!   lexicographically), `$in` / `$nin` (non-empty array), `$exist` (`true` / `false`).
//!   Equality on an array field also matches when the array contains the literal. A missing
//!   field only passes `$neq`, `$nin` and `$exist: false`.
//! - `output`: `"envelope"` (default) delivers `{"id", "type", "timestamp", "data"}`, `"data"`
//!   delivers only `data`; either way the event's JSON is passed through verbatim.
//!
//! A non-match is a skip such as `filter did not match: data.total $gte 100 (got 42)`.

// Natively (unit tests, `cargo test --workspace`) the plugin glue below is unused: see the
// `export_plugin!` call at the end.
#![cfg_attr(not(target_family = "wasm"), allow(dead_code))]

mod eval;

use serde::Deserialize;
use switchyard_plugin_sdk::envelope::{envelope, rfc3339};
use switchyard_plugin_sdk::{Error, Event, Outcome, Plugin, log};

use crate::eval::Condition;

/// The subscription's `plugin_config`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    /// The condition object; kept as JSON and compiled by [`Condition::compile`].
    #[serde(rename = "match")]
    condition: serde_json::Value,
    /// What a match delivers.
    #[serde(default)]
    output: Output,
}

/// The body delivered on a match.
#[derive(Debug, Default, Clone, Copy, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Output {
    /// The router's envelope, as if no plugin ran.
    #[default]
    Envelope,
    /// Only the event's `data`.
    Data,
}

/// The plugin.
struct Filter;

impl Plugin for Filter {
    type Config = Config;

    fn transform(event: Event, config: Config) -> Result<Outcome, Error> {
        let outcome = filter(&event, &config)?;
        match &outcome {
            Outcome::Skip(reason) => log::debug(reason),
            Outcome::Deliver(_) => log::debug("filter matched"),
        }
        Ok(outcome)
    }

    fn validate_config(config: &Config) -> Result<(), Error> {
        Condition::compile(&config.condition)
            .map(drop)
            .map_err(Error::msg)
    }
}

/// The decision itself, without logging so unit tests can run it natively.
fn filter(event: &Event, config: &Config) -> Result<Outcome, Error> {
    let condition = Condition::compile(&config.condition).map_err(Error::msg)?;
    if let Some(reason) = condition.skip_reason(&envelope(event)?) {
        return Ok(Outcome::skip(reason));
    }
    let body = match config.output {
        Output::Envelope => envelope_body(event)?,
        Output::Data => event.payload.trim().to_owned(),
    };
    Ok(Outcome::body(body, "application/json"))
}

/// The router's envelope as the body to deliver, with the payload spliced in verbatim.
///
/// A filter only decides; re-serialising `data` (as [`envelope`] does) would reorder its keys
/// and round big numbers, so the receiver gets the event's own JSON text. Call it after
/// [`envelope`] has proved the payload is JSON.
///
/// # Errors
/// Never in practice (serialising plain strings cannot fail); kept a `Result` for `?`.
fn envelope_body(event: &Event) -> Result<String, Error> {
    Ok(format!(
        "{{\"id\":{},\"type\":{},\"timestamp\":\"{}\",\"data\":{}}}",
        serde_json::to_string(&event.id)?,
        serde_json::to_string(&event.event_type)?,
        rfc3339(event.timestamp),
        event.payload.trim(),
    ))
}

// Only a wasm build exports the component: natively the cdylib cannot link the export names
// (they contain `:`), and there is no host to call them anyway.
#[cfg(target_family = "wasm")]
switchyard_plugin_sdk::export_plugin!(Filter);

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn validate(config: serde_json::Value) -> Result<(), String> {
        let config: Config = serde_json::from_value(config).map_err(|e| e.to_string())?;
        Filter::validate_config(&config).map_err(|e| e.message().to_owned())
    }

    fn config(value: serde_json::Value) -> Config {
        match serde_json::from_value(value) {
            Ok(config) => config,
            Err(e) => panic!("bad test config: {e}"),
        }
    }

    fn event(payload: &str) -> Event {
        Event {
            id: "evt_01J".into(),
            event_type: "order.created".into(),
            timestamp: 1_795_446_245,
            subscription_id: "sub_1".into(),
            payload: payload.into(),
        }
    }

    /// `Ok(body)` on a delivery, `Err(reason)` on a skip.
    fn run(cfg: &Config, payload: &str) -> Result<String, String> {
        match filter(&event(payload), cfg) {
            Ok(Outcome::Deliver(d)) => {
                assert_eq!(d.content_type, "application/json");
                Ok(String::from_utf8_lossy(&d.body).into_owned())
            }
            Ok(Outcome::Skip(reason)) => Err(reason),
            Err(e) => panic!("filter failed: {}", e.message()),
        }
    }

    #[test]
    fn readme_example() {
        let cfg = config(json!({
            "match": {
                "type": "order.created",
                "data.total": {"$gte": 100},
                "$or": [{"data.country": {"$in": ["DE", "FR"]}}, {"data.vip": true}]
            }
        }));
        assert_eq!(
            run(&cfg, r#"{"total":142.5,"country":"FR","vip":false}"#),
            Ok(concat!(
                r#"{"id":"evt_01J","type":"order.created","timestamp":"2026-11-23T15:04:05Z","#,
                r#""data":{"total":142.5,"country":"FR","vip":false}}"#
            )
            .to_owned())
        );
        assert_eq!(
            run(&cfg, r#"{"total":42,"country":"FR"}"#),
            Err("filter did not match: data.total $gte 100 (got 42)".to_owned())
        );
        assert_eq!(
            run(&cfg, r#"{"total":142.5,"country":"US"}"#),
            Err("filter did not match: $or: no branch matched \
                 (data.country $in [\"DE\",\"FR\"] (got \"US\"); data.vip $eq true (missing))"
                .to_owned())
        );
    }

    #[test]
    fn output_data() {
        let cfg = config(json!({"match": {"data": {"$exist": true}}, "output": "data"}));
        assert_eq!(run(&cfg, " [1, 2]\n"), Ok("[1, 2]".to_owned()));
        assert_eq!(run(&cfg, "null"), Ok("null".to_owned()));
    }

    #[test]
    fn body_keeps_payload_verbatim() -> Result<(), Error> {
        let event = Event {
            id: "evt_1".into(),
            event_type: "a\"b".into(),
            timestamp: 0,
            subscription_id: "sub_1".into(),
            payload: " {\"z\":1,\"a\":18446744073709551617}\n".into(),
        };
        assert_eq!(
            envelope_body(&event)?,
            r#"{"id":"evt_1","type":"a\"b","timestamp":"1970-01-01T00:00:00Z","data":{"z":1,"a":18446744073709551617}}"#
        );
        Ok(())
    }

    #[test]
    fn bad_payload_is_an_error() {
        let cfg = config(json!({"match": {}}));
        assert!(filter(&event("{oops"), &cfg).is_err());
    }

    #[test]
    fn validates_configs() {
        assert_eq!(validate(json!({"match": {"type": "a"}})), Ok(()));
        assert_eq!(validate(json!({"match": {}, "output": "data"})), Ok(()));
        assert!(validate(json!({})).is_err_and(|e| e.contains("missing field `match`")));
        assert!(
            validate(json!({"match": {}, "ouput": "data"})).is_err_and(|e| e.contains("ouput"))
        );
        assert!(validate(json!({"match": {}, "output": "raw"})).is_err_and(|e| e.contains("raw")));
        assert!(validate(json!({"match": {"a": {"$gtt": 1}}})).is_err_and(|e| e.contains("$gtt")));
        assert!(validate(json!({"match": 3})).is_err_and(|e| e.contains("`match` must be")));
    }
}
