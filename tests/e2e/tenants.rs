//! Tenants: isolation over every `/v1` route (the list comes from the router's own OpenAPI
//! document, so a new route fails this suite until it is classified here), each scope allowing
//! exactly its routes, revoked and expired keys refused at once, and publishing that reaches only
//! the publisher's tenant.

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};
use switchyard::api::models::{
    DeliveryDetailOut, DeliveryStatusOut, EventOut, KeyCreated, Page, SubscriptionOut, TenantOut,
};

use crate::common::receiver::Answer;
use crate::common::{TestReceiver, TestServer};

const WAIT: Duration = Duration::from_secs(20);

/// Every scope a tenant-bound key may hold (all but `admin`).
const TENANT_SCOPES: &[&str] = &[
    "events:write",
    "subscriptions:read",
    "subscriptions:write",
    "deliveries:read",
    "deliveries:write",
    "plugins:read",
];

/// What a route is, for isolation: which scope it needs and how another tenant's object shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Acts on one object named in the path: another tenant's is `404`.
    Object,
    /// Lists: nothing of another tenant appears; `?tenant_id=<other>` is `403`.
    List,
    /// Creates inside a tenant: naming another tenant is `403`.
    Create,
    /// Admin only: `403` for any tenant-bound key.
    Admin,
    /// Plugins: installed by the operator, shared by every tenant (no tenant objects).
    Shared,
}

/// The scope each operation needs (`admin` for admin-only ones) and its kind. Every operation
/// of the document must be here: [`operations`] panics on one that is not.
fn classify(operation_id: &str) -> (&'static str, Kind) {
    use Kind::*;
    match operation_id {
        "v1.subscription.create" => ("subscriptions:write", Create),
        "v1.subscription.list" => ("subscriptions:read", List),
        "v1.subscription.get" => ("subscriptions:read", Object),
        "v1.subscription.update"
        | "v1.subscription.delete"
        | "v1.subscription.rotate-secret"
        | "v1.subscription.test"
        | "v1.subscription.enable" => ("subscriptions:write", Object),
        "v1.subscription.recover" => ("deliveries:write", Object),
        "v1.event.create" => ("events:write", Create),
        "v1.event.get" => ("deliveries:read", Object),
        "v1.event.expunge" => ("events:write", Object),
        "v1.delivery.list" | "v1.attempt.list" => ("deliveries:read", List),
        "v1.delivery.get" => ("deliveries:read", Object),
        "v1.delivery.retry" => ("deliveries:write", Object),
        "v1.plugin.list" | "v1.plugin.get" | "v1.plugin.dry-run" => ("plugins:read", Shared),
        "v1.plugin.upload" | "v1.plugin.delete" => ("admin", Admin),
        "v1.tenant.put" | "v1.tenant.list" | "v1.tenant.get" | "v1.tenant.delete" => {
            ("admin", Admin)
        }
        "v1.key.create" | "v1.key.list" | "v1.key.delete" => ("admin", Admin),
        other => panic!(
            "operation {other:?} is not classified in the tenant isolation suite: say which scope \
             it needs and how it treats other tenants' objects"
        ),
    }
}

/// One `/v1` operation of the router's document.
#[derive(Debug, Clone)]
struct Operation {
    id: String,
    method: Method,
    /// With `{…}` parameters.
    path: String,
    scope: &'static str,
    kind: Kind,
}

/// Every `/v1` operation, from the document the router itself generates.
fn operations() -> Vec<Operation> {
    let doc = switchyard::api::openapi();
    let mut all = Vec::new();
    for (path, item) in &doc.paths.paths {
        if !path.starts_with("/v1/") {
            continue;
        }
        let methods = [
            (Method::GET, &item.get),
            (Method::PUT, &item.put),
            (Method::POST, &item.post),
            (Method::PATCH, &item.patch),
            (Method::DELETE, &item.delete),
        ];
        for (method, operation) in methods {
            let Some(operation) = operation else { continue };
            let id = operation.operation_id.clone().unwrap_or_default();
            let (scope, kind) = classify(&id);
            all.push(Operation {
                id,
                method,
                path: path.clone(),
                scope,
                kind,
            });
        }
    }
    assert!(
        all.len() >= 27,
        "only {} operations in the document",
        all.len()
    );
    all
}

