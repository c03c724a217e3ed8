//! `switchyard serve`: parse the service's settings, load `switchyard.toml`, set up logging,
//! bind, and hand over to [`switchyard::run`].

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use switchyard::config::Layer;

/// Shown under `switchyard serve --help`.
pub const EXAMPLE: &str = "Example:\n  SWITCHYARD_ALLOW_PRIVATE_NETWORKS=true switchyard serve --listen 127.0.0.1:8686 --data-dir ./switchyard-data";

#[derive(clap::Args)]
pub struct ServeArgs {
    /// TOML file with the same settings (snake_case keys). Used if it exists.
    #[arg(long, env = "SWITCHYARD_CONFIG", default_value = "switchyard.toml")]
    config: PathBuf,
    /// Address to bind [default: 127.0.0.1:8686]
    #[arg(long, env = "SWITCHYARD_LISTEN")]
    listen: Option<String>,
    /// Database and state folder [default: ./switchyard-data]
    #[arg(long, env = "SWITCHYARD_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Watched plugin folder (<name>.wasm) [default: <data dir>/plugins]
    #[arg(long, env = "SWITCHYARD_PLUGINS_DIR")]
    plugins_dir: Option<PathBuf>,
    /// Admin bearer key. Prefer the SWITCHYARD_API_KEY variable or --api-key-file: a key on
    /// the command line is visible to every user of the machine (ps, /proc). When no key is
    /// set, one is generated at first start, printed once, and only its hash is stored.
    #[arg(long, env = "SWITCHYARD_API_KEY", hide_env_values = true)]
    api_key: Option<String>,
    /// File whose content (surrounding whitespace trimmed) is the admin bearer key
    #[arg(long, env = "SWITCHYARD_API_KEY_FILE")]
    api_key_file: Option<PathBuf>,
    /// Key encrypting subscription secrets at rest: base64 or hex of 32 bytes (prefer the
    /// variable or --secret-key-file over the flag) [default: read from, or generated into,
    /// the key file]
    #[arg(long, env = "SWITCHYARD_SECRET_KEY", hide_env_values = true)]
    secret_key: Option<String>,
    /// File holding the secrets key; generated (mode 0600) when missing on a database without
    /// encrypted secrets [default: <data dir>/secrets.key]
    #[arg(long, env = "SWITCHYARD_SECRET_KEY_FILE")]
    secret_key_file: Option<PathBuf>,
    /// Wrong API keys answered per client IP (IPv6: per /64) per minute; past this /v1 answers
    /// 429 without checking the key [default: 10]
    #[arg(long, env = "SWITCHYARD_MAX_AUTH_FAILURES")]
    max_auth_failures: Option<u32>,
    /// Time a client has to send a request's headers, from connecting or from its first
    /// byte on a kept-alive connection [default: 10s]
    #[arg(long, env = "SWITCHYARD_HEADER_TIMEOUT")]
    header_timeout: Option<String>,
    /// Time a client has to send a request's whole body, from the end of its headers
    /// [default: 60s]
    #[arg(long, env = "SWITCHYARD_BODY_TIMEOUT")]
    body_timeout: Option<String>,
    /// A kept-alive connection with no request for this long is closed [default: 60s]
    #[arg(long, env = "SWITCHYARD_IDLE_TIMEOUT")]
    idle_timeout: Option<String>,
    /// Client connections open at once (lowered to fit the open-files limit); at the cap the
    /// longest-idle connection is closed for a new one [default: 1024]
    #[arg(long, env = "SWITCHYARD_MAX_CONNECTIONS")]
    max_connections: Option<usize>,
    /// On shutdown, requests in flight get this long before their connections are closed
    /// [default: 10s]
    #[arg(long, env = "SWITCHYARD_SHUTDOWN_TIMEOUT")]
    shutdown_timeout: Option<String>,
    /// Let deliveries reach loopback/private addresses and plain http:// (development and
    /// tests only) [default: false]
    #[arg(long, env = "SWITCHYARD_ALLOW_PRIVATE_NETWORKS")]
    allow_private_networks: Option<bool>,
    /// Delays between attempts [default: 5s,5m,30m,2h,5h,10h,14h,20h,24h]
    #[arg(long, env = "SWITCHYARD_RETRY_SCHEDULE")]
    retry_schedule: Option<String>,
    /// Timeout of one delivery request [default: 10s]
    #[arg(long, env = "SWITCHYARD_DELIVERY_TIMEOUT")]
    delivery_timeout: Option<String>,
    /// Deliveries in flight at once [default: 128]
    #[arg(long, env = "SWITCHYARD_MAX_IN_FLIGHT")]
    max_in_flight: Option<usize>,
    /// Deliveries in flight to one subscription at once [default: 32]
    #[arg(long, env = "SWITCHYARD_MAX_IN_FLIGHT_PER_SUBSCRIPTION")]
    max_in_flight_per_subscription: Option<usize>,
    /// Deliveries in flight for one tenant at once, over all its subscriptions [default: 64]
    #[arg(long, env = "SWITCHYARD_MAX_IN_FLIGHT_PER_TENANT")]
    max_in_flight_per_tenant: Option<usize>,
    /// Disable a subscription that fails without any success for this long [default: 5d]
    #[arg(long, env = "SWITCHYARD_DISABLE_AFTER_FAILING_FOR")]
    disable_after_failing_for: Option<String>,
    /// How long a rotated-out secret keeps signing [default: 24h]
    #[arg(long, env = "SWITCHYARD_ROTATION_GRACE")]
    rotation_grace: Option<String>,
    /// Largest accepted event body in bytes [default: 1048576]
    #[arg(long, env = "SWITCHYARD_MAX_EVENT_BYTES")]
    max_event_bytes: Option<usize>,
    /// Events waiting for their commit at once; past this, POST /v1/events answers 429 with
    /// Retry-After [default: 4096]
    #[arg(long, env = "SWITCHYARD_MAX_PENDING_EVENTS")]
    max_pending_events: Option<usize>,
    /// Bytes of events waiting for their commit at once; past this, POST /v1/events answers
    /// 429 with Retry-After [default: 67108864]
    #[arg(long, env = "SWITCHYARD_MAX_PENDING_BYTES")]
    max_pending_bytes: Option<usize>,
    /// Wall-clock limit of one plugin call [default: 100ms]
    #[arg(long, env = "SWITCHYARD_PLUGIN_TIMEOUT")]
    plugin_timeout: Option<String>,
    /// Memory limit of one plugin call in MiB [default: 32]
    #[arg(long, env = "SWITCHYARD_PLUGIN_MEMORY_MB")]
    plugin_memory_mb: Option<usize>,
    /// The longest deadline a plugin may ask for at upload (`?timeout_ms=`) [default: 1s]
    #[arg(long, env = "SWITCHYARD_PLUGIN_MAX_TIMEOUT")]
    plugin_max_timeout: Option<String>,
    /// The most memory in MiB a plugin may ask for at upload (`?memory_mb=`) [default: 256]
    #[arg(long, env = "SWITCHYARD_PLUGIN_MAX_MEMORY_MB")]
    plugin_max_memory_mb: Option<usize>,
    /// Largest plugin component in MiB (uploads and the plugins folder) [default: 64]
    #[arg(long, env = "SWITCHYARD_PLUGIN_MAX_COMPONENT_MB")]
    plugin_max_component_mb: Option<usize>,
    /// MiB at the start of each plugin memory kept resident between calls (faster calls of
    /// big plugins, more resident memory) [default: 2]
    #[arg(long, env = "SWITCHYARD_PLUGIN_KEEP_RESIDENT_MB")]
    plugin_keep_resident_mb: Option<usize>,
    /// How long an upload waits for its compile before answering 202 `compiling`
    /// (`?wait=true` waits to the end) [default: 2s]
    #[arg(long, env = "SWITCHYARD_PLUGIN_UPLOAD_WAIT")]
    plugin_upload_wait: Option<String>,
    /// How long start-up waits for the plugins folder to load before serving; plugins still
    /// compiling after it show `compiling` and their deliveries wait for them [default: 5s]
    #[arg(long, env = "SWITCHYARD_PLUGIN_STARTUP_WAIT")]
    plugin_startup_wait: Option<String>,
    /// Wall-clock limit of one plugin compile; a component past it is refused (422
    /// compile_budget_exceeded) [default: 60s]
    #[arg(long, env = "SWITCHYARD_PLUGIN_COMPILE_TIMEOUT")]
    plugin_compile_timeout: Option<String>,
    /// Memory limit of one plugin compile in MiB (the compiler runs in a child process)
    /// [default: 2048]
    #[arg(long, env = "SWITCHYARD_PLUGIN_COMPILE_MEMORY_MB")]
    plugin_compile_memory_mb: Option<u64>,
    /// Follow symbolic links in the plugins folder that lead out of it [default: false]
    #[arg(long, env = "SWITCHYARD_PLUGINS_FOLLOW_SYMLINKS")]
    plugins_follow_symlinks: Option<bool>,
    /// Write the bundled plugins (slack, discord, filter, reshape) into a newly created
    /// plugins folder [default: true]
    #[arg(long, env = "SWITCHYARD_BUNDLED_PLUGINS")]
    bundled_plugins: Option<bool>,
    /// How long a leased delivery stays in flight before it is queued again; must hold twice
    /// delivery_timeout + plugin_timeout, plus 5s [default: 5m]
    #[arg(long, env = "SWITCHYARD_LEASE")]
    lease: Option<String>,
    /// Delete succeeded, skipped and cancelled deliveries (with their attempts, and their
    /// events once no delivery is left) this long after they finished [default: 7d]
    #[arg(long, env = "SWITCHYARD_RETENTION_FINISHED")]
    retention_finished: Option<String>,
    /// Delete failed deliveries (dead letters) this long after they failed [default: 30d]
    #[arg(long, env = "SWITCHYARD_RETENTION_FAILED")]
    retention_failed: Option<String>,
    /// An idempotency key answers with its first event for this long; after it the same key
    /// creates a new event; at most retention_finished [default: 24h]
    #[arg(long, env = "SWITCHYARD_IDEMPOTENCY_KEY_TTL")]
    idempotency_key_ttl: Option<String>,
}

