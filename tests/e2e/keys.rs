//! `last_used_at` of `GET /v1/keys`: set when a key authenticates, written off the request's
//! path at most once a minute per key (the service's clock is moved, nothing waits for a
//! minute).

use std::time::Duration;

use reqwest::Method;
use serde_json::json;
use switchyard::api::models::{KeyCreated, KeyOut, Page, TenantOut};

use crate::common::{TestServer, wait_until};

const WAIT: Duration = Duration::from_secs(20);

async fn last_used(server: &TestServer, id: &str) -> Option<i64> {
    let keys: Page<KeyOut> = server.get("/v1/keys").await;
    keys.data
        .iter()
        .find(|k| k.id == id)
        .unwrap_or_else(|| panic!("key {id} not listed"))
        .last_used_at
        .map(|t| t.unix_ms())
}

#[tokio::test]
async fn a_used_key_shows_when_it_was_last_used() {
    let manual = switchyard::Clock::manual(time::OffsetDateTime::now_utc().unix_timestamp() * 1000);
    let clock = manual.clock();
    let server = TestServer::start_with(move |c| c.clock = clock).await;
    let _: TenantOut = server
        .typed(Method::PUT, "/v1/tenants/ws_1", None, 201)
        .await;
    let key = |scopes: &'static [&'static str]| {
        let server = &server;
        async move {
            let created: KeyCreated = server
                .typed(
                    Method::POST,
                    "/v1/keys",
                    Some(json!({"tenant_id": "ws_1", "scopes": scopes})),
                    201,
                )
                .await;
            created
        }
    };
    let used = key(&["subscriptions:read"]).await;
    let idle = key(&["subscriptions:read"]).await;
    assert_eq!(last_used(&server, &used.record.id).await, None);

    let first = manual.now_ms();
    let (status, _) = server
        .call_as(&used.key, Method::GET, "/v1/subscriptions", None)
        .await;
    assert_eq!(status, 200);
    let id = used.record.id.clone();
    assert!(
        wait_until(WAIT, || async {
            last_used(&server, &id).await == Some(first)
        })
        .await,
        "last_used_at: {:?}",
        last_used(&server, &id).await
    );

    // A minute later the next use is recorded; the key never used stays `null`.
    manual.advance(Duration::from_secs(61));
    let second = manual.now_ms();
    let (status, _) = server
        .call_as(&used.key, Method::GET, "/v1/subscriptions", None)
        .await;
    assert_eq!(status, 200);
    assert!(
        wait_until(WAIT, || async {
            last_used(&server, &id).await == Some(second)
        })
        .await,
        "last_used_at: {:?}",
        last_used(&server, &id).await
    );
    assert_eq!(last_used(&server, &idle.record.id).await, None);
    server.stop().await;
}
