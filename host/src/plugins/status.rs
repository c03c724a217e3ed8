//! What the API and `/metrics` show about plugins.

use serde::Serialize;
use time::OffsetDateTime;

use super::registry::Entry;

/// Whether a plugin's latest file loaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PluginStatus {
    /// The latest file is serving.
    Ready,
    /// The latest file failed to load; the last good version (if any) keeps serving.
    Error,
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
    /// Uploads holding a turn now (reading their body or installing).
    pub uploading: u64,
}

pub(super) fn info(name: &str, entry: &Entry) -> PluginInfo {
    let current = entry.current.as_ref();
    PluginInfo {
        name: name.to_owned(),
        version: current.map(|p| p.version.clone()),
        size: current.map(|p| p.size),
        status: if entry.error.is_some() {
            PluginStatus::Error
        } else {
            PluginStatus::Ready
        },
        error: entry.error.clone(),
        loaded_at: current.map(|p| p.loaded_at),
    }
}
