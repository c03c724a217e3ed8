//! End-to-end tests: the real service (in-process, on an ephemeral loopback port), real
//! compiled plugins, a real SQLite file and a real HTTP receiver.
#![allow(clippy::unwrap_used, missing_docs)]

mod common;
mod hot_reload;
mod plugin_runtime;
