//! Expunging an event's content over the API (`DELETE /v1/events/{id}/content`), against the
//! real service, on a manual clock so the retry comes when the test says.

use std::time::Duration;

use reqwest::Method;
use serde_json::json;
use switchyard::api::models::{
    DeliveryDetailOut, DeliveryOut, DeliveryStatusOut, ErrorBody, EventAccepted, EventOut, Page,
};

use crate::common::receiver::Answer;
use crate::common::{TestReceiver, TestServer, wait_until};

const WAIT: Duration = Duration::from_secs(20);

/// The payload and the stored response body go, the event, the delivery and the attempt's
/// metadata stay; the retry that comes next is not sent but fails at once with a clear error
/// (a dead letter, not a retry on the schedule).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expunging_an_event_drops_its_content_and_fails_its_next_attempt() {
    let manual = switchyard::Clock::manual(time::OffsetDateTime::now_utc().unix_timestamp() * 1000);
    let receiver = TestReceiver::start().await;
    receiver.always(Answer::status(500));
    receiver.reply_body("could not store ann@example.com");
    let clock = manual.clock();
    let server = TestServer::start_with(move |c| {
        c.clock = clock;
        c.retry_schedule = vec![Duration::from_secs(3600); 3];
    })
    .await;
    server
        .subscribe(json!({"url": receiver.url("/hook"), "events": ["user.*"]}))
        .await;
    let accepted: EventAccepted = server
        .typed(
            Method::POST,
            "/v1/events",
            Some(json!({"type": "user.created", "data": {"email": "ann@example.com"}})),
            202,
        )
        .await;
    let event = accepted.id.to_string();
    let first = receiver.wait_for(1, WAIT).await;
    assert!(String::from_utf8_lossy(&first[0].body).contains("ann@example.com"));
    let path = format!("/v1/deliveries?event_id={event}");
    let attempted = wait_until(WAIT, || async {
        let page: Page<DeliveryOut> = server.get(&path).await;
        page.data[0].attempts_made == 1 && page.data[0].status == DeliveryStatusOut::Pending
    })
    .await;
    let page: Page<DeliveryOut> = server.get(&path).await;
    let delivery = page.data[0].id.to_string();
    assert!(attempted, "the first attempt was not recorded");
    let before: DeliveryDetailOut = server.get(&format!("/v1/deliveries/{delivery}")).await;
    assert!(
        before.attempts[0]
            .response_body
            .as_deref()
            .is_some_and(|b| b.contains("ann@"))
    );

    let response = server
        .request(Method::DELETE, &format!("/v1/events/{event}/content"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204);
    assert!(response.text().await.unwrap().is_empty());
    let again = server
        .request(Method::DELETE, &format!("/v1/events/{event}/content"))
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 204, "expunging twice is the same as once");

    let shown: EventOut = server.get(&format!("/v1/events/{event}")).await;
    assert_eq!(shown.data.get(), "null");
    assert!(shown.expunged_at.is_some());
    assert_eq!(shown.event_type, "user.created");
    assert_eq!(shown.deliveries.len(), 1);
    let after: DeliveryDetailOut = server.get(&format!("/v1/deliveries/{delivery}")).await;
    assert_eq!(after.attempts.len(), 1);
    assert_eq!(after.attempts[0].status_code, Some(500));
    assert_eq!(after.attempts[0].response_body, None);

    // The retry comes due: it fails at once, unsent, and is not retried again.
    manual.advance(Duration::from_secs(2 * 3600));
    let failed = server.wait_delivery(&delivery, "failed", WAIT).await;
    let failed: DeliveryDetailOut = crate::common::server::strict(failed, "delivery");
    let error = failed.delivery.last_error.unwrap_or_default();
    assert!(error.contains("expunged"), "{error}");
    assert_eq!(failed.attempts.len(), 2);
    assert_eq!(failed.attempts[1].error.as_deref(), Some(error.as_str()));
    assert_eq!(failed.delivery.next_attempt_at, None);
    manual.advance(Duration::from_secs(10 * 3600));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(receiver.received().len(), 1, "nothing more was sent");

    let missing: ErrorBody = server
        .typed(
            Method::DELETE,
            "/v1/events/evt_01ARZ3NDEKTSV4RRFFQ69G5FAV/content",
            None,
            404,
        )
        .await;
    assert_eq!(missing.error.code, switchyard::api::ErrorCode::NotFound);
}

/// The retention job's work is on `/metrics`: rows deleted per kind and its batches' duration.
/// Three delivered events; the clock moves past their retention; the restarted service's job
/// (it runs at start) deletes them and counts exactly that.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_retention_job_counts_what_it_deleted_on_metrics() {
    let manual = switchyard::Clock::manual(time::OffsetDateTime::now_utc().unix_timestamp() * 1000);
    let receiver = TestReceiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let config = || {
        let mut c = crate::common::server::test_config(dir.path().to_owned());
        c.clock = manual.clock();
        c.retention.finished = Duration::from_secs(2 * 3600);
        c.retention.failed = Duration::from_secs(2 * 3600);
        c.retention.idempotency_ttl = Duration::from_secs(3600);
        c
    };
    let deliveries = "switchyard_retention_deleted_total{kind=\"deliveries\"}";
    let attempts = "switchyard_retention_deleted_total{kind=\"attempts\"}";
    let events = "switchyard_retention_deleted_total{kind=\"events\"}";
    let batches = "switchyard_retention_batch_duration_seconds_count";

    let server = TestServer::start_config(config()).await;
    server
        .subscribe(json!({"url": receiver.url("/hook"), "events": ["user.*"]}))
        .await;
    for n in 0..3 {
        let _: EventAccepted = server
            .typed(
                Method::POST,
                "/v1/events",
                Some(json!({"type": "user.created", "data": {"n": n}})),
                202,
            )
            .await;
    }
    receiver.wait_for(3, WAIT).await;
    let succeeded = wait_until(WAIT, || async {
        let page: Page<DeliveryOut> = server.get("/v1/deliveries?status=succeeded").await;
        page.data.len() == 3
    })
    .await;
    assert!(succeeded, "the three deliveries did not succeed");
    // The job's run at start found nothing to delete.
    assert!(
        wait_until(WAIT, || async { server.metric(batches).await >= Some(1.0) }).await,
        "no retention batch on /metrics"
    );
    assert_eq!(server.metric(deliveries).await, Some(0.0));
    server.stop().await;

    manual.advance(Duration::from_secs(3 * 3600));
    let server = TestServer::start_config(config()).await;
    let deleted = || async {
        (
            server.metric(deliveries).await,
            server.metric(attempts).await,
            server.metric(events).await,
        )
    };
    let all = (Some(3.0), Some(3.0), Some(3.0));
    assert!(
        wait_until(WAIT, || async { deleted().await == all }).await,
        "deleted (deliveries, attempts, events): {:?}",
        deleted().await
    );
    assert!(server.metric(batches).await >= Some(1.0));
    let page: Page<DeliveryOut> = server.get("/v1/deliveries").await;
    assert!(page.data.is_empty(), "{:?}", page.data);
    server.stop().await;
}