/// The objects of one tenant, made with its own key.
#[derive(Debug, Clone)]
struct Objects {
    tenant: String,
    key: String,
    key_id: String,
    subscription: String,
    event: String,
    delivery: String,
}

/// A request of `op` on `objects` (ids in the path, a valid body), optionally naming
/// `tenant` in the body or query.
fn request(
    op: &Operation,
    objects: &Objects,
    name_tenant: Option<&str>,
) -> (String, Option<Value>) {
    let id = match op.path.as_str() {
        p if p.starts_with("/v1/subscriptions/") => objects.subscription.clone(),
        p if p.starts_with("/v1/events/") => objects.event.clone(),
        p if p.starts_with("/v1/deliveries/") => objects.delivery.clone(),
        p if p.starts_with("/v1/tenants/") => objects.tenant.clone(),
        p if p.starts_with("/v1/keys/") => objects.key_id.clone(),
        _ => String::new(),
    };
    let mut path = op
        .path
        .replace("{id}", &id)
        .replace("{name}", "no-such-plugin");
    let body = match op.id.as_str() {
        "v1.subscription.create" => Some(json!({"url": "http://127.0.0.1:9/x", "events": ["*"]})),
        "v1.subscription.update" => Some(json!({"description": "changed"})),
        "v1.subscription.recover" => Some(json!({"since": "2000-01-01T00:00:00Z"})),
        "v1.event.create" => Some(json!({"type": "isolation.probe", "data": {}})),
        "v1.plugin.dry-run" => Some(json!({"event": {"type": "x", "data": {}}})),
        "v1.tenant.put" => Some(json!({})),
        "v1.key.create" => Some(json!({"scopes": ["events:write"]})),
        _ => None,
    };
    let body = match (body, name_tenant) {
        (Some(mut body), Some(tenant)) if op.kind == Kind::Create => {
            body["tenant_id"] = json!(tenant);
            Some(body)
        }
        (body, _) => body,
    };
    if let (Some(tenant), Kind::List) = (name_tenant, op.kind) {
        path = format!("{path}?tenant_id={tenant}");
    }
    (path, body)
}

async fn tenant_key(server: &TestServer, tenant: &str, scopes: &[&str]) -> KeyCreated {
    server
        .typed(
            Method::POST,
            "/v1/keys",
            Some(json!({"tenant_id": tenant, "scopes": scopes})),
            201,
        )
        .await
}

/// A tenant with a subscription to `receiver`, one event delivered to it, and a key of every
/// tenant scope.
async fn populate(server: &TestServer, tenant: &str, receiver: &TestReceiver) -> Objects {
    let _: TenantOut = server
        .typed(
            Method::PUT,
            &format!("/v1/tenants/{tenant}"),
            Some(json!({"name": tenant})),
            201,
        )
        .await;
    let key = tenant_key(server, tenant, TENANT_SCOPES).await;
    let (status, sub) = server
        .call_as(
            &key.key,
            Method::POST,
            "/v1/subscriptions",
            Some(json!({"url": receiver.url("/hook"), "events": ["*"]})),
        )
        .await;
    assert_eq!(status, 201, "{sub:#}");
    let sub: SubscriptionOut = serde_json::from_value(sub).unwrap();
    assert_eq!(sub.tenant_id.as_str(), tenant);
    let (status, accepted) = server
        .call_as(
            &key.key,
            Method::POST,
            "/v1/events",
            Some(json!({"type": "post.published", "data": {"of": tenant}, "id": "same-key"})),
        )
        .await;
    assert_eq!(status, 202, "{accepted:#}");
    assert_eq!(accepted["deliveries"], 1, "{accepted:#}");
    let event = accepted["id"].as_str().unwrap().to_owned();
    let (status, page) = server
        .call_as(
            &key.key,
            Method::GET,
            &format!("/v1/deliveries?event_id={event}"),
            None,
        )
        .await;
    assert_eq!(status, 200);
    let page: Page<Value> = serde_json::from_value(page).unwrap();
    let delivery = page.data[0]["id"].as_str().unwrap().to_owned();
    server.wait_delivery(&delivery, "succeeded", WAIT).await;
    Objects {
        tenant: tenant.to_owned(),
        key: key.key,
        key_id: key.record.id,
        subscription: sub.id.to_string(),
        event,
        delivery,
    }
}

