//! The example plugins in every language (`examples/plugins/{rust,js,python}`, and the
//! JavaScript one also built with QuickJS), built from source with their pinned toolchains'
//! default commands, through the real service: uploaded as the toolchain wrote them, dry-run,
//! delivered, and called 32 at once without a failure.

use std::time::Duration;

use futures::future::join_all;
use reqwest::Method;
use serde_json::{Value, json};
use switchyard::api::models::{DeliveryDetailOut, DryRunOut, PluginOut, PluginStatusOut};

use crate::common::examples::{Example, example};
use crate::common::{TestReceiver, TestServer};

const WAIT: Duration = Duration::from_secs(30);
/// Calls at once.
const CONCURRENT: usize = 32;

fn config() -> Value {
    json!({
        "title": "New post: {{data.title}}",
        "text": "*{{data.author.name}}* wrote <{{data.url}}|{{data.title}}>",
        "fields": ["data.author.name", "data.words", "data.tags"],
        "skip_types": ["post.draft*"]
    })
}

fn data(n: usize) -> Value {
    json!({"title": format!("Ships & Boats {n}"), "url": "https://blog.example/ships", "words": 1200,
           "tags": ["sea", "travel"], "author": {"name": "Ann"}})
}

/// The body every example sends for `data(n)` and `config()`, but for the context line's
/// timestamp (the event's, which the test does not choose).
fn expected_blocks(n: usize) -> Value {
    json!([
        {"type": "header", "text": {"type": "plain_text", "text": format!("New post: Ships & Boats {n}"), "emoji": true}},
        {"type": "section", "text": {"type": "mrkdwn", "text": format!("*Ann* wrote <https://blog.example/ships|Ships &amp; Boats {n}>")}},
        {"type": "section", "fields": [
            {"type": "mrkdwn", "text": "*name*\nAnn"},
            {"type": "mrkdwn", "text": "*words*\n1200"},
            {"type": "mrkdwn", "text": "*tags*\n[\"sea\",\"travel\"]"}
        ]}
    ])
}

/// Checks a Slack body: the blocks before the context line, and the context line's start.
fn check_body(body: &Value, n: usize, event_id: &str) {
    let blocks = body["blocks"].as_array().unwrap();
    assert_eq!(blocks.len(), 4, "{body:#}");
    assert_eq!(
        Value::Array(blocks[..3].to_vec()),
        expected_blocks(n),
        "{body:#}"
    );
    let context = blocks[3]["elements"][0]["text"].as_str().unwrap();
    assert!(
        context.starts_with(&format!("`post.published` · {event_id} · 20")),
        "{context}"
    );
    assert_eq!(
        body["text"],
        format!(
            "New post: Ships &amp; Boats {n}\n*Ann* wrote <https://blog.example/ships|Ships &amp; Boats {n}>"
        )
    );
}

async fn dry_run(server: &TestServer, name: &str, event_type: &str, n: usize) -> DryRunOut {
    server
        .typed(
            Method::POST,
            &format!("/v1/plugins/{name}/dry-run"),
            Some(
                json!({"event": {"type": event_type, "id": format!("evt_{n}"), "data": data(n)},
                        "config": config()}),
            ),
            200,
        )
        .await
}

