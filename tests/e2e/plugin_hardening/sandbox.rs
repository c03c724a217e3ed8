//! Issue 9 item 8: the memory limit holds for a whole instance (the sum of all its memories),
//! and a WASI random-bytes request cannot make the host allocate past a small cap.

use serde_json::json;
use switchyard::plugins::{Decision, Limits, PluginError, Runtime};

use super::components::with_extra_memory;
use crate::common::plugins::{event, fixture, load};

async fn call(
    runtime: &Runtime,
    bytes: Vec<u8>,
    config: serde_json::Value,
) -> Result<Decision, PluginError> {
    let plugin = load(runtime, "hostile", bytes).await;
    runtime
        .transform(&plugin, event("t", json!({})), &config.to_string())
        .await
        .result
}

fn body(decision: Result<Decision, PluginError>) -> String {
    match decision {
        Ok(Decision::Deliver(request)) => String::from_utf8(request.body).unwrap(),
        other => panic!("expected a delivery, got {other:?}"),
    }
}

#[tokio::test]
async fn the_memory_limit_counts_every_memory_of_an_instance() {
    let runtime = Runtime::new(
        Limits {
            memory_bytes: 32 << 20,
            ..Limits::default()
        },
        None,
    )
    .unwrap();
    let hoard = json!({"mode": "alloc-mb", "mb": 12});
    // 12 MiB fit in one 32 MiB memory...
    assert_eq!(
        body(call(&runtime, fixture("hostile"), hoard.clone()).await),
        "12"
    );
    // ...but not beside a second memory of 24 MiB in the same instance.
    let two_memories = with_extra_memory(&fixture("hostile"), 24 * 16);
    let result = call(&runtime, two_memories, hoard).await;
    assert!(
        matches!(result, Err(PluginError::OutOfMemory { limit, .. }) if limit == 32 << 20),
        "{result:?}"
    );
}

#[tokio::test]
async fn random_bytes_requests_are_capped() {
    let runtime = Runtime::new(Limits::default(), None).unwrap();
    let small = json!({"mode": "random", "bytes": 64 << 10});
    assert_eq!(
        body(call(&runtime, fixture("hostile"), small).await),
        "65536"
    );
    // 4 MiB is well inside the 32 MiB memory limit, but more than a request may make the
    // host allocate.
    let large = json!({"mode": "random", "bytes": 4 << 20});
    let result = call(&runtime, fixture("hostile"), large).await;
    assert!(
        matches!(&result, Err(PluginError::Trap { message, .. }) if message.contains("exceeds limit")),
        "{result:?}"
    );
}