/// What `b`'s key sees of its own objects: compared before and after `a` walks every route.
async fn snapshot(server: &TestServer, b: &Objects) -> Value {
    let mut seen = serde_json::Map::new();
    for path in [
        format!("/v1/subscriptions/{}", b.subscription),
        format!("/v1/events/{}", b.event),
        format!("/v1/deliveries/{}", b.delivery),
        "/v1/subscriptions".to_owned(),
        "/v1/deliveries".to_owned(),
        "/v1/attempts".to_owned(),
    ] {
        let (status, body) = server.call_as(&b.key, Method::GET, &path, None).await;
        assert_eq!(status, 200, "{path}: {body:#}");
        seen.insert(path, body);
    }
    Value::Object(seen)
}

/// The isolation suite: tenant A's key (every tenant scope) against tenant B's objects on every
/// `/v1` route answers 404 (or 403), changes nothing of B, lists nothing of B, and A's events
/// never reach B's receiver.
#[tokio::test]
async fn a_tenants_key_cannot_see_or_change_another_tenants_objects_on_any_route() {
    let server = TestServer::start().await;
    let (receiver_a, receiver_b) = (TestReceiver::start().await, TestReceiver::start().await);
    receiver_a.always(Answer::status(200));
    receiver_b.always(Answer::status(200));
    let a = populate(&server, "tenant-a", &receiver_a).await;
    let b = populate(&server, "tenant-b", &receiver_b).await;
    assert_eq!(receiver_b.wait_for(1, WAIT).await.len(), 1);
    let before = snapshot(&server, &b).await;
    let b_ids = [&b.subscription, &b.event, &b.delivery];

    for op in operations() {
        let what = format!("{} {} ({})", op.method, op.path, op.id);
        // B's objects (and B named), with A's key.
        let (path, body) = request(&op, &b, Some(&b.tenant));
        let (status, answer) = server.call_as(&a.key, op.method.clone(), &path, body).await;
        // The answer may repeat the id asked for; nothing else of B.
        let mut text = answer.to_string();
        for id in b_ids {
            if path.contains(id.as_str()) {
                text = text.replace(id.as_str(), "");
            }
        }
        match op.kind {
            Kind::Object => assert_eq!(status, 404, "{what}: {answer:#}"),
            Kind::Admin | Kind::Create | Kind::List => {
                assert_eq!(status, 403, "{what}: {answer:#}");
            }
            Kind::Shared => assert!(
                status.is_client_error() || status.is_success(),
                "{what}: {status} {answer:#}"
            ),
        }
        // A 404 for B's id reads exactly like one for an id that does not exist.
        if op.kind == Kind::Object {
            let missing = Objects {
                subscription: "sub_01JF3Y9G8Q0V7ZC2M6T4N5B8KD".into(),
                event: "evt_01JF3YA2W7H1K9D3F5R8X0P6QS".into(),
                delivery: "dlv_01JF3YA2W8B4N6T2V9C1M3Z7HE".into(),
                ..b.clone()
            };
            let (path, body) = request(&op, &missing, None);
            let (status, unknown) = server.call_as(&a.key, op.method.clone(), &path, body).await;
            assert_eq!(status, 404, "{what}");
            // The same answer, but for the id itself.
            let masked = |v: &Value, ids: [&String; 3]| {
                ids.iter()
                    .fold(v.to_string(), |t, id| t.replace(id.as_str(), "<id>"))
            };
            assert_eq!(
                masked(&answer, b_ids),
                masked(
                    &unknown,
                    [&missing.subscription, &missing.event, &missing.delivery]
                ),
                "{what}"
            );
        }
        // Lists without naming a tenant: A's own things only.
        if op.kind == Kind::List {
            let (path, _) = request(&op, &b, None);
            let (status, page) = server.call_as(&a.key, Method::GET, &path, None).await;
            assert_eq!(status, 200, "{what}: {page:#}");
            let text = page.to_string();
            for id in b_ids.iter().chain([&&b.tenant]) {
                assert!(
                    !text.contains(id.as_str()),
                    "{what} shows {id} of B: {page:#}"
                );
            }
            assert!(
                text.contains(&a.subscription),
                "{what} lacks A's own: {page:#}"
            );
        }
        for id in b_ids {
            assert!(
                op.kind == Kind::Admin || !text.contains(id.as_str()),
                "{what} leaks {id}: {answer:#}"
            );
        }
    }

    // Nothing of B changed (B re-reads everything with its own key).
    let after = snapshot(&server, &b).await;
    assert_eq!(before, after, "B's objects changed");
    let sub: SubscriptionOut = serde_json::from_value(
        after[format!("/v1/subscriptions/{}", b.subscription).as_str()].clone(),
    )
    .unwrap();
    assert_eq!(sub.description, None);
    let delivery: DeliveryDetailOut =
        serde_json::from_value(after[format!("/v1/deliveries/{}", b.delivery).as_str()].clone())
            .unwrap();
    assert_eq!(delivery.delivery.status, DeliveryStatusOut::Succeeded);
    let event: EventOut =
        serde_json::from_value(after[format!("/v1/events/{}", b.event).as_str()].clone()).unwrap();
    assert_eq!(event.tenant_id.as_str(), b.tenant);

    // A published (its own "same-key" event, the walk's probe): none of it reached B.
    let (status, accepted) = server
        .call_as(
            &a.key,
            Method::POST,
            "/v1/events",
            Some(json!({"type": "post.published", "data": {"of": "a"}})),
        )
        .await;
    assert_eq!(status, 202, "{accepted:#}");
    assert_eq!(accepted["deliveries"], 1);
    receiver_a.wait_for(2, WAIT).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let at_b = receiver_b.received();
    assert_eq!(at_b.len(), 1, "B's receiver got A's events: {at_b:?}");
    assert_eq!(at_b[0].json()["data"]["of"], "tenant-b");
    server.stop().await;
}

