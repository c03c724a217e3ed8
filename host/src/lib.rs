//! Switchyard: a self-hosted webhook and event router.
//!
//! Events come in over REST, each matching subscription's WebAssembly plugin filters or
//! reshapes them, and the result is signed (Standard Webhooks) and delivered through a durable
//! SQLite-backed retry queue. `main.rs` is a thin shell around [`run`]; everything else lives
//! here so tests can start the real service in-process.

pub mod plugins;
