//! Operational events: a 410 produces exactly one `switchyard.subscription.disabled`, delivered
//! to the subscriptions of that tenant that asked for it (not to `*`, not to other tenants), and
//! a failing delivery of an operational event emits nothing more (no loop).

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};
use switchyard::api::models::{DeliveryStatusOut, Page};

use crate::common::receiver::Answer;
use crate::common::{TestReceiver, TestServer};

const WAIT: Duration = Duration::from_secs(20);

fn id(v: &Value) -> String {
    v["id"].as_str().unwrap().to_owned()
}

async fn deliveries_of_subscription(server: &TestServer, sub: &str) -> Vec<Value> {
    let page: Page<Value> = server
        .get(&format!("/v1/deliveries?subscription_id={sub}"))
        .await;
    page.data
}

#[tokio::test]
async fn a_410_emits_one_disabled_event_into_its_tenant_only_and_nothing_loops() {
    let server = TestServer::start().await;
    for t in ["shop", "other"] {
        server
            .expect(Method::PUT, &format!("/v1/tenants/{t}"), None, 201)
            .await;
    }
    let (gone, ops, failing, everything, other) = (
        TestReceiver::start().await,
        TestReceiver::start().await,
        TestReceiver::start().await,
        TestReceiver::start().await,
        TestReceiver::start().await,
    );
    gone.always(Answer::status(410));
    ops.always(Answer::status(200));
    failing.always(Answer::status(500));
    everything.always(Answer::status(200));
    other.always(Answer::status(200));
    let subscribe = |tenant: &str, url: String, events: Value| json!({"tenant_id": tenant, "url": url, "events": events});
    let endpoint = server
        .subscribe(subscribe("shop", gone.url("/gone"), json!(["order.*"])))
        .await;
    let watcher = server
        .subscribe(subscribe(
            "shop",
            ops.url("/ops"),
            json!([
                "switchyard.subscription.disabled",
                "switchyard.subscription.enabled"
            ]),
        ))
        .await;
    // Asks for failed deliveries and fails itself: its own failures must not be reported.
    let broken = server
        .subscribe(subscribe(
            "shop",
            failing.url("/failing"),
            json!(["switchyard.delivery.failed"]),
        ))
        .await;
    let star = server
        .subscribe(subscribe("shop", everything.url("/all"), json!(["*"])))
        .await;
    let elsewhere = server
        .subscribe(subscribe(
            "other",
            other.url("/other"),
            json!(["switchyard.*"]),
        ))
        .await;

    let accepted = server
        .send_event(json!({"tenant_id": "shop", "type": "order.created", "data": {"n": 1}}))
        .await;
    assert_eq!(accepted["deliveries"], 2, "the endpoint and `*`");
    let got = ops.wait_for(1, WAIT).await;
    let disabled = got[0].json();
    assert_eq!(disabled["type"], "switchyard.subscription.disabled");
    assert_eq!(disabled["data"]["subscription_id"], id(&endpoint));
    assert!(
        disabled["data"]["reason"].as_str().unwrap().contains("410"),
        "{disabled:#}"
    );
    // The failed delivery is reported to `broken`, whose receiver fails it for good.
    let reported = failing.wait_for(3, WAIT).await;
    assert_eq!(reported[0].json()["type"], "switchyard.delivery.failed");
    assert_eq!(
        reported[0].json()["data"]["subscription_id"],
        id(&endpoint),
        "{:#}",
        reported[0].json()
    );
    let to_broken = deliveries_of_subscription(&server, &id(&broken)).await;
    assert_eq!(to_broken.len(), 1, "{to_broken:#?}");
    server
        .wait_delivery(&id(&to_broken[0]), "failed", WAIT)
        .await;

    // Settle, then count: exactly one disabled event, no report of the report's failure, and
    // nothing at `*` but the order itself, nothing in the other tenant.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(ops.received().len(), 1, "{:?}", ops.received());
    let to_broken = deliveries_of_subscription(&server, &id(&broken)).await;
    assert_eq!(
        to_broken.len(),
        1,
        "a failed operational delivery emitted another: {to_broken:#?}"
    );
    let to_star = deliveries_of_subscription(&server, &id(&star)).await;
    assert_eq!(to_star.len(), 1, "{to_star:#?}");
    assert!(
        everything
            .received()
            .iter()
            .all(|r| r.json()["type"] == "order.created")
    );
    assert!(
        deliveries_of_subscription(&server, &id(&elsewhere))
            .await
            .is_empty()
    );
    assert!(other.received().is_empty());
    let to_watcher = deliveries_of_subscription(&server, &id(&watcher)).await;
    assert_eq!(to_watcher.len(), 1);
    assert_eq!(
        serde_json::from_value::<DeliveryStatusOut>(to_watcher[0]["status"].clone()).unwrap(),
        DeliveryStatusOut::Succeeded
    );

    // Enabling it again reports that too, once.
    server
        .expect(
            Method::POST,
            &format!("/v1/subscriptions/{}/enable", id(&endpoint)),
            None,
            200,
        )
        .await;
    let got = ops.wait_for(2, WAIT).await;
    assert_eq!(got[1].json()["type"], "switchyard.subscription.enabled");
    assert_eq!(got[1].json()["data"]["subscription_id"], id(&endpoint));
    server.stop().await;
}
