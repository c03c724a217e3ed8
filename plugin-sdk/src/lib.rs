//! Write [Switchyard](https://example.invalid/switchyard) plugins in Rust.
//!
//! A plugin turns one event into the HTTP body a receiver wants (a Slack message, a trimmed
//! JSON, …) or decides to skip it. It is compiled to a WebAssembly component for
//! `wasm32-wasip2` and runs sandboxed inside the router: no filesystem, network, environment or
//! clock, a fresh instance per event, and limits on time, memory and output size.
//!
//! You implement [`Plugin`] and call [`export_plugin!`] once:
//!
//! ```ignore
//! use serde::Deserialize;
//! use switchyard_plugin_sdk::{export_plugin, log, Error, Event, Outcome, Plugin};
//!
//! /// `{"prefix": "…"}`: prepend a string to the event type.
//! #[derive(Deserialize, Default)]
//! #[serde(default, deny_unknown_fields)]
//! struct Config {
//!     prefix: String,
//! }
//!
//! struct Tagger;
//!
//! impl Plugin for Tagger {
//!     type Config = Config;
//!
//!     fn transform(event: Event, config: Config) -> Result<Outcome, Error> {
//!         let data: serde_json::Value = event.data()?;
//!         if data.get("draft") == Some(&serde_json::Value::Bool(true)) {
//!             return Ok(Outcome::skip("drafts are not announced"));
//!         }
//!         log::info(&format!("tagging {}", event.id));
//!         Outcome::json(&serde_json::json!({
//!             "type": format!("{}{}", config.prefix, event.event_type),
//!             "data": data,
//!         }))
//!     }
//! }
//!
//! export_plugin!(Tagger);
//! ```
//!
//! Build it with `cargo build --release --target wasm32-wasip2` from a crate with
//! `crate-type = ["cdylib"]`; the `.wasm` in `target/wasm32-wasip2/release/` is the component
//! to upload (`PUT /v1/plugins/{name}`) or drop into the plugins folder.
//!
//! The contract itself is `wit/transformer.wit` (`switchyard:plugin@0.1.0`).
//!
//! # Helpers
//!
//! Pure functions the bundled plugins share, for configs that point into an event:
//!
//! - [`envelope`]: the `{"id", "type", "timestamp", "data"}` body the router sends when no
//!   plugin runs, and [`rfc3339`](envelope::rfc3339) for the timestamp.
//! - [`path`]: dot paths such as `data.items.0.sku` ([`lookup`](path::lookup), checks for
//!   config validation).
//! - [`template`]: `{{data.title}}` templates rendered from the envelope, with an escaping hook
//!   for the receiver's markup.
//! - [`text`]: JSON values as message text, and truncation by characters.

#![allow(unsafe_code)] // the generated bindings are the canonical-ABI glue, unsafe by nature

// Lets the generated code and the exported macros name this crate the same way from inside it
// and from a plugin crate.
extern crate self as switchyard_plugin_sdk;

use serde::Serialize;
use serde::de::DeserializeOwned;

#[doc(hidden)]
pub use wit_bindgen as __wit_bindgen;

/// Raw bindings generated from `wit/transformer.wit`. Plugins rarely need them directly.
#[allow(missing_docs)]
pub mod bindings {
    wit_bindgen::generate!({
        world: "transformer",
        path: "../wit",
        pub_export_macro: true,
        export_macro_name: "__export_transformer",
        default_bindings_module: "switchyard_plugin_sdk::bindings",
        runtime_path: "switchyard_plugin_sdk::__wit_bindgen::rt",
    });
}

pub mod envelope;
pub mod path;
pub mod template;
pub mod text;

pub use bindings::switchyard::plugin::host::Level;
pub use bindings::switchyard::plugin::types::{Delivery, Event, Outcome};

/// A plugin's error: a message the host records on the delivery attempt (and a dry run shows).
///
/// Anything that implements [`std::error::Error`] converts into it, so `?` works on JSON
/// parsing and the like; [`Error::msg`] makes one from text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error(String);

impl Error {
    /// An error with this message.
    pub fn msg(message: impl Into<String>) -> Self {
        Self(message.into())
    }

    /// The message.
    pub fn message(&self) -> &str {
        &self.0
    }
}

impl<E: std::error::Error> From<E> for Error {
    fn from(err: E) -> Self {
        Self(err.to_string())
    }
}

/// What a plugin implements: one pure function from (event, config) to an [`Outcome`].
pub trait Plugin {
    /// The subscription's `plugin_config`, parsed from JSON. When a subscription has no config
    /// the plugin gets `null`, or `{}` if `null` does not parse (so a struct with
    /// `#[serde(default)]` works).
    type Config: DeserializeOwned;

