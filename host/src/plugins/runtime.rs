//! The one place that fixes how wasmtime is used: engine settings (shared with the compiler
//! child, so its artefacts load here), the instance pool and the gate in front of it, the
//! epoch ticker, and the linker. Loading a component is in `load.rs`.

use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use time::OffsetDateTime;
use wasmtime::component::Linker;
use wasmtime::{Config, Enabled, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use super::bindings::TransformerPre;
use super::cache::Cache;
use super::code::Code;
use super::compile::Compiler;
use super::executor::Executor;
use super::gate::{Gate, PoolSize};
use super::sandbox::State;
use super::shape::Needs;
use super::ticker::Ticker;
use super::{Limits, PluginError, PluginLimits};

/// How often the epoch advances. A call's deadline is checked on every tick, and a running
/// plugin yields on every tick, so no plugin holds a plugin thread from the other calls for
/// longer than this.
pub(super) const EPOCH_TICK: Duration = Duration::from_millis(5);

/// Compiles at once (each may use every core in its child process). Compiles of different
/// plugins run side by side, so a small upload does not wait behind a large one.
const COMPILES_AT_ONCE: usize = 2;

/// A compiled plugin version, ready to instantiate. Cheap to share: calls hold an `Arc` to
/// the version they started with, so a hot swap never disturbs a call in flight.
pub struct LoadedPlugin {
    /// The plugin's name (its file stem).
    pub name: String,
    /// sha256 of the component bytes, hex: the plugin's version.
    pub version: String,
    /// Size of the component in bytes.
    pub size: usize,
    /// When this version was loaded.
    pub loaded_at: OffsetDateTime,
    /// What one instance takes from the pool (reserved by every call).
    pub needs: Needs,
    /// The deadline and memory it asked for at upload (`None`: the service's defaults).
    pub own_limits: PluginLimits,
    /// The limits its calls run under: the service's, with its own deadline and memory.
    pub limits: Arc<Limits>,
    /// Its compiled code, loaded on the first call (`code.rs`).
    pub(super) code: Arc<Code>,
}

impl LoadedPlugin {
    /// The same compiled version with other limits of its own (nothing is compiled again).
    ///
    /// # Errors
    /// [`PluginError::InvalidLimit`] when they are past the service's maxima.
    pub(super) fn with_limits(
        &self,
        service: &Limits,
        own: PluginLimits,
    ) -> Result<Self, PluginError> {
        Ok(Self {
            name: self.name.clone(),
            version: self.version.clone(),
            size: self.size,
            loaded_at: OffsetDateTime::now_utc(),
            needs: self.needs,
            own_limits: own,
            limits: Arc::new(service.for_plugin(own)?),
            code: self.code.clone(),
        })
    }
}

impl std::fmt::Debug for LoadedPlugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedPlugin")
            .field("name", &self.name)
            .field("version", &self.version)
            .field("size", &self.size)
            .field("needs", &self.needs)
            .field("own_limits", &self.own_limits)
            .finish_non_exhaustive()
    }
}

/// Counters of the runtime's work, for metrics and tests.
#[derive(Debug, Default)]
pub(super) struct Counters {
    /// Compiles started (child processes, or in-process compiles).
    pub(super) compiles: AtomicU64,
    /// Compiles running now.
    pub(super) compiling: AtomicI64,
    /// Versions whose code was brought into memory by a call (`code.rs`).
    pub(super) code_loads: AtomicU64,
    /// Versions whose code is in memory now.
    pub(super) code_loaded: AtomicI64,
}

/// The plugin engine: compiles components and runs calls under [`Limits`].
#[derive(Clone)]
pub struct Runtime {
    pub(super) engine: Engine,
    pub(super) linker: Arc<Linker<State>>,
    pub(super) limits: Arc<Limits>,
    /// Hex of the engine's compatibility hash: part of every cached artefact's key.
    pub(super) engine_key: Arc<str>,
    pub(super) cache: Option<Cache>,
    pub(super) compiler: Arc<Compiler>,
    pub(super) compile_gate: Arc<tokio::sync::Semaphore>,
    /// Room in the instance pool: calls reserve what their plugin's instance needs.
    pub(super) gate: Arc<Gate>,
    pub(super) counters: Arc<Counters>,
    /// Set once at shutdown: compiles in progress are killed, new calls refused.
    pub(super) shutdown: Arc<tokio::sync::watch::Sender<bool>>,
    /// The threads calls run on.
    pub(super) executor: Arc<Executor>,
    /// Advances the epoch while calls run (their deadlines).
    pub(super) ticker: Arc<Ticker>,
}

