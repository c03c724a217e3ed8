//! A layer applied to the defaults, and validated: every bad field reported at once.

use std::path::PathBuf;
use std::time::Duration;

use super::{Config, Layer};
use crate::server::HttpLimits;

impl Layer {
    /// Applies the layer to the defaults and validates.
    ///
    /// # Errors
    /// Every invalid field, one message each.
    pub fn resolve(self) -> Result<Config, Vec<String>> {
        let mut errors = Vec::new();
        let data_dir = self
            .data_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from("./switchyard-data"));
        let mut config = Config::with_data_dir(&data_dir);
        resolve_http(&mut config.http, &self, &mut errors);
        if let Some(dir) = self.plugins_dir {
            config.plugins_dir = dir;
        }
        if let Some(listen) = self.listen {
            match listen.parse() {
                Ok(addr) => config.listen = addr,
                Err(_) => errors.push(format!(
                    "listen: {listen:?} is not an address like 127.0.0.1:8686"
                )),
            }
        }
        config.api_key = self.api_key.filter(|k| !k.is_empty());
        if let Some(path) = self.api_key_file {
            if config.api_key.is_some() {
                errors.push("api_key_file: set either api_key or api_key_file, not both".into());
            }
            match std::fs::read_to_string(&path) {
                Ok(text) => config.api_key = Some(text.trim().to_owned()),
                Err(e) => errors.push(format!("api_key_file: {}: {e}", path.display())),
            }
        }
        if config.api_key.as_ref().is_some_and(|k| k.len() < 16) {
            errors.push("api_key: use at least 16 characters".into());
        }
        if let Some(key) = self.secret_key.clone().filter(|k| !k.is_empty()) {
            if self.secret_key_file.is_some() {
                errors.push(
                    "secret_key_file: set either secret_key or secret_key_file, not both".into(),
                );
            }
            match crate::store::SecretKey::parse(&key) {
                Ok(_) => config.secret_key = Some(key),
                Err(e) => errors.push(format!("secret_key: {e}")),
            }
        }
        if let Some(path) = self.secret_key_file.clone() {
            config.secret_key_file = path;
        }
        set_positive_u32(
            &mut config.max_auth_failures,
            "max_auth_failures",
            self.max_auth_failures,
            &mut errors,
        );
        config.allow_private_networks = self.allow_private_networks.unwrap_or(false);
        if let Some(text) = self.retry_schedule {
            match parse_schedule(&text) {
                Ok(schedule) => config.retry_schedule = schedule,
                Err(e) => errors.push(format!("retry_schedule: {e}")),
            }
        }
        set_duration(
            &mut config.delivery_timeout,
            "delivery_timeout",
            self.delivery_timeout,
            &mut errors,
        );
        set_duration(
            &mut config.disable_after_failing_for,
            "disable_after_failing_for",
            self.disable_after_failing_for,
            &mut errors,
        );
        set_duration(
            &mut config.rotation_grace,
            "rotation_grace",
            self.rotation_grace,
            &mut errors,
        );
        set_duration(
            &mut config.plugin_limits.deadline,
            "plugin_timeout",
            self.plugin_timeout,
            &mut errors,
        );
        set_duration(&mut config.lease, "lease", self.lease, &mut errors);
        let retention = [
            (
                &mut config.retention.finished,
                "retention_finished",
                self.retention_finished,
            ),
            (
                &mut config.retention.failed,
                "retention_failed",
                self.retention_failed,
            ),
            (
                &mut config.retention.idempotency_ttl,
                "idempotency_key_ttl",
                self.idempotency_key_ttl,
            ),
        ];
        for (target, name, value) in retention {
            set_duration(target, name, value, &mut errors);
        }
        set_positive(
            &mut config.max_in_flight,
            "max_in_flight",
            self.max_in_flight,
            &mut errors,
        );
        set_positive(
            &mut config.max_in_flight_per_subscription,
            "max_in_flight_per_subscription",
            self.max_in_flight_per_subscription,
            &mut errors,
        );
        set_positive(
            &mut config.max_in_flight_per_tenant,
            "max_in_flight_per_tenant",
            self.max_in_flight_per_tenant,
            &mut errors,
        );
        set_positive(
            &mut config.max_event_bytes,
            "max_event_bytes",
            self.max_event_bytes,
            &mut errors,
        );
        set_positive(
            &mut config.max_pending_events,
            "max_pending_events",
            self.max_pending_events,
            &mut errors,
        );
        set_positive(
            &mut config.max_pending_bytes,
            "max_pending_bytes",
            self.max_pending_bytes,
            &mut errors,
        );
        if config.max_pending_bytes < config.max_event_bytes {
            errors.push(format!(
                "max_pending_bytes: must be at least max_event_bytes ({}), or no event of the largest size could wait",
                config.max_event_bytes
            ));
        }
        let maxima = PluginMaxima {
            memory_mb: self.plugin_memory_mb,
            max_memory_mb: self.plugin_max_memory_mb,
            max_component_mb: self.plugin_max_component_mb,
            max_timeout: self.plugin_max_timeout,
            keep_resident_mb: self.plugin_keep_resident_mb,
        };
        set_plugin_limits(&mut config, maxima, &mut errors);
        // Zero is allowed: every upload then answers `202 compiling` at once, and a start
        // serves before any plugin is loaded.
        set_wait(
            &mut config.plugin_upload_wait,
            "plugin_upload_wait",
            self.plugin_upload_wait.as_deref(),
            &mut errors,
        );
        set_wait(
            &mut config.plugin_startup_wait,
            "plugin_startup_wait",
            self.plugin_startup_wait.as_deref(),
            &mut errors,
        );
        set_duration(
            &mut config.plugin_compile_budget.timeout,
            "plugin_compile_timeout",
            self.plugin_compile_timeout,
            &mut errors,
        );
        if let Some(mb) = self.plugin_compile_memory_mb {
            // Below 64 MiB even the bundled plugins do not compile.
            if (64..=65536).contains(&mb) {
                config.plugin_compile_budget.memory_bytes = mb << 20;
            } else {
                errors.push("plugin_compile_memory_mb: must be between 64 and 65536".into());
            }
        }
        config.plugins_follow_symlinks = self.plugins_follow_symlinks.unwrap_or(false);
        config.bundled_plugins = self.bundled_plugins.unwrap_or(true);
        if errors.is_empty()
            && let Err(rules) = config.validate()
        {
            errors.extend(rules);
        }
        if errors.is_empty() {
            Ok(config)
        } else {
            Err(errors)
        }
    }
}

