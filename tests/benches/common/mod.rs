//! What the benchmarks share: the service process, the receiver, the load generator and the
//! null router (the same-run yardstick).

pub mod generator;
pub mod null_router;
pub mod receiver;
pub mod service;

/// The admin key every benchmarked service runs with.
pub const KEY: &str = "bench-key-0123456789abcdef";
/// Closed-loop workers (connections) of the generator.
pub const CONCURRENCY: usize = 64;
/// Connections the open-loop (fixed-rate) phases use at most.
pub const OPEN_LOOP_CONNECTIONS: usize = 256;
