//! Unknown query parameters are refused (`400 invalid_query`), on every route, by what the
//! OpenAPI document says the route takes.
//!
//! A handler reads its query through several extractors (a page, a tenant, its own filters),
//! so no one of them can refuse what the others read; and an unknown parameter silently
//! ignored is a typo (`?subscription=` for `?subscription_id=`) answered with the unfiltered
//! list. Checking against the document also keeps the two from drifting apart: a parameter a
//! handler reads but the document does not declare is refused, and a test finds it.

use std::collections::{HashMap, HashSet};
use std::sync::OnceLock;

use axum::extract::{MatchedPath, Query, Request};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use utoipa::openapi::path::{Operation, ParameterIn};
use utoipa::openapi::{OpenApi, RefOr};

use super::{ApiError, ErrorCode};

/// The query parameters each operation declares, by method and path template.
type Declared = HashMap<(Method, String), HashSet<String>>;

fn declared() -> &'static Declared {
    static DECLARED: OnceLock<Declared> = OnceLock::new();
    DECLARED.get_or_init(|| from_document(&super::openapi::openapi()))
}

fn from_document(doc: &OpenApi) -> Declared {
    let mut declared = Declared::new();
    for (path, item) in &doc.paths.paths {
        let operations = [
            (Method::GET, &item.get),
            (Method::POST, &item.post),
            (Method::PUT, &item.put),
            (Method::PATCH, &item.patch),
            (Method::DELETE, &item.delete),
        ];
        for (method, operation) in operations {
            if let Some(operation) = operation {
                declared.insert((method, path.clone()), query_names(operation));
            }
        }
    }
    declared
}

fn query_names(operation: &Operation) -> HashSet<String> {
    operation
        .parameters
        .iter()
        .flatten()
        .filter_map(|p| match p {
            RefOr::T(p) if p.parameter_in == ParameterIn::Query => Some(p.name.clone()),
            _ => None,
        })
        .collect()
}

/// The middleware: a request whose query names a parameter its operation does not declare is
/// answered `400 invalid_query`, naming it and what the route takes.
pub async fn refuse_unknown(
    matched: Option<MatchedPath>,
    request: Request,
    next: Next,
) -> Response {
    if let (Some(matched), Some(_)) = (&matched, request.uri().query())
        && let Some(known) =
            declared().get(&(request.method().clone(), matched.as_str().to_owned()))
        && let Some(unknown) = first_unknown(&request, known)
    {
        let mut takes: Vec<&str> = known.iter().map(String::as_str).collect();
        takes.sort_unstable();
        let takes = if takes.is_empty() {
            "none".to_owned()
        } else {
            takes.join(", ")
        };
        return ApiError::bad_request(
            ErrorCode::InvalidQuery,
            format!("unknown query parameter {unknown:?} (this route takes: {takes})"),
        )
        .into_response();
    }
    next.run(request).await
}

/// The first parameter of the request's query not in `known` (a query that does not parse is
/// left to the route's own extractors, which say why).
fn first_unknown(request: &Request, known: &HashSet<String>) -> Option<String> {
    let Query(pairs) = Query::<Vec<(String, String)>>::try_from_uri(request.uri()).ok()?;
    pairs
        .into_iter()
        .map(|(name, _)| name)
        .find(|name| !known.contains(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_with_a_query_declares_it() {
        let declared = declared();
        let list = &declared[&(Method::GET, "/v1/deliveries".to_owned())];
        for name in ["status", "subscription_id", "limit", "cursor"] {
            assert!(
                list.contains(name),
                "GET /v1/deliveries lacks {name}: {list:?}"
            );
        }
        let upload = &declared[&(Method::PUT, "/v1/plugins/{name}".to_owned())];
        assert!(upload.contains("memory_mb"), "{upload:?}");
    }
}