/// The plugin settings [`set_plugin_limits`] applies.
struct PluginMaxima {
    memory_mb: Option<usize>,
    max_memory_mb: Option<usize>,
    max_component_mb: Option<usize>,
    max_timeout: Option<String>,
    keep_resident_mb: Option<usize>,
}

/// The plugin call limits and their maxima: each default must fit under its maximum.
fn set_plugin_limits(config: &mut Config, layer: PluginMaxima, errors: &mut Vec<String>) {
    let limits = &mut config.plugin_limits;
    let mut mib = |name: &str, value: Option<usize>, max: usize, target: &mut usize| {
        if let Some(mb) = value {
            if (1..=max).contains(&mb) {
                *target = mb << 20;
            } else {
                errors.push(format!("{name}: must be between 1 and {max}"));
            }
        }
    };
    mib(
        "plugin_memory_mb",
        layer.memory_mb,
        4096,
        &mut limits.memory_bytes,
    );
    mib(
        "plugin_max_memory_mb",
        layer.max_memory_mb,
        4096,
        &mut limits.max_memory_bytes,
    );
    mib(
        "plugin_max_component_mb",
        layer.max_component_mb,
        1024,
        &mut limits.component_bytes,
    );
    if let Some(mb) = layer.keep_resident_mb {
        // Zero is allowed: every page goes back to the kernel after each call.
        if mb <= 1024 {
            limits.keep_resident_bytes = mb << 20;
        } else {
            errors.push("plugin_keep_resident_mb: must be between 0 and 1024".into());
        }
    }
    let max_timeout_set = layer.max_timeout.is_some();
    set_duration(
        &mut limits.max_deadline,
        "plugin_max_timeout",
        layer.max_timeout,
        errors,
    );
    if limits.max_deadline > Duration::from_secs(3600) {
        errors.push("plugin_max_timeout: must be at most 1h".into());
    }
    // An operator who raises a default past the built-in maximum means to allow it.
    if layer.max_memory_mb.is_none() {
        limits.max_memory_bytes = limits.max_memory_bytes.max(limits.memory_bytes);
    }
    if !max_timeout_set {
        limits.max_deadline = limits.max_deadline.max(limits.deadline);
    }
    if limits.memory_bytes > limits.max_memory_bytes {
        errors.push(format!(
            "plugin_memory_mb: {} is more than plugin_max_memory_mb ({})",
            limits.memory_bytes >> 20,
            limits.max_memory_bytes >> 20
        ));
    }
    if limits.deadline > limits.max_deadline {
        errors.push(format!(
            "plugin_timeout: {} is more than plugin_max_timeout ({})",
            humantime::format_duration(limits.deadline),
            humantime::format_duration(limits.max_deadline)
        ));
    }
}

