//! The sandbox's limits, with their defaults in one place.

use std::time::Duration;

/// Limits applied to every plugin call. Every field has a documented default and can be
/// overridden through the service configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Wall-clock budget of one call (epoch interruption). Default 100 ms: a transform is
    /// tens of microseconds, so this only stops runaway plugins.
    pub deadline: Duration,
    /// Cap on a plugin's linear memory. Default 32 MiB.
    pub memory_bytes: usize,
    /// Cap on the wasm stack. Default 512 KiB (wasmtime's default; must stay below the 2 MiB
    /// async fiber stack so host code keeps room).
    pub stack_bytes: usize,
    /// Cap on the delivery body a plugin produces. Default 1 MiB.
    pub output_bytes: usize,
    /// Cap on the event payload handed in. Default 1 MiB.
    pub input_bytes: usize,
    /// Cap on the number of headers a plugin may add. Default 32.
    pub max_headers: usize,
    /// Cap on log lines kept per call (the rest are counted, not kept). Default 100.
    pub max_log_lines: usize,
    /// Cap on the bytes of log text kept per call. Default 16 KiB.
    pub max_log_bytes: usize,
    /// Cap on a component's size. Default 16 MiB.
    pub component_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            deadline: Duration::from_millis(100),
            memory_bytes: 32 << 20,
            stack_bytes: 512 << 10,
            output_bytes: 1 << 20,
            input_bytes: 1 << 20,
            max_headers: 32,
            max_log_lines: 100,
            max_log_bytes: 16 << 10,
            component_bytes: 16 << 20,
        }
    }
}
