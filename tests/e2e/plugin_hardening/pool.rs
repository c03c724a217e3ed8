//! Issue 8 item 6: a plugin whose instance needs several core instances waits for room in
//! the pool instead of failing. Sixteen overlapping calls of a plugin with 8 core instances
//! more than a Rust plugin has need more core instances than the pool holds at once.

use std::time::Duration;

use serde_json::json;
use switchyard::plugins::{Decision, Limits, Runtime};

use super::components::with_extra_core_instances;
use crate::common::plugins::{event, fixture, load};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_of_a_many_instance_plugin_wait_for_room_instead_of_failing() {
    let runtime = Runtime::new(
        Limits {
            deadline: Duration::from_secs(30),
            ..Limits::default()
        },
        None,
    )
    .unwrap();
    let plugin = load(
        &runtime,
        "wide",
        with_extra_core_instances(&fixture("hostile"), 8),
    )
    .await;
    // Long enough to span several epoch ticks, so the calls really overlap.
    let config = json!({"mode": "spin", "iterations": 20_000_000}).to_string();
    let calls: Vec<_> = (0..16)
        .map(|_| {
            let (runtime, plugin, config) = (runtime.clone(), plugin.clone(), config.clone());
            tokio::spawn(async move {
                runtime
                    .transform(&plugin, event("t", json!({})), &config)
                    .await
                    .result
            })
        })
        .collect();
    let mut failures = Vec::new();
    for call in calls {
        match call.await.unwrap() {
            Ok(Decision::Deliver(_)) => {}
            other => failures.push(format!("{other:?}")),
        }
    }
    assert!(
        failures.is_empty(),
        "{} of 16 calls failed: {failures:#?}",
        failures.len()
    );
}
