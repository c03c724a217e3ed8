//! One layer of settings as text (a file, the environment or the flags), and how a later
//! layer overrides an earlier one.

use std::path::{Path, PathBuf};

use serde::Deserialize;

/// One layer of settings as text (file, environment or flags): every field optional.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Layer {
    /// `listen`
    pub listen: Option<String>,
    /// `data_dir`
    pub data_dir: Option<PathBuf>,
    /// `plugins_dir`
    pub plugins_dir: Option<PathBuf>,
    /// `api_key`
    pub api_key: Option<String>,
    /// `api_key_file`: a file whose content (trimmed) is the admin key
    pub api_key_file: Option<PathBuf>,
    /// `secret_key`: base64 or hex of 32 bytes
    pub secret_key: Option<String>,
    /// `secret_key_file`
    pub secret_key_file: Option<PathBuf>,
    /// `max_auth_failures` (per client per minute)
    pub max_auth_failures: Option<u32>,
    /// `header_timeout`, e.g. `"10s"`
    pub header_timeout: Option<String>,
    /// `body_timeout`, e.g. `"60s"`
    pub body_timeout: Option<String>,
    /// `idle_timeout`, e.g. `"60s"`
    pub idle_timeout: Option<String>,
    /// `max_connections`
    pub max_connections: Option<usize>,
    /// `shutdown_timeout`, e.g. `"10s"`
    pub shutdown_timeout: Option<String>,
    /// `max_pending_bytes`
    pub max_pending_bytes: Option<usize>,
    /// `allow_private_networks`
    pub allow_private_networks: Option<bool>,
    /// `retry_schedule`, e.g. `"5s,30s,2m"`
    pub retry_schedule: Option<String>,
    /// `delivery_timeout`, e.g. `"10s"`
    pub delivery_timeout: Option<String>,
    /// `max_in_flight`
    pub max_in_flight: Option<usize>,
    /// `max_in_flight_per_subscription`
    pub max_in_flight_per_subscription: Option<usize>,
    /// `max_in_flight_per_tenant`
    pub max_in_flight_per_tenant: Option<usize>,
    /// `disable_after_failing_for`, e.g. `"5d"`
    pub disable_after_failing_for: Option<String>,
    /// `rotation_grace`, e.g. `"24h"`
    pub rotation_grace: Option<String>,
    /// `max_event_bytes`
    pub max_event_bytes: Option<usize>,
    /// `max_pending_events`
    pub max_pending_events: Option<usize>,
    /// `plugin_timeout`, e.g. `"100ms"`
    pub plugin_timeout: Option<String>,
    /// `plugin_memory_mb`
    pub plugin_memory_mb: Option<usize>,
    /// `plugin_max_timeout`, e.g. `"1s"`
    pub plugin_max_timeout: Option<String>,
    /// `plugin_max_memory_mb`
    pub plugin_max_memory_mb: Option<usize>,
    /// `plugin_max_component_mb`
    pub plugin_max_component_mb: Option<usize>,
    /// `plugin_upload_wait`, e.g. `"2s"`
    pub plugin_upload_wait: Option<String>,
    /// `plugin_startup_wait`, e.g. `"5s"`
    pub plugin_startup_wait: Option<String>,
    /// `plugin_keep_resident_mb`
    pub plugin_keep_resident_mb: Option<usize>,
    /// `plugin_compile_timeout`, e.g. `"60s"`
    pub plugin_compile_timeout: Option<String>,
    /// `plugin_compile_memory_mb`
    pub plugin_compile_memory_mb: Option<u64>,
    /// `plugins_follow_symlinks`
    pub plugins_follow_symlinks: Option<bool>,
    /// `bundled_plugins`
    pub bundled_plugins: Option<bool>,
    /// `lease`, e.g. `"5m"`
    pub lease: Option<String>,
    /// `retention_finished`, e.g. `"7d"`
    pub retention_finished: Option<String>,
    /// `retention_failed`, e.g. `"30d"`
    pub retention_failed: Option<String>,
    /// `idempotency_key_ttl`, e.g. `"24h"`
    pub idempotency_key_ttl: Option<String>,
}

