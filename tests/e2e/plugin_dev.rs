//! The plugin author's loop, run as an author runs it: `switchyard plugins new` makes a project,
//! `build` builds it with the real toolchain, `test` runs its cases locally, `dev` pushes it (by upload and through the plugins
//! folder) and dry-runs a sample, re-running on every save, and `replay` shows what a stored
//! delivery's event becomes — checked against what the receiver really got.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde::Deserialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use switchyard::api::models::{DryRunOut, PluginOut};

use crate::common::examples;
use crate::common::plugins::bundled;
use crate::common::server::KEY;
use crate::common::{TestReceiver, TestServer};

const BIN: &str = env!("CARGO_BIN_EXE_switchyard");

/// The scaffolded Rust project's build output, kept between runs so only the first build of a
/// checkout compiles its dependencies.
fn scaffold_target() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("scaffold-target")
}

fn command(server: &TestServer, args: &[&str]) -> std::process::Command {
    let mut cmd = std::process::Command::new(BIN);
    cmd.args(args)
        .env("SWITCHYARD_URL", &server.base)
        .env("SWITCHYARD_API_KEY", KEY)
        .env("SWITCHYARD_PROFILES", "/nonexistent/profiles.toml")
        .env("CARGO_TARGET_DIR", scaffold_target());
    cmd
}

/// Runs a command to its end; its stdout, after checking it succeeded.
fn ok(cmd: &mut std::process::Command) -> String {
    let out = cmd.output().unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    assert!(
        out.status.success(),
        "{cmd:?}\nstdout: {stdout}\nstderr: {stderr}"
    );
    stdout
}

fn body_text(out: &DryRunOut) -> String {
    match out {
        DryRunOut::Deliver(d) => d.body.clone().unwrap_or_default(),
        DryRunOut::Skip(s) => panic!("skipped: {}", s.reason),
    }
}