impl Runtime {
    /// Creates the engine and starts its epoch ticker (a plain thread that ticks while calls
    /// run and stops when the engine is dropped). With a `cache`, compiled artefacts are kept so a restart does not
    /// compile again. Components compile in-process until [`Runtime::with_compiler`] says
    /// otherwise.
    ///
    /// # Errors
    /// When wasmtime rejects the configuration or the cache folder cannot be created.
    pub fn new(limits: Limits, cache: Option<Cache>) -> Result<Self, PluginError> {
        let mut config = engine_config(&limits);
        let engine = match pooled_engine(&mut config, &limits) {
            Ok(engine) => engine,
            Err(e) => {
                tracing::warn!(error = %e, "pooling allocator unavailable; plugins use on-demand allocation");
                config.allocation_strategy(InstanceAllocationStrategy::OnDemand);
                Engine::new(&config).map_err(|e| PluginError::Compile(format!("{e:#}")))?
            }
        };
        let mut linker = Linker::new(&engine);
        super::sandbox::add_to_linker(&mut linker)?;
        let ticker = Ticker::start(&engine);
        if let Some(cache) = &cache {
            create_private_dir(cache.dir())?;
        }
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        // A cached artefact was checked against this world when it was written, and is linked
        // only at its first call (`code.rs`): a service with another world does not take it.
        // (Not the service's version: an upgrade that keeps wasmtime and the world compiles
        // nothing again.)
        include_str!("../../../wit/transformer.wit").hash(&mut hasher);
        Ok(Self {
            engine,
            linker: Arc::new(linker),
            limits: Arc::new(limits),
            engine_key: Arc::from(format!("{:016x}", hasher.finish())),
            cache,
            compiler: Arc::new(Compiler::InProcess),
            compile_gate: Arc::new(tokio::sync::Semaphore::new(COMPILES_AT_ONCE)),
            gate: Arc::new(Gate::new(&POOL)),
            counters: Arc::new(Counters::default()),
            shutdown: Arc::new(tokio::sync::watch::Sender::new(false)),
            executor: Arc::new(Executor::new()?),
            ticker,
        })
    }

    /// Compiles with `compiler` from now on (the service: a child process under a budget).
    #[must_use]
    pub fn with_compiler(mut self, compiler: Compiler) -> Self {
        self.compiler = Arc::new(compiler);
        self
    }

    /// The service's limits: those of every call of a plugin that chose none of its own.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Plugin calls that run at once at most; calls beyond it wait for a slot. The dispatcher
    /// shares these slots fairly between plugins and subscriptions before calling.
    pub fn call_slots(&self) -> usize {
        POOL.slots as usize
    }

    /// Kills compiles in progress and refuses new calls and compiles
    /// ([`PluginError::ShuttingDown`]), so a shutdown never waits for them.
    pub fn shutdown(&self) {
        self.shutdown.send_replace(true);
        self.gate.close();
        self.compile_gate.close();
    }

    /// Compiles started so far.
    pub fn compiles(&self) -> u64 {
        self.counters.compiles.load(Ordering::Relaxed)
    }

    /// Compiles running now.
    pub fn compiling(&self) -> u64 {
        u64::try_from(self.counters.compiling.load(Ordering::Relaxed)).unwrap_or(0)
    }

    /// Versions whose code a call brought into memory, since start.
    pub fn code_loads(&self) -> u64 {
        self.counters.code_loads.load(Ordering::Relaxed)
    }

    /// Versions whose code is in memory now.
    pub fn code_loaded(&self) -> u64 {
        u64::try_from(self.counters.code_loaded.load(Ordering::Relaxed)).unwrap_or(0)
    }

    /// Links `component` against the host: fails when it does not match the world.
    ///
    /// # Errors
    /// [`PluginError::WrongWorld`].
    pub(super) fn link(
        &self,
        component: &wasmtime::component::Component,
    ) -> Result<TransformerPre<State>, PluginError> {
        let instance_pre = self
            .linker
            .instantiate_pre(component)
            .map_err(|e| PluginError::WrongWorld(format!("{e:#}")))?;
        TransformerPre::new(instance_pre).map_err(|e| PluginError::WrongWorld(format!("{e:#}")))
    }
}

