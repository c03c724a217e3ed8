//! Switchyard `slack` plugin: turn an event into a Slack incoming-webhook message (Block Kit
//! blocks plus the `text` fallback Slack shows in notifications).
//!
//! Config (every key optional):
//!
//! ```json
//! {
//!   "title": "New post: {{data.title}}",
//!   "text": "*{{data.author.name}}* wrote <{{data.url}}|{{data.title}}>",
//!   "fields": ["data.author.name", "data.words", "data.tags"],
//!   "link": {"url": "data.url", "label": "Read it"},
//!   "skip_types": ["post.draft*"]
//! }
//! ```
//!
//! - `title`: header template, default `{{type}}` (plain text, ≤150 characters).
//! - `text`: section template in Slack mrkdwn (≤3000 characters).
//! - `fields`: envelope paths shown as `*label*\nvalue` fields (label = last path segment),
//!   ten per section; default: up to ten top-level strings, numbers and booleans of `data`.
//! - `link`: `{"url": …, "label": "Open"}` adds a button; `url` is a template, a literal
//!   `http(s)://` URL or an envelope path.
//! - `skip_types`: event types to skip (exact, or a prefix ending in `*`).
//!
//! `{{path}}` is replaced by the value at that envelope path (`type`, `id`, `timestamp`,
//! `data.…`): strings raw, other JSON compact, missing as nothing. Substituted values are
//! escaped for mrkdwn (`&`, `<`, `>`); the template's own markup is kept. Every message ends
//! with a context line `` `type` · id · timestamp ``.

// Natively (unit tests, `cargo test --workspace`) the plugin glue below is unused: see the
// `export_plugin!` call at the end.
#![cfg_attr(not(target_family = "wasm"), allow(dead_code))]

mod render;

use switchyard_plugin_sdk::{Error, Event, Outcome, Plugin, log};

use crate::render::Config;

/// The plugin.
struct Slack;

impl Plugin for Slack {
    type Config = Config;

    fn transform(event: Event, config: Config) -> Result<Outcome, Error> {
        config.check()?;
        if let Some(reason) = render::skip_reason(&config, &event.event_type) {
            return Ok(Outcome::skip(reason));
        }
        let rendered = render::render(&event, &config)?;
        rendered.warnings.iter().for_each(|w| log::warn(w));
        Outcome::json(&rendered.message)
    }

    fn validate_config(config: &Config) -> Result<(), Error> {
        config.check()
    }
}

// Only a wasm build exports the component: natively the cdylib cannot link the export names
// (they contain `:`), and there is no host to call them anyway.
#[cfg(target_family = "wasm")]
switchyard_plugin_sdk::export_plugin!(Slack);