#[derive(Deserialize)]
struct Replay {
    replayed: DryRunOut,
    same_version_as_last_attempt: Option<bool>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_rust_plugin_builds_runs_in_dev_and_replays_what_was_delivered() {
    let server = TestServer::start().await;
    let work = tempfile::tempdir().unwrap();
    let project = work.path().join("hello");
    let made = ok(
        command(&server, &["plugins", "new", "hello", "--lang", "rust"])
            .arg("--dir")
            .arg(&project),
    );
    assert!(made.contains("made"), "{made}");

    // Built as generated, by cargo, into a component.
    let built = ok(command(&server, &["plugins", "build"]).arg(&project));
    let component = PathBuf::from(built.trim());
    let bytes = std::fs::read(&component).unwrap();
    assert!(bytes.starts_with(b"\0asm"), "{}", component.display());
    let version = hex::encode(Sha256::digest(&bytes));

    // Its own cases pass locally, without a server; a case it does not meet fails the run.
    let passed = ok(command(&server, &["plugins", "test", "--json"])
        .arg(&project)
        .arg("--component")
        .arg(&component));
    let report: Value = serde_json::from_str(&passed).unwrap();
    assert_eq!(report["failed"], 0, "{report}");
    std::fs::write(
        project.join("cases/wrong.json"),
        r#"{"event": {"type": "a.b", "data": {"title": "T"}}, "expect": {"skip": "no"}}"#,
    )
    .unwrap();
    let failing = command(&server, &["plugins", "test"])
        .arg(&project)
        .arg("--component")
        .arg(&component)
        .output()
        .unwrap();
    assert_eq!(failing.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&failing.stdout);
    assert!(
        stdout.contains("wrong") && stdout.contains("FAILED"),
        "{stdout}"
    );
    std::fs::remove_file(project.join("cases/wrong.json")).unwrap();

    // One dev round by upload: the sample event.json of the project, dry-run.
    let out = ok(command(&server, &["plugins", "dev", "--once", "--json"])
        .arg(&project)
        .args(["--config", r#"{"prefix": "New"}"#]));
    let dry: DryRunOut = serde_json::from_str(&out).unwrap();
    assert_eq!(
        serde_json::from_str::<Value>(&body_text(&dry)).unwrap(),
        json!({"text": "New post.published: Hello from hello"})
    );
    let served: PluginOut = server.get("/v1/plugins/hello").await;
    assert_eq!(served.version.as_deref(), Some(version.as_str()));

    // And through the plugins folder the server watches, under another name.
    let folder = server.data_dir.join("plugins");
    ok(command(&server, &["plugins", "dev", "--once", "--json"])
        .arg(&project)
        .args(["--name", "hello-copy", "--plugins-dir"])
        .arg(&folder));
    let copied: PluginOut = server.get("/v1/plugins/hello-copy").await;
    assert_eq!(copied.version.as_deref(), Some(version.as_str()));

    // A delivery through it, replayed: the same body the receiver got, the same version.
    let receiver = TestReceiver::start().await;
    server
        .subscribe(json!({
            "url": receiver.url("/hook"),
            "events": ["post.*"],
            "plugin": "hello",
            "plugin_config": {"prefix": "New"},
        }))
        .await;
    let event = server
        .send_event(json!({"type": "post.published", "data": {"title": "Replay me"}}))
        .await;
    let got = receiver.wait_for(1, Duration::from_secs(20)).await;
    let event_id = event["id"].as_str().unwrap();
    let delivery = server.deliveries_of(event_id).await[0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    server
        .wait_delivery(&delivery, "succeeded", Duration::from_secs(10))
        .await;
    let out = ok(&mut command(
        &server,
        &["plugins", "replay", &delivery, "--json"],
    ));
    let replay: Replay = serde_json::from_str(&out).unwrap();
    assert_eq!(replay.same_version_as_last_attempt, Some(true));
    assert_eq!(body_text(&replay.replayed).as_bytes(), &got[0].body[..]);
}

#[tokio::test]
async fn a_folder_that_is_no_project_is_refused_with_a_reason() {
    let server = TestServer::start().await;
    let empty = tempfile::tempdir().unwrap();
    let out = command(&server, &["plugins", "build"])
        .arg(empty.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("not a plugin project"), "{stderr}");
}

/// `plugins dev` on a jq program: every save is dry-run again, with no build or upload.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_jq_program_is_run_again_on_every_save() {
    let server = TestServer::start().await;
    server.upload_plugin("jq", bundled("jq")).await;
    let dir = tempfile::tempdir().unwrap();
    let program = dir.path().join("slack.jq");
    std::fs::write(&program, r#"{text: "\(.type): \(.data.title)"}"#).unwrap();
    std::fs::write(
        dir.path().join("event.json"),
        r#"{"type": "post.published", "data": {"title": "Hi"}}"#,
    )
    .unwrap();
    let mut child = command(&server, &["plugins", "dev", "--json"])
        .arg(&program)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Each round prints one JSON document (pretty, several lines): read them as a stream.
    let stdout = child.stdout.take().unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    std::thread::spawn(move || {
        for doc in serde_json::Deserializer::from_reader(stdout).into_iter::<DryRunOut>() {
            let Ok(doc) = doc else { return };
            if tx.send(doc).is_err() {
                return;
            }
        }
    });
    let next = async |rx: &mut tokio::sync::mpsc::UnboundedReceiver<DryRunOut>| {
        let doc = tokio::time::timeout(Duration::from_secs(30), rx.recv()).await;
        let doc = doc.expect("no round within 30 s").expect("dev exited");
        serde_json::from_str::<Value>(&body_text(&doc)).unwrap()
    };
    assert_eq!(next(&mut rx).await, json!({"text": "post.published: Hi"}));
    // Let the watch start, then save a change.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let saved = Instant::now();
    std::fs::write(&program, r#"{text: "changed: \(.data.title)"}"#).unwrap();
    assert_eq!(next(&mut rx).await, json!({"text": "changed: Hi"}));
    eprintln!("jq program: save → result in {:?}", saved.elapsed());
    let _ = child.kill();
    let _ = child.wait();
}

/// `plugins new --lang js|js-quickjs|python` makes projects that their toolchains (the pinned
/// componentize-js, componentize-qjs and componentize-py the examples use) build as generated,
/// and that pass their own cases. Without node or python3 this skips with a message, except in CI.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_js_and_python_projects_build_with_their_toolchains_and_pass_their_cases() {
    let server = TestServer::start().await;
    let root = examples::workspace();
    // (scaffold language, toolchain examples/plugins/build.sh installs, where its tools are)
    for (lang, toolchain, bin) in [
        ("js", "js", "target/plugin-toolchains/js/node_modules/.bin"),
        (
            "js-quickjs",
            "js",
            "target/plugin-toolchains/js/node_modules/.bin",
        ),
        (
            "python",
            "python",
            "target/plugin-toolchains/python/venv/bin",
        ),
    ] {
        let install = std::process::Command::new("bash")
            .arg(root.join("examples/plugins/build.sh"))
            .args(["--install", toolchain])
            .output()
            .unwrap();
        match install.status.code() {
            Some(0) => {}
            Some(77) if !examples::in_ci() => {
                eprintln!(
                    "SKIPPED: the {lang} toolchain is not available here: {}",
                    String::from_utf8_lossy(&install.stderr).trim()
                );
                continue;
            }
            _ => panic!(
                "installing the {lang} toolchain failed: {}",
                String::from_utf8_lossy(&install.stderr)
            ),
        }
        let work = tempfile::tempdir().unwrap();
        let project = work.path().join(format!("hello-{lang}"));
        ok(
            command(&server, &["plugins", "new", "hello", "--lang", lang])
                .arg("--dir")
                .arg(&project),
        );
        let path = format!(
            "{}:{}",
            root.join(bin).display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let built = ok(command(&server, &["plugins", "build"])
            .arg(&project)
            .env("PATH", &path));
        let component = PathBuf::from(built.trim());
        let report: Value =
            serde_json::from_str(&ok(command(&server, &["plugins", "test", "--json"])
                .arg(&project)
                .arg("--component")
                .arg(&component)))
            .unwrap();
        assert_eq!(report["failed"], 0, "{lang}: {report}");
    }
}