async fn through_the_service(which: Example) {
    let Some(bytes) = example(which) else { return };
    let name = which.name();
    let server = TestServer::start().await;
    // Exactly what the toolchain wrote, uploaded as it is. The big guests ask for a longer
    // deadline (a per-plugin limit): in the whole suite on 2 cores, 32 calls at once of an
    // 18 MB Python guest (14 core instances each, so 9 fit in the pool at once) wait longer
    // than the default 100 ms for room.
    let query = match which {
        Example::Rust | Example::JsQuickJs => "",
        Example::Js | Example::Python => "?timeout_ms=1000",
    };
    let response = server
        .request(Method::PUT, &format!("/v1/plugins/{name}{query}"))
        .header("content-type", "application/wasm")
        .body(bytes.clone())
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    assert_eq!(status, 201, "upload of the {name} example: {text}");
    let uploaded: PluginOut = serde_json::from_str(&text).unwrap();
    assert_eq!(uploaded.status, PluginStatusOut::Ready, "{text}");
    assert_eq!(uploaded.size, Some(bytes.len() as u64));

    match dry_run(&server, name, "post.published", 1).await {
        DryRunOut::Deliver(d) => {
            assert_eq!(d.content_type, "application/json");
            check_body(
                &serde_json::from_str(d.body.as_deref().unwrap()).unwrap(),
                1,
                "evt_1",
            );
            assert_eq!(d.logs.len(), 1, "{:?}", d.logs);
            assert_eq!(d.logs[0].message, "formatted evt_1 as 4 blocks");
            eprintln!("{name}: a dry run's call took {} µs", d.duration_us);
        }
        DryRunOut::Skip(s) => panic!("{name} skipped a published post: {}", s.reason),
    }
    match dry_run(&server, name, "post.draft.saved", 1).await {
        DryRunOut::Skip(s) => assert_eq!(
            s.reason,
            "event type `post.draft.saved` matches skip_types entry `post.draft*`"
        ),
        DryRunOut::Deliver(d) => panic!("{name} delivered a draft: {:?}", d.body),
    }
    // A bad config is refused at create, with the plugin's message.
    let refused = server
        .expect(
            Method::POST,
            "/v1/subscriptions",
            Some(
                json!({"url": "http://127.0.0.1:9/x", "events": ["post.*"], "plugin": name,
                        "plugin_config": {"title": "{{data.title"}}),
            ),
            422,
        )
        .await;
    let message = refused["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("`title` has an unclosed `{{`"),
        "{message}"
    );

    // 32 dry runs at once: every one answered, every body right.
    let runs = join_all((0..CONCURRENT).map(|n| dry_run(&server, name, "post.published", n))).await;
    for (n, run) in runs.into_iter().enumerate() {
        match run {
            DryRunOut::Deliver(d) => check_body(
                &serde_json::from_str(d.body.as_deref().unwrap()).unwrap(),
                n,
                &format!("evt_{n}"),
            ),
            DryRunOut::Skip(s) => panic!("{name} skipped: {}", s.reason),
        }
    }

    // Delivered: 32 events at once, each delivered on its first attempt.
    let receiver = TestReceiver::start().await;
    server
        .subscribe(
            json!({"url": receiver.url("/slack"), "events": ["post.*"], "plugin": name,
                          "plugin_config": config()}),
        )
        .await;
    let events: Vec<Value> = join_all(
        (0..CONCURRENT)
            .map(|n| server.send_event(json!({"type": "post.published", "data": data(n)}))),
    )
    .await;
    let got = receiver.wait_for(CONCURRENT, WAIT).await;
    assert_eq!(got.len(), CONCURRENT);
    for (n, event) in events.iter().enumerate() {
        let id = event["id"].as_str().unwrap();
        let body = got
            .iter()
            .map(|r| r.json())
            .find(|b| b["blocks"][0]["text"]["text"] == format!("New post: Ships & Boats {n}"))
            .unwrap_or_else(|| panic!("event {n} was not delivered"));
        check_body(&body, n, id);
        let delivery = &server.deliveries_of(id).await[0];
        let done = server
            .wait_delivery(delivery["id"].as_str().unwrap(), "succeeded", WAIT)
            .await;
        let done: DeliveryDetailOut = serde_json::from_value(done).unwrap();
        assert_eq!(
            done.delivery.attempts_made, 1,
            "{name}: event {n} needed a retry: {:?}",
            done.attempts
        );
        assert_eq!(done.attempts[0].plugin_version, uploaded.version);
    }
    server.stop().await;
}

#[tokio::test]
async fn the_rust_example_through_the_service() {
    through_the_service(Example::Rust).await;
}

#[tokio::test]
async fn the_javascript_example_through_the_service() {
    through_the_service(Example::Js).await;
}

#[tokio::test]
async fn the_javascript_example_built_with_quickjs_through_the_service() {
    through_the_service(Example::JsQuickJs).await;
}

#[tokio::test]
async fn the_python_example_through_the_service() {
    through_the_service(Example::Python).await;
}

/// componentize-js's default build imports `wasi:http` (so a service that does not link it
/// refuses the component as `wrong_world`); the host links one that refuses every request.
#[test]
fn the_default_javascript_build_imports_wasi_http() {
    let Some(bytes) = example(Example::Js) else {
        return;
    };
    let imports = component_imports(&bytes);
    assert!(
        imports.iter().any(|i| i.starts_with("wasi:http/types@")),
        "{imports:?}"
    );
    let Some(python) = example(Example::Python) else {
        return;
    };
    let imports = component_imports(&python);
    assert!(
        imports.iter().any(|i| i.starts_with("wasi:sockets/tcp@")),
        "{imports:?}"
    );
}

fn component_imports(bytes: &[u8]) -> Vec<String> {
    let mut names = Vec::new();
    let mut depth = 0_u32;
    for payload in wasmparser::Parser::new(0).parse_all(bytes) {
        match payload.unwrap() {
            wasmparser::Payload::Version { .. } => depth += 1,
            wasmparser::Payload::End(_) => depth -= 1,
            wasmparser::Payload::ComponentImportSection(reader) if depth == 1 => {
                for import in reader {
                    names.push(import.unwrap().name.name.to_owned());
                }
            }
            _ => {}
        }
    }
    names
}
