//! Service configuration: one documented set of defaults, overridden by `switchyard.toml`,
//! then by `SWITCHYARD_*` environment variables, then by command-line flags. Validation
//! reports every bad field at once.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::clock::Clock;
use crate::plugins::{CompileBudget, Limits};
use crate::server::HttpLimits;
use crate::store::RetentionPolicy;

/// What a lease must hold beyond the time limits of one attempt: room to record the result
/// before the lease runs out.
pub const LEASE_MARGIN: Duration = Duration::from_secs(5);
/// The longest delay one entry of the retry schedule may ask for. Beyond it a retry is no
/// longer a retry (and a big enough value overflowed the time arithmetic).
pub const MAX_RETRY_DELAY: Duration = Duration::from_secs(30 * 24 * 3600);

/// The validated configuration the service runs with.
#[derive(Debug, Clone)]
pub struct Config {
    /// Address to bind (`SWITCHYARD_LISTEN`).
    pub listen: SocketAddr,
    /// Database and state (`SWITCHYARD_DATA_DIR`).
    pub data_dir: PathBuf,
    /// Watched plugin folder (`SWITCHYARD_PLUGINS_DIR`), default `<data dir>/plugins`.
    pub plugins_dir: PathBuf,
    /// Admin bearer key (`SWITCHYARD_API_KEY`, or read from `SWITCHYARD_API_KEY_FILE`); when
    /// unset one is generated at first start.
    pub api_key: Option<String>,
    /// Key that encrypts subscription secrets at rest (`SWITCHYARD_SECRET_KEY`, base64 or hex
    /// of 32 bytes). When unset the key is read from (or generated into) `secret_key_file`.
    pub secret_key: Option<String>,
    /// File holding the secrets key when `secret_key` is unset (`SWITCHYARD_SECRET_KEY_FILE`),
    /// default `<data dir>/secrets.key`, created with mode `0600` when the database has no
    /// encrypted secrets yet.
    pub secret_key_file: PathBuf,
    /// Wrong keys answered per client (IP address; IPv6 per /64) per minute before `/v1`
    /// answers it `429` without looking at its key.
    pub max_auth_failures: u32,
    /// Timeouts and the connection cap of the HTTP server.
    pub http: HttpLimits,
    /// Lets deliveries reach loopback/private addresses and plain `http://`.
    pub allow_private_networks: bool,
    /// Delays between attempts; attempts = 1 + its length.
    pub retry_schedule: Vec<Duration>,
    /// Timeout of one delivery request.
    pub delivery_timeout: Duration,
    /// Deliveries in flight at once, across all subscriptions.
    pub max_in_flight: usize,
    /// Deliveries in flight at once to one subscription (a slow receiver cannot starve others).
    pub max_in_flight_per_subscription: usize,
    /// Deliveries in flight at once for one tenant, over all its subscriptions (one tenant's
    /// burst or slow receivers cannot take every slot).
    pub max_in_flight_per_tenant: usize,
    /// A subscription failing without a single success for this long is disabled.
    pub disable_after_failing_for: Duration,
    /// How long a rotated-out secret keeps signing.
    pub rotation_grace: Duration,
    /// Largest accepted `POST /v1/events` body.
    pub max_event_bytes: usize,
    /// Events waiting for their commit at once; past this `POST /v1/events` answers 429, so
    /// an overload costs the producer a retry instead of the service unbounded memory.
    pub max_pending_events: usize,
    /// Bytes of events waiting for their commit at once (the count bound alone let
    /// `max_pending_events` × `max_event_bytes` wait); past this `POST /v1/events` answers 429.
    pub max_pending_bytes: usize,
    /// Limits of every plugin call (a plugin's own deadline and memory, chosen at upload, are
    /// bounded by `plugin_limits.max_deadline` / `max_memory_bytes`).
    pub plugin_limits: Limits,
    /// How long `PUT /v1/plugins/{name}` waits for the compile before it answers
    /// `202 compiling` (`plugin_upload_wait`); `?wait=true` waits to the end.
    pub plugin_upload_wait: Duration,
    /// Time and memory one plugin compile may use (`plugin_compile_timeout`,
    /// `plugin_compile_memory_mb`).
    pub plugin_compile_budget: CompileBudget,
    /// The `switchyard` binary, run as `switchyard __compile-plugin` to compile plugins in a
    /// child process under [`Config::plugin_compile_budget`]. `None` compiles in-process,
    /// without a budget: only for embedders without the binary (unit tests, benchmarks).
    /// `switchyard serve` sets it to itself.
    pub plugin_compiler: Option<PathBuf>,
    /// Follow symbolic links in the plugins folder that lead out of it
    /// (`plugins_follow_symlinks`). Links inside the folder are always followed; whatever a
    /// link leads to must be a regular file.
    pub plugins_follow_symlinks: bool,
    /// Write the bundled plugins into the plugins folder when it is first created.
    pub bundled_plugins: bool,
    /// How long a leased delivery may stay `delivering` before it is queued again. An attempt
    /// only starts while its lease can still hold it (see [`Config::attempt_time`]); a result
    /// that comes after its lease was taken back is ignored.
    pub lease: Duration,
    /// How long finished deliveries, their events and idempotency keys are kept
    /// (`retention_finished`, `retention_failed`, `idempotency_key_ttl`).
    pub retention: RetentionPolicy,
    /// The wall clock (the system's; a manual one in tests).
    pub clock: Clock,
}

