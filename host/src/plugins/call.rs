//! One plugin call: a fresh `Store` with a deny-all WASI context, a memory limiter, a
//! deadline, captured logs; then the outcome checked against the output limits.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use wasmtime::component::{Linker, ResourceTable};
use wasmtime::{ResourceLimiter, Store, Trap, UpdateDeadline};
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{HostMonotonicClock, HostWallClock, WasiCtx, WasiCtxView, WasiView};

use super::bindings::Transformer;
use super::bindings::switchyard::plugin::host::{self, Level};
use super::bindings::switchyard::plugin::types;
use super::limits::{MAX_RANDOM_BYTES, bound_text};
use super::runtime::{LoadedPlugin, Runtime};
use super::{Limits, PluginError};

/// Bytes of stdout/stderr kept per call (a panic message fits easily).
const PIPE_BYTES: usize = 16 << 10;

/// The event as a plugin sees it.
#[derive(Debug, Clone)]
pub struct PluginEvent {
    /// `evt_…`, also the `webhook-id`.
    pub id: String,
    /// e.g. `post.published`.
    pub event_type: String,
    /// Unix seconds.
    pub timestamp: i64,
    /// `sub_…`, or `dry-run`.
    pub subscription_id: String,
    /// The event data as JSON text.
    pub payload: String,
}

/// A request the plugin asked to deliver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginRequest {
    /// Body bytes, sent as they are.
    pub body: Vec<u8>,
    /// The body's content type.
    pub content_type: String,
    /// Extra headers (already checked: valid and not reserved).
    pub headers: Vec<(String, String)>,
}

/// What a successful call decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Deliver this request.
    Deliver(PluginRequest),
    /// Do not deliver; the reason.
    Skip(String),
}

/// A line the plugin logged (through `host.log`, or on stdout/stderr).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LogLine {
    /// `trace`…`error`, or `stdout` / `stderr`.
    pub level: &'static str,
    /// The text (cut to [`MAX_PLUGIN_TEXT`](super::MAX_PLUGIN_TEXT)).
    pub message: String,
}

/// The result of one call, with what was logged and how long it took either way.
#[derive(Debug)]
pub struct CallReport {
    /// The decision, or why there is none.
    pub result: Result<Decision, PluginError>,
    /// Logged lines, bounded by [`Limits::max_log_lines`] / [`Limits::max_log_bytes`].
    pub logs: Vec<LogLine>,
    /// Lines logged beyond the bounds, counted but not kept.
    pub dropped_logs: usize,
    /// Wall time of instantiate + call.
    pub duration: Duration,
}

impl CallReport {
    /// A call that failed before the plugin ran.
    fn failed(error: PluginError) -> Self {
        Self {
            result: Err(error),
            logs: Vec::new(),
            dropped_logs: 0,
            duration: Duration::ZERO,
        }
    }
}

/// Per-call host state. Dropped with the store after every call.
pub struct State {
    wasi: WasiCtx,
    table: ResourceTable,
    limiter: MemoryLimiter,
    logs: LogBuffer,
    stdout: MemoryOutputPipe,
    stderr: MemoryOutputPipe,
}

impl State {
    fn new(limits: &Limits) -> Self {
        let stdout = MemoryOutputPipe::new(PIPE_BYTES);
        let stderr = MemoryOutputPipe::new(PIPE_BYTES);
        // No preopens (no filesystem), no env, no args, sockets and name lookup denied, and
        // clocks frozen at zero: a plugin learns time only from the event. Random bytes are
        // allocated by the host before they are copied in, so one request is capped.
        let random_cap = MAX_RANDOM_BYTES.min(limits.memory_bytes);
        let wasi = WasiCtx::builder()
            .stdout(stdout.clone())
            .stderr(stderr.clone())
            .wall_clock(FrozenClock)
            .monotonic_clock(FrozenClock)
            .max_random_size(u64::try_from(random_cap).unwrap_or(u64::MAX))
            .allow_blocking_current_thread(false)
            .build();
        Self {
            wasi,
            table: ResourceTable::new(),
            limiter: MemoryLimiter {
                limit: limits.memory_bytes,
                used: 0,
                denied: false,
            },
            logs: LogBuffer::new(limits),
            stdout,
            stderr,
        }
    }
}

