//! Loading a component: refuse what is clearly not one, read what an instance needs, find
//! the compiled artefact in the cache (if its digest matches) or compile it under the budget,
//! check it against the world, and only then cache it. The code itself comes into memory at
//! the first call (`code.rs`).

use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytes::Bytes;
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use wasmtime::Engine;
use wasmtime::component::Component;

use super::code::{Code, Source};
use super::runtime::{LoadedPlugin, POOL, Runtime};
use super::shape::Needs;
use super::{PluginError, PluginLimits, compile, shape};

impl Runtime {
    /// Validates, compiles (or takes from the cache) and checks a component against the
    /// `transformer` world, off the async workers. At most a few compiles run at once.
    ///
    /// # Errors
    /// Not a component, a precompiled artefact, too large, too big an instance, fails to
    /// compile or exceeds the compile budget, or does not match the `transformer` world.
    /// Every message is bounded ([`PluginError::bounded`]).
    pub async fn load(
        &self,
        name: &str,
        bytes: impl Into<Bytes>,
    ) -> Result<Arc<LoadedPlugin>, PluginError> {
        self.load_with(name, bytes, PluginLimits::default()).await
    }

    /// [`Runtime::load`], with the plugin's own deadline and memory.
    ///
    /// # Errors
    /// As [`Runtime::load`]; [`PluginError::InvalidLimit`] when `own` is past the maxima.
    pub async fn load_with(
        &self,
        name: &str,
        bytes: impl Into<Bytes>,
        own: PluginLimits,
    ) -> Result<Arc<LoadedPlugin>, PluginError> {
        let bytes = bytes.into();
        let version = version_of(bytes.clone()).await?;
        self.load_version(name, bytes, version, own, None).await
    }

    /// [`Runtime::load_with`] of bytes whose version (sha256, hex) the caller computed already;
    /// `source` is the file they came from, to compile again from should the cached artefact
    /// be gone at the first call.
    pub(super) async fn load_version(
        &self,
        name: &str,
        bytes: Bytes,
        version: String,
        own: PluginLimits,
        source: Option<Source>,
    ) -> Result<Arc<LoadedPlugin>, PluginError> {
        self.load_inner(name, bytes, version, own, source)
            .await
            .map_err(PluginError::bounded)
    }

    /// What can be checked before anything is compiled: the size, that the bytes are a
    /// component, what one instance needs of the pool, the plugin's own limits. Cheap: an
    /// upload that fails here is answered at once.
    ///
    /// # Errors
    /// The first check that fails.
    pub async fn precheck(&self, bytes: &Bytes, own: PluginLimits) -> Result<Needs, PluginError> {
        check_component_bytes(bytes, self.limits.component_bytes)?;
        self.limits.for_plugin(own)?;
        let read = bytes.clone();
        let needs = tokio::task::spawn_blocking(move || shape::needs(&read))
            .await
            .map_err(|e| PluginError::Compile(format!("reading the component failed: {e}")))??;
        POOL.check(needs)?;
        Ok(needs)
    }

    async fn load_inner(
        &self,
        name: &str,
        bytes: Bytes,
        version: String,
        own: PluginLimits,
        source: Option<Source>,
    ) -> Result<Arc<LoadedPlugin>, PluginError> {
        let needs = self.precheck(&bytes, own).await?;
        let limits = Arc::new(self.limits.for_plugin(own)?);
        let engine_key = self.engine_key.clone();
        let cached = match &self.cache {
            Some(cache) => {
                cache
                    .find(&version, &engine_key, self.artefact_limit())
                    .await
            }
            None => None,
        };
        let code = match cached {
            // Accepted when it was written: its code loads at the first call.
            Some(artefact) => Code::lazy(artefact, source, self.counters.clone()),
            None => {
                let (component, artefact) = self.compile_fresh(bytes.clone()).await?;
                let pre = self.link(&component)?;
                // Accepted: only now is its artefact worth keeping. Once it is, the code in
                // memory goes, to come back from the cache at the first call.
                let cached = match (&self.cache, artefact) {
                    (Some(cache), Some(artefact)) => {
                        cache.put(&version, &engine_key, artefact).await
                    }
                    _ => None,
                };
                match cached {
                    Some(artefact) => {
                        drop((pre, component));
                        Code::lazy(artefact, source, self.counters.clone())
                    }
                    None => Code::ready(pre, self.counters.clone()),
                }
            }
        };
        Ok(Arc::new(LoadedPlugin {
            name: name.to_owned(),
            version,
            size: bytes.len(),
            loaded_at: OffsetDateTime::now_utc(),
            needs,
            own_limits: own,
            limits,
            code: Arc::new(code),
        }))
    }

    /// Compiles `bytes` (under the compile gate and the budget) and loads the artefact;
    /// returns the artefact too, to be cached once the component is accepted.
    pub(super) async fn compile_fresh(
        &self,
        bytes: Bytes,
    ) -> Result<(Component, Option<Bytes>), PluginError> {
        let _permit = self
            .compile_gate
            .acquire()
            .await
            .map_err(|_| PluginError::ShuttingDown)?;
        self.counters.compiles.fetch_add(1, Ordering::Relaxed);
        self.counters.compiling.fetch_add(1, Ordering::Relaxed);
        let scratch = self
            .cache
            .as_ref()
            .map_or_else(std::env::temp_dir, |c| c.dir().to_owned());
        let mut shutdown = self.shutdown.subscribe();
        let artefact = compile::compile(
            &self.compiler,
            &self.engine,
            &self.limits,
            &scratch,
            bytes,
            &mut shutdown,
        )
        .await;
        self.counters.compiling.fetch_sub(1, Ordering::Relaxed);
        let artefact = Bytes::from(artefact?);
        let component = deserialize(&self.engine, artefact.clone())
            .await
            .map_err(|e| PluginError::Compile(format!("{e:#}")))?;
        Ok((component, Some(artefact)))
    }

    /// The largest cached artefact worth reading: what a compile within the budget can make.
    fn artefact_limit(&self) -> u64 {
        match &*self.compiler {
            compile::Compiler::Child { budget, .. } => budget.memory_bytes,
            compile::Compiler::InProcess => 4 << 30,
        }
    }
}

/// A component's version: the sha256 of its bytes, hex (computed off the async workers).
pub(super) async fn version_of(bytes: Bytes) -> Result<String, PluginError> {
    tokio::task::spawn_blocking(move || hex::encode(Sha256::digest(&bytes)))
        .await
        .map_err(|e| PluginError::Io(format!("hashing the component failed: {e}")))
}

/// Loads an artefact's native code.
async fn deserialize(engine: &Engine, artefact: Bytes) -> wasmtime::Result<Component> {
    let engine = engine.clone();
    tokio::task::spawn_blocking(move || {
        // SAFETY: `artefact` is the output of this service's own compiler, made just now (by
        // the child process this binary started, or in-process). Cached artefacts are mapped
        // by `Cache::open` instead. wasmtime still checks its version and settings.
        #[allow(unsafe_code)]
        unsafe {
            Component::deserialize(&engine, &artefact)
        }
    })
    .await
    .map_err(|e| wasmtime::Error::msg(format!("loading the artefact failed: {e}")))?
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