fn set_duration(
    target: &mut Duration,
    name: &str,
    value: Option<String>,
    errors: &mut Vec<String>,
) {
    if let Some(text) = value {
        match humantime::parse_duration(text.trim()) {
            Ok(d) if !d.is_zero() => *target = d,
            Ok(_) => errors.push(format!("{name}: must be more than zero")),
            Err(e) => errors.push(format!(
                "{name}: {text:?}: {e} (use e.g. 500ms, 10s, 5m, 2h, 3d)"
            )),
        }
    }
}

/// A wait that may be zero (don't wait), e.g. `plugin_upload_wait`.
fn set_wait(target: &mut Duration, name: &str, value: Option<&str>, errors: &mut Vec<String>) {
    if let Some(text) = value {
        match humantime::parse_duration(text.trim()) {
            Ok(wait) => *target = wait,
            Err(e) => errors.push(format!("{name}: {text:?}: {e} (use e.g. 0s, 500ms, 2s)")),
        }
    }
}

/// The HTTP server's timeouts and connection cap.
fn resolve_http(http: &mut HttpLimits, layer: &Layer, errors: &mut Vec<String>) {
    let durations = [
        (
            &mut http.header_timeout,
            "header_timeout",
            &layer.header_timeout,
        ),
        (&mut http.body_timeout, "body_timeout", &layer.body_timeout),
        (&mut http.idle_timeout, "idle_timeout", &layer.idle_timeout),
        (
            &mut http.shutdown_timeout,
            "shutdown_timeout",
            &layer.shutdown_timeout,
        ),
    ];
    for (target, name, value) in durations {
        set_duration(target, name, value.clone(), errors);
    }
    set_positive(
        &mut http.max_connections,
        "max_connections",
        layer.max_connections,
        errors,
    );
}

fn set_positive_u32(target: &mut u32, name: &str, value: Option<u32>, errors: &mut Vec<String>) {
    match value {
        Some(0) => errors.push(format!("{name}: must be at least 1")),
        Some(n) => *target = n,
        None => {}
    }
}

fn set_positive(target: &mut usize, name: &str, value: Option<usize>, errors: &mut Vec<String>) {
    match value {
        Some(0) => errors.push(format!("{name}: must be at least 1")),
        Some(n) => *target = n,
        None => {}
    }
}

/// Parses `"5s,30s,2m,10m,1h,6h"`. `none` (or nothing) means a single attempt, no retries.
///
/// # Errors
/// Names the first entry that is not a duration.
pub fn parse_schedule(text: &str) -> Result<Vec<Duration>, String> {
    if text.trim().eq_ignore_ascii_case("none") {
        return Ok(Vec::new());
    }
    text.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            humantime::parse_duration(s)
                .map_err(|e| format!("{s:?}: {e} (use e.g. 5s,30s,2m,10m,1h,6h)"))
        })
        .collect()
}