/// Each scope allows exactly its routes: a key with one scope is refused (`403 forbidden`) on
/// every route that needs another, and let through on its own (on its tenant's objects).
#[tokio::test]
async fn each_scope_allows_exactly_its_routes() {
    let server = TestServer::start().await;
    let receiver = TestReceiver::start().await;
    receiver.always(Answer::status(200));
    let own = populate(&server, "scoped", &receiver).await;
    let ops = operations();
    for scope in TENANT_SCOPES {
        let key = tenant_key(&server, "scoped", &[scope]).await;
        for op in &ops {
            // Destructive routes last would change the objects others use: probe them on a
            // fresh subscription of this tenant.
            let mut objects = Objects {
                key: key.key.clone(),
                ..own.clone()
            };
            if matches!(op.id.as_str(), "v1.subscription.delete") {
                let (_, sub) = server
                    .call_as(
                        &own.key,
                        Method::POST,
                        "/v1/subscriptions",
                        Some(json!({"url": receiver.url("/x"), "events": ["x"]})),
                    )
                    .await;
                objects.subscription = sub["id"].as_str().unwrap().to_owned();
            }
            let (path, body) = request(op, &objects, None);
            let (status, answer) = server
                .call_as(&key.key, op.method.clone(), &path, body)
                .await;
            let what = format!("{scope} on {} {} ({})", op.method, op.path, op.id);
            if op.scope == *scope {
                assert!(
                    status != 403 && status != 401 && !status.is_server_error(),
                    "{what} refused: {status} {answer:#}"
                );
            } else {
                assert_eq!(status, 403, "{what}: {answer:#}");
                assert_eq!(answer["error"]["code"], "forbidden", "{what}");
            }
        }
    }
    server.stop().await;
}