impl ServeArgs {
    fn layer(self) -> Layer {
        Layer {
            listen: self.listen,
            data_dir: self.data_dir,
            plugins_dir: self.plugins_dir,
            api_key: self.api_key,
            api_key_file: self.api_key_file,
            secret_key: self.secret_key,
            secret_key_file: self.secret_key_file,
            max_auth_failures: self.max_auth_failures,
            header_timeout: self.header_timeout,
            body_timeout: self.body_timeout,
            idle_timeout: self.idle_timeout,
            max_connections: self.max_connections,
            shutdown_timeout: self.shutdown_timeout,
            max_pending_bytes: self.max_pending_bytes,
            allow_private_networks: self.allow_private_networks,
            retry_schedule: self.retry_schedule,
            delivery_timeout: self.delivery_timeout,
            max_in_flight: self.max_in_flight,
            max_in_flight_per_subscription: self.max_in_flight_per_subscription,
            max_in_flight_per_tenant: self.max_in_flight_per_tenant,
            disable_after_failing_for: self.disable_after_failing_for,
            rotation_grace: self.rotation_grace,
            max_event_bytes: self.max_event_bytes,
            max_pending_events: self.max_pending_events,
            plugin_timeout: self.plugin_timeout,
            plugin_memory_mb: self.plugin_memory_mb,
            plugin_max_timeout: self.plugin_max_timeout,
            plugin_max_memory_mb: self.plugin_max_memory_mb,
            plugin_max_component_mb: self.plugin_max_component_mb,
            plugin_upload_wait: self.plugin_upload_wait,
            plugin_startup_wait: self.plugin_startup_wait,
            plugin_keep_resident_mb: self.plugin_keep_resident_mb,
            plugin_compile_timeout: self.plugin_compile_timeout,
            plugin_compile_memory_mb: self.plugin_compile_memory_mb,
            plugins_follow_symlinks: self.plugins_follow_symlinks,
            bundled_plugins: self.bundled_plugins,
            lease: self.lease,
            retention_finished: self.retention_finished,
            retention_failed: self.retention_failed,
            idempotency_key_ttl: self.idempotency_key_ttl,
        }
    }
}

