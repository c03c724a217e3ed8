//! Switchyard: a self-hosted webhook and event router.
//!
//! Events come in over REST, each matching subscription's WebAssembly plugin filters or
//! reshapes them, and the result is signed (Standard Webhooks) and delivered through a durable
//! SQLite-backed retry queue. `main.rs` is a thin shell around [`run`]; everything else lives
//! here so tests can start the real service in-process.

pub mod api;
pub mod clock;
pub mod config;
pub mod dispatch;
pub mod metrics;
pub mod net;
pub mod plugins;
pub mod retention;
pub mod server;
pub mod signing;
pub mod store;
pub mod tenant;

pub use clock::Clock;
pub use config::Config;
pub use server::{StartError, run};
