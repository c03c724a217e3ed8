//! The sandbox: hostile plugins fail with the right typed error, within their limits, and the
//! host keeps serving good plugins afterwards.

use std::time::{Duration, Instant};

use serde_json::json;
use switchyard::plugins::{Decision, Limits, PluginError, Runtime};

use crate::common::plugins::{bundled, event, fixture, load, runtime};

async fn hostile(runtime: &Runtime, mode: &str) -> (Result<Decision, PluginError>, Duration) {
    let plugin = load(runtime, "hostile", fixture("hostile")).await;
    let report = runtime
        .transform(
            &plugin,
            event("t", json!({})),
            &json!({ "mode": mode }).to_string(),
        )
        .await;
    (report.result, report.duration)
}

/// After every failure the same runtime still runs a good plugin.
async fn assert_still_serving(runtime: &Runtime) {
    let reshape = load(runtime, "reshape", bundled("reshape")).await;
    let report = runtime
        .transform(&reshape, event("t", json!({"a": 1})), "null")
        .await;
    assert!(
        matches!(report.result, Ok(Decision::Deliver(_))),
        "good plugin failed after a hostile one: {:?}",
        report.result
    );
}

#[tokio::test]
async fn infinite_loop_times_out_near_the_deadline() {
    let rt = Runtime::new(
        Limits {
            deadline: Duration::from_millis(100),
            ..Limits::default()
        },
        None,
    )
    .unwrap();
    let started = Instant::now();
    let (result, _) = hostile(&rt, "loop").await;
    let elapsed = started.elapsed();
    assert_eq!(
        result,
        Err(PluginError::Timeout(Duration::from_millis(100)))
    );
    // Generous upper bound (shared CI machine): the point is "about the deadline", not seconds.
    assert!(elapsed < Duration::from_secs(3), "took {elapsed:?}");
    assert_still_serving(&rt).await;
}

#[tokio::test]
async fn unbounded_allocation_is_out_of_memory() {
    let rt = Runtime::new(
        Limits {
            memory_bytes: 16 << 20,
            ..Limits::default()
        },
        None,
    )
    .unwrap();
    let (result, _) = hostile(&rt, "alloc").await;
    match result {
        Err(PluginError::OutOfMemory { limit, stderr }) => {
            assert_eq!(limit, 16 << 20);
            assert!(
                stderr.contains("memory allocation"),
                "allocator message expected on stderr: {stderr:?}"
            );
        }
        other => panic!("expected out of memory, got {other:?}"),
    }
    assert_still_serving(&rt).await;
}

#[tokio::test]
async fn deep_recursion_overflows_the_stack() {
    let rt = runtime();
    let (result, _) = hostile(&rt, "recurse").await;
    assert_eq!(result, Err(PluginError::StackOverflow));
    // Big frames overflow Rust's shadow stack (in linear memory) before the wasm stack: still
    // a trap, never a crash of the host.
    let (result, _) = hostile(&rt, "recurse-frames").await;
    assert!(
        matches!(result, Err(PluginError::Trap { .. })),
        "{result:?}"
    );
    assert_still_serving(&rt).await;
}

#[tokio::test]
async fn huge_output_is_rejected() {
    let rt = runtime();
    let (result, _) = hostile(&rt, "huge").await;
    assert_eq!(
        result,
        Err(PluginError::OutputTooLarge {
            size: 2 << 20,
            limit: 1 << 20
        })
    );
    assert_still_serving(&rt).await;
}

#[tokio::test]
async fn panic_carries_the_panic_message() {
    let rt = runtime();
    let (result, _) = hostile(&rt, "panic").await;
    match result {
        Err(err @ PluginError::Trap { .. }) => {
            assert!(
                err.to_string().contains("plugin panicked on purpose"),
                "{err}"
            );
        }
        other => panic!("expected a trap, got {other:?}"),
    }
    assert_still_serving(&rt).await;
}

#[tokio::test]
async fn guest_error_and_forged_signature_header_are_errors() {
    let rt = runtime();
    let (result, _) = hostile(&rt, "err").await;
    assert_eq!(
        result,
        Err(PluginError::Guest("refusing this event on purpose".into()))
    );
    let (result, _) = hostile(&rt, "forge-signature").await;
    assert!(
        matches!(result, Err(PluginError::InvalidHeader(m)) if m.contains("webhook-signature"))
    );
}

