//! Tests of the URL checks: what `check_url` accepts and refuses, and that `post` refuses an
//! internal destination before connecting (by name or IP literal).

use std::sync::atomic::Ordering;

use url::Url;

use super::destination::MAX_URL_LEN;
use super::tests::{counting_listener, guarded, open, post_to};
use super::*;

#[track_caller]
fn assert_forbidden(result: Result<Url, NetError>, url: &str) {
    match result {
        Err(NetError::Forbidden { .. }) => {}
        other => panic!("{url}: expected Forbidden, got {other:?}"),
    }
}

#[track_caller]
fn assert_invalid(result: Result<Url, NetError>, url: &str) {
    match result {
        Err(NetError::InvalidUrl(_)) => {}
        other => panic!("{url}: expected InvalidUrl, got {other:?}"),
    }
}

#[test]
fn check_url_accepts_public_https() {
    let client = guarded();
    for url in [
        "https://example.com/hook",
        "https://example.com:8443/a/b?c=d",
        "https://93.184.216.34/hook",
        "https://[2606:4700::1111]/hook",
    ] {
        assert!(client.check_url(url).is_ok(), "{url}");
    }
}

#[test]
fn check_url_refuses_malformed_or_unsupported_urls() {
    let client = guarded();
    let long = format!("https://example.com/{}", "a".repeat(MAX_URL_LEN));
    for url in [
        "http://example.com/hook",
        "ftp://example.com/",
        "file:///etc/passwd",
        "gopher://example.com/",
        "javascript:alert(1)",
        "/relative/path",
        "https://",
        "https://user:pass@example.com/",
        "https://user@example.com/",
        "https://:pass@example.com/",
        long.as_str(),
    ] {
        assert_invalid(client.check_url(url), url);
    }
    let open = open();
    assert_invalid(open.check_url("ftp://127.0.0.1/"), "ftp with allow_private");
    assert_invalid(
        open.check_url("http://u:p@127.0.0.1/"),
        "userinfo with allow_private",
    );
}

#[test]
fn check_url_refuses_internal_ip_literals_in_any_spelling() {
    let client = guarded();
    for url in [
        "https://127.0.0.1/",
        "https://[::1]/",
        "https://[::ffff:127.0.0.1]/",
        "https://[::ffff:7f00:1]/",
        "https://2130706433/",
        "https://0x7f.1/",
        "https://0177.0.0.1/",
        "https://127.1/",
        "https://127.0.0.1./",
        "https://169.254.169.254/latest/meta-data",
        "https://10.0.0.1/",
        "https://[fe80::1]/",
        "https://0.0.0.0/",
        "https://[::]/",
        "https://[64:ff9b::10.0.0.1]/",
    ] {
        assert_forbidden(client.check_url(url), url);
    }
    match client.check_url("https://0x7f.1/") {
        Err(NetError::Forbidden { host, reason }) => {
            assert_eq!((host.as_str(), reason), ("127.0.0.1", "loopback"));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn allow_private_networks_accepts_loopback_over_http_and_https() {
    let client = open();
    for url in [
        "http://127.0.0.1:8080/hook",
        "https://127.0.0.1/",
        "http://[::1]/",
        "https://[::1]:9000/",
        "http://localhost/",
        "http://2130706433/",
        "http://10.0.0.1/",
    ] {
        assert!(client.check_url(url).is_ok(), "{url}");
    }
}

#[test]
fn error_kinds_are_stable() {
    let kinds = [
        NetError::InvalidUrl(String::new()).kind(),
        NetError::Forbidden {
            host: String::new(),
            reason: "",
        }
        .kind(),
        NetError::Dns(String::new()).kind(),
        NetError::Connect(String::new()).kind(),
        NetError::Timeout.kind(),
        NetError::Http(String::new()).kind(),
    ];
    assert_eq!(
        kinds,
        [
            "invalid_url",
            "forbidden_address",
            "dns",
            "connect",
            "timeout",
            "http"
        ]
    );
}

#[tokio::test]
async fn a_name_resolving_to_loopback_is_refused_before_connecting() {
    let (addr, accepted) = counting_listener().await;
    let client = guarded();
    let result = post_to(&client, &format!("https://localhost:{}/", addr.port())).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(accepted.load(Ordering::SeqCst), 0, "{result:?}");
    match result {
        Err(NetError::Forbidden { host, reason }) => {
            assert!(host.starts_with("localhost ("), "{host}");
            assert_eq!(reason, "loopback");
        }
        other => panic!("expected Forbidden, got {other:?}"),
    }
}

#[tokio::test]
async fn post_checks_ip_literals_itself() {
    let (addr, accepted) = counting_listener().await;
    let client = guarded();
    // An URL that skipped check_url: reqwest never resolves an IP literal.
    let result = post_to(&client, &format!("https://127.0.0.1:{}/", addr.port())).await;
    assert!(
        matches!(result, Err(NetError::Forbidden { .. })),
        "{result:?}"
    );
    let result = post_to(&client, &format!("http://127.0.0.1:{}/", addr.port())).await;
    assert!(matches!(result, Err(NetError::InvalidUrl(_))), "{result:?}");
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(accepted.load(Ordering::SeqCst), 0);
}
