//! Service configuration: one documented set of defaults, overridden by `switchyard.toml`,
//! then by `SWITCHYARD_*` environment variables, then by command-line flags. Validation
//! reports every bad field at once.
//!
//! [`Config`] (here) is what the service runs with, its defaults in [`Config::with_data_dir`];
//! [`Layer`] (`layer`) is one layer of settings as text, and how a later one overrides an
//! earlier; `resolve` applies a layer to the defaults and validates it.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::clock::Clock;
use crate::plugins::{CompileBudget, Limits};
use crate::server::HttpLimits;
use crate::store::RetentionPolicy;

mod layer;
mod resolve;

pub use layer::Layer;
pub use resolve::parse_schedule;

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
    /// How long start-up waits for the plugins folder to load before it serves
    /// (`plugin_startup_wait`): plugins still compiling after it show `compiling`, and
    /// their deliveries wait for them (no attempt is made or failed).
    pub plugin_startup_wait: Duration,
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
            plugin_startup_wait: Duration::from_secs(5),
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

#[cfg(test)]
mod tests;
