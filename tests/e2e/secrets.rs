//! Subscription secrets: encrypted at rest (also when upgrading a plain-text database), a
//! wrong key refused at start, rotated-out secrets kept for their whole grace and then
//! cleared, and never a delivery without a valid signature.

use std::path::Path;
use std::time::Duration;

use reqwest::Method;
use serde::Deserialize;
use serde_json::json;
use switchyard::store::Store;

use crate::common::server::test_config;
use crate::common::{TestReceiver, TestServer, wait_until};

#[derive(Debug, Deserialize)]
struct Created {
    id: String,
    secret: String,
}

#[derive(Debug, Deserialize)]
struct Rotated {
    secret: String,
}

#[derive(Debug, Deserialize)]
struct DeliveryOut {
    id: String,
    status: String,
    last_error: Option<String>,
    attempts: Vec<AttemptOut>,
}

#[derive(Debug, Deserialize)]
struct AttemptOut {
    outcome: String,
    error: Option<String>,
    status_code: Option<u16>,
}

/// Every file of the database (main, log, index).
fn database_bytes(data: &Path) -> Vec<u8> {
    let mut all = Vec::new();
    for suffix in ["", "-wal", "-shm"] {
        if let Ok(bytes) = std::fs::read(data.join(format!("switchyard.db{suffix}"))) {
            all.extend(bytes);
        }
    }
    all
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

/// The part of a `whsec_` secret that is the key (what a thief would need).
fn key_part(secret: &str) -> &str {
    secret.trim_start_matches("whsec_")
}

#[tokio::test]
async fn the_database_holds_no_secret_in_plain_text() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = TestServer::start_config(test_config(data.clone())).await;
    let standard: Created = serde_json::from_value(
        server
            .subscribe(json!({"url": "http://127.0.0.1:9/a", "events": ["*"]}))
            .await,
    )
    .unwrap();
    let hex_secret = "a-receiver-chosen-secret-0123456789";
    let hex: Created = serde_json::from_value(
        server
            .subscribe(json!({
                "url": "http://127.0.0.1:9/b",
                "events": ["*"],
                "signature": {"scheme": "hmac-sha256-hex", "header": "x-hub-signature-256"},
                "secret": hex_secret,
            }))
            .await,
    )
    .unwrap();
    assert_eq!(hex.secret, hex_secret);
    let rotated: Rotated = serde_json::from_value(
        server
            .expect(
                Method::POST,
                &format!("/v1/subscriptions/{}/rotate-secret", standard.id),
                None,
                200,
            )
            .await,
    )
    .unwrap();
    let secrets = [
        key_part(&standard.secret),
        key_part(&rotated.secret),
        hex_secret,
    ];
    // While running (the write-ahead log) and after a clean stop (the main file).
    let running = database_bytes(&data);
    server.stop().await;
    let stopped = database_bytes(&data);
    for secret in secrets {
        assert!(
            !contains(&running, secret),
            "{secret} is in the running database"
        );
        assert!(
            !contains(&stopped, secret),
            "{secret} is in the database file"
        );
    }
}

/// The schema of the first release, with secrets in plain text.
const OLD_SCHEMA: &str = include_str!("../../host/migrations/0001_init.sql");