impl Config {
    /// The defaults, rooted at `data_dir`.
    pub fn with_data_dir(data_dir: impl Into<PathBuf>) -> Self {
        let data_dir = data_dir.into();
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8686)),
            plugins_dir: data_dir.join("plugins"),
            secret_key_file: data_dir.join("secrets.key"),
            data_dir,
            api_key: None,
            secret_key: None,
            max_auth_failures: 10,
            http: HttpLimits::default(),
            allow_private_networks: false,
            retry_schedule: default_retry_schedule(),
            delivery_timeout: Duration::from_secs(10),
            max_in_flight: 128,
            max_in_flight_per_subscription: 32,
            max_in_flight_per_tenant: 64,
            disable_after_failing_for: Duration::from_secs(5 * 24 * 3600),
            rotation_grace: Duration::from_secs(24 * 3600),
            max_event_bytes: 1 << 20,
            max_pending_events: 4096,
            max_pending_bytes: 64 << 20,
            plugin_limits: Limits::default(),
            plugin_upload_wait: Duration::from_secs(2),
            plugin_compile_budget: CompileBudget::default(),
            plugin_compiler: None,
            plugins_follow_symlinks: false,
            bundled_plugins: true,
            lease: Duration::from_secs(300),
            retention: RetentionPolicy::default(),
            clock: Clock::system(),
        }
    }

    /// The longest one attempt may take: its plugin call and its request.
    pub fn attempt_time(&self) -> Duration {
        self.delivery_timeout
            .saturating_add(self.plugin_limits.deadline)
    }

    /// The shortest lease allowed: a leased delivery may wait in memory for its turn for up to
    /// one attempt's time, then run its attempt, with [`LEASE_MARGIN`] to spare.
    pub fn min_lease(&self) -> Duration {
        self.attempt_time()
            .saturating_mul(2)
            .saturating_add(LEASE_MARGIN)
    }

    /// Checks the rules that tie settings together (and those a `Config` built in code could
    /// break): the timeouts fit in the lease, the retry delays are bounded.
    ///
    /// # Errors
    /// Every broken rule, one message each.
    pub fn validate(&self) -> Result<(), Vec<String>> {
        let mut errors = Vec::new();
        if self.lease < self.min_lease() {
            errors.push(format!(
                "lease: {} cannot hold an attempt (delivery_timeout {} + plugin_timeout {}): a \
                 delivery may wait that long for its turn and then take that long again; set \
                 lease to at least {}, or shorten the timeouts",
                humantime::format_duration(self.lease),
                humantime::format_duration(self.delivery_timeout),
                humantime::format_duration(self.plugin_limits.deadline),
                humantime::format_duration(self.min_lease()),
            ));
        }
        if let Some(long) = self.retry_schedule.iter().find(|d| **d > MAX_RETRY_DELAY) {
            errors.push(format!(
                "retry_schedule: {} is longer than the most one retry may wait ({})",
                humantime::format_duration(*long),
                humantime::format_duration(MAX_RETRY_DELAY),
            ));
        }
        if self.retention.idempotency_ttl > self.retention.finished {
            errors.push(format!(
                "idempotency_key_ttl: {} is longer than retention_finished ({}), which deletes \
                 the events that hold the keys; shorten it or keep events longer",
                humantime::format_duration(self.retention.idempotency_ttl),
                humantime::format_duration(self.retention.finished),
            ));
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }

    /// Path of the SQLite database.
    pub fn database_path(&self) -> PathBuf {
        self.data_dir.join("switchyard.db")
    }
}