impl WasiView for State {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl host::Host for State {
    fn log(&mut self, level: Level, message: String) {
        self.logs.push(level_name(level), message);
    }
}

impl types::Host for State {}

/// Links the world's own import (`host.log`) and WASI p2 (which Rust's std imports even when a
/// plugin never uses it; the context above makes it capability-free).
pub(super) fn add_to_linker(linker: &mut Linker<State>) -> Result<(), PluginError> {
    let link_err =
        |e: wasmtime::Error| PluginError::Compile(format!("linking host functions: {e:#}"));
    Transformer::add_to_linker::<State, wasmtime::component::HasSelf<State>>(linker, |s| s)
        .map_err(link_err)?;
    wasmtime_wasi::p2::add_to_linker_async(linker).map_err(link_err)?;
    Ok(())
}

impl Runtime {
    /// Runs `plugin`'s `transform` on one event with the subscription's config (JSON text),
    /// on a plugin thread.
    pub async fn transform(
        &self,
        plugin: &Arc<LoadedPlugin>,
        event: PluginEvent,
        config: &str,
    ) -> CallReport {
        let limits = self.limits.clone();
        if event.payload.len() > limits.input_bytes {
            let err = PluginError::InputTooLarge {
                size: event.payload.len(),
                limit: limits.input_bytes,
            };
            return CallReport::failed(err);
        }
        let event = types::Event {
            id: event.id,
            event_type: event.event_type,
            timestamp: event.timestamp,
            subscription_id: event.subscription_id,
            payload: event.payload,
        };
        let (runtime, plugin, config) = (self.clone(), plugin.clone(), config.to_owned());
        let call = async move {
            runtime
                .run(&plugin, async |instance, store| {
                    instance
                        .switchyard_plugin_transform()
                        .call_transform(store, &event, &config)
                        .await
                })
                .await
                .map_result(|outcome| check_outcome(outcome, &limits))
        };
        self.executor
            .run(call)
            .await
            .unwrap_or_else(CallReport::failed)
    }

    /// Runs `plugin`'s `validate-config` on a subscription's config (JSON text), on a plugin
    /// thread.
    pub async fn validate_config(
        &self,
        plugin: &Arc<LoadedPlugin>,
        config: &str,
    ) -> Result<(), PluginError> {
        let (runtime, plugin, config) = (self.clone(), plugin.clone(), config.to_owned());
        let call = async move {
            runtime
                .run(&plugin, async |instance, store| {
                    instance
                        .switchyard_plugin_transform()
                        .call_validate_config(store, &config)
                        .await
                })
                .await
                .result
        };
        self.executor.run(call).await?.map_err(PluginError::bounded)
    }

