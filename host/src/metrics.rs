//! Prometheus metrics (`GET /metrics`): what came in, what went out, how long it took.

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::plugins::PluginStats;

type Labels = Vec<(&'static str, &'static str)>;

/// Reads the plugin counters at scrape time.
pub type PluginStatsSource = Box<dyn Fn() -> PluginStats + Send + Sync>;

/// The service's metrics. Cheap to clone (every metric is an `Arc` inside).
#[derive(Clone)]
pub struct Metrics {
    registry: std::sync::Arc<Registry>,
    events_ingested: Counter,
    deliveries: Family<Labels, Counter>,
    attempts: Family<Labels, Counter>,
    attempt_latency: Histogram,
    plugin_duration: Histogram,
    queue_pending: Gauge,
    queue_delivering: Gauge,
    results_stale: Counter,
    results_unrecorded: Counter,
    leases_returned: Counter,
    handed_off: Counter,
    retention_deleted: Family<Labels, Counter>,
    retention_batch: Histogram,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Registers every metric.
    pub fn new() -> Self {
        Self::build(None)
    }

    /// Registers every metric, with the plugin registry's counters read from `plugins` at
    /// each scrape (file reads, compiles).
    pub fn with_plugin_stats(plugins: PluginStatsSource) -> Self {
        Self::build(Some(plugins))
    }

    fn build(plugins: Option<PluginStatsSource>) -> Self {
        let mut registry = Registry::with_prefix("switchyard");
        if let Some(plugins) = plugins {
            registry.register_collector(Box::new(PluginCollector(plugins)));
        }
        let events_ingested = Counter::default();
        let deliveries = Family::<Labels, Counter>::default();
        let attempts = Family::<Labels, Counter>::default();
        let attempt_latency = Histogram::new(exponential_buckets(0.001, 2.0, 15));
        let plugin_duration = Histogram::new(exponential_buckets(0.000_01, 2.0, 16));
        let queue_pending = Gauge::default();
        let queue_delivering = Gauge::default();
        let results_stale = Counter::default();
        let results_unrecorded = Counter::default();
        let leases_returned = Counter::default();
        let handed_off = Counter::default();
        registry.register(
            "deliveries_handed_off",
            "Fresh deliveries inserted already leased and handed to the dispatcher in memory (the rest are leased from the queue)",
            handed_off.clone(),
        );
        let retention_deleted = Family::<Labels, Counter>::default();
        // 0.5 ms to about 8 s: a batch of 500 deliveries takes a few milliseconds.
        let retention_batch = Histogram::new(exponential_buckets(0.000_5, 2.0, 15));
        registry.register(
            "retention_deleted",
            "Rows the retention job deleted, by kind (deliveries, attempts, events)",
            retention_deleted.clone(),
        );
        registry.register(
            "retention_batch_duration_seconds",
            "Time of one retention batch (one write transaction on the writer ingest also uses)",
            retention_batch.clone(),
        );
        registry.register(
            "results_stale",
            "Attempt results ignored because their lease had been taken back (it ran out, or was given back)",
            results_stale.clone(),
        );
        registry.register(
            "results_unrecorded",
            "Attempt results the database refused; their deliveries were failed with the reason",
            results_unrecorded.clone(),
        );
        registry.register(
            "leases_returned",
            "Leased deliveries given back unattempted (subscription disabled, or too little lease left)",
            leases_returned.clone(),
        );
        registry.register(
            "events_ingested",
            "Events accepted (202)",
            events_ingested.clone(),
        );
        registry.register(
            "deliveries_finished",
            "Deliveries that reached a final status, by outcome",
            deliveries.clone(),
        );
        registry.register(
            "attempts",
            "Delivery attempts, by outcome",
            attempts.clone(),
        );
        registry.register(
            "attempt_latency_seconds",
            "Time from sending a delivery to its response",
            attempt_latency.clone(),
        );
        registry.register(
            "plugin_duration_seconds",
            "Time of one plugin call (instantiate + transform)",
            plugin_duration.clone(),
        );
        registry.register(
            "queue_pending",
            "Deliveries waiting for an attempt",
            queue_pending.clone(),
        );
        registry.register(
            "queue_delivering",
            "Deliveries with an attempt in flight",
            queue_delivering.clone(),
        );
        Self {
            registry: std::sync::Arc::new(registry),
            events_ingested,
            deliveries,
            attempts,
            attempt_latency,
            plugin_duration,
            queue_pending,
            queue_delivering,
            results_stale,
            results_unrecorded,
            leases_returned,
            handed_off,
            retention_deleted,
            retention_batch,
        }
    }

