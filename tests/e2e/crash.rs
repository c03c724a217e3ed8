//! Crash safety: ingest under load, `kill -9` the service process, restart it on the same data
//! folder — every event that was answered `202` is delivered (at least once).
//!
//! The service runs in a child process: this test binary re-runs itself with
//! `--exact crash::child_service --ignored`, which starts the real service library on the
//! folder named in `SWITCHYARD_CRASH_DIR` and writes its port to `<dir>/port`.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::json;

use crate::common::receiver::Answer;
use crate::common::server::{KEY, test_config};
use crate::common::{TestReceiver, wait_until};

const DIR_VAR: &str = "SWITCHYARD_CRASH_DIR";

/// The service process of `killed_with_sigkill_loses_no_accepted_event`; does nothing when
/// run on its own.
#[test]
#[ignore = "started as a child process by crash::killed_with_sigkill_loses_no_accepted_event"]
fn child_service() {
    let Ok(dir) = std::env::var(DIR_VAR) else {
        return;
    };
    let dir = PathBuf::from(dir);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let tmp = dir.join("port.tmp");
        std::fs::write(&tmp, port.to_string()).unwrap();
        std::fs::rename(&tmp, dir.join("port")).unwrap();
        let config = test_config(dir.join("data"));
        switchyard::run(listener, config, std::future::pending())
            .await
            .unwrap();
    });
}

/// Kills the child on drop, so no service outlives the test.
struct ChildService(Child);

impl Drop for ChildService {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn start_child(dir: &Path) -> (ChildService, String) {
    let _ = std::fs::remove_file(dir.join("port"));
    let child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "crash::child_service",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(DIR_VAR, dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let child = ChildService(child);
    let port_file = dir.join("port");
    assert!(
        wait_until(Duration::from_secs(60), || async { port_file.exists() }).await,
        "child service did not start"
    );
    let base = format!(
        "http://127.0.0.1:{}",
        std::fs::read_to_string(&port_file).unwrap().trim()
    );
    let http = reqwest::Client::new();
    let healthy = wait_until(Duration::from_secs(30), || async {
        http.get(format!("{base}/healthz"))
            .send()
            .await
            .is_ok_and(|r| r.status() == 200)
    })
    .await;
    assert!(healthy, "child service never became healthy");
    (child, base)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_with_sigkill_loses_no_accepted_event() {
    switchyard::net::install_crypto_provider();
    let dir = tempfile::tempdir().unwrap();
    let receiver = TestReceiver::start().await;
    // A receiver that never answers before the kill, so deliveries are in flight (leased) and
    // pending when the process dies.
    receiver.always(Answer {
        status: 204,
        headers: vec![],
        delay: Duration::from_secs(30),
    });
    let (child, base) = start_child(dir.path()).await;
    let http = reqwest::Client::new();
    let created = http
        .post(format!("{base}/v1/subscriptions"))
        .bearer_auth(KEY)
        .json(&json!({"url": receiver.url("/"), "events": ["*"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);

    // Eight producers post events until the kill; only 202s count as accepted.
    let accepted = Arc::new(Mutex::new(HashSet::<String>::new()));
    let producers: Vec<_> = (0..8)
        .map(|p| {
            let (http, base, accepted) = (http.clone(), base.clone(), accepted.clone());
            tokio::spawn(async move {
                for i in 0.. {
                    let sent = http
                        .post(format!("{base}/v1/events"))
                        .bearer_auth(KEY)
                        .json(&json!({"type": "load.test", "data": {"producer": p, "i": i}}))
                        .send()
                        .await;
                    let Ok(response) = sent else { break };
                    if response.status() != 202 {
                        break;
                    }
                    let Ok(body) = response.json::<serde_json::Value>().await else {
                        break;
                    };
                    accepted
                        .lock()
                        .unwrap()
                        .insert(body["id"].as_str().unwrap().to_owned());
                }
            })
        })
        .collect();
    assert!(
        wait_until(Duration::from_secs(60), || async {
            accepted.lock().unwrap().len() >= 300
        })
        .await
    );
    drop(child); // SIGKILL, mid-load.
    for producer in producers {
        producer.await.unwrap();
    }
    let accepted = accepted.lock().unwrap().clone();
    let delivered_before = receiver.received().len();

    receiver.always(Answer::status(204));
    let (_child, _base) = start_child(dir.path()).await;
    let delivered_ids = || -> HashSet<String> {
        receiver
            .received()
            .iter()
            .filter_map(|r| r.header("webhook-id").map(str::to_owned))
            .collect()
    };
    let all = wait_until(Duration::from_secs(120), || async {
        accepted.is_subset(&delivered_ids())
    })
    .await;
    let missing: Vec<_> = accepted.difference(&delivered_ids()).cloned().collect();
    assert!(
        all,
        "{} of {} accepted events were never delivered, e.g. {:?}",
        missing.len(),
        accepted.len(),
        missing.first()
    );
    // Deliveries that were in flight at the kill are attempted again (at-least-once).
    let resent = wait_until(Duration::from_secs(60), || async {
        receiver.received().len() >= delivered_ids().len() + delivered_before
    })
    .await;
    assert!(
        resent,
        "deliveries in flight at the kill were not attempted again"
    );
    let total = receiver.received().len();
    eprintln!(
        "crash test: {} events accepted, {delivered_before} delivered before the kill, {total} deliveries in all ({} duplicates)",
        accepted.len(),
        total - delivered_ids().len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_releases_attempts_in_flight_for_the_next_start() {
    let dir = tempfile::tempdir().unwrap();
    let receiver = TestReceiver::start().await;
    // Answers long after the shutdown grace period: the attempt is still in flight at stop.
    receiver.always(Answer {
        status: 204,
        headers: vec![],
        delay: Duration::from_secs(30),
    });
    let mut config = test_config(dir.path().join("data"));
    config.delivery_timeout = Duration::from_secs(60);
    let server = crate::common::TestServer::start_config(config).await;
    server
        .subscribe(json!({"url": receiver.url("/"), "events": ["*"]}))
        .await;
    let event = server.send_event(json!({"type": "a.b", "data": {}})).await;
    receiver.wait_for(1, Duration::from_secs(15)).await;
    server.stop().await;

    receiver.always(Answer::status(204));
    let server =
        crate::common::TestServer::start_config(test_config(dir.path().join("data"))).await;
    let delivery = &server.deliveries_of(event["id"].as_str().unwrap()).await[0];
    let done = server
        .wait_delivery(
            delivery["id"].as_str().unwrap(),
            "succeeded",
            Duration::from_secs(15),
        )
        .await;
    assert_eq!(
        receiver.received().len(),
        2,
        "the released delivery is sent again after the restart"
    );
    assert_eq!(
        done["attempts"].as_array().unwrap().len(),
        1,
        "the interrupted attempt was never recorded"
    );
}
