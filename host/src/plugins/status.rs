//! What the API and `/metrics` show about plugins.

use serde::Serialize;
use time::OffsetDateTime;

use super::Limits;
use super::registry::Entry;

/// Whether a plugin's latest file loaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PluginStatus {
    /// The latest file is serving.
    Ready,
    /// The latest file failed to load; the last good version (if any) keeps serving.
    Error,
    /// A new version is being compiled (or, at start-up, waits its turn to load); the last
    /// good version (if any) keeps serving.
    Compiling,
}

/// What the API shows about a plugin.
#[derive(Debug, Clone, Serialize)]
pub struct PluginInfo {
    /// The plugin's name.
    pub name: String,
    /// sha256 of the serving version, if any version loaded.
    pub version: Option<String>,
    /// Size in bytes of the serving version.
    pub size: Option<usize>,
    /// `ready`, or `error` when the latest file failed to load.
    pub status: PluginStatus,
    /// Why the latest file failed to load.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// When the serving version was loaded.
    #[serde(with = "time::serde::rfc3339::option")]
    pub loaded_at: Option<OffsetDateTime>,
    /// The version being compiled (the newest, while `status` is `compiling`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pending_version: Option<String>,
    /// The limits its calls run under (the serving version's; the service's defaults with
    /// the plugin's own choices before any version serves).
    pub limits: CallLimits,
}

/// The deadline and memory of a plugin's calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct CallLimits {
    /// Memory of one instance (all its memories together), MiB.
    pub memory_mb: u64,
    /// Wall-clock deadline of one call, milliseconds.
    pub timeout_ms: u64,
}

impl CallLimits {
    pub(super) fn of(limits: &Limits) -> Self {
        Self {
            memory_mb: u64::try_from(limits.memory_bytes >> 20).unwrap_or(u64::MAX),
            timeout_ms: u64::try_from(limits.deadline.as_millis()).unwrap_or(u64::MAX),
        }
    }
}

/// Counters for `/metrics`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PluginStats {
    /// Plugin files opened for reading since start.
    pub file_reads: u64,
    /// Compiles started since start.
    pub compiles: u64,
    /// Compiles running now.
    pub compiling: u64,
    /// Versions whose compiled code a call brought into memory since start (`code.rs`).
    pub code_loads: u64,
    /// Versions whose compiled code is in memory now: those that ran, not those installed.
    pub code_loaded: u64,
    /// Uploads holding a turn now (reading their body or installing).
    pub uploading: u64,
}

/// What the API shows of `entry`; `fallback` are the limits its calls get when no version
/// serves yet.
pub(super) fn info(name: &str, entry: &Entry, fallback: &Limits) -> PluginInfo {
    let current = entry.current.as_ref();
    // Listed at start-up but already serving (an upload came first): ready, not compiling.
    let status = if !entry.pending.is_empty() || entry.loading() {
        PluginStatus::Compiling
    } else if entry.error.is_some() {
        PluginStatus::Error
    } else {
        PluginStatus::Ready
    };
    PluginInfo {
        name: name.to_owned(),
        version: current.map(|p| p.version.clone()),
        size: current.map(|p| p.size),
        status,
        error: entry.error.clone(),
        loaded_at: current.map(|p| p.loaded_at),
        pending_version: entry.pending.last().cloned(),
        limits: CallLimits::of(current.map_or(fallback, |p| &p.limits)),
    }
}
