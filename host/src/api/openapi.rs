//! The OpenAPI 3.1 document: generated from the handlers' `#[utoipa::path]` annotations and the
//! [`models`](super::models)' derives (collected by `utoipa_axum` as the routes are
//! registered), then completed here with what annotations cannot say once for all routes: the
//! bearer scheme, the unauthenticated operational routes, and every operation's error
//! responses with their codes.
//!
//! The document is served at `GET /openapi.json` and committed as `docs/openapi.json`; the
//! test below fails when the two differ. Regenerate the file with
//! `SWITCHYARD_UPDATE_OPENAPI=1 cargo test -p switchyard --lib openapi`.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use axum::http::header;
use axum::response::IntoResponse;
use utoipa::openapi::example::ExampleBuilder;
use utoipa::openapi::path::{Operation, OperationBuilder, ParameterIn, PathItem, PathItemBuilder};
use utoipa::openapi::schema::{ObjectBuilder, Type};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::tag::TagBuilder;
use utoipa::openapi::{
    ContentBuilder, HttpMethod, InfoBuilder, LicenseBuilder, OpenApi, Ref, RefOr, ResponseBuilder,
    ServerBuilder,
};
use utoipa::{PartialSchema, ToSchema};

use super::ErrorCode;
use super::models::{ErrorBody, HealthOut, LogLineOut};

/// Where the document is served.
pub const OPENAPI_PATH: &str = "/openapi.json";

/// The name of the bearer security scheme.
const BEARER: &str = "bearer";

/// Codes an operation can answer beyond those that follow from its shape (a JSON body, a path
/// id, a query, the key). Adding a code to an operation is one line here.
const OPERATION_ERRORS: &[(&str, &[ErrorCode])] = {
    use ErrorCode::*;
    const SUBSCRIPTION_FIELDS_AND_TENANT: &[ErrorCode] = &[
        InvalidUrl,
        InvalidEvents,
        InvalidDescription,
        InvalidHeaders,
        InvalidSignature,
        InvalidSecret,
        UnknownPlugin,
        InvalidPluginConfig,
        NotFound,
    ];
    const PATCH: &[ErrorCode] = &[
        InvalidUrl,
        InvalidEvents,
        InvalidDescription,
        InvalidHeaders,
        InvalidSignature,
        InvalidSecret,
        UnknownPlugin,
        InvalidPluginConfig,
        ConcurrentUpdate,
    ];
    &[
        ("v1.subscription.create", SUBSCRIPTION_FIELDS_AND_TENANT),
        ("v1.subscription.list", &[]),
        ("v1.subscription.get", &[]),
        ("v1.subscription.update", PATCH),
        ("v1.subscription.delete", &[]),
        ("v1.subscription.rotate-secret", &[]),
        ("v1.subscription.test", &[InvalidType, RateLimited]),
        ("v1.subscription.enable", &[]),
        ("v1.subscription.recover", &[SubscriptionDisabled]),
        (
            "v1.event.create",
            &[InvalidType, ReservedType, InvalidId, RateLimited, NotFound],
        ),
        ("v1.event.get", &[]),
        ("v1.event.expunge", &[]),
        ("v1.delivery.list", &[]),
        ("v1.delivery.get", &[]),
        (
            "v1.delivery.retry",
            &[SubscriptionDisabled, SubscriptionDeleted, AlreadyQueued],
        ),
        ("v1.attempt.list", &[]),
        ("v1.plugin.list", &[]),
        ("v1.plugin.get", &[]),
        (
            "v1.plugin.upload",
            &[
                InvalidName,
                BadRequest,
                PayloadTooLarge,
                UnsupportedMediaType,
                NotAComponent,
                WrongWorld,
                Compile,
                CompileBudgetExceeded,
                InstanceTooLarge,
                RequestTimeout,
            ],
        ),
        ("v1.plugin.delete", &[InvalidName, PluginInUse]),
        (
            "v1.plugin.dry-run",
            &[
                InvalidType,
                PluginError,
                Trap,
                Timeout,
                OutOfMemory,
                StackOverflow,
                OutputTooLarge,
                InvalidHeader,
                InputTooLarge,
                Busy,
            ],
        ),
        ("v1.tenant.put", &[InvalidTenant, InvalidMetadata]),
        ("v1.tenant.list", &[]),
        ("v1.tenant.get", &[InvalidTenant]),
        ("v1.tenant.delete", &[InvalidTenant, DefaultTenant]),
        (
            "v1.key.create",
            &[InvalidScopes, InvalidDescription, InvalidExpiry, NotFound],
        ),
        ("v1.key.list", &[]),
        ("v1.key.delete", &[]),
        ("health.get", &[StorageFull, StorageUnavailable]),
        ("metrics.get", &[]),
        ("openapi.get", &[]),
    ]
};

