//! The admin key: wrong keys are limited per client address (and the right key elsewhere is
//! not affected), and the key can come from a file (a flag warns, since `ps` shows it).

use std::net::IpAddr;
use std::process::Command;
use std::time::Duration;

use serde::Deserialize;

use crate::common::server::KEY;
use crate::common::{TestServer, binary};

#[derive(Debug, Deserialize)]
struct ErrorBody {
    error: ErrorDetail,
}

#[derive(Debug, Deserialize)]
struct ErrorDetail {
    code: String,
    message: String,
}

fn client_from(ip: &str) -> reqwest::Client {
    switchyard::net::install_crypto_provider();
    reqwest::Client::builder()
        .local_address(ip.parse::<IpAddr>().unwrap())
        .build()
        .unwrap()
}

#[tokio::test]
async fn wrong_api_keys_are_limited_per_client_and_valid_keys_elsewhere_are_not() {
    let server = TestServer::start_with(|c| c.max_auth_failures = 5).await;
    let url = format!("{}/v1/subscriptions", server.base);
    let attacker = client_from("127.0.0.2");
    for n in 0..5 {
        let r = attacker
            .get(&url)
            .bearer_auth(format!("guess-{n}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401, "guess {n}");
    }
    let r = attacker
        .get(&url)
        .bearer_auth("guess-5")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429);
    let retry_after: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry_after), "{retry_after}");
    let body: ErrorBody = r.json().await.unwrap();
    assert_eq!(body.error.code, "rate_limited");
    assert!(
        body.error.message.contains("failed authentications"),
        "{}",
        body.error.message
    );
    // While blocked its key is not looked at, so guessing does not go faster.
    let r = attacker.get(&url).bearer_auth(KEY).send().await.unwrap();
    assert_eq!(r.status(), 429);
    // A client with the valid key, from another address, is not affected, however often.
    let user = client_from("127.0.0.3");
    for _ in 0..20 {
        let r = user.get(&url).bearer_auth(KEY).send().await.unwrap();
        assert_eq!(r.status(), 200);
    }
    // Unauthenticated routes stay open to everyone.
    let r = attacker
        .get(format!("{}/healthz", server.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_key_can_come_from_a_file_and_the_flag_warns() {
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("api.key");
    std::fs::write(&key_file, format!("{KEY}\n")).unwrap();
    let data = dir.path().join("data");
    let service = binary::start(
        &data,
        "",
        &["serve", "--api-key-file", key_file.to_str().unwrap()],
    );
    let http = reqwest::Client::new();
    let ok = crate::common::wait_until(Duration::from_secs(30), || async {
        http.get(format!("{}/v1/subscriptions", service.base))
            .bearer_auth(KEY)
            .send()
            .await
            .is_ok_and(|r| r.status() == 200)
    })
    .await;
    assert!(ok, "the key from the file was not accepted");
    assert!(
        !service.log.iter().any(|line| line.contains("WARN")),
        "{:?}",
        service.log
    );
    drop(service);
    let service = binary::start(&data, "", &["serve", "--api-key", KEY]);
    let warned = service
        .log
        .iter()
        .any(|line| line.contains("WARN") && line.contains("--api-key") && line.contains("ps"));
    assert!(warned, "no warning about --api-key: {:?}", service.log);
    drop(service);
    let help = Command::new(binary::BIN)
        .args(["serve", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(help.contains("--api-key-file"), "{help}");
    assert!(help.contains("SWITCHYARD_API_KEY_FILE"), "{help}");
    assert!(
        help.contains("Prefer the SWITCHYARD_API_KEY variable"),
        "{help}"
    );
}
