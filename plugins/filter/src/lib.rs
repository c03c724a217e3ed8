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

mod envelope;
mod eval;

use serde::Deserialize;
use switchyard_plugin_sdk::{Error, Event, Outcome, Plugin, export_plugin, log};

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
        let condition = Condition::compile(&config.condition).map_err(Error::msg)?;
        let envelope = envelope::envelope(&event)?;
        if let Some(reason) = condition.skip_reason(&envelope) {
            log::debug(&reason);
            return Ok(Outcome::skip(reason));
        }
        log::debug("filter matched");
        let body = match config.output {
            Output::Envelope => envelope::envelope_body(&event)?,
            Output::Data => event.payload.trim().to_owned(),
        };
        Ok(Outcome::body(body, "application/json"))
    }

    fn validate_config(config: &Config) -> Result<(), Error> {
        Condition::compile(&config.condition).map(drop).map_err(Error::msg)
    }
}

export_plugin!(Filter);
