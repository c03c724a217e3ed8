//! The plugin platform: WebAssembly components of the `switchyard:plugin` `transformer` world
//! (`wit/transformer.wit`), compiled once, run per call in a fresh sandbox, kept in a registry
//! that hot-reloads the plugins folder.
//!
//! This module is the only code that touches wasmtime. Its choices, each overridable through
//! [`Limits`]:
//! - async calls on threads of their own (`executor`), not the service's async workers, with
//!   epoch interruption (a 5 ms tick on its own thread): a call past its deadline traps, and a
//!   running plugin yields every tick so calls on one plugin thread interleave;
//! - a fresh `Store` per call from a pre-instantiated component (`InstancePre`): no state leaks
//!   between events or tenants, at ~20 µs a call;
//! - linear memory capped by a `ResourceLimiter`, a bounded wasm stack, output/header/log caps;
//! - WASI p2 linked only because Rust's std imports it, with no preopens, env, sockets, or
//!   clocks (frozen at zero); stdout/stderr captured into small buffers (panic messages);
//! - the pooling allocator, sized explicitly (16 instance slots), keeping the low 1.5 MiB of
//!   each memory resident and resetting only the pages a call dirtied: no mmap/munmap per call
//!   (see `runtime.rs` and `docs/PERFORMANCE.md`); a call first reserves what its plugin's
//!   instance needs of the pool (core instances, memories, tables), so it waits for room
//!   rather than failing (`gate.rs`, `shape.rs`);
//! - compiles in a child process under a time and memory budget (`compile.rs`), with an
//!   on-disk cache whose artefacts are loaded only when their digest matches (`cache.rs`);
//! - a version's code brought into memory at its first call, mapped from the cache file, so
//!   memory follows the plugins that run, not those installed (`code.rs`);
//! - the plugins folder read only as regular files, size-checked first, and only when they
//!   changed (`folder.rs`);
//! - every piece of plugin-supplied text bounded by [`MAX_PLUGIN_TEXT`].
//!
//! [`conformance`] runs data-driven cases (event, config → expected outcome) through the same
//! sandbox, for the test suite and for `switchyard plugins test`.

mod bundled;
mod cache;
mod call;
mod code;
mod compile;
pub mod conformance;
mod error;
mod executor;
mod folder;
mod gate;
mod limits;
mod load;
mod own_limits;
mod preinit;
mod registry;
mod runtime;
mod sandbox;
mod shape;
mod status;
mod ticker;
mod uploads;
mod watcher;

pub use bundled::{BUNDLED, seed_bundled};
pub use cache::{ArtefactDigests, Cache, MemoryDigests};
pub use call::{CallReport, Decision, LogLine, PluginEvent, PluginRequest};
pub use compile::{COMPILE_SUBCOMMAND, Compiler, compile_child_main};
pub use error::PluginError;
pub use limits::{CompileBudget, Limits, MAX_PLUGIN_TEXT, MAX_RANDOM_BYTES, PluginLimits};
pub use registry::{LOADING_WAIT, PluginInfo, PluginStats, PluginStatus, Registry, valid_name};
pub use runtime::{LoadedPlugin, Runtime};
pub use shape::Needs;
pub use uploads::Upload;
pub use watcher::Watcher;

/// Host bindings generated from `wit/transformer.wit`. When `0.2` ships, a second module is
/// generated from the frozen `0.1` files and the registry picks one per component by the
/// version in its export name.
mod bindings {
    wasmtime::component::bindgen!({
        world: "transformer",
        path: "../wit",
        exports: { default: async },
    });
}