/// Runs the service until ctrl-c or SIGTERM.
pub fn run(args: ServeArgs) -> ExitCode {
    match serve(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("Error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn serve(args: ServeArgs) -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,tower_http=warn".into()),
        )
        .init();
    warn_about_keys_on_the_command_line(std::env::args_os());
    let file = if args.config.exists() {
        Layer::from_toml_file(&args.config).map_err(anyhow::Error::msg)?
    } else {
        Layer::default()
    };
    let mut config = file
        .overridden_by(args.layer())
        .resolve()
        .map_err(|errors| {
            anyhow::anyhow!("invalid configuration:\n  - {}", errors.join("\n  - "))
        })?;
    // Plugins compile in a child process of this binary, under the compile budget.
    config.plugin_compiler =
        Some(std::env::current_exe().context("finding the switchyard binary to compile plugins")?);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("binding {}", config.listen))?;
        switchyard::run(listener, config, shutdown_signal())
            .await
            .context("switchyard stopped with an error")
    })
}

/// Keys given as flags show in `ps` and `/proc/<pid>/cmdline` to every user of the machine.
fn warn_about_keys_on_the_command_line(args: impl Iterator<Item = std::ffi::OsString>) {
    for arg in args {
        let Some(arg) = arg.to_str() else { continue };
        for (flag, instead) in [
            ("--api-key", "SWITCHYARD_API_KEY or --api-key-file"),
            ("--secret-key", "SWITCHYARD_SECRET_KEY or --secret-key-file"),
        ] {
            if arg == flag || arg.starts_with(&format!("{flag}=")) {
                tracing::warn!(
                    "{flag} was given on the command line, where every user of this machine can read it (ps, /proc); use {instead} instead"
                );
            }
        }
    }
}

/// Resolves on ctrl-c or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %e, "cannot listen for ctrl-c");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
    tracing::info!("shutdown requested");
}