/// OpenAPI links from an answer to the operations that take its ids: `(operation, status,
/// link, target operation, parameter, where the value is)`. They document how ids flow, and
/// steer the fuzzer's stateful phase (else it guesses, e.g. from the event's idempotency key,
/// which is also called `id`).
const LINKS: &[(&str, &str, &str, &str, &str, &str)] = &[
    (
        "v1.subscription.create",
        "201",
        "GetSubscription",
        "v1.subscription.get",
        "id",
        "$response.body#/id",
    ),
    (
        "v1.subscription.create",
        "201",
        "UpdateSubscription",
        "v1.subscription.update",
        "id",
        "$response.body#/id",
    ),
    (
        "v1.subscription.create",
        "201",
        "TestSubscription",
        "v1.subscription.test",
        "id",
        "$response.body#/id",
    ),
    (
        "v1.subscription.create",
        "201",
        "DeleteSubscription",
        "v1.subscription.delete",
        "id",
        "$response.body#/id",
    ),
    (
        "v1.subscription.test",
        "202",
        "GetDelivery",
        "v1.delivery.get",
        "id",
        "$response.body#/delivery_id",
    ),
    (
        "v1.subscription.test",
        "202",
        "GetEvent",
        "v1.event.get",
        "id",
        "$response.body#/event_id",
    ),
    (
        "v1.event.create",
        "202",
        "GetEvent",
        "v1.event.get",
        "id",
        "$response.body#/id",
    ),
    (
        "v1.event.create",
        "202",
        "ExpungeEvent",
        "v1.event.expunge",
        "id",
        "$response.body#/id",
    ),
    (
        "v1.event.create",
        "202",
        "ListDeliveries",
        "v1.delivery.list",
        "event_id",
        "$response.body#/id",
    ),
    (
        "v1.plugin.upload",
        "201",
        "GetPlugin",
        "v1.plugin.get",
        "name",
        "$response.body#/name",
    ),
];

fn add_links(operation: &mut Operation) {
    let id = operation.operation_id.clone().unwrap_or_default();
    for (from, status, name, target, parameter, value) in LINKS {
        if *from != id {
            continue;
        }
        if let Some(RefOr::T(response)) = operation.responses.responses.get_mut(*status) {
            let link = utoipa::openapi::link::LinkBuilder::new()
                .operation_id(*target)
                .parameter(*parameter, *value)
                .build();
            response.links.insert((*name).to_owned(), RefOr::T(link));
        }
    }
}

/// The codes every operation of this shape can answer.
fn shape_errors(path: &str, operation: &Operation) -> Vec<ErrorCode> {
    let mut codes = vec![ErrorCode::Internal, ErrorCode::Unavailable];
    if path.starts_with("/v1/") {
        // Every /v1 route checks the key (and limits wrong keys per address) and may touch
        // the database, which can be full or unwritable.
        codes.extend([
            ErrorCode::Unauthorized,
            ErrorCode::Forbidden,
            ErrorCode::RateLimited,
            ErrorCode::StorageFull,
            ErrorCode::StorageUnavailable,
        ]);
    }
    let json_body = operation.request_body.as_ref().is_some_and(
        |body| matches!(body, RefOr::T(b) if b.content.contains_key("application/json")),
    );
    if json_body {
        codes.extend([
            ErrorCode::MalformedJson,
            ErrorCode::BadRequest,
            ErrorCode::PayloadTooLarge,
            ErrorCode::UnsupportedMediaType,
            ErrorCode::InvalidBody,
            ErrorCode::RequestTimeout,
        ]);
    }
    let parameters = operation.parameters.iter().flatten();
    let (mut in_path, mut in_query) = (false, false);
    for parameter in parameters {
        let RefOr::T(parameter) = parameter else {
            continue;
        };
        match parameter.parameter_in {
            ParameterIn::Path => in_path = true,
            ParameterIn::Query => in_query = true,
            _ => {}
        }
    }
    if in_path {
        codes.extend([ErrorCode::InvalidPath, ErrorCode::NotFound]);
    }
    if in_query {
        codes.push(ErrorCode::InvalidQuery);
    }
    codes
}