#[tokio::test]
async fn an_old_plain_text_database_is_encrypted_in_place_and_still_signs() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let receiver = TestReceiver::start().await;
    let (current, previous) = (
        "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD",
    );
    {
        let conn = rusqlite::Connection::open(data.join("switchyard.db")).unwrap();
        conn.pragma_update(None, "journal_mode", "WAL").unwrap();
        conn.execute_batch(OLD_SCHEMA).unwrap();
        conn.pragma_update(None, "user_version", 1).unwrap();
        let far = i64::MAX / 2;
        conn.execute(
            "INSERT INTO subscriptions (id, url, events, headers, signature, secret, previous_secret,
             previous_secret_expires_at, created_at, updated_at)
             VALUES ('sub_old', ?1, '[\"*\"]', '{}', '{\"scheme\":\"standard-webhooks\"}', ?2, ?3, ?4, 1, 1)",
            (receiver.url("/"), current, previous, far),
        )
        .unwrap();
    }
    assert!(
        contains(&database_bytes(&data), key_part(current)),
        "the test's own setup"
    );
    let server = TestServer::start_config(test_config(data.clone())).await;
    // Upgraded at start: no plain copy anywhere, not even in free pages or the log.
    let bytes = database_bytes(&data);
    for secret in [current, previous] {
        assert!(
            !contains(&bytes, key_part(secret)),
            "{secret} is still in the file"
        );
    }
    // And both still sign.
    server.send_event(json!({"type": "a.b", "data": {}})).await;
    let got = receiver.wait_for(1, Duration::from_secs(15)).await;
    let request = &got[0];
    for secret in [current, previous] {
        standardwebhooks::Webhook::new(secret)
            .unwrap()
            .verify(&request.body, &request.headers)
            .unwrap_or_else(|e| panic!("not signed with {secret}: {e:?}"));
    }
    assert_eq!(
        request
            .header("webhook-signature")
            .unwrap()
            .split(' ')
            .count(),
        2
    );
    server.stop().await;
}

#[tokio::test]
async fn a_wrong_secrets_key_is_a_clear_start_up_error() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let config = test_config(data.clone());
    let server = TestServer::start_config(config.clone()).await;
    server
        .subscribe(json!({"url": "http://127.0.0.1:9/a", "events": ["*"]}))
        .await;
    server.stop().await;
    // Another key in the key file (say, a backup restored next to the wrong key).
    let mut other = [0u8; 32];
    other[0] = 1;
    std::fs::write(data.join("secrets.key"), hex::encode(other)).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let started = tokio::time::timeout(
        Duration::from_secs(30),
        switchyard::run(listener, config, std::future::pending()),
    )
    .await
    .expect("the service started with a wrong key and served");
    let err = started.expect_err("the service accepted a wrong secrets key");
    let message = err.to_string();
    assert!(
        message.contains("secrets key") || message.contains("the key in"),
        "{message}"
    );
    assert!(message.contains("not the key"), "{message}");
}

/// Reads the rotated-out secrets columns as stored, whatever the schema calls them: each
/// value that is not empty.
fn stored_previous_secrets(data: &Path, id: &str) -> Vec<String> {
    let conn = rusqlite::Connection::open(data.join("switchyard.db")).unwrap();
    let mut stmt = conn
        .prepare("SELECT * FROM subscriptions WHERE id = ?")
        .unwrap();
    let names: Vec<String> = stmt.column_names().iter().map(|s| s.to_string()).collect();
    let mut rows = stmt.query([id]).unwrap();
    let row = rows.next().unwrap().unwrap();
    let mut found = Vec::new();
    for (i, name) in names.iter().enumerate() {
        if name.starts_with("previous_secret") && !name.ends_with("expires_at") {
            let value: Option<String> = row.get(i).unwrap();
            if let Some(value) = value.filter(|v| v != "[]") {
                found.push(value);
            }
        }
    }
    found
}

#[tokio::test]
async fn a_previous_secret_past_its_grace_is_cleared() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut config = test_config(data.clone());
    config.rotation_grace = Duration::from_millis(300);
    let receiver = TestReceiver::start().await;
    let server = TestServer::start_config(config.clone()).await;
    let sub: Created = serde_json::from_value(
        server
            .subscribe(json!({"url": receiver.url("/"), "events": ["*"]}))
            .await,
    )
    .unwrap();
    server
        .expect(
            Method::POST,
            &format!("/v1/subscriptions/{}/rotate-secret", sub.id),
            None,
            200,
        )
        .await;
    assert_eq!(stored_previous_secrets(&data, &sub.id).len(), 1);
    let rotated_at = std::time::Instant::now();
    assert!(
        wait_until(Duration::from_secs(5), || async {
            rotated_at.elapsed() > Duration::from_millis(400)
        })
        .await
    );
    // Past its grace it no longer signs...
    server.send_event(json!({"type": "a.b", "data": {}})).await;
    let got = receiver.wait_for(1, Duration::from_secs(15)).await;
    assert_eq!(
        got[0]
            .header("webhook-signature")
            .unwrap()
            .split(' ')
            .count(),
        1
    );
    // ...and is gone from the database (swept at start and periodically).
    server.stop().await;
    let server = TestServer::start_config(config).await;
    assert!(
        wait_until(Duration::from_secs(5), || async {
            stored_previous_secrets(&data, &sub.id).is_empty()
        })
        .await,
        "the expired previous secret is still stored: {:?}",
        stored_previous_secrets(&data, &sub.id)
    );
    server.stop().await;
}

