//! Plugins: what the API shows of one, and dry runs.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

use super::common::Timestamp;
use crate::plugins::{LogLine, PluginInfo, PluginLimits, PluginStatus};

/// Whether a plugin's latest file loaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum PluginStatusOut {
    /// The latest file loaded and serves.
    Ready,
    /// The latest file failed to load (see `error`); the last good version, if any, serves.
    Error,
    /// A new version (`pending_version`) is being compiled; the last good version, if any,
    /// serves meanwhile. Poll `GET /v1/plugins/{name}` until it is `ready` or `error`.
    Compiling,
}

/// The deadline and memory of a plugin's calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PluginLimitsOut {
    /// Memory of one instance (all of its memories together), in MiB.
    #[schema(example = 32)]
    pub memory_mb: u64,
    /// Wall-clock deadline of one call, in milliseconds.
    #[schema(example = 100)]
    pub timeout_ms: u64,
}

/// A plugin.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PluginOut {
    /// Its name: `[a-z0-9][a-z0-9_-]{0,62}`.
    #[schema(example = "slack")]
    pub name: String,
    /// sha256 (hex) of the serving version, if one loaded.
    #[schema(required = true)]
    pub version: Option<String>,
    /// Size in bytes of the serving version.
    #[schema(required = true)]
    pub size: Option<u64>,
    /// `ready`, or `error` when the latest file failed to load.
    pub status: PluginStatusOut,
    /// Why the latest file failed to load (only with `status: error`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// When the serving version was loaded.
    #[schema(required = true)]
    pub loaded_at: Option<Timestamp>,
    /// sha256 (hex) of the version being compiled (only with `status: compiling`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending_version: Option<String>,
    /// The limits its calls run under: the service's defaults, or what the upload asked for
    /// (`?memory_mb=`, `?timeout_ms=`).
    pub limits: PluginLimitsOut,
}

impl From<&PluginInfo> for PluginOut {
    fn from(info: &PluginInfo) -> Self {
        Self {
            name: info.name.clone(),
            version: info.version.clone(),
            size: info.size.and_then(|s| u64::try_from(s).ok()),
            status: match info.status {
                PluginStatus::Ready => PluginStatusOut::Ready,
                PluginStatus::Error => PluginStatusOut::Error,
                PluginStatus::Compiling => PluginStatusOut::Compiling,
            },
            error: info.error.clone(),
            loaded_at: info.loaded_at.map(Timestamp),
            pending_version: info.pending_version.clone(),
            limits: PluginLimitsOut {
                memory_mb: info.limits.memory_mb,
                timeout_ms: info.limits.timeout_ms,
            },
        }
    }
}

/// `PUT /v1/plugins/{name}`'s options.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct PluginUploadQuery {
    /// This plugin's memory per instance in MiB, 1 to `plugin_max_memory_mb` (default:
    /// `plugin_memory_mb`). Kept with the plugin until the next upload.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[param(minimum = 1, example = 64)]
    pub memory_mb: Option<u32>,
    /// This plugin's deadline per call in milliseconds, 1 to `plugin_max_timeout` (default:
    /// `plugin_timeout`). Kept with the plugin until the next upload.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[param(minimum = 1, example = 500)]
    pub timeout_ms: Option<u32>,
    /// `true`: answer when the compile is done, however long it takes. `false`: answer
    /// `202 compiling` as soon as the bytes are stored. Absent: wait up to
    /// `plugin_upload_wait` (2 s), then answer `202`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wait: Option<bool>,
}

impl PluginUploadQuery {
    /// The plugin's own limits asked for.
    pub fn limits(&self) -> PluginLimits {
        PluginLimits {
            memory_mb: self.memory_mb,
            timeout_ms: self.timeout_ms,
        }
    }
}

/// A line a plugin logged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct LogLineOut {
    /// `trace` … `error`, or `stdout` / `stderr`.
    #[schema(example = "info")]
    pub level: String,
    /// The text (1 KiB at most).
    pub message: String,
}

impl From<&LogLine> for LogLineOut {
    fn from(line: &LogLine) -> Self {
        Self {
            level: line.level.to_owned(),
            message: line.message.clone(),
        }
    }
}

/// `POST /v1/plugins/{name}/dry-run`'s body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({
    "event": {"type": "post.published", "data": {"title": "Hello", "author": "Ann"}},
    "config": {"title": "New post: {{data.title}}", "fields": ["data.author"]}
}))]
pub struct DryRunIn {
    /// The sample event.
    pub event: DryRunEvent,
    /// The config to run with (any JSON; default `null`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<Value>,
}

/// A sample event for a dry run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DryRunEvent {
    /// The event type.
    #[serde(rename = "type")]
    pub event_type: String,
    /// The data (default `null`).
    #[serde(default)]
    pub data: Value,
    /// The event id the plugin sees (default: a new `evt_` id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
}

/// What the plugin would do with the sample event: a [`DryRunDeliver`] (`"outcome":
/// "deliver"`) or a [`DryRunSkip`] (`"outcome": "skip"`). Nothing is delivered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum DryRunOut {
    /// It would deliver this request.
    Deliver(DryRunDeliver),
    /// It would skip the event.
    Skip(DryRunSkip),
}

/// `deliver`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DeliverOutcome {
    /// The plugin produced a request.
    Deliver,
}

/// `skip`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SkipOutcome {
    /// The plugin skipped the event.
    Skip,
}

/// A dry run's request that would be delivered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct DryRunDeliver {
    /// Always `deliver`.
    pub outcome: DeliverOutcome,
    /// The body's content type.
    pub content_type: String,
    /// Headers the plugin adds.
    pub headers: BTreeMap<String, String>,
    /// The body, when it is UTF-8 text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    /// The body in base64, when it is not UTF-8.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_base64: Option<String>,
    /// What it logged.
    pub logs: Vec<LogLineOut>,
    /// How long the call took, in microseconds.
    pub duration_us: u64,
    /// sha256 of the version that ran.
    pub plugin_version: String,
}

/// A dry run's skip.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct DryRunSkip {
    /// Always `skip`.
    pub outcome: SkipOutcome,
    /// The plugin's reason.
    pub reason: String,
    /// What it logged.
    pub logs: Vec<LogLineOut>,
    /// How long the call took, in microseconds.
    pub duration_us: u64,
    /// sha256 of the version that ran.
    pub plugin_version: String,
}

/// A WebAssembly component's bytes (`PUT /v1/plugins/{name}`'s body).
#[derive(Debug, Clone, PartialEq, Eq, ToSchema)]
#[schema(value_type = String, format = Binary)]
pub struct WasmComponent(pub Vec<u8>);
