//! Plugin calls run on threads of their own, not on the service's async workers. A call is
//! CPU-bound for tens of microseconds, and a slow or hostile plugin for up to its deadline. On
//! the service's workers, ingest, API requests and responses of deliveries in flight would
//! queue behind every plugin slice scheduled before them; on threads of their own, the
//! operating system shares the cores between plugins and the rest of the service.
//!
//! Measured here: the hand-off costs a single caller about 40 µs of wake-up latency, but under
//! load, with many calls in flight, throughput is the same or better (see
//! `docs/PERFORMANCE.md`).

use std::future::Future;

use super::PluginError;

/// A small multi-threaded Tokio runtime for plugin calls (async wasmtime still yields on every
/// epoch tick, so calls on one thread interleave). Shut down without waiting when dropped.
pub(super) struct Executor {
    runtime: Option<tokio::runtime::Runtime>,
}

impl Executor {
    /// Starts the plugin threads.
    ///
    /// # Errors
    /// When the threads cannot be started.
    pub(super) fn new() -> Result<Self, PluginError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(plugin_threads())
            .thread_name("switchyard-plugin")
            .enable_time()
            .build()
            .map_err(|e| PluginError::Io(format!("cannot start plugin threads: {e}")))?;
        Ok(Self {
            runtime: Some(runtime),
        })
    }

    /// Runs `call` on a plugin thread and waits for it. Dropping the returned future does not
    /// cancel the call; its own deadline ends it.
    ///
    /// # Errors
    /// When the call panicked or the runtime is shutting down.
    pub(super) async fn run<T: Send + 'static>(
        &self,
        call: impl Future<Output = T> + Send + 'static,
    ) -> Result<T, PluginError> {
        let runtime = self
            .runtime
            .as_ref()
            .ok_or_else(|| PluginError::Io("plugin runtime is shutting down".into()))?;
        runtime
            .spawn(call)
            .await
            .map_err(|e| PluginError::Io(format!("plugin call did not finish: {e}")))
    }
}

impl Drop for Executor {
    fn drop(&mut self) {
        // Dropping a Tokio runtime blocks, which panics inside another runtime's task.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// One per core. (All cores but one was tried: it left fan-out through a plugin 15–20% slower
/// on two cores.)
fn plugin_threads() -> usize {
    std::thread::available_parallelism().map_or(1, std::num::NonZero::get)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn calls_run_on_the_plugin_threads() {
        let executor = Executor::new().unwrap();
        let thread = executor
            .run(async { std::thread::current().name().map(str::to_owned) })
            .await
            .unwrap();
        assert_eq!(thread.as_deref(), Some("switchyard-plugin"));
        assert_ne!(
            std::thread::current().name(),
            Some("switchyard-plugin"),
            "the caller is not a plugin thread"
        );
    }

    #[tokio::test]
    async fn a_panicking_call_is_an_error_and_dropping_inside_a_task_is_fine() {
        let executor = Executor::new().unwrap();
        let result = executor.run(async { panic!("plugin host bug") }).await;
        assert!(matches!(result, Err(PluginError::Io(_))), "{result:?}");
        assert_eq!(executor.run(async { 7 }).await.unwrap(), 7, "still serving");
        drop(executor);
    }

    /// A call holds the plugin runtime (and so the executor) alive; when it finishes last, the
    /// executor is dropped on one of its own threads.
    #[tokio::test]
    async fn the_last_reference_may_go_on_a_plugin_thread() {
        let executor = std::sync::Arc::new(Executor::new().unwrap());
        let held = executor.clone();
        let (release, released) = tokio::sync::oneshot::channel::<()>();
        let call = executor.runtime.as_ref().unwrap().spawn(async move {
            let _ = released.await;
            drop(held);
        });
        drop(executor);
        release.send(()).unwrap();
        if let Err(e) = call.await {
            assert!(
                !e.is_panic(),
                "dropping the executor on its own thread panicked: {e}"
            );
        }
    }
}
