//! The `switchyard` command line, run as a user runs it: the real binary against a running
//! service, checking both the human output and the `--json` output, the exit codes, and the
//! server's error message on failure.

use std::process::Stdio;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::common::plugins::bundled;
use crate::common::server::KEY;
use crate::common::{TestReceiver, TestServer};

const BIN: &str = env!("CARGO_BIN_EXE_switchyard");

/// What one run printed and how it ended.
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}\nstderr: {}", self.stdout, self.stderr))
    }

    fn ok(self) -> Self {
        assert_eq!(
            self.code, 0,
            "stdout: {}\nstderr: {}",
            self.stdout, self.stderr
        );
        self
    }
}

/// A command with the connection in the environment, isolated from the user's profiles.
fn command(server: &TestServer, args: &[&str]) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(BIN);
    cmd.args(args)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("SWITCHYARD_URL", &server.base)
        .env("SWITCHYARD_API_KEY", KEY)
        .env("SWITCHYARD_PROFILES", "/nonexistent/profiles.toml")
        .kill_on_drop(true);
    cmd
}

async fn run(server: &TestServer, args: &[&str]) -> Run {
    let out = command(server, args).output().await.unwrap();
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

#[tokio::test]
async fn a_full_flow_with_human_and_json_output() {
    let server = TestServer::start().await;
    let receiver = TestReceiver::start().await;
    let url = receiver.url("/hook");

    let sub = run(
        &server,
        &[
            "subscriptions",
            "create",
            "--url",
            &url,
            "--events",
            "post.*,user.created",
            "--json",
        ],
    )
    .await
    .ok()
    .json();
    let id = sub["id"].as_str().unwrap().to_owned();
    let secret = sub["secret"].as_str().unwrap().to_owned();
    assert_eq!(sub["events"], json!(["post.*", "user.created"]));

    let human = run(&server, &["subscriptions", "list"]).await.ok();
    assert!(
        human.stdout.contains(&id) && human.stdout.contains(&url),
        "{}",
        human.stdout
    );
    assert!(
        human.stdout.contains("post.*,user.created"),
        "{}",
        human.stdout
    );

    let sent = run(
        &server,
        &[
            "events",
            "send",
            "post.published",
            "--data",
            r#"{"title":"Hi"}"#,
            "--id",
            "k-1",
        ],
    )
    .await
    .ok();
    assert!(sent.stdout.contains("deliveries"), "{}", sent.stdout);
    let again = run(
        &server,
        &[
            "events",
            "send",
            "post.published",
            "--data",
            r#"{"title":"Hi"}"#,
            "--id",
            "k-1",
            "--json",
        ],
    )
    .await
    .ok()
    .json();
    assert_eq!(
        again["deliveries"], 1,
        "the same idempotency key answers the same event"
    );
    let event_id = again["id"].as_str().unwrap().to_owned();
    assert!(sent.stdout.contains(&event_id), "{}", sent.stdout);

    let got = receiver.wait_for(1, Duration::from_secs(10)).await;
    let page = run(
        &server,
        &["deliveries", "list", "--event", &event_id, "--json"],
    )
    .await
    .ok()
    .json();
    let delivery = page["data"][0]["id"].as_str().unwrap().to_owned();
    server
        .wait_delivery(&delivery, "succeeded", Duration::from_secs(10))
        .await;
    let shown = run(&server, &["deliveries", "get", &delivery]).await.ok();
    assert!(
        shown.stdout.contains("succeeded") && shown.stdout.contains("204"),
        "{}",
        shown.stdout
    );
    let event = run(&server, &["events", "get", &event_id]).await.ok();
    assert!(
        event.stdout.contains(&delivery) && event.stdout.contains(r#"{"title":"Hi"}"#),
        "{}",
        event.stdout
    );

    // The received webhook verifies with the subscription's secret, and a changed body does not.
    let request = &got[0];
    let body = String::from_utf8(request.body.to_vec()).unwrap();
    let header = |n: &str| format!("{n}: {}", request.header(n).unwrap());
    let verify = |body: String| {
        let args = vec![
            "verify".to_owned(),
            "--secret".into(),
            secret.clone(),
            "--body".into(),
            body,
            "--header".into(),
            header("webhook-id"),
            "--header".into(),
            header("webhook-timestamp"),
            "--header".into(),
            header("webhook-signature"),
        ];
        let server = &server;
        async move {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            run(server, &args).await
        }
    };
    let valid = verify(body.clone()).await;
    assert_eq!(valid.code, 0, "{} {}", valid.stdout, valid.stderr);
    assert!(valid.stdout.starts_with("valid"), "{}", valid.stdout);
    let invalid = verify(body.replace("Hi", "Ho")).await;
    assert_eq!(invalid.code, 1, "{}", invalid.stdout);
    assert!(
        invalid.stdout.contains("none of the 1 v1 signature"),
        "{}",
        invalid.stdout
    );

    let tail = run(
        &server,
        &["deliveries", "tail", "--no-follow", "-n", "5", "--json"],
    )
    .await
    .ok();
    let line: Value = serde_json::from_str(tail.stdout.lines().last().unwrap()).unwrap();
    assert_eq!(line["delivery_id"], delivery.as_str());
    assert_eq!(line["outcome"], "succeeded");
    assert_eq!(line["subscription_id"], id.as_str());

    let updated = run(
        &server,
        &[
            "subscriptions",
            "update",
            &id,
            "--description",
            "mine",
            "--json",
        ],
    )
    .await
    .ok()
    .json();
    assert_eq!(updated["description"], "mine");
    assert_eq!(
        updated["events"],
        json!(["post.*", "user.created"]),
        "untouched fields stay"
    );
    run(&server, &["subscriptions", "delete", &id]).await.ok();
}

#[tokio::test]
async fn failures_print_the_servers_error_and_exit_non_zero() {
    let server = TestServer::start().await;
    let missing = run(&server, &["subscriptions", "get", "sub_nope"]).await;
    assert_eq!(missing.code, 1);
    assert!(
        missing.stderr.contains("404") && missing.stderr.contains("not found"),
        "{}",
        missing.stderr
    );

    let refused = run(
        &server,
        &[
            "subscriptions",
            "create",
            "--url",
            "ftp://x",
            "--events",
            "a.b",
        ],
    )
    .await;
    assert_eq!(refused.code, 1);
    assert!(
        refused.stderr.contains("422") && refused.stderr.contains("invalid_url"),
        "{}",
        refused.stderr
    );

    let mut cmd = command(&server, &["subscriptions", "list"]);
    cmd.env("SWITCHYARD_API_KEY", "wrong-key-0123456789");
    let out = cmd.output().await.unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("401"));

    let bad_json = run(&server, &["events", "send", "a.b", "--data", "{nope"]).await;
    assert_eq!(
        bad_json.code, 2,
        "bad input is a usage error: {}",
        bad_json.stderr
    );

    let mut cmd = command(&server, &["events", "send", "a.b"]);
    cmd.env("SWITCHYARD_URL", "http://127.0.0.1:9");
    let out = cmd.output().await.unwrap();
    assert_eq!(
        out.status.code(),
        Some(3),
        "an unreachable server has its own exit code"
    );
}

#[tokio::test]
async fn a_profile_file_supplies_server_and_key() {
    let server = TestServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let profiles = dir.path().join("profiles.toml");
    std::fs::write(
        &profiles,
        format!("[local]\nurl = \"{}\"\napi_key = \"{KEY}\"\n", server.base),
    )
    .unwrap();
    let mut cmd = command(
        &server,
        &["plugins", "list", "--profile", "local", "--json"],
    );
    cmd.env_remove("SWITCHYARD_URL")
        .env_remove("SWITCHYARD_API_KEY")
        .env("SWITCHYARD_PROFILES", &profiles);
    let out = cmd.output().await.unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let page: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(page["data"].is_array());

    let mut cmd = command(&server, &["plugins", "list", "--profile", "staging"]);
    cmd.env("SWITCHYARD_PROFILES", &profiles);
    let out = cmd.output().await.unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("\"staging\" not found"));
}