    /// Instantiates `plugin` in a fresh store and runs `call` under the limits; turns traps,
    /// timeouts and guest errors into [`PluginError`]s.
    async fn run<R, F>(&self, plugin: &LoadedPlugin, call: F) -> RawReport<R>
    where
        F: AsyncFnOnce(&Transformer, &mut Store<State>) -> wasmtime::Result<Result<R, String>>,
    {
        let limits = &self.limits;
        // Holds room in the pool until the store is dropped at the end of this function; a
        // call waits for it at most its deadline.
        let _admission = match self.gate.admit(plugin.needs, limits.deadline).await {
            Ok(admission) => admission,
            Err(error) => {
                return RawReport {
                    result: Err(error),
                    logs: Vec::new(),
                    dropped_logs: 0,
                    duration: Duration::ZERO,
                };
            }
        };
        let mut store = Store::new(&self.engine, State::new(limits));
        store.limiter(|state| &mut state.limiter);
        let start = Instant::now();
        let budget = limits.deadline;
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(move |_| {
            if start.elapsed() >= budget {
                Ok(UpdateDeadline::Interrupt)
            } else {
                Ok(UpdateDeadline::YieldCustom(
                    1,
                    Box::pin(tokio::task::yield_now()),
                ))
            }
        });
        // Belt and braces: a call stuck somewhere epochs cannot reach is dropped (cancelled).
        let outer = budget + Duration::from_millis(250);
        let outcome = tokio::time::timeout(outer, async {
            let instance = plugin.pre.instantiate_async(&mut store).await?;
            call(&instance, &mut store).await
        })
        .await;
        let duration = start.elapsed();
        let state = store.into_data();
        let result = match outcome {
            Err(_elapsed) => Err(PluginError::Timeout(budget)),
            Ok(Ok(Ok(value))) => Ok(value),
            Ok(Ok(Err(message))) => Err(PluginError::Guest(bound_text(message))),
            Ok(Err(err)) => Err(classify(&err, &state, limits).bounded()),
        };
        let (logs, dropped_logs) = state.logs.finish(&state.stdout, &state.stderr);
        RawReport {
            result,
            logs,
            dropped_logs,
            duration,
        }
    }
}

struct RawReport<R> {
    result: Result<R, PluginError>,
    logs: Vec<LogLine>,
    dropped_logs: usize,
    duration: Duration,
}

impl<R> RawReport<R> {
    fn map_result(self, f: impl FnOnce(R) -> Result<Decision, PluginError>) -> CallReport {
        CallReport {
            result: self.result.and_then(f),
            logs: self.logs,
            dropped_logs: self.dropped_logs,
            duration: self.duration,
        }
    }
}

/// Names the failure: the memory limiter's refusal wins (the guest's allocator then aborts
/// with an `unreachable`), then the trap code, then whatever wasmtime said.
fn classify(err: &wasmtime::Error, state: &State, limits: &Limits) -> PluginError {
    let stderr = pipe_text(&state.stderr);
    if state.limiter.denied {
        return PluginError::OutOfMemory {
            limit: limits.memory_bytes,
            stderr,
        };
    }
    match err.downcast_ref::<Trap>() {
        Some(Trap::Interrupt) => PluginError::Timeout(limits.deadline),
        Some(Trap::StackOverflow) => PluginError::StackOverflow,
        Some(trap) => PluginError::Trap {
            message: trap.to_string(),
            stderr,
        },
        None => PluginError::Trap {
            message: format!("{err:#}"),
            stderr,
        },
    }
}

/// Applies the output limits and header rules to what the plugin returned.
fn check_outcome(outcome: types::Outcome, limits: &Limits) -> Result<Decision, PluginError> {
    let delivery = match outcome {
        types::Outcome::Skip(reason) => return Ok(Decision::Skip(bound_text(reason))),
        types::Outcome::Deliver(delivery) => delivery,
    };
    if delivery.body.len() > limits.output_bytes {
        return Err(PluginError::OutputTooLarge {
            size: delivery.body.len(),
            limit: limits.output_bytes,
        });
    }
    if delivery.headers.len() > limits.max_headers {
        return Err(PluginError::InvalidHeader(format!(
            "{} headers, more than the limit of {}",
            delivery.headers.len(),
            limits.max_headers
        )));
    }
    for (name, value) in &delivery.headers {
        check_header(name, value)?;
    }
    let content_type = if delivery.content_type.is_empty() {
        "application/octet-stream".to_owned()
    } else {
        check_header_value("content-type", &delivery.content_type)?;
        delivery.content_type
    };
    let headers = delivery
        .headers
        .into_iter()
        .map(|(n, v)| (n.to_ascii_lowercase(), v))
        .collect();
    Ok(Decision::Deliver(PluginRequest {
        body: delivery.body,
        content_type,
        headers,
    }))
}

fn check_header(name: &str, value: &str) -> Result<(), PluginError> {
    let lower = name.to_ascii_lowercase();
    if axum::http::HeaderName::from_bytes(lower.as_bytes()).is_err() {
        return Err(PluginError::InvalidHeader(format!(
            "{name:?} is not a valid header name"
        )));
    }
    if crate::net::is_host_header(&lower) {
        return Err(PluginError::InvalidHeader(format!(
            "{name:?} is set by the host"
        )));
    }
    check_header_value(name, value)
}

fn check_header_value(name: &str, value: &str) -> Result<(), PluginError> {
    if value.len() > 8192 || axum::http::HeaderValue::from_str(value).is_err() {
        return Err(PluginError::InvalidHeader(format!(
            "the value of {name:?} is not a valid header value"
        )));
    }
    Ok(())
}

/// Grants memory up to the cap, counted over every memory of the instance (a component may
/// have several, each created and grown through here), and remembers a refusal, so a guest
/// that then aborts is reported as out of memory rather than as an anonymous trap.
struct MemoryLimiter {
    limit: usize,
    /// Bytes of all memories of this store so far.
    used: usize,
    denied: bool,
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _max: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let growth = desired.saturating_sub(current);
        let total = self.used.saturating_add(growth);
        let allowed = total <= self.limit;
        if allowed {
            self.used = total;
        }
        self.denied |= !allowed;
        Ok(allowed)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _max: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 100_000)
    }
}

