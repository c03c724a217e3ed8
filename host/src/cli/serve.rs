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
    /// Admin bearer key. When unset, one is generated at first start, printed once, and
    /// only its hash is stored.
    #[arg(long, env = "SWITCHYARD_API_KEY", hide_env_values = true)]
    api_key: Option<String>,
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
    /// Wall-clock limit of one plugin call [default: 100ms]
    #[arg(long, env = "SWITCHYARD_PLUGIN_TIMEOUT")]
    plugin_timeout: Option<String>,
    /// Memory limit of one plugin call in MiB [default: 32]
    #[arg(long, env = "SWITCHYARD_PLUGIN_MEMORY_MB")]
    plugin_memory_mb: Option<usize>,
    /// Write the bundled plugins (slack, discord, filter, reshape) into a newly created
    /// plugins folder [default: true]
    #[arg(long, env = "SWITCHYARD_BUNDLED_PLUGINS")]
    bundled_plugins: Option<bool>,
    /// How long a leased delivery stays in flight before it is queued again; must hold twice
    /// delivery_timeout + plugin_timeout, plus 5s [default: 5m]
    #[arg(long, env = "SWITCHYARD_LEASE")]
    lease: Option<String>,
}

impl ServeArgs {
    fn layer(self) -> Layer {
        Layer {
            listen: self.listen,
            data_dir: self.data_dir,
            plugins_dir: self.plugins_dir,
            api_key: self.api_key,
            allow_private_networks: self.allow_private_networks,
            retry_schedule: self.retry_schedule,
            delivery_timeout: self.delivery_timeout,
            max_in_flight: self.max_in_flight,
            max_in_flight_per_subscription: self.max_in_flight_per_subscription,
            disable_after_failing_for: self.disable_after_failing_for,
            rotation_grace: self.rotation_grace,
            max_event_bytes: self.max_event_bytes,
            max_pending_events: self.max_pending_events,
            plugin_timeout: self.plugin_timeout,
            plugin_memory_mb: self.plugin_memory_mb,
            bundled_plugins: self.bundled_plugins,
            lease: self.lease,
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
    let file = if args.config.exists() {
        Layer::from_toml_file(&args.config).map_err(anyhow::Error::msg)?
    } else {
        Layer::default()
    };
    let config = file
        .overridden_by(args.layer())
        .resolve()
        .map_err(|errors| {
            anyhow::anyhow!("invalid configuration:\n  - {}", errors.join("\n  - "))
        })?;
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
