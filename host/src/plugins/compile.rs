//! Compiling a component, under a budget. Cranelift's time and memory grow with what a
//! component contains (400,000 functions took 73 s and 2.2 GB), so the service compiles in a
//! child process of its own binary (`switchyard __compile-plugin`) that limits itself with
//! rlimits (`RLIMIT_DATA` for memory, `RLIMIT_CPU`) and that the parent kills at a wall-clock
//! deadline or at shutdown. The child builds the same engine settings as the service
//! ([`super::runtime::engine_config`]), so its artefact loads here; it may compile in parallel,
//! since its heap goes away when it exits.
//!
//! Embedders that run the service as a library without the binary (unit tests, benchmarks)
//! compile in-process instead, without a budget ([`Compiler::InProcess`]).

use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};

use tokio::io::AsyncReadExt;
use wasmtime::Engine;

use super::{CompileBudget, Limits, PluginError};

/// The hidden subcommand of the `switchyard` binary that compiles one component.
pub const COMPILE_SUBCOMMAND: &str = "__compile-plugin";

/// Bytes of the child's stderr kept (its error message).
const STDERR_BYTES: u64 = 16 << 10;
/// What the child's exit code means.
const EXIT_COMPILE_ERROR: i32 = 2;
const EXIT_USAGE: i32 = 3;

/// How components are compiled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Compiler {
    /// On a blocking thread of this process, with no budget: for embedders that have no
    /// `switchyard` binary to run (tests, benchmarks). Never for untrusted components.
    InProcess,
    /// In a child process, `program __compile-plugin …` (the `switchyard` binary), under the
    /// budget.
    Child {
        /// Path of the `switchyard` binary.
        program: PathBuf,
        /// Time and memory one compile may use.
        budget: CompileBudget,
    },
}

/// Compiles `bytes` into a serialised artefact for `engine` (whose settings follow `limits`).
/// `scratch` is a private folder for the child's input and output files.
///
/// # Errors
/// The component does not compile, or exceeds the budget; [`PluginError::ShuttingDown`] when
/// `shutdown` fires first.
pub(super) async fn compile(
    compiler: &Compiler,
    engine: &Engine,
    limits: &Limits,
    scratch: &Path,
    bytes: bytes::Bytes,
    shutdown: &mut tokio::sync::watch::Receiver<bool>,
) -> Result<Vec<u8>, PluginError> {
    match compiler {
        Compiler::InProcess => {
            let engine = engine.clone();
            let limits = limits.clone();
            let compile = tokio::task::spawn_blocking(move || {
                let artefact = prepare_and_compile(&engine, &limits, &bytes, false);
                super::runtime::release_compile_scratch();
                artefact
            });
            tokio::select! {
                done = compile => done.map_err(|e| PluginError::Compile(format!("compile task failed: {e}")))?,
                () = cancelled(shutdown) => Err(PluginError::ShuttingDown),
            }
        }
        Compiler::Child { program, budget } => {
            in_child(program, budget, limits, scratch, bytes, shutdown).await
        }
    }
}

/// Pre-initialises the component if it asks for it (see `preinit.rs`), then compiles it.
/// `parallel`: on every core (only in the compiler child, which exits afterwards).
fn prepare_and_compile(
    engine: &Engine,
    limits: &Limits,
    bytes: &[u8],
    parallel: bool,
) -> Result<Vec<u8>, PluginError> {
    let prepared = super::preinit::preinitialize(limits, bytes, parallel)?;
    engine
        .precompile_component(prepared.as_deref().unwrap_or(bytes))
        .map_err(|e| PluginError::Compile(format!("{e:#}")))
}

/// Resolves once shutdown is signalled (never, if the sender is gone without signalling).
async fn cancelled(shutdown: &mut tokio::sync::watch::Receiver<bool>) {
    if shutdown.wait_for(|stop| *stop).await.is_err() {
        std::future::pending::<()>().await;
    }
}

async fn in_child(
    program: &Path,
    budget: &CompileBudget,
    limits: &Limits,
    scratch: &Path,
    bytes: bytes::Bytes,
    shutdown: &mut tokio::sync::watch::Receiver<bool>,
) -> Result<Vec<u8>, PluginError> {
    let io = |e: std::io::Error| PluginError::Io(format!("preparing the compile: {e}"));
    let work = tempfile::Builder::new()
        .prefix(".compile-")
        .tempdir_in(scratch)
        .map_err(io)?;
    let input = work.path().join("component.wasm");
    let output = work.path().join("artefact.cwasm");
    tokio::fs::write(&input, &bytes).await.map_err(io)?;
    drop(bytes);
    let threads = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    // CPU seconds: every core busy for the whole wall-clock budget, plus a second; the
    // wall-clock kill normally comes first.
    let cpu_seconds = budget
        .timeout
        .as_secs()
        .saturating_add(1)
        .saturating_mul(u64::try_from(threads).unwrap_or(1))
        .saturating_add(1);
    let mut child = tokio::process::Command::new(program)
        .arg(COMPILE_SUBCOMMAND)
        .arg(&input)
        .arg(&output)
        .arg(budget.memory_bytes.to_string())
        .arg(cpu_seconds.to_string())
        .arg(limits.stack_bytes.to_string())
        .arg(limits.memory_bytes.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| {
            PluginError::Io(format!(
                "starting the plugin compiler {}: {e}",
                program.display()
            ))
        })?;
    let stderr = child.stderr.take();
    let stderr = tokio::spawn(async move {
        let mut text = Vec::new();
        if let Some(pipe) = stderr {
            let _ = pipe.take(STDERR_BYTES).read_to_end(&mut text).await;
        }
        String::from_utf8_lossy(&text).into_owned()
    });
    let status = tokio::select! {
        status = tokio::time::timeout(budget.timeout, child.wait()) => match status {
            Ok(status) => status.map_err(|e| PluginError::Io(format!("waiting for the plugin compiler: {e}")))?,
            Err(_elapsed) => {
                let _ = child.kill().await;
                return Err(PluginError::CompileBudget(format!(
                    "its time budget of {} (raise plugin_compile_timeout if the component is legitimate)",
                    humantime::format_duration(budget.timeout)
                )));
            }
        },
        () = cancelled(shutdown) => {
            let _ = child.kill().await;
            return Err(PluginError::ShuttingDown);
        }
    };
    let stderr = stderr.await.unwrap_or_default();
    if status.success() {
        return tokio::fs::read(&output)
            .await
            .map_err(|e| PluginError::Io(format!("reading the compiled artefact: {e}")));
    }
    Err(failure(status, stderr.trim(), budget, cpu_seconds))
}

