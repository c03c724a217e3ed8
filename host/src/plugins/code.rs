//! A version's compiled code, brought into memory on its first call rather than when the
//! version loads, so the service's memory follows the plugins that run, not the plugins
//! installed (1,000 loaded and 10 used hold the code of 10; `docs/PERFORMANCE.md`, "Growth").
//!
//! With a compile cache, loading a version only checks its artefact (the sha256 of the file
//! against the digest recorded, read in chunks, nothing kept) or compiles it, checks it
//! against the world and writes it; then the component is dropped. The first call reads the
//! artefact again, checks its digest again, loads it and links it, and the version keeps it
//! while it serves. (Mapping the file instead would share its pages with the page cache, but
//! a file changed in place would then change the code after its check, or fault the process
//! with `SIGBUS`.) An artefact gone or changed by then is compiled again from the plugin's
//! file, if that still holds the same version. Without a cache (embedders, tests) the code is
//! kept from the start.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytes::Bytes;

use super::PluginError;
use super::bindings::TransformerPre;
use super::cache::Cached;
use super::folder::Folder;
use super::runtime::{Counters, LoadedPlugin, Runtime};
use super::sandbox::State;

/// Where a version's component came from: `<name>.wasm` in the plugins folder.
#[derive(Clone)]
pub(super) struct Source {
    pub(super) folder: Arc<Folder>,
    pub(super) name: String,
}

/// The code of one version: linked already, or where to load it from.
pub(super) struct Code {
    ready: tokio::sync::OnceCell<TransformerPre<State>>,
    /// The checked artefact in the cache.
    artefact: Option<Cached>,
    /// The plugin's component file, to compile again from when the artefact is unusable.
    source: Option<Source>,
    counters: Arc<Counters>,
}

impl Code {
    /// Code linked already (no cache to load it from later).
    pub(super) fn ready(pre: TransformerPre<State>, counters: Arc<Counters>) -> Self {
        counters.code_loaded.fetch_add(1, Ordering::Relaxed);
        Self {
            ready: tokio::sync::OnceCell::new_with(Some(pre)),
            artefact: None,
            source: None,
            counters,
        }
    }

    /// Code to load from `artefact` on the first call.
    pub(super) fn lazy(artefact: Cached, source: Option<Source>, counters: Arc<Counters>) -> Self {
        Self {
            ready: tokio::sync::OnceCell::new(),
            artefact: Some(artefact),
            source,
            counters,
        }
    }
}

impl Drop for Code {
    fn drop(&mut self) {
        if self.ready.initialized() {
            self.counters.code_loaded.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

impl Runtime {
    /// `plugin`'s linked code, loaded now if this is its first call. Concurrent first calls
    /// load it once.
    ///
    /// # Errors
    /// When the artefact cannot be loaded and the component cannot be compiled again.
    pub(super) async fn code(
        &self,
        plugin: &LoadedPlugin,
    ) -> Result<TransformerPre<State>, PluginError> {
        let code = &plugin.code;
        code.ready
            .get_or_try_init(|| async {
                let pre = self.load_code(plugin).await?;
                self.counters.code_loads.fetch_add(1, Ordering::Relaxed);
                self.counters.code_loaded.fetch_add(1, Ordering::Relaxed);
                Ok(pre)
            })
            .await
            .cloned()
    }

    async fn load_code(&self, plugin: &LoadedPlugin) -> Result<TransformerPre<State>, PluginError> {
        let code = &plugin.code;
        if let (Some(cache), Some(artefact)) = (&self.cache, &code.artefact) {
            let (cache, artefact, runtime) = (cache.clone(), artefact.clone(), self.clone());
            let linked = tokio::task::spawn_blocking(move || {
                let component = cache.open(&artefact, &runtime.engine)?;
                runtime.link(&component).map_err(|e| e.to_string())
            })
            .await
            .map_err(|e| PluginError::Io(format!("loading the compiled plugin failed: {e}")))?;
            match linked {
                Ok(pre) => return Ok(pre),
                Err(e) => tracing::warn!(
                    plugin = %plugin.name,
                    error = %e,
                    "compiled plugin unusable at its first call; compiling again"
                ),
            }
        }
        self.compile_again(plugin).await
    }

    /// Compiles `plugin`'s version again from its component file (which must still hold it).
    async fn compile_again(
        &self,
        plugin: &LoadedPlugin,
    ) -> Result<TransformerPre<State>, PluginError> {
        let gone = || {
            PluginError::Io(format!(
                "the compiled code of {} version {} is gone and its file holds another version; \
                 the file's version loads on the next scan",
                plugin.name, plugin.version
            ))
        };
        let Some(source) = plugin.code.source.clone() else {
            return Err(gone());
        };
        let limit = self.limits.component_bytes;
        let read = tokio::task::spawn_blocking(move || source.folder.read(&source.name, limit))
            .await
            .map_err(|e| PluginError::Io(e.to_string()))?
            .map_err(|_| gone())?;
        let bytes = Bytes::from(read.bytes);
        if super::load::version_of(bytes.clone()).await? != plugin.version {
            return Err(gone());
        }
        let (component, artefact) = self.compile_fresh(bytes).await?;
        let pre = self.link(&component)?;
        if let (Some(cache), Some(artefact)) = (&self.cache, artefact) {
            cache.put(&plugin.version, &self.engine_key, artefact).await;
        }
        Ok(pre)
    }
}