/// The document, built once.
pub fn openapi() -> OpenApi {
    static DOC: OnceLock<OpenApi> = OnceLock::new();
    DOC.get_or_init(build).clone()
}

/// The document as the pretty-printed JSON served and committed (with a final newline).
pub fn openapi_json() -> String {
    static JSON: OnceLock<String> = OnceLock::new();
    JSON.get_or_init(|| {
        let mut text = openapi()
            .to_pretty_json()
            .unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"));
        text.push('\n');
        text
    })
    .clone()
}

/// `GET /openapi.json`: the document (no key needed).
pub async fn serve() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], openapi_json())
}

fn build() -> OpenApi {
    // The limit only shapes the router, not the document.
    let (_, v1) = utoipa_axum::router::OpenApiRouter::<super::AppState>::new()
        .nest("/v1", super::v1_routes(usize::MAX))
        .split_for_parts();
    let mut doc = OpenApi::builder()
        .info(
            InfoBuilder::new()
                .title("Switchyard")
                .version(env!("CARGO_PKG_VERSION"))
                .description(Some(
                    "A self-hosted webhook and event router: producers POST events; each matching \
                     subscription's WebAssembly plugin filters or reshapes them; the result is \
                     signed (Standard Webhooks) and delivered through a durable retry queue. \
                     The contract in prose, with examples: docs/API.md.",
                ))
                .license(Some(LicenseBuilder::new().name("Apache-2.0").build()))
                .build(),
        )
        .servers(Some([ServerBuilder::new()
            .url("http://127.0.0.1:8686")
            .description(Some("The default listen address"))
            .build()]))
        .tags(Some(tags()))
        .build();
    doc.paths = v1.paths;
    doc.components = v1.components;
    add_operational_routes(&mut doc);
    let components = doc.components.get_or_insert_with(Default::default);
    components.add_security_scheme(
        BEARER,
        SecurityScheme::Http(
            HttpBuilder::new()
                .scheme(HttpAuthScheme::Bearer)
                .description(Some(
                    "`Authorization: Bearer <key>`: the admin key (generated and printed at the \
                     first start, or `SWITCHYARD_API_KEY`), or a key of `POST /v1/keys`.",
                ))
                .build(),
        ),
    );
    let mut schemas = Vec::new();
    <ErrorBody as ToSchema>::schemas(&mut schemas);
    components.schemas.extend(schemas);
    components
        .schemas
        .insert(ErrorBody::name().into_owned(), ErrorBody::schema());
    components
        .schemas
        .insert(LogLineOut::name().into_owned(), LogLineOut::schema());
    let mut statuses: Vec<u16> = ErrorCode::ALL.iter().map(|c| c.status()).collect();
    statuses.dedup();
    for status in statuses {
        components
            .schemas
            .insert(status_schema_name(status), status_schema(status));
    }
    doc.security = Some(vec![SecurityRequirement::new(BEARER, Vec::<String>::new())]);
    let table: BTreeMap<&str, &[ErrorCode]> = OPERATION_ERRORS.iter().copied().collect();
    for (path, item) in doc.paths.paths.iter_mut() {
        for operation in operations(item) {
            let id = operation.operation_id.clone().unwrap_or_default();
            let mut codes = shape_errors(path, operation);
            codes.extend(table.get(id.as_str()).copied().unwrap_or_default());
            add_error_responses(operation, codes);
            add_links(operation);
        }
    }
    doc
}

fn tags() -> Vec<utoipa::openapi::Tag> {
    [
        (
            "subscriptions",
            "Where events go: URL, patterns, plugin, signing.",
        ),
        (
            "events",
            "What producers send: answered 202 once durably stored.",
        ),
        (
            "deliveries",
            "One event to one subscription, with every attempt.",
        ),
        (
            "plugins",
            "WebAssembly components that filter or reshape events.",
        ),
        (
            "tenants",
            "The provider's customers: every object belongs to one (admin keys only).",
        ),
        (
            "keys",
            "API keys with scopes, bound to a tenant or not, short-lived or not (admin keys only).",
        ),
        (
            "operations",
            "Health, metrics and this document; no key needed.",
        ),
    ]
    .into_iter()
    .map(|(name, description)| {
        TagBuilder::new()
            .name(name)
            .description(Some(description))
            .build()
    })
    .collect()
}