/// Why the child did not produce an artefact.
fn failure(
    status: ExitStatus,
    stderr: &str,
    budget: &CompileBudget,
    cpu_seconds: u64,
) -> PluginError {
    use std::os::unix::process::ExitStatusExt;
    if status.code() == Some(EXIT_COMPILE_ERROR) {
        return PluginError::Compile(stderr.to_owned());
    }
    if stderr.contains("memory allocation of") || stderr.contains("out of memory") {
        return PluginError::CompileBudget(format!(
            "its memory budget of {} MiB (raise plugin_compile_memory_mb if the component is legitimate)",
            budget.memory_bytes >> 20
        ));
    }
    // SIGXCPU: past RLIMIT_CPU.
    if status.signal() == Some(24) {
        return PluginError::CompileBudget(format!(
            "its CPU budget of {cpu_seconds} s (from plugin_compile_timeout)"
        ));
    }
    PluginError::Compile(format!("the plugin compiler failed ({status}): {stderr}"))
}

/// The child's side: `switchyard __compile-plugin <input> <output> <memory bytes> <cpu
/// seconds> <stack bytes> <plugin memory bytes>` (the last is the memory a pre-initialiser
/// may use, the service's `plugin_memory_mb`). Applies its limits first, then compiles and
/// writes the artefact.
/// Returns the process exit code: 0, or 2 with the compile error on stderr, or 3 for anything
/// else (usage, I/O).
pub fn compile_child_main(args: &[String]) -> i32 {
    let [input, output, memory, cpu, stack, plugin_memory] = args else {
        eprintln!(
            "usage: switchyard {COMPILE_SUBCOMMAND} <input> <output> <memory bytes> <cpu seconds> <stack bytes> <plugin memory bytes>"
        );
        return EXIT_USAGE;
    };
    let (Ok(memory), Ok(cpu), Ok(stack), Ok(plugin_memory)) = (
        memory.parse::<u64>(),
        cpu.parse::<u64>(),
        stack.parse::<usize>(),
        plugin_memory.parse::<usize>(),
    ) else {
        eprintln!("{COMPILE_SUBCOMMAND}: limits must be numbers");
        return EXIT_USAGE;
    };
    if let Err(e) = limit_self(memory, cpu) {
        eprintln!("{COMPILE_SUBCOMMAND}: cannot set limits: {e}");
        return EXIT_USAGE;
    }
    let limits = Limits {
        stack_bytes: stack,
        memory_bytes: plugin_memory,
        ..Limits::default()
    };
    let mut config = super::runtime::engine_config(&limits);
    // This process exits after one compile, so compiling on every core costs no lasting heap.
    config.parallel_compilation(true);
    let engine = match Engine::new(&config) {
        Ok(engine) => engine,
        Err(e) => {
            eprintln!("{COMPILE_SUBCOMMAND}: engine: {e:#}");
            return EXIT_USAGE;
        }
    };
    let bytes = match std::fs::read(input) {
        Ok(bytes) => bytes,
        Err(e) => {
            eprintln!("{COMPILE_SUBCOMMAND}: {input}: {e}");
            return EXIT_USAGE;
        }
    };
    let artefact = match prepare_and_compile(&engine, &limits, &bytes, true) {
        Ok(artefact) => artefact,
        Err(PluginError::Compile(message)) => {
            eprintln!("{message}");
            return EXIT_COMPILE_ERROR;
        }
        Err(e) => {
            eprintln!("{e}");
            return EXIT_COMPILE_ERROR;
        }
    };
    if let Err(e) = std::fs::write(output, artefact) {
        eprintln!("{COMPILE_SUBCOMMAND}: {output}: {e}");
        return EXIT_USAGE;
    }
    0
}

/// Memory (`RLIMIT_DATA`: heap and private writable mappings), CPU time, and no core dumps.
fn limit_self(memory_bytes: u64, cpu_seconds: u64) -> std::io::Result<()> {
    use rustix::process::{Resource, Rlimit, setrlimit};
    let set = |resource, value: u64| {
        setrlimit(
            resource,
            Rlimit {
                current: Some(value),
                maximum: Some(value),
            },
        )
        .map_err(std::io::Error::from)
    };
    set(Resource::Data, memory_bytes)?;
    set(Resource::Core, 0)?;
    // The soft limit sends SIGXCPU (which ends the process), the hard one SIGKILL.
    setrlimit(
        Resource::Cpu,
        Rlimit {
            current: Some(cpu_seconds),
            maximum: Some(cpu_seconds.saturating_add(1)),
        },
    )
    .map_err(std::io::Error::from)
}
