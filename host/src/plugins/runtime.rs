//! The one place that fixes how wasmtime is used: engine settings, the epoch ticker, the
//! linker, and compiling components (with an on-disk cache of our own compiled artefacts).

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use wasmtime::component::{Component, Linker};
use wasmtime::{Config, Enabled, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use super::bindings::TransformerPre;
use super::call::State;
use super::executor::Executor;
use super::{Limits, PluginError};

/// How often the epoch advances. A call's deadline is checked on every tick, and a running
/// plugin yields on every tick, so no plugin holds a plugin thread from the other calls for
/// longer than this.
const EPOCH_TICK: Duration = Duration::from_millis(5);

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
    pub(super) pre: TransformerPre<State>,
}

impl std::fmt::Debug for LoadedPlugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedPlugin")
            .field("name", &self.name)
            .field("version", &self.version)
            .field("size", &self.size)
            .finish_non_exhaustive()
    }
}

/// The plugin engine: compiles components and runs calls under [`Limits`].
#[derive(Clone)]
pub struct Runtime {
    pub(super) engine: Engine,
    pub(super) linker: Arc<Linker<State>>,
    pub(super) limits: Arc<Limits>,
    /// Shared, not owned: every plugin call clones the runtime onto a plugin thread.
    cache_dir: Option<Arc<Path>>,
    compile_gate: Arc<tokio::sync::Semaphore>,
    /// One permit per pool slot: calls beyond it wait instead of failing to instantiate.
    pub(super) call_gate: Arc<tokio::sync::Semaphore>,
    /// The threads calls run on.
    pub(super) executor: Arc<Executor>,
}

impl Runtime {
    /// Creates the engine and starts its epoch ticker (a plain thread that stops when the
    /// engine is dropped). `cache_dir` keeps compiled artefacts so a restart does not recompile.
    ///
    /// # Errors
    /// When wasmtime rejects the configuration.
    pub fn new(limits: Limits, cache_dir: Option<PathBuf>) -> Result<Self, PluginError> {
        let mut config = Config::new();
        config
            .epoch_interruption(true)
            // One thread per compile: compiles are rare and already off the async runtime, and
            // a parallel compile leaves a heap in every rayon thread (tens of MiB of RSS).
            .parallel_compilation(false)
            .max_wasm_stack(limits.stack_bytes)
            .async_stack_size(limits.stack_bytes + (2 << 20));
        let engine = match pooled_engine(&mut config, &limits) {
            Ok(engine) => engine,
            Err(e) => {
                tracing::warn!(error = %e, "pooling allocator unavailable; plugins use on-demand allocation");
                config.allocation_strategy(InstanceAllocationStrategy::OnDemand);
                Engine::new(&config).map_err(|e| PluginError::Compile(format!("{e:#}")))?
            }
        };
        let mut linker = Linker::new(&engine);
        super::call::add_to_linker(&mut linker)?;
        start_ticker(&engine);
        if let Some(dir) = &cache_dir {
            std::fs::create_dir_all(dir).map_err(|e| PluginError::Io(e.to_string()))?;
        }
        Ok(Self {
            engine,
            linker: Arc::new(linker),
            limits: Arc::new(limits),
            cache_dir: cache_dir.map(Arc::from),
            compile_gate: Arc::new(tokio::sync::Semaphore::new(1)),
            call_gate: Arc::new(tokio::sync::Semaphore::new(POOL_SLOTS as usize)),
            executor: Arc::new(Executor::new()?),
        })
    }

    /// The limits every call runs under.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Plugin calls that run at once at most; calls beyond it wait for a slot. The dispatcher
    /// shares these slots fairly between plugins and subscriptions before calling.
    pub fn call_slots(&self) -> usize {
        POOL_SLOTS as usize
    }

