//! The epoch ticker: advances the engine's epoch every [`EPOCH_TICK`] on a plain thread (a
//! tokio task would stall exactly when the workers are busy running plugins), but only while
//! plugin calls run. Epochs only matter to a running call (its deadline callback), so an idle
//! service does not wake up 200 times a second for nothing: the thread parks until a call
//! starts, and its first tick comes a whole tick after that.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread::Thread;
use std::time::Duration;

use wasmtime::Engine;

use super::runtime::EPOCH_TICK;

/// How often a parked ticker looks whether its engine is gone (it then ends).
const IDLE_CHECK: Duration = Duration::from_secs(1);

/// Calls running, and the ticker's thread to wake when the first one starts.
#[derive(Debug, Default)]
pub(super) struct Ticker {
    calls: AtomicUsize,
    thread: OnceLock<Thread>,
    /// Epochs advanced so far.
    ticks: AtomicUsize,
}

/// A running call: the ticker ticks while one is held.
pub(super) struct Running(Arc<Ticker>);

impl Drop for Running {
    fn drop(&mut self) {
        self.0.calls.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Ticker {
    /// Starts the ticker thread for `engine`; it ends once the engine is dropped.
    pub(super) fn start(engine: &Engine) -> Arc<Self> {
        let ticker = Arc::new(Self::default());
        let weak = engine.weak();
        let state = ticker.clone();
        let spawned = std::thread::Builder::new()
            .name("switchyard-epoch".into())
            .spawn(move || state.run(&weak));
        match spawned {
            Ok(handle) => {
                let _ = ticker.thread.set(handle.thread().clone());
            }
            Err(e) => {
                tracing::error!(error = %e, "could not start the plugin epoch ticker; plugin deadlines fall back to the outer timeout");
            }
        }
        ticker
    }

    /// Marks a call as running until the guard is dropped, waking the ticker if it was idle.
    pub(super) fn running(self: &Arc<Self>) -> Running {
        if self.calls.fetch_add(1, Ordering::AcqRel) == 0
            && let Some(thread) = self.thread.get()
        {
            thread.unpark();
        }
        Running(self.clone())
    }

    fn run(&self, engine: &wasmtime::EngineWeak) {
        let mut idle = true;
        while let Some(engine) = engine.upgrade() {
            if self.calls.load(Ordering::Acquire) == 0 {
                drop(engine);
                idle = true;
                std::thread::park_timeout(IDLE_CHECK);
                continue;
            }
            if !std::mem::take(&mut idle) {
                engine.increment_epoch();
                self.ticks.fetch_add(1, Ordering::Relaxed);
            }
            drop(engine);
            std::thread::sleep(EPOCH_TICK);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn engine() -> Engine {
        let mut config = wasmtime::Config::new();
        config.epoch_interruption(true);
        Engine::new(&config).unwrap()
    }

    /// No call, no tick: an idle service's ticker sleeps. While a call runs it ticks, and it
    /// goes back to sleep when the last call ends.
    #[test]
    fn the_ticker_ticks_only_while_a_call_runs() {
        let engine = engine();
        let ticker = Ticker::start(&engine);
        std::thread::sleep(EPOCH_TICK * 10);
        assert_eq!(ticker.ticks.load(Ordering::Relaxed), 0, "ticked while idle");

        let call = ticker.running();
        let ticking = std::time::Instant::now();
        while ticker.ticks.load(Ordering::Relaxed) < 3 {
            assert!(
                ticking.elapsed() < Duration::from_secs(10),
                "no tick while a call ran"
            );
            std::thread::sleep(EPOCH_TICK);
        }
        drop(call);
        // Give the ticker a tick to see that no call runs any more, then it stays still.
        std::thread::sleep(EPOCH_TICK * 3);
        let after = ticker.ticks.load(Ordering::Relaxed);
        std::thread::sleep(EPOCH_TICK * 10);
        assert_eq!(
            ticker.ticks.load(Ordering::Relaxed),
            after,
            "ticked after the call ended"
        );
    }
}