/// The Standard Webhooks recommendation: 5s, 5m, 30m, 2h, 5h, 10h, 14h, 20h, 24h
/// (10 attempts over about three days).
pub fn default_retry_schedule() -> Vec<Duration> {
    [5, 300, 1800, 7200, 18000, 36000, 50400, 72000, 86400]
        .into_iter()
        .map(Duration::from_secs)
        .collect()
}

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
        if let Some(text) = &self.plugin_upload_wait {
            // Zero is allowed: every upload then answers `202 compiling` at once.
            match humantime::parse_duration(text.trim()) {
                Ok(wait) => config.plugin_upload_wait = wait,
                Err(e) => errors.push(format!(
                    "plugin_upload_wait: {text:?}: {e} (use e.g. 0s, 500ms, 2s)"
                )),
            }
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn later_layers_win_and_defaults_fill_the_rest() {
        let file = Layer {
            listen: Some("0.0.0.0:9000".into()),
            max_in_flight: Some(7),
            ..Layer::default()
        };
        let env = Layer {
            listen: Some("127.0.0.1:9001".into()),
            ..Layer::default()
        };
        let config = file.overridden_by(env).resolve().unwrap();
        assert_eq!(config.listen.port(), 9001);
        assert_eq!(config.max_in_flight, 7);
        assert_eq!(config.retry_schedule, default_retry_schedule());
        assert_eq!(
            config.plugins_dir,
            PathBuf::from("./switchyard-data/plugins")
        );
        assert_eq!(config.plugin_compile_budget, CompileBudget::default());
        assert!(!config.plugins_follow_symlinks);
    }

    #[test]
    fn the_per_tenant_cap_is_set_layered_and_must_be_positive() {
        assert_eq!(Config::with_data_dir("d").max_in_flight_per_tenant, 64);
        let file = Layer {
            max_in_flight_per_tenant: Some(3),
            ..Layer::default()
        };
        let config = file
            .clone()
            .overridden_by(Layer::default())
            .resolve()
            .unwrap();
        assert_eq!(config.max_in_flight_per_tenant, 3);
        let env = Layer {
            max_in_flight_per_tenant: Some(0),
            ..Layer::default()
        };
        assert!(file.overridden_by(env).resolve().is_err());
    }

    #[test]
    fn compile_budget_settings_apply() {
        let config = Layer {
            plugin_compile_timeout: Some("5s".into()),
            plugin_compile_memory_mb: Some(512),
            plugins_follow_symlinks: Some(true),
            ..Layer::default()
        }
        .resolve()
        .unwrap();
        assert_eq!(config.plugin_compile_budget.timeout, Duration::from_secs(5));
        assert_eq!(config.plugin_compile_budget.memory_bytes, 512 << 20);
        assert!(config.plugins_follow_symlinks);
    }

    #[test]
    fn plugin_limits_and_their_maxima() {
        let config = Layer {
            plugin_timeout: Some("200ms".into()),
            plugin_max_timeout: Some("2s".into()),
            plugin_max_memory_mb: Some(512),
            plugin_max_component_mb: Some(100),
            plugin_upload_wait: Some("0s".into()),
            plugin_keep_resident_mb: Some(0),
            ..Layer::default()
        }
        .resolve()
        .unwrap();
        let limits = &config.plugin_limits;
        assert_eq!(limits.keep_resident_bytes, 0);
        assert_eq!(limits.deadline, Duration::from_millis(200));
        assert_eq!(limits.max_deadline, Duration::from_secs(2));
        assert_eq!(limits.max_memory_bytes, 512 << 20);
        assert_eq!(limits.component_bytes, 100 << 20);
        assert_eq!(config.plugin_upload_wait, Duration::ZERO);
        let defaults = Layer::default().resolve().unwrap();
        assert_eq!(defaults.plugin_limits.component_bytes, 64 << 20);
        assert_eq!(defaults.plugin_upload_wait, Duration::from_secs(2));
        assert_eq!(defaults.plugin_limits.keep_resident_bytes, 2 << 20);
        // A default raised past the built-in maximum raises the maximum with it…
        let raised = Layer {
            plugin_memory_mb: Some(1024),
            ..Layer::default()
        }
        .resolve()
        .unwrap();
        assert_eq!(raised.plugin_limits.max_memory_bytes, 1024 << 20);
        // …but not past one the operator set.
        let errors = Layer {
            plugin_memory_mb: Some(64),
            plugin_max_memory_mb: Some(32),
            plugin_timeout: Some("2s".into()),
            plugin_max_timeout: Some("1s".into()),
            plugin_max_component_mb: Some(0),
            plugin_keep_resident_mb: Some(4096),
            ..Layer::default()
        }
        .resolve()
        .unwrap_err();
        assert_eq!(errors.len(), 4, "{errors:#?}");
        assert!(errors.iter().all(|e| e.contains("plugin_")), "{errors:#?}");
    }

    #[test]
    fn every_bad_field_is_reported() {
        let layer = Layer {
            listen: Some("nope".into()),
            retry_schedule: Some("5s,soon".into()),
            delivery_timeout: Some("0s".into()),
            max_in_flight: Some(0),
            max_pending_events: Some(0),
            plugin_memory_mb: Some(0),
            plugin_compile_timeout: Some("0s".into()),
            plugin_compile_memory_mb: Some(16),
            ..Layer::default()
        };
        let errors = layer.resolve().unwrap_err();
        assert_eq!(errors.len(), 8, "{errors:#?}");
        assert!(
            errors.iter().any(|e| e.starts_with("max_pending_events")),
            "{errors:#?}"
        );
    }

    /// A schedule entry too large to add to a time (here about 490 billion years, which
    /// overflowed a worker's jitter arithmetic) is refused, as is anything past the bound.
    #[test]
    fn absurd_retry_delays_are_refused() {
        for schedule in ["5s,490000000000y", "31d"] {
            let layer = Layer {
                retry_schedule: Some(schedule.into()),
                ..Layer::default()
            };
            let errors = layer.resolve().unwrap_err();
            assert!(
                errors.iter().any(|e| e.starts_with("retry_schedule")),
                "{schedule}: {errors:?}"
            );
        }
    }

    /// Retention settings are read, and a key TTL longer than the events holding the keys
    /// are kept is refused.
    #[test]
    fn retention_settings_are_read_and_the_key_ttl_must_fit() {
        let config = Layer {
            retention_finished: Some("2d".into()),
            retention_failed: Some("10d".into()),
            idempotency_key_ttl: Some("12h".into()),
            ..Layer::default()
        }
        .resolve()
        .unwrap();
        assert_eq!(
            config.retention,
            RetentionPolicy {
                finished: Duration::from_secs(2 * 86_400),
                failed: Duration::from_secs(10 * 86_400),
                idempotency_ttl: Duration::from_secs(12 * 3600),
            }
        );
        assert_eq!(
            Layer::default().resolve().unwrap().retention,
            RetentionPolicy::default()
        );
        let errors = Layer {
            retention_finished: Some("1h".into()),
            retention_failed: Some("0s".into()),
            ..Layer::default()
        }
        .resolve()
        .unwrap_err();
        assert!(
            errors.iter().any(|e| e.starts_with("retention_failed")),
            "{errors:?}"
        );
        let errors = Layer {
            retention_finished: Some("1h".into()),
            ..Layer::default()
        }
        .resolve()
        .unwrap_err();
        assert!(
            errors.iter().any(|e| e.starts_with("idempotency_key_ttl")),
            "{errors:?}"
        );
    }

    /// A delivery timeout the lease cannot hold would let an attempt run past its lease (and
    /// the delivery be leased again while it runs): refused, with the way out in the message.
    #[test]
    fn timeouts_must_fit_in_the_lease() {
        let layer = Layer {
            delivery_timeout: Some("400s".into()),
            ..Layer::default()
        };
        let errors = layer.resolve().unwrap_err();
        assert!(errors.iter().any(|e| e.contains("lease")), "{errors:?}");
    }

    #[test]
    fn the_admin_key_can_come_from_a_file_and_a_later_layer_replaces_either() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("key");
        std::fs::write(&file, "  from-the-file-0123456789\n").unwrap();
        let layer = Layer {
            api_key_file: Some(file.clone()),
            ..Layer::default()
        };
        assert_eq!(
            layer.clone().resolve().unwrap().api_key.as_deref(),
            Some("from-the-file-0123456789")
        );
        let env = Layer {
            api_key: Some("from-the-environment-0123".into()),
            ..Layer::default()
        };
        let config = layer.clone().overridden_by(env).resolve().unwrap();
        assert_eq!(config.api_key.as_deref(), Some("from-the-environment-0123"));
        let both = Layer {
            api_key: Some("from-the-environment-0123".into()),
            ..layer
        };
        assert!(both.resolve().unwrap_err()[0].contains("not both"));
        let missing = Layer {
            api_key_file: Some(dir.path().join("nope")),
            ..Layer::default()
        };
        assert!(missing.resolve().unwrap_err()[0].starts_with("api_key_file"));
    }

    #[test]
    fn edge_settings_are_validated() {
        let layer = Layer {
            max_event_bytes: Some(2 << 20),
            max_pending_bytes: Some(1 << 20),
            secret_key: Some("too-short".into()),
            header_timeout: Some("0s".into()),
            max_connections: Some(0),
            max_auth_failures: Some(0),
            ..Layer::default()
        };
        let errors = layer.resolve().unwrap_err();
        for name in [
            "max_pending_bytes",
            "secret_key",
            "header_timeout",
            "max_connections",
            "max_auth_failures",
        ] {
            assert!(
                errors.iter().any(|e| e.starts_with(name)),
                "{name}: {errors:#?}"
            );
        }
        let ok = Layer {
            header_timeout: Some("2s".into()),
            shutdown_timeout: Some("3s".into()),
            secret_key: Some(hex::encode([7u8; 32])),
            ..Layer::default()
        }
        .resolve()
        .unwrap();
        assert_eq!(ok.http.header_timeout, Duration::from_secs(2));
        assert_eq!(ok.http.shutdown_timeout, Duration::from_secs(3));
        assert_eq!(ok.http.body_timeout, HttpLimits::default().body_timeout);
        assert!(ok.secret_key.is_some());
        assert_eq!(
            ok.secret_key_file,
            PathBuf::from("./switchyard-data/secrets.key")
        );
    }

    #[test]
    fn schedules_parse() {
        assert_eq!(
            parse_schedule("5s, 2m,1h").unwrap(),
            vec![
                Duration::from_secs(5),
                Duration::from_secs(120),
                Duration::from_secs(3600)
            ]
        );
        assert_eq!(parse_schedule("").unwrap(), Vec::<Duration>::new());
        assert_eq!(parse_schedule("none").unwrap(), Vec::<Duration>::new());
    }
}