    /// Validates and compiles a component off the async runtime (one compile at a time: it is
    /// CPU-bound for tens to hundreds of milliseconds).
    ///
    /// # Errors
    /// Not a component, a precompiled artefact, too large, fails to compile, or does not
    /// match the `transformer` world.
    pub async fn load(&self, name: &str, bytes: Vec<u8>) -> Result<Arc<LoadedPlugin>, PluginError> {
        let _permit = self
            .compile_gate
            .acquire()
            .await
            .map_err(|e| PluginError::Io(e.to_string()))?;
        let runtime = self.clone();
        let name = name.to_owned();
        tokio::task::spawn_blocking(move || runtime.load_blocking(&name, &bytes))
            .await
            .map_err(|e| PluginError::Compile(format!("compile task failed: {e}")))?
    }

    /// [`Runtime::load`] for callers that are already off the async runtime.
    ///
    /// # Errors
    /// As [`Runtime::load`].
    pub fn load_blocking(
        &self,
        name: &str,
        bytes: &[u8],
    ) -> Result<Arc<LoadedPlugin>, PluginError> {
        check_component_bytes(bytes, self.limits.component_bytes)?;
        let version = hex::encode(Sha256::digest(bytes));
        let component = self.compile_cached(&version, bytes)?;
        let instance_pre = self
            .linker
            .instantiate_pre(&component)
            .map_err(|e| PluginError::WrongWorld(format!("{e:#}")))?;
        let pre = TransformerPre::new(instance_pre)
            .map_err(|e| PluginError::WrongWorld(format!("{e:#}")))?;
        Ok(Arc::new(LoadedPlugin {
            name: name.to_owned(),
            version,
            size: bytes.len(),
            loaded_at: OffsetDateTime::now_utc(),
            pre,
        }))
    }

    /// Compiles `bytes`, or loads the artefact this host compiled earlier for the same sha256
    /// and engine settings.
    fn compile_cached(&self, version: &str, bytes: &[u8]) -> Result<Component, PluginError> {
        let cache_file = self
            .cache_dir
            .as_deref()
            .map(|dir| self.cache_path(dir, version));
        if let Some(path) = cache_file.as_deref().filter(|p| p.exists()) {
            // SAFETY: the file is an artefact this host serialised itself (named by the sha256
            // of the source and the engine's compatibility hash) in its own data directory,
            // never bytes a user uploaded. wasmtime still checks its version and settings.
            #[allow(unsafe_code)]
            match unsafe { Component::deserialize_file(&self.engine, path) } {
                Ok(component) => return Ok(component),
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "ignoring unusable plugin cache entry")
                }
            }
        }
        let component =
            Component::new(&self.engine, bytes).map_err(|e| PluginError::Compile(format!("{e:#}")));
        release_compile_scratch();
        let component = component?;
        if let Some(path) = cache_file
            && let Err(e) = write_cache(&component, &path)
        {
            tracing::warn!(path = %path.display(), error = %e, "could not write plugin cache entry");
        }
        Ok(component)
    }

    fn cache_path(&self, dir: &Path, version: &str) -> PathBuf {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        self.engine
            .precompile_compatibility_hash()
            .hash(&mut hasher);
        dir.join(format!("{version}-{:016x}.cwasm", hasher.finish()))
    }
}

/// Instances alive at once at most: plugin calls past this wait for a slot (see
/// [`Runtime::transform`]). A call lives for tens of microseconds and does not yield unless it
/// runs for a whole epoch tick, so a few slots per core are plenty.
pub(super) const POOL_SLOTS: u32 = 16;

/// Bytes at the start of each pooled linear memory that are reset with `memset` and kept
/// resident instead of being returned with `madvise`: Rust's 1 MiB shadow stack plus the data
/// and heap of a typical small plugin. Resetting with `madvise` costs page faults on the next
/// call and TLB shootdowns across cores; measured here, keeping this much resident halved the
/// cost of a Slack call in the service (84 -> 38 us). At most `POOL_SLOTS` x this stays resident.
const KEEP_RESIDENT: usize = 3 << 19;

