//! The per-call sandbox state: a deny-all WASI context (with a `wasi:http` that refuses every
//! request), a memory limiter counted over every memory of the instance, frozen clocks, capped
//! random bytes, and captured, bounded logs.

use std::time::Duration;

use wasmtime::ResourceLimiter;
use wasmtime::component::{Linker, ResourceTable};
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{HostMonotonicClock, HostWallClock, WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpHooks, WasiHttpView};

use super::bindings::Transformer;
use super::bindings::switchyard::plugin::host::{self, Level};
use super::bindings::switchyard::plugin::types;
use super::call::LogLine;
use super::limits::{MAX_RANDOM_BYTES, bound_text};
use super::{Limits, PluginError};

/// Bytes of stdout/stderr kept per call (a panic message fits easily).
const PIPE_BYTES: usize = 16 << 10;
/// Host resources (streams, pollables, `wasi:http` fields and requests…) one call may hold at
/// once. A call uses a handful; the bound keeps a guest from filling host memory with them.
const MAX_RESOURCES: usize = 1024;
/// Bytes of headers one `wasi:http` fields resource may hold (in memory). No request is ever
/// sent, so this only bounds what a guest can make the host keep: with [`MAX_RESOURCES`],
/// 8 MiB at most.
const HTTP_FIELDS_BYTES: usize = 8 << 10;

/// Per-call host state. Dropped with the store after every call.
pub struct State {
    pub(super) wasi: WasiCtx,
    pub(super) http: WasiHttpCtx,
    http_hooks: DenyHttp,
    pub(super) table: ResourceTable,
    pub(super) limiter: MemoryLimiter,
    pub(super) logs: LogBuffer,
    pub(super) stdout: MemoryOutputPipe,
    pub(super) stderr: MemoryOutputPipe,
}

impl State {
    pub(super) fn new(limits: &Limits) -> Self {
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
        let mut http = WasiHttpCtx::new();
        http.set_field_size_limit(HTTP_FIELDS_BYTES);
        let mut table = ResourceTable::new();
        table.set_max_capacity(MAX_RESOURCES);
        Self {
            wasi,
            http,
            http_hooks: DenyHttp,
            table,
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

impl WasiHttpView for State {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.http_hooks,
        }
    }
}

/// `wasi:http` hooks that refuse every outgoing request: the guest's `handle` (a `fetch` in
/// JavaScript) gets `error-code.HTTP-request-denied`, not a trap. Plugins are pure functions
/// of (event, config); the host delivers what they return.
struct DenyHttp;

/// What [`WasiHttpHooks::send_request`] returns (a boxed future of the response and of the
/// body's transmission).
type SendRequest = Box<
    dyn Future<
            Output = wasmtime_wasi_http::Result<(
                http::Response<wasmtime_wasi_http::WasiBody>,
                Box<dyn Future<Output = wasmtime_wasi_http::Result<()>> + Send>,
            )>,
        > + Send,
>;

impl WasiHttpHooks for DenyHttp {
    fn send_request(
        &mut self,
        _request: http::Request<wasmtime_wasi_http::WasiBody>,
        _options: Option<wasmtime_wasi_http::RequestOptions>,
        _fut: Box<dyn Future<Output = wasmtime_wasi_http::Result<()>> + Send>,
    ) -> SendRequest {
        Box::new(async { Err(wasmtime_wasi_http::Error::HttpRequestDenied) })
    }
}

impl host::Host for State {
    fn log(&mut self, level: Level, message: String) {
        self.logs.push(level_name(level), message);
    }
}

impl types::Host for State {}

/// Links the world's own import (`host.log`), WASI p2 (which Rust's std, componentize-py and
/// componentize-js import even when a plugin never uses them; the context above makes them
/// capability-free: no preopens, sockets denied) and `wasi:http`'s `types` and
/// `outgoing-handler` (which componentize-js's default build imports), refusing every request.
/// A component built with a toolchain's default command therefore loads.
pub(super) fn add_to_linker(linker: &mut Linker<State>) -> Result<(), PluginError> {
    let link_err =
        |e: wasmtime::Error| PluginError::Compile(format!("linking host functions: {e:#}"));
    Transformer::add_to_linker::<State, wasmtime::component::HasSelf<State>>(linker, |s| s)
        .map_err(link_err)?;
    wasmtime_wasi::p2::add_to_linker_async(linker).map_err(link_err)?;
    wasmtime_wasi_http::p2::add_only_http_to_linker_async(linker).map_err(link_err)?;
    Ok(())
}

/// Grants memory up to the cap, counted over every memory of the instance (a component may
/// have several, each created and grown through here), and remembers a refusal, so a guest
/// that then aborts is reported as out of memory rather than as an anonymous trap.
pub(super) struct MemoryLimiter {
    limit: usize,
    /// Bytes of all memories of this store so far.
    used: usize,
    pub(super) denied: bool,
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
pub(super) struct LogBuffer {
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
    pub(super) fn finish(
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

pub(super) fn pipe_text(pipe: &MemoryOutputPipe) -> String {
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
