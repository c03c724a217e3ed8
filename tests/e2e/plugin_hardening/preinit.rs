//! Pre-initialisation (`host/src/plugins/preinit.rs`): a component's `wizer-initialize` runs
//! once as the service compiles it, in the compiler child. One that traps or never returns is
//! refused with the reason, within its deadline and the service's memory limit for a plugin,
//! and the service goes on serving.

use std::time::Duration;

use wasm_encoder::{BlockType, Instruction};

use super::budget::ErrorBody;
use super::components::with_initializer;
use super::process::Service;
use crate::common::plugins::bundled;

/// The initialiser's own deadline (`preinit.rs`), under a compile budget long enough that
/// the deadline, not the budget, stops it.
const DEADLINE: Duration = Duration::from_secs(10);

/// Uploads a component whose initialiser runs `body`; asserts a `422 compile` naming the
/// pre-initialisation and `why`, and returns how long the refusal took.
async fn refused(service: &Service, name: &str, body: &[Instruction<'_>], why: &str) -> Duration {
    let (status, json, took) = service.upload(name, with_initializer(body)).await;
    assert_eq!(status, 422, "{json}");
    let body: ErrorBody = serde_json::from_value(json).unwrap();
    assert_eq!(body.error.code, "compile", "{body:?}");
    assert!(
        body.error.message.contains("pre-initialising") && body.error.message.contains(why),
        "{body:?}"
    );
    took
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_initializer_that_traps_or_never_returns_is_refused_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let service = Service::start(dir.path(), &[("SWITCHYARD_PLUGIN_COMPILE_TIMEOUT", "60s")]).await;
    refused(
        &service,
        "traps",
        &[Instruction::Unreachable],
        "unreachable",
    )
    .await;
    let endless = [
        Instruction::Loop(BlockType::Empty),
        Instruction::Br(0),
        Instruction::End,
    ];
    let took = refused(&service, "loops", &endless, "the initialiser failed").await;
    assert!(
        took >= DEADLINE && took < DEADLINE + Duration::from_secs(20),
        "refused after {took:?}"
    );

    // The service still takes a good plugin.
    let (status, json, _) = service.upload("fine", bundled("reshape")).await;
    assert!(status == 200 || status == 201, "{json}");
}

/// An initialiser that grows its memory by `pages` 64 KiB pages, and traps if it cannot.
fn growing(pages: i32) -> [Instruction<'static>; 7] {
    [
        Instruction::I32Const(pages),
        Instruction::MemoryGrow(0),
        Instruction::I32Const(-1),
        Instruction::I32Eq,
        Instruction::If(BlockType::Empty),
        Instruction::Unreachable,
        Instruction::End,
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_initializer_is_held_to_the_services_memory_limit() {
    let dir = tempfile::tempdir().unwrap();
    let service = Service::start(dir.path(), &[("SWITCHYARD_PLUGIN_MEMORY_MB", "1")]).await;
    // 1 + 8 pages (576 KiB) fit in 1 MiB: pre-initialised, then refused only for not being a
    // plugin.
    let (status, json, _) = service.upload("small", with_initializer(&growing(8))).await;
    assert_eq!(status, 422, "{json}");
    let body: ErrorBody = serde_json::from_value(json).unwrap();
    assert_eq!(body.error.code, "wrong_world", "{body:?}");
    // 1 + 32 pages (2.06 MiB) do not: the compiler child holds the initialiser to
    // plugin_memory_mb, not to the built-in default of 32 MiB.
    refused(&service, "big", &growing(32), "unreachable").await;
}
