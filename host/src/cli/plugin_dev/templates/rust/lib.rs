//! {{name}}: a Switchyard plugin. It turns each event into a small JSON message and skips the
//! event types listed in its config, e.g. `{"prefix": "New", "skip_types": ["post.draft"]}`.
//!
//! Build: `switchyard plugins build` (or `cargo build --release --target wasm32-wasip2`).
//! Try it on a server: `switchyard plugins dev`. Test it without one: `switchyard plugins test`.

use serde::Deserialize;
use switchyard_plugin_sdk::{Error, Event, Outcome, Plugin, export_plugin, log};

/// The subscription's `plugin_config` (every key optional).
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct Config {
    /// Put before the event type in the message.
    prefix: Option<String>,
    /// Event types not to deliver.
    skip_types: Vec<String>,
}

struct Formatter;

impl Plugin for Formatter {
    type Config = Config;

    fn transform(event: Event, config: Config) -> Result<Outcome, Error> {
        if config.skip_types.contains(&event.event_type) {
            return Ok(Outcome::skip(format!(
                "event type `{}` is skipped",
                event.event_type
            )));
        }
        let data: serde_json::Value = event.data()?;
        let title = data
            .get("title")
            .and_then(serde_json::Value::as_str)
            .unwrap_or("(untitled)");
        let head = match &config.prefix {
            Some(prefix) => format!("{prefix} {}", event.event_type),
            None => event.event_type.clone(),
        };
        log::info(&format!("formatting {}", event.id));
        Outcome::json(&serde_json::json!({ "text": format!("{head}: {title}") }))
    }

    fn validate_config(config: &Config) -> Result<(), Error> {
        if config.skip_types.iter().any(String::is_empty) {
            return Err(Error::msg("skip_types entries must not be empty"));
        }
        Ok(())
    }
}

export_plugin!(Formatter);
