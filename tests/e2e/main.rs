//! End-to-end tests: the real service (in-process, on an ephemeral loopback port), real
//! compiled plugins, a real SQLite file and a real HTTP receiver.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs, dead_code)]

mod common;

mod admin_key;
mod api;
mod bad_input;
mod bundled_plugins;
mod cli;
mod conformance;
mod crash;
mod delivery;
mod edge;
mod example_plugins;
mod fairness;
mod hot_reload;
mod keys;
mod many_plugins;
mod operational_events;
mod parked;
mod plugin_dev;
mod plugin_hardening;
mod plugin_limits;
mod plugin_runtime;
mod queue_faults;
mod retention;
mod secrets;
mod ssrf;
mod storage_faults;
mod tenants;
mod transform_plugins;