/// A clock stuck at zero: plugins are pure functions of (event, config).
struct FrozenClock;

impl HostWallClock for FrozenClock {
    fn resolution(&self) -> Duration {
        Duration::from_secs(1)
    }
    fn now(&self) -> Duration {
        Duration::ZERO
    }
}

impl HostMonotonicClock for FrozenClock {
    fn resolution(&self) -> u64 {
        1_000_000_000
    }
    fn now(&self) -> u64 {
        0
    }
}

/// Keeps the first lines a plugin logs, within the configured bounds, and counts the rest.
struct LogBuffer {
    lines: Vec<LogLine>,
    bytes: usize,
    dropped: usize,
    max_lines: usize,
    max_bytes: usize,
}

impl LogBuffer {
    fn new(limits: &Limits) -> Self {
        Self {
            lines: Vec::new(),
            bytes: 0,
            dropped: 0,
            max_lines: limits.max_log_lines,
            max_bytes: limits.max_log_bytes,
        }
    }

    fn push(&mut self, level: &'static str, message: String) {
        let message = bound_text(message);
        if self.lines.len() >= self.max_lines || self.bytes + message.len() > self.max_bytes {
            self.dropped += 1;
            return;
        }
        self.bytes += message.len();
        self.lines.push(LogLine { level, message });
    }

    /// Appends what the plugin printed on stdout/stderr, one line each.
    fn finish(
        mut self,
        stdout: &MemoryOutputPipe,
        stderr: &MemoryOutputPipe,
    ) -> (Vec<LogLine>, usize) {
        for (level, pipe) in [("stdout", stdout), ("stderr", stderr)] {
            for line in pipe_text(pipe).lines().filter(|l| !l.trim().is_empty()) {
                self.push(level, line.to_owned());
            }
        }
        (self.lines, self.dropped)
    }
}

fn pipe_text(pipe: &MemoryOutputPipe) -> String {
    String::from_utf8_lossy(&pipe.contents()).into_owned()
}

fn level_name(level: Level) -> &'static str {
    match level {
        Level::Trace => "trace",
        Level::Debug => "debug",
        Level::Info => "info",
        Level::Warn => "warn",
        Level::Error => "error",
    }
}

#[cfg(test)]
mod tests {
    use super::super::MAX_PLUGIN_TEXT;
    use super::*;