#[tokio::test]
async fn rotating_twice_inside_the_grace_keeps_both_earlier_secrets_signing() {
    let receiver = TestReceiver::start().await;
    let server = TestServer::start().await;
    let sub: Created = serde_json::from_value(
        server
            .subscribe(json!({"url": receiver.url("/"), "events": ["*"]}))
            .await,
    )
    .unwrap();
    let rotate = || async {
        let r: Rotated = serde_json::from_value(
            server
                .expect(
                    Method::POST,
                    &format!("/v1/subscriptions/{}/rotate-secret", sub.id),
                    None,
                    200,
                )
                .await,
        )
        .unwrap();
        r.secret
    };
    let first = rotate().await;
    let second = rotate().await;
    server.send_event(json!({"type": "a.b", "data": {}})).await;
    let got = receiver.wait_for(1, Duration::from_secs(15)).await;
    let request = &got[0];
    assert_eq!(
        request
            .header("webhook-signature")
            .unwrap()
            .split(' ')
            .count(),
        3
    );
    for secret in [&second, &first, &sub.secret] {
        standardwebhooks::Webhook::new(secret)
            .unwrap()
            .verify(&request.body, &request.headers)
            .unwrap_or_else(|e| panic!("not signed with {secret}: {e:?}"));
    }
}

/// A subscription whose stored secret cannot serve its scheme (what a PATCH of the scheme
/// alone used to leave) never produces a request: the attempt fails and says why.
#[tokio::test]
async fn a_secret_that_cannot_sign_fails_the_attempt_instead_of_sending_unsigned() {
    let dir = tempfile::tempdir().unwrap();
    let config = test_config(dir.path().join("data"));
    let receiver = TestReceiver::start().await;
    let server = TestServer::start_config(config.clone()).await;
    let sub: Created = serde_json::from_value(
        server
            .subscribe(json!({"url": receiver.url("/"), "events": ["*"]}))
            .await,
    )
    .unwrap();
    server.stop().await;
    let store = Store::open(&config.database_path()).await.unwrap();
    // A hex-scheme text secret under standard-webhooks; the old secret's grace ends at once.
    assert!(
        store
            .rotate_secret(&sub.id, "a-text-secret-for-hex-scheme", 0)
            .await
            .unwrap()
    );
    store.close().await;

    let server = TestServer::start_config(config).await;
    let event = server.send_event(json!({"type": "a.b", "data": {}})).await;
    let id = server.deliveries_of(event["id"].as_str().unwrap()).await[0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let path = format!("/v1/deliveries/{id}");
    let finished = wait_until(Duration::from_secs(15), || async {
        let d: DeliveryOut =
            serde_json::from_value(server.expect(Method::GET, &path, None, 200).await).unwrap();
        d.status == "failed" || d.status == "succeeded"
    })
    .await;
    assert!(finished, "the delivery never finished");
    let sent = receiver.received();
    assert!(
        sent.is_empty(),
        "a request was sent, with webhook-signature {:?}",
        sent[0].header("webhook-signature")
    );
    let done: DeliveryOut =
        serde_json::from_value(server.expect(Method::GET, &path, None, 200).await).unwrap();
    assert_eq!(done.id, id);
    assert_eq!(done.status, "failed");
    assert_eq!(
        done.attempts.len(),
        3,
        "retried on the schedule like other failures"
    );
    for attempt in &done.attempts {
        assert_eq!(attempt.outcome, "failed");
        assert_eq!(attempt.status_code, None);
        let error = attempt.error.as_deref().unwrap_or_default();
        assert!(error.contains("cannot sign"), "{error}");
    }
    assert!(
        done.last_error
            .unwrap_or_default()
            .contains("rotate the secret")
    );
    server.stop().await;
}
