//! The bundled no-compile transform plugins, `jq` and `js`, as real components: every README
//! example (the files in `plugins/{jq,js}/examples/`) reproduced byte for byte, bad programs
//! refused with a 422 at subscription create and update, a PATCHed program live on the next
//! delivery, and a JavaScript loop stopped by the deadline.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::Method;
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Value, json};
use switchyard::plugins::{Decision, Limits, LoadedPlugin, PluginError, PluginEvent, Runtime};

use crate::common::plugins::{bundled, load, runtime};
use crate::common::receiver::TestReceiver;
use crate::common::server::TestServer;

const WAIT: Duration = Duration::from_secs(10);

/// Every example envelope carries this time (`2026-11-23T15:04:05Z`).
const TIMESTAMP: i64 = 1_795_446_245;

/// The envelope as an example file holds it.
#[derive(Deserialize)]
struct Envelope<'a> {
    id: String,
    #[serde(rename = "type")]
    event_type: String,
    timestamp: String,
    #[serde(borrow)]
    data: &'a RawValue,
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn event(path: &Path) -> PluginEvent {
    let text = read(path);
    let envelope: Envelope = serde_json::from_str(&text).unwrap();
    assert_eq!(envelope.timestamp, "2026-11-23T15:04:05Z");
    PluginEvent {
        id: envelope.id,
        event_type: envelope.event_type,
        timestamp: TIMESTAMP,
        subscription_id: "sub_01TEST".into(),
        payload: envelope.data.get().to_owned(),
    }
}

/// The example folders of a bundled plugin.
fn examples(plugin: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../plugins")
        .join(plugin)
        .join("examples");
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    assert_eq!(dirs.len(), 3, "{}", dir.display());
    dirs
}

/// Runs every example of `plugin` (whose source file is `source`) through the component.
async fn examples_reproduced(plugin: &str, source: &str) {
    let rt = runtime();
    let loaded = load(&rt, plugin, bundled(plugin)).await;
    for dir in examples(plugin) {
        // The config is the source file, as a JSON string.
        let config = Value::String(read(&dir.join(source))).to_string();
        rt.validate_config(&loaded, &config)
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        let report = rt
            .transform(&loaded, event(&dir.join("event.json")), &config)
            .await;
        let Ok(Decision::Deliver(request)) = report.result else {
            panic!("{}: {:?}", dir.display(), report.result);
        };
        assert_eq!(request.content_type, "application/json");
        assert!(request.headers.is_empty());
        assert_eq!(
            String::from_utf8(request.body).unwrap(),
            read(&dir.join("body.json")).trim_end(),
            "{}",
            dir.display()
        );
        let skipped = dir.join("skipped-event.json");
        if skipped.exists() {
            let report = rt.transform(&loaded, event(&skipped), &config).await;
            let reason = match report.result {
                Ok(Decision::Skip(reason)) => reason,
                other => panic!("{}: {other:?}", skipped.display()),
            };
            assert_eq!(reason, read(&dir.join("skip-reason.txt")).trim_end());
        }
    }
}

#[tokio::test]
async fn jq_readme_examples_are_reproduced_exactly() {
    examples_reproduced("jq", "program.jq").await;
}

#[tokio::test]
async fn js_readme_examples_are_reproduced_exactly() {
    examples_reproduced("js", "transform.js").await;
}

/// A server with the two plugins uploaded and a receiver.
async fn server() -> (TestServer, TestReceiver) {
    let server = TestServer::start().await;
    for name in ["jq", "js"] {
        server.upload_plugin(name, bundled(name)).await;
    }
    (server, TestReceiver::start().await)
}

