//! Helpers shared by the end-to-end tests: a real service on an ephemeral port, a recording
//! receiver, a client that shows the body when a status is not the expected one, polling.

pub mod binary;
pub mod examples;
pub mod gated;
pub mod plugins;
pub mod process;
pub mod receiver;
pub mod server;

use std::time::Duration;

pub use receiver::TestReceiver;
pub use server::TestServer;

/// Polls `check` every 20 ms until it returns true or `timeout` passes; returns the last answer.
pub async fn wait_until<F, Fut>(timeout: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if check().await {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