impl Layer {
    /// Reads a TOML layer.
    ///
    /// # Errors
    /// When the file cannot be read or is not valid TOML of this shape.
    pub fn from_toml_file(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// `self` with every field `over` sets replaced.
    #[must_use]
    pub fn overridden_by(self, over: Layer) -> Layer {
        // The key and the key file are one setting: a layer that gives either replaces both.
        let (api_key, api_key_file) = if over.api_key.is_some() || over.api_key_file.is_some() {
            (over.api_key, over.api_key_file)
        } else {
            (self.api_key, self.api_key_file)
        };
        let (secret_key, secret_key_file) =
            if over.secret_key.is_some() || over.secret_key_file.is_some() {
                (over.secret_key, over.secret_key_file)
            } else {
                (self.secret_key, self.secret_key_file)
            };
        Layer {
            listen: over.listen.or(self.listen),
            data_dir: over.data_dir.or(self.data_dir),
            plugins_dir: over.plugins_dir.or(self.plugins_dir),
            api_key,
            api_key_file,
            secret_key,
            secret_key_file,
            max_auth_failures: over.max_auth_failures.or(self.max_auth_failures),
            header_timeout: over.header_timeout.or(self.header_timeout),
            body_timeout: over.body_timeout.or(self.body_timeout),
            idle_timeout: over.idle_timeout.or(self.idle_timeout),
            max_connections: over.max_connections.or(self.max_connections),
            shutdown_timeout: over.shutdown_timeout.or(self.shutdown_timeout),
            max_pending_bytes: over.max_pending_bytes.or(self.max_pending_bytes),
            allow_private_networks: over.allow_private_networks.or(self.allow_private_networks),
            retry_schedule: over.retry_schedule.or(self.retry_schedule),
            delivery_timeout: over.delivery_timeout.or(self.delivery_timeout),
            max_in_flight: over.max_in_flight.or(self.max_in_flight),
            max_in_flight_per_subscription: over
                .max_in_flight_per_subscription
                .or(self.max_in_flight_per_subscription),
            max_in_flight_per_tenant: over
                .max_in_flight_per_tenant
                .or(self.max_in_flight_per_tenant),
            disable_after_failing_for: over
                .disable_after_failing_for
                .or(self.disable_after_failing_for),
            rotation_grace: over.rotation_grace.or(self.rotation_grace),
            max_event_bytes: over.max_event_bytes.or(self.max_event_bytes),
            max_pending_events: over.max_pending_events.or(self.max_pending_events),
            plugin_timeout: over.plugin_timeout.or(self.plugin_timeout),
            plugin_memory_mb: over.plugin_memory_mb.or(self.plugin_memory_mb),
            plugin_max_timeout: over.plugin_max_timeout.or(self.plugin_max_timeout),
            plugin_max_memory_mb: over.plugin_max_memory_mb.or(self.plugin_max_memory_mb),
            plugin_max_component_mb: over
                .plugin_max_component_mb
                .or(self.plugin_max_component_mb),
            plugin_upload_wait: over.plugin_upload_wait.or(self.plugin_upload_wait),
            plugin_startup_wait: over.plugin_startup_wait.or(self.plugin_startup_wait),
            plugin_keep_resident_mb: over
                .plugin_keep_resident_mb
                .or(self.plugin_keep_resident_mb),
            plugin_compile_timeout: over.plugin_compile_timeout.or(self.plugin_compile_timeout),
            plugin_compile_memory_mb: over
                .plugin_compile_memory_mb
                .or(self.plugin_compile_memory_mb),
            plugins_follow_symlinks: over
                .plugins_follow_symlinks
                .or(self.plugins_follow_symlinks),
            bundled_plugins: over.bundled_plugins.or(self.bundled_plugins),
            lease: over.lease.or(self.lease),
            retention_finished: over.retention_finished.or(self.retention_finished),
            retention_failed: over.retention_failed.or(self.retention_failed),
            idempotency_key_ttl: over.idempotency_key_ttl.or(self.idempotency_key_ttl),
        }
    }
}