/// A revoked key and an expired key answer `401` on their very next request (the service's
/// clock is moved past the expiry, nothing waits).
#[tokio::test]
async fn revoked_and_expired_keys_are_refused_at_once() {
    let manual = switchyard::Clock::manual(time::OffsetDateTime::now_utc().unix_timestamp() * 1000);
    let clock = manual.clock();
    let server = TestServer::start_with(move |c| c.clock = clock).await;
    let _: TenantOut = server
        .typed(Method::PUT, "/v1/tenants/ws_1", None, 201)
        .await;
    let revoked = tenant_key(&server, "ws_1", &["subscriptions:read"]).await;
    let (status, _) = server
        .call_as(&revoked.key, Method::GET, "/v1/subscriptions", None)
        .await;
    assert_eq!(status, 200);
    server
        .expect(
            Method::DELETE,
            &format!("/v1/keys/{}", revoked.record.id),
            None,
            204,
        )
        .await;
    let (status, body) = server
        .call_as(&revoked.key, Method::GET, "/v1/subscriptions", None)
        .await;
    assert_eq!(status, 401, "{body:#}");
    assert_eq!(body["error"]["code"], "unauthorized");
    // Revoked keys are not listed, and revoking again is 404.
    let keys: Page<Value> = server.get("/v1/keys").await;
    assert!(
        keys.data
            .iter()
            .all(|k| k["id"] != revoked.record.id.as_str())
    );
    server
        .expect(
            Method::DELETE,
            &format!("/v1/keys/{}", revoked.record.id),
            None,
            404,
        )
        .await;

    let expires = time::OffsetDateTime::from_unix_timestamp(manual.now_ms() / 1000 + 60).unwrap();
    let expires = expires
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let short: KeyCreated = server
        .typed(
            Method::POST,
            "/v1/keys",
            Some(json!({"tenant_id": "ws_1", "scopes": ["subscriptions:read"], "expires_at": expires})),
            201,
        )
        .await;
    assert!(short.key.starts_with(&short.record.prefix));
    let (status, _) = server
        .call_as(&short.key, Method::GET, "/v1/subscriptions", None)
        .await;
    assert_eq!(status, 200);
    manual.advance(Duration::from_secs(61));
    let (status, body) = server
        .call_as(&short.key, Method::GET, "/v1/subscriptions", None)
        .await;
    assert_eq!(status, 401, "{body:#}");
    // A key that merely looks like one, and a right id with a wrong secret, are refused.
    let forged = format!("{}_{}", short.record.prefix, "0".repeat(48));
    let (status, _) = server
        .call_as(&forged, Method::GET, "/v1/subscriptions", None)
        .await;
    assert_eq!(status, 401);
    // Deleting the tenant revokes its keys.
    let live = tenant_key(&server, "ws_1", &["subscriptions:read"]).await;
    server
        .expect(Method::DELETE, "/v1/tenants/ws_1", None, 204)
        .await;
    let (status, _) = server
        .call_as(&live.key, Method::GET, "/v1/subscriptions", None)
        .await;
    assert_eq!(status, 401);
    server.stop().await;
}