/// An engine with the pooling allocator, sized for [`POOL_SLOTS`] small instances. Reusing
/// linear memories and fiber stacks from the pool avoids an mmap/munmap pair (and the TLB
/// shootdowns that come with it) per call, which the on-demand allocator pays.
fn pooled_engine(config: &mut Config, limits: &Limits) -> wasmtime::Result<Engine> {
    let mut pool = PoolingAllocationConfig::default();
    pool.total_component_instances(POOL_SLOTS)
        .total_core_instances(4 * POOL_SLOTS)
        .total_memories(2 * POOL_SLOTS)
        .total_tables(4 * POOL_SLOTS)
        .total_stacks(POOL_SLOTS)
        .max_memories_per_component(2)
        .max_tables_per_component(4)
        .max_memory_size(limits.memory_bytes);
    pool.linear_memory_keep_resident(KEEP_RESIDENT)
        .table_keep_resident(64 << 10)
        .pagemap_scan(Enabled::Auto);
    config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    Engine::new(config)
}

/// Hands the compiler's freed scratch memory back to the OS. glibc keeps freed heap pages
/// around (a compile frees tens of MiB at once); elsewhere this is a no-op.
#[allow(unsafe_code)] // one FFI call into libc, see below
fn release_compile_scratch() {
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

/// Refuses what is clearly not an uploadable component, with a message that says what it is.
fn check_component_bytes(bytes: &[u8], limit: usize) -> Result<(), PluginError> {
    if bytes.len() > limit {
        return Err(PluginError::TooLarge {
            size: bytes.len(),
            limit,
        });
    }
    if Engine::detect_precompiled(bytes).is_some() {
        return Err(PluginError::NotAComponent(
            "this is a precompiled wasmtime artefact; upload the .wasm component instead".into(),
        ));
    }
    match bytes.get(..8) {
        Some([0, b'a', b's', b'm', 1, 0, 0, 0]) => Err(PluginError::NotAComponent(
            "this is a core WebAssembly module; build a component (cargo build --target wasm32-wasip2)".into(),
        )),
        Some([0, b'a', b's', b'm', _, _, 1, 0]) => Ok(()),
        _ => Err(PluginError::NotAComponent("missing the WebAssembly header (\\0asm)".into())),
    }
}

fn write_cache(component: &Component, path: &Path) -> std::io::Result<()> {
    let bytes = component
        .serialize()
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    let dir = path.parent().unwrap_or(Path::new("."));
    super::registry::write_atomically(dir, path, &bytes)
}

/// Advances the engine's epoch every [`EPOCH_TICK`] on a plain thread (a tokio task would
/// stall exactly when the workers are busy running plugins). Stops once the engine is gone.
fn start_ticker(engine: &Engine) {
    let weak = engine.weak();
    let spawned = std::thread::Builder::new()
        .name("switchyard-epoch".into())
        .spawn(move || {
            while let Some(engine) = weak.upgrade() {
                engine.increment_epoch();
                drop(engine);
                std::thread::sleep(EPOCH_TICK);
            }
        });
    if let Err(e) = spawned {
        tracing::error!(error = %e, "could not start the plugin epoch ticker; plugin deadlines fall back to the outer timeout");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_non_components_with_a_reason() {
        let core = [0, b'a', b's', b'm', 1, 0, 0, 0];
        assert!(
            matches!(check_component_bytes(&core, 100), Err(PluginError::NotAComponent(m)) if m.contains("core"))
        );
        assert!(matches!(
            check_component_bytes(b"hello world", 100),
            Err(PluginError::NotAComponent(_))
        ));
        assert!(matches!(
            check_component_bytes(&[0; 200], 100),
            Err(PluginError::TooLarge {
                size: 200,
                limit: 100
            })
        ));
        let component = [0, b'a', b's', b'm', 0x0d, 0, 1, 0];
        assert_eq!(check_component_bytes(&component, 100), Ok(()));
    }
}