    /// Turn one event into a delivery ([`Outcome::json`], [`Outcome::body`]) or a skip
    /// ([`Outcome::skip`]).
    ///
    /// # Errors
    /// An error fails the delivery attempt with its message (the router may retry it).
    fn transform(event: Event, config: Self::Config) -> Result<Outcome, Error>;

    /// Extra checks on a config that already parsed into [`Plugin::Config`]; run when a
    /// subscription is created or changed. The default accepts every config that parses.
    ///
    /// # Errors
    /// An error refuses the subscription with a 422 carrying the message.
    fn validate_config(config: &Self::Config) -> Result<(), Error> {
        let _ = config;
        Ok(())
    }
}

impl Event {
    /// The event's `data`, parsed from JSON into any deserialisable type
    /// (`serde_json::Value` for free-form access).
    ///
    /// # Errors
    /// When the payload does not fit `T`.
    pub fn data<T: DeserializeOwned>(&self) -> Result<T, Error> {
        serde_json::from_str(&self.payload).map_err(|e| Error(format!("event data: {e}")))
    }
}

impl Outcome {
    /// Deliver `value` serialised as JSON with `content-type: application/json`.
    ///
    /// # Errors
    /// When `value` cannot be serialised (e.g. a map with non-string keys).
    pub fn json<T: Serialize + ?Sized>(value: &T) -> Result<Self, Error> {
        let body = serde_json::to_vec(value)?;
        Ok(Self::body(body, "application/json"))
    }

    /// Deliver these bytes with this content type.
    pub fn body(body: impl Into<Vec<u8>>, content_type: &str) -> Self {
        Outcome::Deliver(Delivery {
            body: body.into(),
            content_type: content_type.to_owned(),
            headers: Vec::new(),
        })
    }

    /// Do not deliver: recorded as `skipped` with this reason, never retried.
    pub fn skip(reason: impl Into<String>) -> Self {
        Outcome::Skip(reason.into())
    }

    /// Add a request header to a delivery (ignored on a skip). The host refuses the names it
    /// owns, such as `webhook-signature` or `content-type`.
    #[must_use]
    pub fn with_header(mut self, name: &str, value: &str) -> Self {
        if let Outcome::Deliver(delivery) = &mut self {
            delivery.headers.push((name.to_owned(), value.to_owned()));
        }
        self
    }
}

/// Log lines that show up in dry runs and on delivery attempts.
pub mod log {
    use super::Level;
    use super::bindings::switchyard::plugin::host;

    /// Log at `debug` level.
    pub fn debug(message: &str) {
        host::log(Level::Debug, message);
    }
    /// Log at `info` level.
    pub fn info(message: &str) {
        host::log(Level::Info, message);
    }
    /// Log at `warn` level.
    pub fn warn(message: &str) {
        host::log(Level::Warn, message);
    }
    /// Log at `error` level.
    pub fn error(message: &str) {
        host::log(Level::Error, message);
    }
}

/// Parse a config, falling back from `null` to `{}` so `#[serde(default)]` structs accept a
/// subscription without config.
fn parse_config<C: DeserializeOwned>(config: &str) -> Result<C, Error> {
    match serde_json::from_str(config) {
        Ok(parsed) => Ok(parsed),
        Err(err) => {
            if config.trim() == "null"
                && let Ok(parsed) = serde_json::from_str("{}")
            {
                return Ok(parsed);
            }
            Err(Error(format!("invalid plugin config: {err}")))
        }
    }
}

#[doc(hidden)]
pub mod __private {
    use super::{Event, Outcome, Plugin, parse_config};

    pub fn run_transform<P: Plugin>(event: Event, config: &str) -> Result<Outcome, String> {
        let config = parse_config::<P::Config>(config).map_err(|e| e.0)?;
        P::transform(event, config).map_err(|e| e.0)
    }

    pub fn run_validate<P: Plugin>(config: &str) -> Result<(), String> {
        let config = parse_config::<P::Config>(config).map_err(|e| e.0)?;
        P::validate_config(&config).map_err(|e| e.0)
    }
}

/// Export a [`Plugin`] implementation as the component's `transform` and `validate-config`.
/// Call it once, at the top level of the plugin crate.
#[macro_export]
macro_rules! export_plugin {
    ($plugin:ty) => {
        #[doc(hidden)]
        pub struct __SwitchyardExport;

        impl $crate::bindings::exports::switchyard::plugin::transform::Guest for __SwitchyardExport {
            fn transform(
                event: $crate::Event,
                config: ::std::string::String,
            ) -> ::std::result::Result<$crate::Outcome, ::std::string::String> {
                $crate::__private::run_transform::<$plugin>(event, &config)
            }

            fn validate_config(
                config: ::std::string::String,
            ) -> ::std::result::Result<(), ::std::string::String> {
                $crate::__private::run_validate::<$plugin>(&config)
            }
        }

        $crate::bindings::__export_transformer!(__SwitchyardExport with_types_in $crate::bindings);
    };
}
