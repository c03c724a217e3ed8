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
//! kept from the start (and its memory images are made at its first call, as wasmtime does).
//! Code loaded from the cache has its memory images made as it comes into memory, before the
//! first call instantiates it ([`prepare_images`]).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use wasmtime::component::Component;

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
            let name = plugin.name.clone();
            let linked = tokio::task::spawn_blocking(move || {
                let component = cache.open(&artefact, &runtime.engine)?;
                prepare_images(&component, &name);
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
        prepare_images_off_thread(&component, &plugin.name).await;
        let pre = self.link(&component)?;
        if let (Some(cache), Some(artefact)) = (&self.cache, artefact) {
            cache.put(&plugin.version, &self.engine_key, artefact).await;
        }
        Ok(pre)
    }
}

/// Tries of [`prepare_images`], and the pause after a failed one.
const IMAGE_TRIES: u32 = 3;
const IMAGE_RETRY_PAUSE: Duration = Duration::from_millis(20);

/// Creates `component`'s copy-on-write memory images now, as its code comes into memory,
/// rather than in its first call, where wasmtime would otherwise create them. On Linux an image
/// is a memfd, written and then sealed read-only, and the sealing can fail for a moment ("cannot
/// add seals to the memfd"; seen once in the `plugin_call` bench, on the 12 MB JavaScript
/// example, and not reproduced since). Inside a call, that failure failed the call; here it is
/// tried again. If it keeps failing the images stay lazy, and the first call tries once more.
/// Blocking: it writes the module's data, megabytes for JavaScript and Python guests.
fn prepare_images(component: &Component, plugin: &str) {
    let made = retried(IMAGE_TRIES, IMAGE_RETRY_PAUSE, || {
        component.initialize_copy_on_write_image()
    });
    if let Err(e) = made {
        tracing::warn!(plugin, error = %format!("{e:#}"), "could not create the plugin's memory images; its first call tries again");
    }
}

/// [`prepare_images`] on a blocking thread.
async fn prepare_images_off_thread(component: &Component, plugin: &str) {
    let (component, plugin) = (component.clone(), plugin.to_owned());
    // A panic there is only a lost head start: the first call makes the images.
    let _ = tokio::task::spawn_blocking(move || prepare_images(&component, &plugin)).await;
}

/// Runs `attempt` until it succeeds, at most `tries` times (at least once), pausing between
/// tries; the last error when every try failed.
fn retried<T, E>(
    tries: u32,
    pause: Duration,
    mut attempt: impl FnMut() -> Result<T, E>,
) -> Result<T, E> {
    for _ in 1..tries {
        match attempt() {
            Ok(value) => return Ok(value),
            Err(_) => std::thread::sleep(pause),
        }
    }
    attempt()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failing_step_is_tried_again_until_it_succeeds() {
        let mut calls = 0;
        let result = retried(3, Duration::ZERO, || {
            calls += 1;
            if calls < 3 { Err(calls) } else { Ok("made") }
        });
        assert_eq!(result, Ok("made"));
        assert_eq!(calls, 3);
    }

    #[test]
    fn a_step_that_keeps_failing_gives_its_last_error_after_the_tries() {
        let mut calls = 0;
        let result: Result<(), u32> = retried(3, Duration::ZERO, || {
            calls += 1;
            Err(calls)
        });
        assert_eq!(result, Err(3));
        assert_eq!(calls, 3, "tried three times, not more");
        let mut once = 0;
        let _: Result<(), ()> = retried(0, Duration::ZERO, || {
            once += 1;
            Err(())
        });
        assert_eq!(once, 1, "zero tries still runs it once");
    }
}
