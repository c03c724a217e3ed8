//! Pre-initialisation: a component that exports `wizer-initialize: func()` is instantiated
//! once in the sandbox, that function runs, and the instance's memories and globals are
//! written back into the component as its initial state ([Wizer], from the wasmtime project).
//! Every call then still gets a fresh instance, but one that starts where the initialiser
//! left off: the bundled `js` plugin creates its QuickJS runtime and context there, about 40%
//! of a call, once per compile instead of once per call.
//!
//! It runs as part of compiling, so in the compiler child under its budget (the parent kills
//! it at the wall-clock deadline; `RLIMIT_CPU` and `RLIMIT_DATA` bound it too) and with the
//! sandbox's deny-all imports and the service's memory limit for a plugin (`plugin_memory_mb`;
//! a plugin's own limit, set at upload, applies to its calls), plus a deadline of its own.
//!
//! [Wizer]: https://docs.rs/wasmtime-wizer

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use wasmparser::{ComponentExternalKind, Parser, Payload};
use wasmtime::component::{Component, Instance, Lift, Linker, WasmList};
use wasmtime::{Engine, OptLevel, Store, UpdateDeadline};
use wasmtime_wizer::{ComponentInstanceState, Wizer};

use super::sandbox::{self, State};
use super::{Limits, PluginError};

/// The export Wizer calls (its default name).
const INITIALIZER: &str = "wizer-initialize";

/// Wall time the initialiser may run. Generous: it runs once per compile, not per call.
const DEADLINE: Duration = Duration::from_secs(10);
/// How often the initialiser's deadline is checked.
const TICK: Duration = Duration::from_millis(10);

/// Whether the component exports [`INITIALIZER`] as a function at its top level (a core
/// module's export of that name, which a toolchain may leave behind after its own
/// pre-initialisation, does not count).
#[must_use]
pub(super) fn exports_initializer(bytes: &[u8]) -> bool {
    let mut depth = 0_usize;
    for payload in Parser::new(0).parse_all(bytes) {
        match payload {
            Ok(Payload::ModuleSection { .. } | Payload::ComponentSection { .. }) => depth += 1,
            Ok(Payload::End(_)) => depth = depth.saturating_sub(1),
            Ok(Payload::ComponentExportSection(exports)) if depth == 0 => {
                let found = exports.into_iter().flatten().any(|export| {
                    export.name.name == INITIALIZER && export.kind == ComponentExternalKind::Func
                });
                if found {
                    return true;
                }
            }
            Ok(_) => {}
            Err(_) => return false,
        }
    }
    false
}

/// The component with its initialiser run and its state snapshot, or `None` when it exports
/// no initialiser (it is then compiled as it is). Blocks: run it off the async threads.
/// `parallel` compiles the instrumented component on every core (the compiler child does).
///
/// # Errors
/// [`PluginError::Compile`] naming what failed: instrumenting, the initialiser's trap or
/// deadline, or the snapshot.
pub(super) fn preinitialize(
    limits: &Limits,
    bytes: &[u8],
    parallel: bool,
) -> Result<Option<Vec<u8>>, PluginError> {
    if !exports_initializer(bytes) {
        return Ok(None);
    }
    // Keep the export: wit-bindgen names the core function `wizer-initialize` too, and
    // Wizer, told to drop the initialiser, drops that core export but not the component's
    // lift of it, which then fails to validate. Nothing calls it after the snapshot.
    let mut wizer = Wizer::new();
    wizer.keep_init_func(true);
    let (cx, instrumented) = wizer
        .instrument_component(bytes)
        .map_err(|e| fail("instrumenting", e))?;
    let engine = one_off_engine(limits, parallel)?;
    let component = Component::new(&engine, &instrumented).map_err(|e| fail("compiling", e))?;
    let mut linker = Linker::new(&engine);
    sandbox::add_to_linker(&mut linker)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .map_err(|e| PluginError::Compile(format!("pre-initialising: {e}")))?;
    let _ticker = Ticker::start(&engine);
    runtime.block_on(async {
        let mut store = sandboxed_store(&engine, limits);
        let instance = linker
            .instantiate_async(&mut store, &component)
            .await
            .map_err(|e| fail("instantiating", e))?;
        let init = instance
            .get_typed_func::<(), ()>(&mut store, INITIALIZER)
            .map_err(|e| fail("finding the export", e))?;
        init.call_async(&mut store, ())
            .await
            .map_err(|e| fail("the initialiser failed", e))?;
        let mut access = Access {
            store: &mut store,
            instance,
            failed: None,
        };
        let snapshot = wizer
            .snapshot_component(&cx, &mut access)
            .await
            .map_err(|e| fail("snapshot", e))?;
        match access.failed {
            Some(why) => Err(PluginError::Compile(format!(
                "pre-initialising (`{INITIALIZER}`): {why}"
            ))),
            None => Ok(Some(snapshot)),
        }
    })
}

/// A compile error naming the step of the pre-initialisation that failed.
fn fail(what: &str, e: wasmtime::Error) -> PluginError {
    PluginError::Compile(format!("pre-initialising (`{INITIALIZER}`): {what}: {e:#}"))
}

/// The engine the instrumented component runs on, once: the service's settings, but no
/// optimisation (a quarter faster to compile, 1.9 s instead of 2.6 s for the js plugin; the
/// code is thrown away after the snapshot).
fn one_off_engine(limits: &Limits, parallel: bool) -> Result<Engine, PluginError> {
    let mut config = super::runtime::engine_config(limits);
    config
        .cranelift_opt_level(OptLevel::None)
        .parallel_compilation(parallel);
    Engine::new(&config).map_err(|e| fail("the engine", e))
}