    /// Counts what one retention batch deleted and observes how long it held the writer.
    pub fn retention_batch(&self, deliveries: usize, attempts: usize, events: usize, seconds: f64) {
        for (kind, n) in [
            ("deliveries", deliveries),
            ("attempts", attempts),
            ("events", events),
        ] {
            // Created at the first batch even when it deleted none: the series exist from then.
            self.retention_deleted
                .get_or_create(&vec![("kind", kind)])
                .inc_by(u64::try_from(n).unwrap_or(u64::MAX));
        }
        self.retention_batch.observe(seconds);
    }

    /// Counts results ignored because their lease had been taken back.
    pub fn results_stale(&self, n: usize) {
        if n > 0 {
            self.results_stale
                .inc_by(u64::try_from(n).unwrap_or(u64::MAX));
        }
    }

    /// Counts fresh deliveries handed to the dispatcher at ingest.
    pub fn handed_off(&self, n: usize) {
        self.handed_off.inc_by(u64::try_from(n).unwrap_or(u64::MAX));
    }

    /// Counts a result the database refused.
    pub fn result_unrecorded(&self) {
        self.results_unrecorded.inc();
    }

    /// Counts a lease given back unattempted.
    pub fn lease_returned(&self) {
        self.leases_returned.inc();
    }

    /// Counts accepted events.
    pub fn event_ingested(&self, n: u64) {
        self.events_ingested.inc_by(n);
    }

    /// Counts a delivery reaching a final status.
    pub fn delivery_finished(&self, outcome: &'static str) {
        self.deliveries
            .get_or_create(&vec![("outcome", outcome)])
            .inc();
    }

    /// Counts an attempt and observes its latency.
    pub fn attempt(&self, outcome: &'static str, latency_seconds: Option<f64>) {
        self.attempts
            .get_or_create(&vec![("outcome", outcome)])
            .inc();
        if let Some(latency) = latency_seconds {
            self.attempt_latency.observe(latency);
        }
    }

    /// Observes a plugin call's duration.
    pub fn plugin_call(&self, seconds: f64) {
        self.plugin_duration.observe(seconds);
    }

    /// The Prometheus text exposition, with the queue depth as of now.
    pub fn render(&self, pending: i64, delivering: i64) -> String {
        self.queue_pending.set(pending);
        self.queue_delivering.set(delivering);
        let mut out = String::new();
        if let Err(e) = encode(&mut out, &self.registry) {
            tracing::error!(error = %e, "encoding metrics failed");
        }
        out
    }
}

/// The plugin registry's counters, read when `/metrics` is scraped.
struct PluginCollector(PluginStatsSource);

impl std::fmt::Debug for PluginCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PluginCollector")
    }
}

impl prometheus_client::collector::Collector for PluginCollector {
    fn encode(
        &self,
        mut encoder: prometheus_client::encoding::DescriptorEncoder,
    ) -> Result<(), std::fmt::Error> {
        use prometheus_client::encoding::EncodeMetric;
        use prometheus_client::metrics::counter::ConstCounter;
        use prometheus_client::metrics::gauge::ConstGauge;
        let stats = (self.0)();
        let reads = ConstCounter::new(stats.file_reads);
        reads.encode(encoder.encode_descriptor(
            "plugin_file_reads",
            "Plugin files opened for reading (an idle service reads none)",
            None,
            reads.metric_type(),
        )?)?;
        let compiles = ConstCounter::new(stats.compiles);
        compiles.encode(encoder.encode_descriptor(
            "plugin_compiles",
            "Plugin compiles started",
            None,
            compiles.metric_type(),
        )?)?;
        let compiling = ConstGauge::new(i64::try_from(stats.compiling).unwrap_or(i64::MAX));
        compiling.encode(encoder.encode_descriptor(
            "plugin_compiles_running",
            "Plugin compiles running now",
            None,
            compiling.metric_type(),
        )?)?;
        let code_loads = ConstCounter::new(stats.code_loads);
        code_loads.encode(encoder.encode_descriptor(
            "plugin_code_loads",
            "Plugin versions whose compiled code a call brought into memory (the first call of each)",
            None,
            code_loads.metric_type(),
        )?)?;
        let code_loaded = ConstGauge::new(i64::try_from(stats.code_loaded).unwrap_or(i64::MAX));
        code_loaded.encode(encoder.encode_descriptor(
            "plugin_code_loaded",
            "Plugin versions whose compiled code is in memory now (those that ran, not those installed)",
            None,
            code_loaded.metric_type(),
        )?)?;
        let uploading = ConstGauge::new(i64::try_from(stats.uploading).unwrap_or(i64::MAX));
        uploading.encode(encoder.encode_descriptor(
            "plugin_uploads_in_progress",
            "Plugin uploads holding one of the few upload turns now",
            None,
            uploading.metric_type(),
        )?)?;
        Ok(())
    }
}
