//! Switchyard `reshape` plugin: pick, drop, rename and set fields to turn an event into the
//! JSON body a receiver expects.
//!
//! Config (every key optional, applied in this order):
//!
//! ```json
//! {
//!   "root": "data",
//!   "pick": ["title", "author.name", "url"],
//!   "drop": ["url"],
//!   "rename": {"author.name": "author"},
//!   "set": {"source": "switchyard"}
//! }
//! ```
//!
//! - `root`: `"envelope"` (default: `{"id", "type", "timestamp", "data"}`) or `"data"`; all
//!   paths are dot paths relative to it (`author.name`, `items.0.sku`).
//! - `pick`: keep only these paths, nesting preserved; missing ones are simply absent.
//! - `drop`: remove these paths.
//! - `rename`: `{"from": "to"}` moves a value, creating objects on the way and removing objects
//!   the move emptied; a missing source is a no-op.
//! - `set`: `{"path": <any JSON>}` writes constants.
//!
//! The example turns data `{"title":"Hi","author":{"name":"Ann","id":7},"url":"https://x"}` into
//! `{"author":"Ann","source":"switchyard","title":"Hi"}` (delivered as `application/json`).

// Natively (unit tests, `cargo test --workspace`) the plugin glue below is unused: see the
// `export_plugin!` call at the end.
#![cfg_attr(not(target_family = "wasm"), allow(dead_code))]

mod shape;

use switchyard_plugin_sdk::{Error, Event, Outcome, Plugin, envelope, log};

use crate::shape::{Config, Root};

/// The plugin.
struct Reshape;

impl Plugin for Reshape {
    type Config = Config;

    fn transform(event: Event, config: Config) -> Result<Outcome, Error> {
        let shaped = reshape(&event, &config).inspect_err(|e| log::warn(e.message()))?;
        Outcome::json(&shaped)
    }

    fn validate_config(config: &Config) -> Result<(), Error> {
        config.check()
    }
}

/// The reshaped body, without logging so unit tests can run it natively.
fn reshape(event: &Event, config: &Config) -> Result<serde_json::Value, Error> {
    config.check()?;
    let root = match config.root {
        Root::Envelope => envelope::envelope(event)?,
        Root::Data => event.data()?,
    };
    shape::reshape(root, config)
}

// Only a wasm build exports the component: natively the cdylib cannot link the export names
// (they contain `:`), and there is no host to call them anyway.
#[cfg(target_family = "wasm")]
switchyard_plugin_sdk::export_plugin!(Reshape);

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn run(cfg: serde_json::Value) -> Result<String, String> {
        let cfg: Config = serde_json::from_value(cfg).map_err(|e| e.to_string())?;
        let event = Event {
            id: "evt_01J".into(),
            event_type: "post.published".into(),
            timestamp: 1_795_446_245,
            subscription_id: "sub_1".into(),
            payload:
                r#"{"title":"Hi","author":{"name":"Ann","id":7},"url":"https://x","draft":false}"#
                    .into(),
        };
        let shaped = reshape(&event, &cfg).map_err(|e| e.message().to_owned())?;
        serde_json::to_string(&shaped).map_err(|e| e.to_string())
    }

    #[test]
    fn readme_examples() {
        assert_eq!(
            run(json!({
                "root": "data",
                "pick": ["title", "author.name", "url"],
                "rename": {"author.name": "author"},
                "set": {"source": "switchyard"}
            })),
            Ok(
                r#"{"author":"Ann","source":"switchyard","title":"Hi","url":"https://x"}"#
                    .to_owned()
            )
        );
        assert_eq!(
            run(json!({
                "pick": ["id", "type", "timestamp", "data.title", "data.author"],
                "drop": ["data.author.id"],
                "rename": {"data.author.name": "data.by"},
                "set": {"data.source": "switchyard"}
            })),
            Ok(concat!(
                r#"{"data":{"by":"Ann","source":"switchyard","title":"Hi"},"id":"evt_01J","#,
                r#""timestamp":"2026-11-23T15:04:05Z","type":"post.published"}"#
            )
            .to_owned())
        );
    }

    #[test]
    fn crate_doc_example() {
        assert_eq!(
            run(json!({
                "root": "data",
                "pick": ["title", "author.name", "url"],
                "drop": ["url"],
                "rename": {"author.name": "author"},
                "set": {"source": "switchyard"}
            })),
            Ok(r#"{"author":"Ann","source":"switchyard","title":"Hi"}"#.to_owned())
        );
    }

    #[test]
    fn no_config_is_the_envelope() {
        assert_eq!(
            run(json!({})),
            Ok(concat!(
                r#"{"data":{"author":{"id":7,"name":"Ann"},"draft":false,"title":"Hi","url":"https://x"},"#,
                r#""id":"evt_01J","timestamp":"2026-11-23T15:04:05Z","type":"post.published"}"#
            )
            .to_owned())
        );
    }

    #[test]
    fn invalid_config_fails_transform_too() {
        assert_eq!(
            run(json!({"pick": []})),
            Err("`pick` is empty: omit it to keep every field".to_owned())
        );
        assert!(run(json!({"pick": ["x"], "extra": 1})).is_err_and(|e| e.contains("extra")));
    }
}