/// Creating a subscription with this plugin config must be refused; returns the message.
async fn refused_at_create(server: &TestServer, url: &str, plugin: &str, config: Value) -> String {
    let body = json!({"url": url, "events": ["post.*"], "plugin": plugin, "plugin_config": config});
    let got = server
        .expect(Method::POST, "/v1/subscriptions", Some(body), 422)
        .await;
    assert_eq!(got["error"]["code"], "invalid_plugin_config", "{got}");
    got["error"]["message"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn bad_programs_are_refused_at_create_and_update() {
    let (server, receiver) = server().await;
    let url = receiver.url("/hook");

    let message = refused_at_create(&server, &url, "jq", json!(".data | {a: }")).await;
    assert_eq!(
        message,
        "plugin jq refused the config: jq program: 1:13: expected term, found `}`"
    );
    let message = refused_at_create(&server, &url, "jq", json!("now | todate")).await;
    assert!(
        message.contains("1:1: undefined filter `now/0`"),
        "{message}"
    );
    let message = refused_at_create(&server, &url, "jq", json!({"program": 1})).await;
    assert!(message.contains("`program` must be a string"), "{message}");

    let source = "function transform(e) {\n  return {a: };\n}";
    let message = refused_at_create(&server, &url, "js", json!(source)).await;
    // QuickJS built for wasm reports the column one past the token's start (2:14 here; 2:13
    // natively): the line and the token are what matter.
    assert!(
        message.starts_with(
            "plugin js refused the config: SyntaxError: unexpected token in expression: '}' (at transform.js:2:1"
        ),
        "{message}"
    );
    let message = refused_at_create(&server, &url, "js", json!("const x = 1")).await;
    assert!(
        message.contains("must define function transform"),
        "{message}"
    );
    // A loop at the top level is stopped by the deadline and refused, not hung on.
    let started = Instant::now();
    let message = refused_at_create(&server, &url, "js", json!("while (true) {}")).await;
    assert!(message.contains("timed out"), "{message}");
    assert!(started.elapsed() < Duration::from_secs(5));

    // An update is judged the same way and leaves the subscription as it was.
    for (plugin, good, bad) in [
        ("jq", json!("{v: 1}"), json!("{v: ")),
        (
            "js",
            json!("const transform = () => ({v: 1})"),
            json!("const transform = () => ({v: )"),
        ),
    ] {
        let sub = server
            .subscribe(
                json!({"url": url, "events": ["post.*"], "plugin": plugin, "plugin_config": good}),
            )
            .await;
        let path = format!("/v1/subscriptions/{}", sub["id"].as_str().unwrap());
        let got = server
            .expect(
                Method::PATCH,
                &path,
                Some(json!({"plugin_config": bad})),
                422,
            )
            .await;
        assert_eq!(got["error"]["code"], "invalid_plugin_config", "{got}");
        let now = server.expect(Method::GET, &path, None, 200).await;
        assert_eq!(now["plugin_config"], good);
    }
}

/// Sends an event and returns the body the receiver got for it.
async fn delivered(server: &TestServer, receiver: &TestReceiver, n: usize, title: &str) -> Value {
    server
        .send_event(json!({"type": "post.published", "data": {"title": title}}))
        .await;
    let got = receiver.wait_for(n, WAIT).await;
    got[n - 1].json()
}

#[tokio::test]
async fn a_patched_program_is_live_on_the_next_delivery() {
    let (server, receiver) = server().await;
    for (i, (plugin, first, second)) in [
        ("jq", json!("{title: .data.title, v: 1}"), json!({"program": "{title: .data.title, v: $args.v}", "args": {"v": 2}})),
        (
            "js",
            json!("function transform(e) { return {title: e.data.title, v: 1} }"),
            json!({"source": "const transform = (e, c) => ({title: e.data.title, v: c.v})", "config": {"v": 2}}),
        ),
    ]
    .into_iter()
    .enumerate()
    {
        let sub = server
            .subscribe(json!({"url": receiver.url("/hook"), "events": ["post.*"], "plugin": plugin, "plugin_config": first}))
            .await;
        let n = 2 * i;
        assert_eq!(
            delivered(&server, &receiver, n + 1, "one").await,
            json!({"title": "one", "v": 1})
        );
        let path = format!("/v1/subscriptions/{}", sub["id"].as_str().unwrap());
        server
            .expect(Method::PATCH, &path, Some(json!({"plugin_config": second})), 200)
            .await;
        assert_eq!(
            delivered(&server, &receiver, n + 2, "two").await,
            json!({"title": "two", "v": 2}),
            "{plugin}"
        );
        // One subscription at a time: the next plugin's events go to its own subscription.
        server.expect(Method::DELETE, &path, None, 204).await;
    }
}

/// A runtime whose calls have a 50 ms deadline.
async fn short_deadline(plugin: &str) -> (Runtime, Arc<LoadedPlugin>) {
    let limits = Limits {
        deadline: Duration::from_millis(50),
        ..Limits::default()
    };
    let rt = Runtime::new(limits, None).unwrap();
    let loaded = load(&rt, plugin, bundled(plugin)).await;
    (rt, loaded)
}

#[tokio::test]
async fn a_javascript_loop_is_stopped_by_the_deadline() {
    let (rt, js) = short_deadline("js").await;
    let config = json!("function transform() { while (true) {} }").to_string();
    rt.validate_config(&js, &config).await.unwrap();
    let started = Instant::now();
    let report = rt
        .transform(
            &js,
            crate::common::plugins::event("post.published", json!({})),
            &config,
        )
        .await;
    assert!(
        matches!(report.result, Err(PluginError::Timeout(d)) if d == Duration::from_millis(50)),
        "{:?}",
        report.result
    );
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    // The next call on the same plugin is unaffected (a fresh instance).
    let config = json!("function transform(e) { return e.type }").to_string();
    let report = rt
        .transform(
            &js,
            crate::common::plugins::event("post.published", json!({})),
            &config,
        )
        .await;
    assert!(matches!(report.result, Ok(Decision::Deliver(r)) if r.body == b"\"post.published\""));
}

#[tokio::test]
async fn a_jq_loop_is_stopped_by_the_deadline() {
    let (rt, jq) = short_deadline("jq").await;
    let config = json!("def f: f; f").to_string();
    let started = Instant::now();
    let report = rt
        .transform(
            &jq,
            crate::common::plugins::event("post.published", json!({})),
            &config,
        )
        .await;
    assert!(
        matches!(report.result, Err(PluginError::Timeout(_))),
        "{:?}",
        report.result
    );
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn logs_reach_the_dry_run() {
    let (server, _receiver) = server().await;
    for (plugin, config) in [
        ("jq", json!(".data | debug | {n}")),
        (
            "js",
            json!("function transform(e) { console.log('n is', e.data.n); return {n: e.data.n} }"),
        ),
    ] {
        let got = server
            .expect(
                Method::POST,
                &format!("/v1/plugins/{plugin}/dry-run"),
                Some(json!({"event": {"type": "post.published", "data": {"n": 7}}, "config": config})),
                200,
            )
            .await;
        assert_eq!(got["outcome"], "deliver", "{got}");
        let logs = got["logs"].as_array().unwrap();
        assert!(!logs.is_empty(), "{plugin}: {got}");
        let line = logs[0]["message"].as_str().unwrap();
        assert!(line.contains('7'), "{plugin}: {got}");
    }
}

/// QuickJS's heap limit sits below the sandbox's memory, so a script that allocates without
/// end gets a JavaScript error it can read in the attempt. (Filling 24 MiB takes QuickJS
/// ~110 ms in wasm, past the default deadline, so this runtime allows 2 s.) Unbounded
/// recursion overflows wasm's stack before QuickJS notices (see `JS_STACK` in the plugin): the
/// host's stack-overflow error, and the next call is unaffected.
#[tokio::test]
async fn javascript_memory_and_recursion_limits() {
    let limits = Limits {
        deadline: Duration::from_secs(2),
        ..Limits::default()
    };
    let rt = Runtime::new(limits, None).unwrap();
    let js = load(&rt, "js", bundled("js")).await;
    let call = |source: &str| {
        let (rt, js, config) = (rt.clone(), js.clone(), json!(source).to_string());
        async move {
            rt.transform(
                &js,
                crate::common::plugins::event("post.published", json!({})),
                &config,
            )
            .await
            .result
        }
    };
    let hungry =
        "function transform() { const keep = []; for (;;) keep.push('x'.repeat(1 << 22)); }";
    match call(hungry).await {
        Err(PluginError::Guest(message)) => {
            assert!(
                message.starts_with("InternalError: out of memory"),
                "{message}"
            )
        }
        other => panic!("{other:?}"),
    }
    let deep = "function f(n) { return f(n + 1) + 1 } function transform() { return f(0) }";
    assert!(matches!(call(deep).await, Err(PluginError::StackOverflow)));
    let fine =
        "function f(n) { return n ? f(n - 1) + 1 : 0 } function transform() { return f(20) }";
    assert!(matches!(call(fine).await, Ok(Decision::Deliver(r)) if r.body == b"20"));
}