fn operations(item: &mut PathItem) -> impl Iterator<Item = &mut Operation> {
    [
        item.get.as_mut(),
        item.put.as_mut(),
        item.post.as_mut(),
        item.delete.as_mut(),
        item.patch.as_mut(),
        item.head.as_mut(),
        item.options.as_mut(),
        item.trace.as_mut(),
    ]
    .into_iter()
    .flatten()
}

/// `/healthz`, `/metrics` and `/openapi.json`: plain axum routes (their handlers stay in
/// `ops.rs`), documented here, open without a key.
fn add_operational_routes(doc: &mut OpenApi) {
    let open = || Some(vec![SecurityRequirement::default()]);
    let route = |id: &str, summary: &str, response| {
        PathItemBuilder::new()
            .operation(
                HttpMethod::Get,
                OperationBuilder::new()
                    .operation_id(Some(id))
                    .summary(Some(summary))
                    .tag("operations")
                    .securities(open())
                    .response("200", response)
                    .build(),
            )
            .build()
    };
    let health = ResponseBuilder::new()
        .description("The database answers.")
        .content(
            "application/json",
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name(HealthOut::name())))
                .example(Some(serde_json::json!({"status": "ok"})))
                .build(),
        )
        .build();
    let metrics = ResponseBuilder::new()
        .description("Prometheus / OpenMetrics text: ingest, delivery, plugin and queue series.")
        .content(
            "application/openmetrics-text",
            ContentBuilder::new()
                .schema(Some(ObjectBuilder::new().schema_type(Type::String)))
                .build(),
        )
        .build();
    let document = ResponseBuilder::new()
        .description("This document.")
        .content(
            "application/json",
            ContentBuilder::new()
                .schema(Some(ObjectBuilder::new().schema_type(Type::Object)))
                .build(),
        )
        .build();
    let paths = &mut doc.paths.paths;
    paths.insert(
        "/healthz".into(),
        route(
            "health.get",
            "Health: 200 when the database answers.",
            health,
        ),
    );
    paths.insert(
        "/metrics".into(),
        route("metrics.get", "Metrics for Prometheus.", metrics),
    );
    paths.insert(
        OPENAPI_PATH.into(),
        route("openapi.get", "This OpenAPI document.", document),
    );
    let components = doc.components.get_or_insert_with(Default::default);
    components
        .schemas
        .insert(HealthOut::name().into_owned(), HealthOut::schema());
}

fn status_schema_name(status: u16) -> String {
    format!("Error{status}")
}

/// [`ErrorBody`] with `code` narrowed to the codes of one status (so a checker can tell a code
/// answered with the wrong status); `logs` only where plugin failures are answered.
fn status_schema(status: u16) -> RefOr<utoipa::openapi::schema::Schema> {
    let codes: Vec<&str> = ErrorCode::ALL
        .iter()
        .filter(|c| c.status() == status)
        .map(|c| c.as_str())
        .collect();
    let detail = ObjectBuilder::new()
        .schema_type(Type::Object)
        .property(
            "code",
            ObjectBuilder::new()
                .schema_type(Type::String)
                .enum_values(Some(codes))
                .description(Some("Stable snake_case code.")),
        )
        .required("code")
        .property(
            "message",
            ObjectBuilder::new()
                .schema_type(Type::String)
                .description(Some("What happened and what to do, in words.")),
        )
        .required("message");
    let mut body = ObjectBuilder::new()
        .schema_type(Type::Object)
        .description(Some(format!(
            "An error answered with status {status}: `{{\"error\": {{\"code\", \"message\"}}}}`."
        )))
        .property("error", detail)
        .required("error");
    if status == 422 {
        body = body.property(
            "logs",
            utoipa::openapi::schema::ArrayBuilder::new()
                .items(Ref::from_schema_name(LogLineOut::name()))
                .description(Some(
                    "What the plugin logged before failing (dry runs only).",
                )),
        );
    }
    body.into()
}