#[tokio::test]
async fn every_call_starts_from_a_fresh_instance() {
    let rt = runtime();
    let plugin = load(&rt, "hostile", fixture("hostile")).await;
    for _ in 0..5 {
        let report = rt
            .transform(&plugin, event("t", json!({})), r#"{"mode":"count"}"#)
            .await;
        match report.result {
            Ok(Decision::Deliver(req)) => assert_eq!(req.body, b"1"),
            other => panic!("{other:?}"),
        }
    }
}

#[tokio::test]
async fn no_environment_and_no_filesystem() {
    let rt = runtime();
    let (result, _) = hostile(&rt, "env").await;
    assert!(matches!(result, Ok(Decision::Deliver(r)) if r.body == b"0"));
    let (result, _) = hostile(&rt, "fs").await;
    assert!(matches!(result, Err(PluginError::Guest(m)) if m.starts_with("no filesystem")),);
}

#[tokio::test]
async fn logs_and_stderr_are_captured_and_bounded() {
    let rt = runtime();
    let plugin = load(&rt, "hostile", fixture("hostile")).await;
    let report = rt
        .transform(&plugin, event("t", json!({})), r#"{"mode":"log"}"#)
        .await;
    let lines: Vec<(&str, &str)> = report
        .logs
        .iter()
        .map(|l| (l.level, l.message.as_str()))
        .collect();
    assert_eq!(
        lines,
        [("info", "first line"), ("warn", "event evt_01TEST")]
    );
    let report = rt
        .transform(&plugin, event("t", json!({})), r#"{"mode":"stderr"}"#)
        .await;
    assert!(
        report
            .logs
            .iter()
            .any(|l| l.level == "stderr" && l.message == "a line on stderr")
    );
    let report = rt
        .transform(&plugin, event("t", json!({})), r#"{"mode":"log-flood"}"#)
        .await;
    assert!(report.result.is_ok());
    assert!(report.logs.len() <= Limits::default().max_log_lines);
    assert!(report.dropped_logs > 0);
}

#[tokio::test]
async fn refuses_what_is_not_a_transformer_component() {
    let rt = runtime();
    let err = rt.load("x", b"not wasm at all".to_vec()).await.unwrap_err();
    assert!(matches!(err, PluginError::NotAComponent(_)), "{err:?}");
    let core_module = vec![0, b'a', b's', b'm', 1, 0, 0, 0];
    let err = rt.load("x", core_module).await.unwrap_err();
    assert!(
        matches!(&err, PluginError::NotAComponent(m) if m.contains("core")),
        "{err:?}"
    );
    let err = rt.load("x", fixture("wrong_world")).await.unwrap_err();
    assert!(
        matches!(&err, PluginError::WrongWorld(m) if m.contains("switchyard:plugin/transform")),
        "{err:?}"
    );
    let mut truncated = bundled("slack");
    truncated.truncate(truncated.len() / 2);
    let err = rt.load("x", truncated).await.unwrap_err();
    assert!(matches!(err, PluginError::Compile(_)), "{err:?}");
}

#[tokio::test]
async fn compiled_artefacts_are_cached_by_version() {
    let dir = tempfile::tempdir().unwrap();
    let digests = std::sync::Arc::new(switchyard::plugins::MemoryDigests::default());
    let cache = || Some(switchyard::plugins::Cache::new(dir.path(), digests.clone()));
    let rt = Runtime::new(Limits::default(), cache()).unwrap();
    let first = load(&rt, "slack", bundled("slack")).await;
    let cached: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert_eq!(cached.len(), 1);
    assert!(cached[0].to_string_lossy().starts_with(&first.version));
    // A new runtime (a restart) loads from the cache and still runs the plugin.
    let rt2 = Runtime::new(Limits::default(), cache()).unwrap();
    let second = load(&rt2, "slack", bundled("slack")).await;
    assert_eq!(first.version, second.version);
    let report = rt2
        .transform(
            &second,
            event("post.published", json!({"title": "Hi"})),
            "null",
        )
        .await;
    assert!(
        matches!(report.result, Ok(Decision::Deliver(_))),
        "{:?}",
        report.result
    );
}