/// The engine settings, the same in the service and in the compiler child (only those that
/// change compiled code matter there, but one function keeps them from drifting apart).
pub(super) fn engine_config(limits: &Limits) -> Config {
    let mut config = Config::new();
    config
        .epoch_interruption(true)
        // In the service, compiles run in a child process (or, embedded, one at a time): a
        // parallel compile would leave a heap in every rayon thread of the long-lived process.
        .parallel_compilation(false)
        .max_wasm_stack(limits.stack_bytes)
        .async_stack_size(limits.stack_bytes + (2 << 20));
    config
}

/// Component instances alive at once at most: plugin calls past this wait for a slot (see
/// `gate.rs`). A call lives for tens of microseconds and does not yield unless it runs for a
/// whole epoch tick, so a few slots per core are plenty.
pub(super) const SLOTS: u32 = 16;

/// The instance pool as calls see it (the gate's permits). A Rust plugin's instance is 3–4
/// core instances, 1–2 memories and 1–2 tables; a JS one about 4 core instances, a Python one
/// about 10. So 16 Rust calls fit at once, or 12 Python ones. One plugin may use at most a
/// quarter of the core instances.
pub(super) const POOL: PoolSize = PoolSize {
    slots: SLOTS,
    core_instances: 8 * SLOTS,
    memories: 4 * SLOTS,
    tables: 8 * SLOTS,
    core_instances_per_component: 2 * SLOTS,
    memories_per_component: 8,
    tables_per_component: 16,
};

/// Pool entries beyond the gate's: a composed component's fused adapters are core instances
/// wasmtime adds that its bytes do not show, so the pool keeps room for a few more than the
/// gate hands out.
const POOL_MARGIN: u32 = SLOTS;

/// An engine with the pooling allocator, sized by [`POOL`]. Reusing linear memories and fiber
/// stacks from the pool avoids an mmap/munmap pair (and the TLB shootdowns that come with it)
/// per call, which the on-demand allocator pays.
fn pooled_engine(config: &mut Config, limits: &Limits) -> wasmtime::Result<Engine> {
    let mut pool = PoolingAllocationConfig::default();
    pool.total_component_instances(POOL.slots)
        .total_stacks(POOL.slots)
        .total_core_instances(POOL.core_instances + POOL_MARGIN)
        .total_memories(POOL.memories + POOL_MARGIN)
        .total_tables(POOL.tables + POOL_MARGIN)
        .max_core_instances_per_component(POOL.core_instances_per_component + POOL_MARGIN)
        .max_memories_per_component(POOL.memories_per_component + POOL_MARGIN)
        .max_tables_per_component(POOL.tables_per_component + POOL_MARGIN)
        // The vmctx of every core instance of one component, together.
        .max_component_instance_size(4 << 20)
        // Every slot is sized for the largest memory a plugin may be given; each call's
        // limiter holds it to its own plugin's limit.
        .max_memory_size(limits.max_memory_bytes);
    pool.linear_memory_keep_resident(limits.keep_resident_bytes)
        .table_keep_resident(64 << 10)
        .pagemap_scan(Enabled::Auto);
    config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    Engine::new(config)
}

/// Creates `dir` (mode `0700` where it is new).
pub(super) fn create_private_dir(dir: &std::path::Path) -> Result<(), PluginError> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder
        .create(dir)
        .map_err(|e| PluginError::Io(format!("{}: {e}", dir.display())))
}

/// Hands freed heap back to the OS: the compiler's scratch (a compile frees tens of MiB at
/// once) and a scan's component bytes. glibc keeps freed heap pages around; elsewhere this is
/// a no-op.
#[allow(unsafe_code)] // one FFI call into libc, see below
pub(super) fn release_compile_scratch() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        unsafe extern "C" {
            fn malloc_trim(pad: usize) -> std::ffi::c_int;
        }
        // SAFETY: `malloc_trim` only releases free heap memory; it takes no pointers and is
        // safe to call from any thread at any time.
        #[allow(unsafe_code)]
        unsafe {
            malloc_trim(0);
        }
    }
}