/// One response per status, listing this operation's codes for it (in the description and as
/// one example per code); the schema is the status's `Error<status>`.
fn add_error_responses(operation: &mut Operation, mut codes: Vec<ErrorCode>) {
    codes.sort_by_key(|c| (c.status(), c.as_str()));
    codes.dedup();
    let mut by_status: BTreeMap<u16, Vec<ErrorCode>> = BTreeMap::new();
    for code in codes {
        by_status.entry(code.status()).or_default().push(code);
    }
    for (status, codes) in by_status {
        let description = codes
            .iter()
            .map(|c| format!("`{}`: {}", c.as_str(), c.description()))
            .collect::<Vec<_>>()
            .join("\n\n");
        let schema = Ref::from_schema_name(status_schema_name(status));
        let examples = codes.iter().map(|c| {
            let example = ExampleBuilder::new()
                .summary(c.as_str())
                .value(Some(serde_json::json!({
                    "error": {"code": c.as_str(), "message": c.description()}
                })))
                .build();
            (c.as_str().to_owned(), example)
        });
        let mut response = ResponseBuilder::new().description(description).content(
            "application/json",
            ContentBuilder::new()
                .schema(Some(schema))
                .examples_from_iter(examples)
                .build(),
        );
        if status == 429 {
            response = response.header(
                "Retry-After",
                utoipa::openapi::HeaderBuilder::new()
                    .schema(Some(ObjectBuilder::new().schema_type(Type::Integer)))
                    .description(Some("Seconds to wait before sending again."))
                    .build(),
            );
        }
        operation
            .responses
            .responses
            .insert(status.to_string(), RefOr::T(response.build()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const COMMITTED: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/openapi.json");

    /// docs/openapi.json is what the code generates. With `SWITCHYARD_UPDATE_OPENAPI=1` the
    /// test writes the file instead.
    #[test]
    fn the_committed_openapi_document_matches_the_code() {
        let generated = openapi_json();
        if std::env::var_os("SWITCHYARD_UPDATE_OPENAPI").is_some() {
            std::fs::write(COMMITTED, &generated).unwrap();
            return;
        }
        let committed = std::fs::read_to_string(COMMITTED).unwrap_or_default();
        assert!(
            committed == generated,
            "docs/openapi.json differs from the code's document: regenerate it with \
             `SWITCHYARD_UPDATE_OPENAPI=1 cargo test -p switchyard --lib openapi` and review \
             the diff"
        );
    }

    /// docs/API.md lists every code as the table defines it, and shows every route.
    #[test]
    fn the_prose_contract_covers_every_code_and_route() {
        let prose = include_str!("../../../docs/API.md");
        for code in ErrorCode::ALL {
            let row = format!(
                "| {} | `{}` | {} |",
                code.status(),
                code.as_str(),
                code.description()
            );
            assert!(prose.contains(&row), "docs/API.md lacks the row {row}");
        }
        let mut doc = openapi();
        for (path, item) in doc.paths.paths.iter_mut() {
            let methods = [
                ("GET", item.get.is_some()),
                ("PUT", item.put.is_some()),
                ("POST", item.post.is_some()),
                ("PATCH", item.patch.is_some()),
                ("DELETE", item.delete.is_some()),
            ];
            for (method, _) in methods.iter().filter(|(_, there)| *there) {
                let route = format!("{method} {path}");
                assert!(prose.contains(&route), "docs/API.md does not show {route}");
            }
        }
    }

    #[test]
    fn every_operation_has_an_id_a_tag_and_its_error_table_row() {
        let mut doc = openapi();
        let table: BTreeMap<&str, &[ErrorCode]> = OPERATION_ERRORS.iter().copied().collect();
        let mut seen = Vec::new();
        for (path, item) in doc.paths.paths.iter_mut() {
            for operation in operations(item) {
                let id = operation.operation_id.clone().unwrap_or_default();
                assert!(table.contains_key(id.as_str()), "{path}: {id:?} has no row");
                assert!(
                    operation.tags.as_ref().is_some_and(|t| !t.is_empty()),
                    "{id}"
                );
                assert!(operation.summary.is_some(), "{id} has no summary");
                assert!(
                    operation
                        .responses
                        .responses
                        .keys()
                        .any(|s| s.starts_with('2')),
                    "{id} documents no success"
                );
                seen.push(id);
            }
        }
        assert_eq!(
            seen.len(),
            table.len(),
            "rows without an operation: {seen:?}"
        );
        let mut unique = seen.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), seen.len(), "duplicate operation ids");
    }
}
