//! One plugin call: room in the pool, a fresh `Store` (see `sandbox.rs`), a deadline; then
//! the outcome checked against the output limits.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use serde::Serialize;
use wasmtime::{Store, Trap, UpdateDeadline};

use super::bindings::switchyard::plugin::types;
use super::bindings::{Transformer, TransformerPre};
use super::limits::bound_text;
use super::runtime::{LoadedPlugin, Runtime};
use super::sandbox::{State, pipe_text};
use super::{Limits, PluginError};

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

impl Runtime {
    /// Runs `plugin`'s `transform` on one event with the subscription's config (JSON text),
    /// on a plugin thread.
    pub async fn transform(
        &self,
        plugin: &Arc<LoadedPlugin>,
        event: PluginEvent,
        config: &str,
    ) -> CallReport {
        let limits = plugin.limits.clone();
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
        let pre = match self.code(plugin).await {
            Ok(pre) => pre,
            Err(error) => return CallReport::failed(error),
        };
        let (runtime, plugin, config) = (self.clone(), plugin.clone(), config.to_owned());
        let call = async move {
            runtime
                .run(&plugin, &pre, async |instance, store| {
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
        let pre = self.code(plugin).await?;
        let (runtime, plugin, config) = (self.clone(), plugin.clone(), config.to_owned());
        let call = async move {
            runtime
                .run(&plugin, &pre, async |instance, store| {
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
    async fn run<R, F>(
        &self,
        plugin: &LoadedPlugin,
        pre: &TransformerPre<State>,
        call: F,
    ) -> RawReport<R>
    where
        F: AsyncFnOnce(&Transformer, &mut Store<State>) -> wasmtime::Result<Result<R, String>>,
    {
        let limits = &plugin.limits;
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
        // The epoch advances while this is held (the ticker sleeps when no call runs).
        let _ticking = self.ticker.running();
        let start = Instant::now();
        let budget = limits.deadline;
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(running_time_deadline(start, budget));
        // Belt and braces: a call stuck somewhere epochs cannot reach is dropped (cancelled).
        // At most `SLOTS` calls run at once, so one that ran for its budget waited at most
        // that many budgets for a thread.
        let outer = budget
            .saturating_mul(super::runtime::SLOTS)
            .saturating_add(Duration::from_millis(250));
        let outcome = tokio::time::timeout(outer, async {
            let instance = pre.instantiate_async(&mut store).await?;
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

/// The epoch callback that holds a call to `budget` of its own running time: the CPU time of
/// its thread while it runs, not the time it spends yielded, waiting for a plugin thread while
/// other calls run, nor the time the machine gives to other processes. With the wall clock
/// instead, many calls admitted at once on a busy machine (16 JavaScript calls of a few ms
/// each on 2 cores) time out together, none of them a runaway; a runaway still stops after
/// `budget` of its own running. On every epoch tick the call yields, so calls on one thread
/// interleave.
///
/// The first slice (up to the first tick) is counted in wall time, so a short call (almost
/// every call) never reads a CPU clock — but at most two ticks of it: a call cannot run longer
/// than a tick before the first tick reaches it, so more wall time than that is time the
/// machine gave to others (a thread preempted on a loaded machine), not the call's.
fn running_time_deadline(
    start: Instant,
    budget: Duration,
) -> impl FnMut(wasmtime::StoreContextMut<'_, State>) -> wasmtime::Result<UpdateDeadline>
+ Send
+ Sync
+ 'static {
    let slice: Arc<Mutex<Option<Slice>>> = Arc::new(Mutex::new(None));
    let mut ran = Duration::ZERO;
    move |_| {
        let resumed = slice.lock().unwrap_or_else(PoisonError::into_inner).take();
        ran += match resumed {
            None => start.elapsed().min(FIRST_SLICE_AT_MOST),
            Some(slice) => slice.ran(),
        };
        // Also bounded in wall time: a call's slot is not held for more than a few budgets
        // however busy the machine, so one plugin's slow calls cannot keep its other callers
        // (a fast subscription of the same plugin) waiting for seconds.
        if ran >= budget || start.elapsed() >= budget.saturating_mul(WALL_BUDGETS) {
            return Ok(UpdateDeadline::Interrupt);
        }
        let slice = slice.clone();
        Ok(UpdateDeadline::YieldCustom(
            1,
            Box::pin(async move {
                tokio::task::yield_now().await;
                *slice.lock().unwrap_or_else(PoisonError::into_inner) = Some(Slice::now());
            }),
        ))
    }
}

/// A call ends after this many budgets of wall time at most, whatever its running time.
const WALL_BUDGETS: u32 = 4;

/// The most of a call's first slice counted as its running time (see
/// [`running_time_deadline`]).
const FIRST_SLICE_AT_MOST: Duration = super::runtime::EPOCH_TICK.saturating_mul(2);

/// Where a call resumed: its thread, that thread's CPU time and the wall clock then.
struct Slice {
    thread: std::thread::ThreadId,
    cpu: Duration,
    wall: Instant,
}

impl Slice {
    fn now() -> Self {
        Self {
            thread: std::thread::current().id(),
            cpu: thread_cpu(),
            wall: Instant::now(),
        }
    }

    /// The CPU time the call's thread spent since; the wall time instead if the call moved to
    /// another thread meanwhile (another thread's clock says nothing about this call).
    fn ran(&self) -> Duration {
        if std::thread::current().id() == self.thread {
            thread_cpu().saturating_sub(self.cpu)
        } else {
            self.wall.elapsed()
        }
    }
}

/// The calling thread's CPU time.
fn thread_cpu() -> Duration {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    Duration::new(
        u64::try_from(t.tv_sec).unwrap_or(0),
        u32::try_from(t.tv_nsec).unwrap_or(0),
    )
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

#[cfg(test)]
mod tests {
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
    fn skip_reasons_are_bounded() {
        let huge = "x".repeat(8 << 20);
        let skip = check_outcome(types::Outcome::Skip(huge), &Limits::default());
        assert!(matches!(skip, Ok(Decision::Skip(r)) if r.len() <= super::super::MAX_PLUGIN_TEXT));
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
}
