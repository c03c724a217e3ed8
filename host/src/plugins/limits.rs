//! The sandbox's limits, with their defaults in one place.

use std::time::Duration;

/// The most bytes of any one piece of plugin-supplied text the host keeps, stores or returns:
/// a `err(...)` message, a trap message and the stderr captured with it, a skip reason, one
/// log line, a config refusal. Longer text is cut on a character boundary and ends in `…`.
/// 2 KiB holds any sensible message and a Rust panic with its location; it keeps one failing
/// attempt's row, a 422 and a delivery's JSON small whatever a plugin sends.
pub const MAX_PLUGIN_TEXT: usize = 2 << 10;

/// Limits applied to every plugin call. Every field has a documented default and can be
/// overridden through the service configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Wall-clock budget of one call (epoch interruption). Default 100 ms: a transform is
    /// tens of microseconds, so this only stops runaway plugins. A call also waits at most
    /// this long for room in the instance pool before it fails as busy.
    pub deadline: Duration,
    /// Cap on a plugin instance's linear memory: the sum over all of its memories. Default
    /// 32 MiB. Also caps one WASI random-bytes request (with [`MAX_RANDOM_BYTES`]).
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

/// The most bytes one `wasi:random` request may ask for (wasmtime's default is 64 MiB, which
/// the host allocates before copying them into the guest). Rust's std asks for 16 at a time.
pub const MAX_RANDOM_BYTES: usize = 1 << 20;

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

/// What one compile may use: it runs in a child process with these limits, so a component
/// built to exhaust the compiler costs at most this and is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CompileBudget {
    /// Wall-clock time before the compiler is killed (`plugin_compile_timeout`). Default 60 s;
    /// the bundled plugins compile in well under a second.
    pub timeout: Duration,
    /// Memory the compiler may allocate (`plugin_compile_memory_mb`, as `RLIMIT_DATA`).
    /// Default 2048 MiB.
    pub memory_bytes: u64,
}

impl Default for CompileBudget {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(60),
            memory_bytes: 2048 << 20,
        }
    }
}

/// Cuts `text` to at most [`MAX_PLUGIN_TEXT`] bytes (see there).
pub(super) fn bound_text(text: String) -> String {
    truncate(text, MAX_PLUGIN_TEXT)
}

/// Cuts `text` to at most `max` bytes on a character boundary, marking the cut with `…`
/// (which the bound includes).
pub(super) fn truncate(mut text: String, max: usize) -> String {
    if text.len() > max {
        let mut cut = max.saturating_sub('…'.len_utf8());
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
        text.push('…');
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncate_respects_char_boundaries_and_the_bound() {
        assert_eq!(truncate("héllo".into(), 5), "h…");
        assert_eq!(truncate("abc".into(), 5), "abc");
        let cut = bound_text("é".repeat(MAX_PLUGIN_TEXT));
        assert!(
            cut.len() <= MAX_PLUGIN_TEXT && cut.ends_with('…'),
            "{}",
            cut.len()
        );
    }
}