/// The admin key and unbound keys: writes go to the named tenant (default `default`), lists
/// show all tenants unless `?tenant_id=` narrows them; the default tenant cannot be deleted.
#[tokio::test]
async fn admin_writes_into_the_named_tenant_and_lists_all_or_one() {
    let server = TestServer::start().await;
    let _: TenantOut = server
        .typed(
            Method::PUT,
            "/v1/tenants/t1",
            Some(json!({"metadata": {"plan": "pro"}})),
            201,
        )
        .await;
    let again: TenantOut = server
        .typed(
            Method::PUT,
            "/v1/tenants/t1",
            Some(json!({"name": "T one"})),
            200,
        )
        .await;
    assert_eq!(again.name.as_deref(), Some("T one"));
    let in_t1: SubscriptionOut = server
        .typed(
            Method::POST,
            "/v1/subscriptions",
            Some(json!({"tenant_id": "t1", "url": "http://127.0.0.1:9/", "events": ["*"]})),
            201,
        )
        .await;
    assert_eq!(in_t1.tenant_id.as_str(), "t1");
    let in_default: SubscriptionOut = server
        .typed(
            Method::POST,
            "/v1/subscriptions",
            Some(json!({"url": "http://127.0.0.1:9/", "events": ["*"]})),
            201,
        )
        .await;
    assert_eq!(in_default.tenant_id.as_str(), "default");
    let all: Page<SubscriptionOut> = server.get("/v1/subscriptions").await;
    assert_eq!(all.data.len(), 2);
    let one: Page<SubscriptionOut> = server.get("/v1/subscriptions?tenant_id=t1").await;
    assert_eq!(one.data.len(), 1);
    assert_eq!(one.data[0].id, in_t1.id);
    let accepted = server
        .send_event(json!({"tenant_id": "t1", "type": "a.b", "data": {}}))
        .await;
    assert_eq!(accepted["deliveries"], 1, "only t1's subscription");
    server
        .expect(
            Method::POST,
            "/v1/events",
            Some(json!({"tenant_id": "nope", "type": "a.b", "data": {}})),
            404,
        )
        .await;
    let reserved = server
        .expect(
            Method::POST,
            "/v1/events",
            Some(json!({"type": "switchyard.subscription.disabled", "data": {}})),
            422,
        )
        .await;
    assert_eq!(reserved["error"]["code"], "reserved_type");
    let bad = server
        .expect(Method::PUT, "/v1/tenants/a%20b", None, 400)
        .await;
    assert_eq!(bad["error"]["code"], "invalid_tenant");
    let default = server
        .expect(Method::DELETE, "/v1/tenants/default", None, 409)
        .await;
    assert_eq!(default["error"]["code"], "default_tenant");
    let admin_bound = server
        .expect(
            Method::POST,
            "/v1/keys",
            Some(json!({"tenant_id": "t1", "scopes": ["admin"]})),
            422,
        )
        .await;
    assert_eq!(admin_bound["error"]["code"], "invalid_scopes");
    // Deleting t1: its subscription goes, its events are refused.
    server
        .expect(Method::DELETE, "/v1/tenants/t1", None, 204)
        .await;
    server
        .expect(
            Method::GET,
            &format!("/v1/subscriptions/{}", in_t1.id),
            None,
            404,
        )
        .await;
    server
        .expect(
            Method::POST,
            "/v1/events",
            Some(json!({"tenant_id": "t1", "type": "a.b", "data": {}})),
            404,
        )
        .await;
    let tenants: Page<TenantOut> = server.get("/v1/tenants").await;
    let ids: Vec<&str> = tenants.data.iter().map(|t| t.id.as_str()).collect();
    assert_eq!(ids, ["default"]);
    server.stop().await;
}

/// Fairness between tenants: tenant A's slow receiver (every request held) gets at most
/// `max_in_flight_per_tenant` attempts in flight, over all its subscriptions, and tenant B's
/// event is delivered meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_tenant_in_flight_is_capped_and_another_is_not_delayed() {
    use crate::common::gated::GatedReceiver;
    const CAP: usize = 6;
    let server = TestServer::start_with(|c| {
        c.max_in_flight = 32;
        c.max_in_flight_per_subscription = 4;
        c.max_in_flight_per_tenant = CAP;
        c.delivery_timeout = Duration::from_secs(30);
        c.retry_schedule = Vec::new();
    })
    .await;
    for t in ["slow", "fast"] {
        server
            .expect(Method::PUT, &format!("/v1/tenants/{t}"), None, 201)
            .await;
    }
    let slow = GatedReceiver::start().await;
    slow.hold();
    let fast = TestReceiver::start().await;
    fast.always(Answer::status(200));
    for i in 0..4 {
        server
            .subscribe(
                json!({"tenant_id": "slow", "url": slow.url(&format!("/s{i}")), "events": ["*"]}),
            )
            .await;
    }
    server
        .subscribe(json!({"tenant_id": "fast", "url": fast.url("/f"), "events": ["*"]}))
        .await;
    for i in 0..20 {
        server
            .send_event(json!({"tenant_id": "slow", "type": "burst.x", "data": {"i": i}}))
            .await;
    }
    slow.wait_arrived(CAP, WAIT).await;
    // Without the tenant cap its four subscriptions would have 16 in flight.
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(
        slow.arrived(),
        CAP,
        "tenant slow exceeded its in-flight cap"
    );
    let started = std::time::Instant::now();
    server
        .send_event(json!({"tenant_id": "fast", "type": "probe", "data": {}}))
        .await;
    fast.wait_for(1, Duration::from_secs(5)).await;
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(slow.arrived(), CAP, "still capped");
    slow.release();
    slow.wait_arrived(80, WAIT).await;
    server.stop().await;
}
