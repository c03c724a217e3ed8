//! The sandbox's limits, with their defaults in one place.

use std::time::Duration;

use super::PluginError;

/// The most bytes of any one piece of plugin-supplied text the host keeps, stores or returns:
/// a `err(...)` message, a trap message and the stderr captured with it, a skip reason, one
/// log line, a config refusal. Longer text is cut on a character boundary and ends in `…`.
/// 2 KiB holds any sensible message and a Rust panic with its location; it keeps one failing
/// attempt's row, a 422 and a delivery's JSON small whatever a plugin sends.
pub const MAX_PLUGIN_TEXT: usize = 2 << 10;

/// Limits applied to every plugin call. Every field has a documented default and can be
/// overridden through the service configuration; `deadline` and `memory_bytes` also per
/// plugin, at upload ([`PluginLimits`]), up to `max_deadline` and `max_memory_bytes`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Budget of one call's running time (epoch interruption; time it spends yielded while
    /// other calls run is not counted). Default 100 ms (`plugin_timeout`): a transform is tens
    /// of microseconds to a millisecond, so this only stops runaway plugins. A call also waits
    /// at most this long for room in the instance pool before it fails as busy.
    pub deadline: Duration,
    /// Cap on a plugin instance's linear memory: the sum over all of its memories. Default
    /// 32 MiB (`plugin_memory_mb`). Also caps one WASI random-bytes request (with
    /// [`MAX_RANDOM_BYTES`]).
    pub memory_bytes: usize,
    /// The longest `deadline` a plugin may be given at upload (`plugin_max_timeout`,
    /// default 1 s).
    pub max_deadline: Duration,
    /// The most `memory_bytes` a plugin may be given at upload (`plugin_max_memory_mb`,
    /// default 256 MiB). Every memory slot of the instance pool is sized for it (address space
    /// only: memory is committed as a guest touches it).
    pub max_memory_bytes: usize,
    /// Bytes at the start of each pooled linear memory kept resident between calls and reset
    /// in place (only the pages a call dirtied, found with the kernel's pagemap scan, and
    /// never past that memory's own size) instead of being handed back to the kernel
    /// (`plugin_keep_resident_mb`). The next call then takes no page faults on them. Default
    /// 2 MiB: Rust's 1 MiB shadow stack plus a small plugin's data and heap (halved the Slack
    /// call, 84 -> 38 µs). Larger values barely help big guests here (JavaScript 834 -> 803
    /// µs, Python 1.50 -> 1.39 ms at 64 MiB: their cost is the guest's own code, see
    /// `docs/PERFORMANCE.md`) and cost resident memory: up to this much per memory slot ever
    /// used.
    pub keep_resident_bytes: usize,
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
    /// Cap on a component's size (`plugin_max_component_mb`). Default 64 MiB: a Python
    /// component (componentize-py, CPython inside) is about 18 MiB before any dependency, a
    /// JavaScript one (componentize-js) about 12 MiB.
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
            max_deadline: Duration::from_secs(1),
            max_memory_bytes: 256 << 20,
            keep_resident_bytes: 2 << 20,
            stack_bytes: 512 << 10,
            output_bytes: 1 << 20,
            input_bytes: 1 << 20,
            max_headers: 32,
            max_log_lines: 100,
            max_log_bytes: 16 << 10,
            component_bytes: 64 << 20,
        }
    }
}

/// A plugin's own deadline and memory, chosen at upload (`PUT /v1/plugins/{name}?memory_mb=
/// &timeout_ms=`) and kept with the plugin; `None` takes the service's default.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PluginLimits {
    /// Memory of one instance, MiB (1 to `plugin_max_memory_mb`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_mb: Option<u32>,
    /// Deadline of one call, milliseconds (1 to `plugin_max_timeout`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u32>,
}

impl Limits {
    /// The limits of a plugin's calls: these, with its own deadline and memory.
    ///
    /// # Errors
    /// [`PluginError::InvalidLimit`] naming the bound when either is zero or past the
    /// operator's maximum.
    pub fn for_plugin(&self, own: PluginLimits) -> Result<Limits, PluginError> {
        let mut limits = self.clone();
        if let Some(mb) = own.memory_mb {
            let bytes = usize::try_from(mb)
                .ok()
                .and_then(|mb| mb.checked_mul(1 << 20))
                .filter(|bytes| *bytes <= self.max_memory_bytes);
            match bytes {
                Some(bytes) if mb > 0 => limits.memory_bytes = bytes,
                _ => {
                    return Err(PluginError::InvalidLimit(format!(
                        "memory_mb={mb}: must be between 1 and {} (plugin_max_memory_mb)",
                        self.max_memory_bytes >> 20
                    )));
                }
            }
        }
        if let Some(ms) = own.timeout_ms {
            let deadline = Duration::from_millis(u64::from(ms));
            if ms == 0 || deadline > self.max_deadline {
                return Err(PluginError::InvalidLimit(format!(
                    "timeout_ms={ms}: must be between 1 and {} (plugin_max_timeout)",
                    self.max_deadline.as_millis()
                )));
            }
            limits.deadline = deadline;
        }
        Ok(limits)
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
    fn a_plugins_own_limits_are_bounded_by_the_maxima() {
        let service = Limits::default();
        let own = |memory_mb, timeout_ms| PluginLimits {
            memory_mb,
            timeout_ms,
        };
        let limits = service.for_plugin(own(Some(64), Some(500))).unwrap();
        assert_eq!(limits.memory_bytes, 64 << 20);
        assert_eq!(limits.deadline, Duration::from_millis(500));
        assert_eq!(
            service.for_plugin(PluginLimits::default()).unwrap(),
            service
        );
        for bad in [
            own(Some(0), None),
            own(Some(257), None),
            own(Some(u32::MAX), None),
            own(None, Some(0)),
            own(None, Some(1001)),
        ] {
            let err = service.for_plugin(bad).unwrap_err();
            assert!(
                matches!(&err, PluginError::InvalidLimit(m) if m.contains("plugin_max_")),
                "{bad:?}: {err}"
            );
        }
    }

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