#[tokio::test]
async fn plugins_push_dry_run_and_tail_follows_live() {
    let server = TestServer::start().await;
    let receiver = TestReceiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("slack.wasm");
    std::fs::write(&file, bundled("slack")).unwrap();
    let pushed = run(
        &server,
        &["plugins", "push", "chat", file.to_str().unwrap()],
    )
    .await
    .ok();
    assert!(pushed.stdout.contains("ready"), "{}", pushed.stdout);
    let listed = run(&server, &["plugins", "list"]).await.ok();
    assert!(listed.stdout.contains("chat"), "{}", listed.stdout);
    let dry = run(
        &server,
        &[
            "plugins",
            "dry-run",
            "chat",
            "--type",
            "post.published",
            "--data",
            r#"{"title":"Hello"}"#,
            "--config",
            r#"{"title":"New post: {{data.title}}"}"#,
        ],
    )
    .await
    .ok();
    assert!(
        dry.stdout.contains("deliver") && dry.stdout.contains("New post: Hello"),
        "{}",
        dry.stdout
    );

    let sub = run(
        &server,
        &[
            "subscriptions",
            "create",
            "--url",
            &receiver.url("/h"),
            "--events",
            "*",
            "--json",
        ],
    )
    .await
    .ok()
    .json();
    let mut child = command(&server, &["deliveries", "tail", "-n", "1"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    // Let tail take its first (empty) look before the event exists.
    tokio::time::sleep(Duration::from_millis(300)).await;
    run(&server, &["events", "send", "order.paid"]).await.ok();
    let line = tokio::time::timeout(Duration::from_secs(10), lines.next_line())
        .await
        .expect("tail printed the new attempt")
        .unwrap()
        .unwrap();
    assert!(
        line.contains(sub["id"].as_str().unwrap()) && line.contains("order.paid"),
        "{line}"
    );
    assert!(line.contains("succeeded"), "{line}");
    child.kill().await.unwrap();
}

#[tokio::test]
async fn help_has_examples_and_completions_generate() {
    let server = TestServer::start().await;
    let help = run(&server, &["events", "send", "--help"]).await.ok();
    assert!(
        help.stdout.contains("Example:") && help.stdout.contains("switchyard events send"),
        "{}",
        help.stdout
    );
    let bash = run(&server, &["completions", "bash"]).await.ok();
    assert!(
        bash.stdout.contains("_switchyard"),
        "{}",
        &bash.stdout[..200.min(bash.stdout.len())]
    );
}

/// `tenants` and `keys`, and `--tenant`: a tenant, a key bound to it, a subscription and an
/// event made with that key land in the tenant; the key's lists show only its tenant.
#[tokio::test]
async fn tenants_keys_and_tenant_flags() {
    let server = TestServer::start().await;
    let put = run(
        &server,
        &[
            "tenants",
            "put",
            "ws_42",
            "--name",
            "Acme",
            "--metadata",
            r#"{"plan": "pro"}"#,
            "--json",
        ],
    )
    .await
    .ok();
    assert_eq!(put.json()["metadata"]["plan"], "pro");
    let bad = run(&server, &["tenants", "put", "a/b"]).await;
    assert_ne!(bad.code, 0);
    let listed = run(&server, &["tenants", "list", "--json"])
        .await
        .ok()
        .json();
    let ids: Vec<&str> = listed["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["default", "ws_42"]);
    let created = run(
        &server,
        &[
            "keys",
            "create",
            "--tenant",
            "ws_42",
            "--scopes",
            "subscriptions:read,subscriptions:write,events:write",
            "--expires-in",
            "1h",
            "--json",
        ],
    )
    .await
    .ok()
    .json();
    let key = created["key"].as_str().unwrap().to_owned();
    assert_eq!(created["tenant_id"], "ws_42");
    assert!(created["expires_at"].is_string());
    let human = run(&server, &["keys", "list", "--tenant", "ws_42"])
        .await
        .ok();
    assert!(
        human.stdout.contains(created["id"].as_str().unwrap()),
        "{}",
        human.stdout
    );
    assert!(
        !human.stdout.contains(&key),
        "the key itself is never listed"
    );

    // With the tenant's key: no --tenant needed, and it lands there.
    let as_tenant = |args: &[&str]| {
        let mut cmd = command(&server, args);
        cmd.env("SWITCHYARD_API_KEY", &key);
        cmd
    };
    let out = as_tenant(&[
        "subscriptions",
        "create",
        "--url",
        "http://127.0.0.1:9/hook",
        "--events",
        "*",
        "--json",
    ])
    .output()
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let sub: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(sub["tenant_id"], "ws_42");
    let out = as_tenant(&["events", "send", "a.b", "--tenant", "default"])
        .output()
        .await
        .unwrap();
    assert!(!out.status.success(), "another tenant is refused");
    assert!(String::from_utf8_lossy(&out.stderr).contains("forbidden"));
    // The admin key names the tenant.
    let sent = run(
        &server,
        &["events", "send", "a.b", "--tenant", "ws_42", "--json"],
    )
    .await
    .ok()
    .json();
    assert_eq!(sent["deliveries"], 1);
    let none = run(
        &server,
        &["subscriptions", "list", "--tenant", "default", "--json"],
    )
    .await
    .ok()
    .json();
    assert!(none["data"].as_array().unwrap().is_empty());
    run(
        &server,
        &["keys", "delete", created["id"].as_str().unwrap()],
    )
    .await
    .ok();
    let out = as_tenant(&["subscriptions", "list"])
        .output()
        .await
        .unwrap();
    assert!(!out.status.success(), "a revoked key is refused");
    run(&server, &["tenants", "delete", "ws_42"]).await.ok();
    server.stop().await;
}

/// A reader that goes away (`switchyard … | head`) ends the command quietly: status 0 and no
/// panic on the broken pipe. The pipe's read end is closed before the command starts, so its
/// first write meets the broken pipe whatever the timing.
#[test]
fn a_closed_pipe_on_stdout_ends_the_command_quietly() {
    let (reader, writer) = std::io::pipe().expect("pipe");
    drop(reader);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(["completions", "bash"])
        .stdout(writer)
        .stderr(std::process::Stdio::piped())
        .output()
        .expect("run switchyard");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(out.status.success(), "{:?}: {stderr}", out.status);
}
