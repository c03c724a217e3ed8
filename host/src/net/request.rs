//! The request path: one POST to the receiver and the reading of its answer, bounded to what
//! the dispatcher records (the status, `Retry-After`, a prefix of the body). The URL check it
//! runs first is in `destination`, the mapping of its failures in `error`.

use std::time::SystemTime;

use bytes::Bytes;
use reqwest::header::{HeaderMap, RETRY_AFTER};
use url::Url;

use super::error::{chain, classify};
use super::retry_after::parse_retry_after;
use super::{Client, NetError, Response};

impl Client {
    /// POSTs `body` with `headers` to `url` (already checked; IP-literal hosts are checked again
    /// here, since they are never resolved). No redirect is followed: a `3xx` comes back as a
    /// response. Reads at most `max_response_bytes` of the response body and drops the rest.
    pub async fn post(
        &self,
        url: &Url,
        headers: HeaderMap,
        body: Bytes,
    ) -> Result<Response, NetError> {
        self.check_parsed(url)?;
        let response = self
            .http
            .post(url.clone())
            .headers(headers)
            .body(body)
            .send()
            .await
            .map_err(classify)?;
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| parse_retry_after(value, SystemTime::now()));
        let body = read_capped(response, self.max_response_bytes).await;
        Ok(Response {
            status,
            retry_after,
            body,
        })
    }
}

/// Reads up to `max` bytes of the body. The status is the receiver's answer, so a body that
/// fails or stalls (until the client's timeout) after it only cuts the body short.
async fn read_capped(mut response: reqwest::Response, max: usize) -> Vec<u8> {
    let hint = response.content_length().unwrap_or(0);
    let mut body = Vec::with_capacity(usize::try_from(hint).unwrap_or(max).min(max));
    while body.len() < max {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                let take = chunk.len().min(max - body.len());
                body.extend_from_slice(&chunk[..take]);
            }
            Ok(None) => break,
            Err(e) => {
                tracing::debug!(error = %chain(&e), "response body cut short");
                break;
            }
        }
    }
    body
}
