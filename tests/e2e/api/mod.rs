//! The REST API behaves as `docs/API.md` says: subscriptions, events, deliveries, plugins,
//! dry runs, metrics and health, against the real service.
//!
//! One file per part of the API; the helpers they share are here.

mod contract;
mod deliveries;
mod events;
mod operations;
mod plugins;
mod subscription_actions;
mod subscriptions;

use std::time::Duration;

use axum::http::HeaderValue;
use serde_json::Value;
use sha2::{Digest, Sha256};

use switchyard::api::models::Page;

use crate::common::TestServer;
use crate::common::receiver::Received;

const WAIT: Duration = Duration::from_secs(20);

fn id_of(value: &Value) -> String {
    value["id"]
        .as_str()
        .unwrap_or_else(|| panic!("no id in {value}"))
        .to_owned()
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// The ids in a list page's `data`.
fn ids(page: &Value) -> Vec<String> {
    page["data"]
        .as_array()
        .unwrap_or_else(|| panic!("no data in {page}"))
        .iter()
        .map(id_of)
        .collect()
}

/// Follows `next_cursor` from `first` (a path with `?limit=…`) until it is null; returns every
/// page's ids, page by page.
async fn all_pages(server: &TestServer, first: &str) -> Vec<Vec<String>> {
    let mut pages = Vec::new();
    let mut path = first.to_owned();
    loop {
        let page: Page<Value> = server.get(&path).await;
        pages.push(page.data.iter().map(id_of).collect());
        match page.next_cursor {
            Some(cursor) => path = format!("{first}&cursor={cursor}"),
            None => return pages,
        }
        assert!(pages.len() < 100, "pagination does not end");
    }
}

/// A value of `/metrics`, by exact series name; it must be there.
async fn metric(server: &TestServer, name: &str) -> f64 {
    server
        .metric(name)
        .await
        .unwrap_or_else(|| panic!("no {name} in /metrics"))
}

/// `webhook-signature` replaced by just `signature`, for verifying one signature alone.
fn with_signature(received: &Received, signature: &str) -> axum::http::HeaderMap {
    let mut headers = received.headers.clone();
    headers.insert(
        "webhook-signature",
        HeaderValue::from_str(signature).unwrap(),
    );
    headers
}