    fn delivery(headers: Vec<(&str, &str)>, body: usize) -> types::Outcome {
        types::Outcome::Deliver(types::Delivery {
            body: vec![b'x'; body],
            content_type: "text/plain".into(),
            headers: headers
                .into_iter()
                .map(|(n, v)| (n.to_owned(), v.to_owned()))
                .collect(),
        })
    }

    #[test]
    fn refuses_reserved_and_invalid_headers() {
        let limits = Limits::default();
        for name in [
            "webhook-signature",
            "Webhook-Id",
            "content-length",
            "Host",
            "switchyard-event-type",
        ] {
            let res = check_outcome(delivery(vec![(name, "x")], 1), &limits);
            assert!(
                matches!(res, Err(PluginError::InvalidHeader(_))),
                "{name} must be refused"
            );
        }
        let res = check_outcome(delivery(vec![("bad name", "x")], 1), &limits);
        assert!(matches!(res, Err(PluginError::InvalidHeader(_))));
        let res = check_outcome(delivery(vec![("x-ok", "line\nbreak")], 1), &limits);
        assert!(matches!(res, Err(PluginError::InvalidHeader(_))));
        let ok = check_outcome(delivery(vec![("X-Custom", "v")], 1), &limits);
        assert!(
            matches!(ok, Ok(Decision::Deliver(r)) if r.headers == vec![("x-custom".to_owned(), "v".to_owned())])
        );
    }

    #[test]
    fn refuses_output_over_the_limit() {
        let limits = Limits {
            output_bytes: 10,
            ..Limits::default()
        };
        assert!(matches!(
            check_outcome(delivery(vec![], 11), &limits),
            Err(PluginError::OutputTooLarge {
                size: 11,
                limit: 10
            })
        ));
        assert!(check_outcome(delivery(vec![], 10), &limits).is_ok());
    }

    #[test]
    fn log_buffer_keeps_the_first_lines_and_counts_the_rest() {
        let limits = Limits {
            max_log_lines: 2,
            ..Limits::default()
        };
        let mut buf = LogBuffer::new(&limits);
        for i in 0..5 {
            buf.push("info", format!("line {i}"));
        }
        let (lines, dropped) = buf.finish(&MemoryOutputPipe::new(16), &MemoryOutputPipe::new(16));
        assert_eq!(
            lines.iter().map(|l| l.message.as_str()).collect::<Vec<_>>(),
            ["line 0", "line 1"]
        );
        assert_eq!(dropped, 3);
    }

    #[test]
    fn plugin_text_is_bounded() {
        let huge = "x".repeat(8 << 20);
        let skip = check_outcome(types::Outcome::Skip(huge.clone()), &Limits::default());
        assert!(matches!(skip, Ok(Decision::Skip(r)) if r.len() <= MAX_PLUGIN_TEXT));
        let mut logs = LogBuffer::new(&Limits::default());
        logs.push("info", huge);
        let (lines, _) = logs.finish(&MemoryOutputPipe::new(16), &MemoryOutputPipe::new(16));
        assert!(lines[0].message.len() <= MAX_PLUGIN_TEXT);
    }

    #[test]
    fn the_memory_limit_is_the_sum_over_memories() {
        let mut limiter = MemoryLimiter {
            limit: 100,
            used: 0,
            denied: false,
        };
        assert!(
            limiter.memory_growing(0, 60, None).unwrap(),
            "a first memory"
        );
        assert!(
            !limiter.memory_growing(0, 50, None).unwrap(),
            "a second one past the sum"
        );
        assert!(limiter.denied);
        assert!(
            limiter.memory_growing(0, 40, None).unwrap(),
            "a second one within it"
        );
        assert!(limiter.memory_growing(60, 60, None).unwrap(), "no growth");
        assert!(
            !limiter.memory_growing(40, 41, None).unwrap(),
            "one byte over"
        );
    }
}