/// A store with a call's sandbox (deny-all imports, the memory limiter) and [`DEADLINE`] of
/// wall time, checked on every tick of the [`Ticker`].
fn sandboxed_store(engine: &Engine, limits: &Limits) -> Store<State> {
    let mut store = Store::new(engine, State::new(limits));
    store.limiter(|state| &mut state.limiter);
    let start = Instant::now();
    store.set_epoch_deadline(1);
    store.epoch_deadline_callback(move |_| {
        if start.elapsed() >= DEADLINE {
            Ok(UpdateDeadline::Interrupt)
        } else {
            Ok(UpdateDeadline::Continue(1))
        }
    });
    store
}

/// Advances the engine's epoch while the initialiser runs, so its deadline is checked (the
/// compiler child has no ticker of its own). Stops when dropped.
struct Ticker {
    stop: Arc<AtomicBool>,
}

impl Ticker {
    fn start(engine: &Engine) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let (engine, flag) = (engine.clone(), stop.clone());
        std::thread::spawn(move || {
            while !flag.load(Ordering::Relaxed) {
                std::thread::sleep(TICK);
                engine.increment_epoch();
            }
        });
        Self { stop }
    }
}

impl Drop for Ticker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// What Wizer reads the instance's state through: the accessor functions its instrumentation
/// exported (`wasmtime:wizer/access`). The trait cannot return an error, so an accessor that
/// is missing or traps (Wizer's code, not the plugin's) is remembered in `failed` and fails
/// the pre-initialisation after the snapshot, instead of a panic or a snapshot with holes.
struct Access<'a> {
    store: &'a mut Store<State>,
    instance: Instance,
    failed: Option<String>,
}

impl Access<'_> {
    async fn call<R: Lift + Send + Sync + 'static, T>(
        &mut self,
        instance: &str,
        func: &str,
        read: impl FnOnce(&Store<State>, R) -> T,
    ) -> Option<T> {
        let value = self.try_call::<R>(instance, func).await;
        if value.is_none() && self.failed.is_none() {
            self.failed = Some(format!(
                "reading the state through `{instance}#{func}` failed"
            ));
        }
        value.map(|value| read(self.store, value))
    }

    async fn try_call<R: Lift + Send + Sync + 'static>(
        &mut self,
        instance: &str,
        func: &str,
    ) -> Option<R> {
        let (_, parent) = self.instance.get_export(&mut *self.store, None, instance)?;
        let (_, index) = self
            .instance
            .get_export(&mut *self.store, Some(&parent), func)?;
        let func = self
            .instance
            .get_typed_func::<(), (R,)>(&mut *self.store, index)
            .ok()?;
        func.call_async(&mut *self.store, ())
            .await
            .ok()
            .map(|(value,)| value)
    }
}

impl ComponentInstanceState for Access<'_> {
    async fn call_func_ret_list_u8(
        &mut self,
        instance: &str,
        func: &str,
        contents: impl FnOnce(&[u8]) + Send,
    ) {
        let _: Option<()> = self
            .call(instance, func, |store, list: WasmList<u8>| {
                contents(list.as_le_slice(store));
            })
            .await;
    }

    async fn call_func_ret_s32(&mut self, instance: &str, func: &str) -> i32 {
        self.call(instance, func, |_, v| v)
            .await
            .unwrap_or_default()
    }

    async fn call_func_ret_s64(&mut self, instance: &str, func: &str) -> i64 {
        self.call(instance, func, |_, v| v)
            .await
            .unwrap_or_default()
    }

    async fn call_func_ret_f32(&mut self, instance: &str, func: &str) -> u32 {
        self.call(instance, func, |_, v: f32| v.to_bits())
            .await
            .unwrap_or_default()
    }

    async fn call_func_ret_f64(&mut self, instance: &str, func: &str) -> u64 {
        self.call(instance, func, |_, v: f64| v.to_bits())
            .await
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    // An initialiser that traps or never returns is refused through the real service:
    // tests/e2e/plugin_hardening/preinit.rs.
    use super::*;
    use crate::plugins::BUNDLED;

    fn bundled(name: &str) -> &'static [u8] {
        BUNDLED
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, bytes)| *bytes)
            .unwrap_or_else(|| panic!("{name} is bundled"))
    }

    #[test]
    fn of_the_bundled_plugins_only_js_has_an_initializer() {
        assert!(exports_initializer(bundled("js")));
        for name in ["slack", "discord", "filter", "reshape", "jq"] {
            assert!(!exports_initializer(bundled(name)), "{name}");
        }
        assert!(!exports_initializer(b"not wasm"));
    }

    #[test]
    fn the_js_plugin_is_snapshot_with_the_same_shape() {
        let engine =
            Engine::new(&super::super::runtime::engine_config(&Limits::default())).unwrap();
        let js = bundled("js");
        let snapshot = preinitialize(&Limits::default(), js, false)
            .unwrap()
            .expect("js exports an initializer");
        assert_ne!(snapshot.as_slice(), js, "the snapshot is a new component");
        assert_eq!(
            super::super::shape::needs(&snapshot).unwrap(),
            super::super::shape::needs(js).unwrap(),
            "the pool reservation is computed from the uploaded bytes"
        );
        engine.precompile_component(&snapshot).unwrap();
    }

    #[test]
    fn a_component_without_an_initializer_is_left_alone() {
        let slack = bundled("slack");
        assert!(
            preinitialize(&Limits::default(), slack, false)
                .unwrap()
                .is_none()
        );
    }
}
