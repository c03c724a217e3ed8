//! Switchyard `discord` plugin: turn an event into a Discord webhook message with one embed.
//!
//! Config (every key optional):
//!
//! ```json
//! {
//!   "username": "Shop",
//!   "content": "New order from {{data.customer.name}}",
//!   "title": "Order {{data.number}}",
//!   "description": "**{{data.total}} {{data.currency}}**, {{data.items}} items",
//!   "url": "https://shop.example/orders/{{data.number}}",
//!   "color": 3066993,
//!   "fields": ["data.customer.name", "data.country", "data.paid"],
//!   "inline": true
//! }
//! ```
//!
//! - `title` (default `{{type}}`), `description`, `content`: templates; `{{path}}` is replaced
//!   by the value at that envelope path (strings raw, other JSON compact, missing as nothing).
//! - `url`: the title's link: a template, a literal `http(s)://` URL or an envelope path.
//! - `color`: `0..=16777215` (`0xFFFFFF`), default `0x5865F2`.
//! - `fields`: envelope paths shown as fields named by their last segment (at most 25);
//!   default: up to 25 top-level strings, numbers and booleans of `data`. `inline` (default
//!   `true`) applies to all.
//! - `username`: overrides the webhook's name.
//!
//! Discord's limits are enforced by truncating (by characters): title 256, description 4096,
//! field name 256 / value 1024, content 2000, and 6000 for the whole embed (the description
//! shrinks first, then trailing fields go). Mentions in substituted `content` values are
//! defused so event data cannot ping `@everyone`. The embed carries the event's RFC 3339
//! `timestamp` and a `type · id` footer.

// Natively (unit tests, `cargo test --workspace`) the plugin glue below is unused: see the
// `export_plugin!` call at the end.
#![cfg_attr(not(target_family = "wasm"), allow(dead_code))]

mod render;

use switchyard_plugin_sdk::{Error, Event, Outcome, Plugin, log};

use crate::render::Config;

/// The plugin.
struct Discord;

impl Plugin for Discord {
    type Config = Config;

    fn transform(event: Event, config: Config) -> Result<Outcome, Error> {
        config.check()?;
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
switchyard_plugin_sdk::export_plugin!(Discord);
