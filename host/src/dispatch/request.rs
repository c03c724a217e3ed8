//! What goes on the wire for one attempt: the body (a plugin's output, or the standard
//! envelope), and the headers with the signature.

use axum::http::{HeaderMap, HeaderName, HeaderValue};
use bytes::Bytes;

use crate::net::NetError;
use crate::store::{Event, Subscription};

/// The request an attempt sends.
pub(super) struct Outgoing {
    pub body: Bytes,
    pub content_type: String,
    pub plugin_headers: Vec<(String, String)>,
    pub plugin_version: Option<String>,
}

impl Outgoing {
    /// The envelope, for a subscription without a plugin.
    pub(super) fn envelope(event: &Event) -> Self {
        Self {
            body: Bytes::from(envelope(event)),
            content_type: "application/json".into(),
            plugin_headers: Vec::new(),
            plugin_version: None,
        }
    }
}

/// `{"id","type","timestamp","data"}` without re-serialising the stored data.
pub(crate) fn envelope(event: &Event) -> Vec<u8> {
    let timestamp = rfc3339(event.created_at);
    let quote = |s: &str| serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into());
    format!(
        r#"{{"id":{},"type":{},"timestamp":"{timestamp}","data":{}}}"#,
        quote(&event.id),
        quote(&event.event_type),
        event.data
    )
    .into_bytes()
}

/// RFC 3339 in UTC, second precision, from unix milliseconds.
pub(crate) fn rfc3339(ms: i64) -> String {
    let at = time::OffsetDateTime::from_unix_timestamp(ms.div_euclid(1000))
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    at.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// The request headers: content type, event type, the subscription's headers, the plugin's
/// headers (which win over the subscription's), then the signature (made at `now_ms`), which
/// nothing overrides.
pub(super) fn headers(
    sub: &Subscription,
    event: &Event,
    out: &Outgoing,
    now_ms: i64,
) -> Result<HeaderMap, String> {
    let mut map = HeaderMap::new();
    put(&mut map, "content-type", &out.content_type)?;
    put(&mut map, "switchyard-event-type", &event.event_type)?;
    for (name, value) in sub
        .headers
        .iter()
        .chain(out.plugin_headers.iter().map(|(n, v)| (n, v)))
    {
        put(&mut map, name, value)?;
    }
    let owned = sub.signature.header_names();
    if let Some((name, _)) = out
        .plugin_headers
        .iter()
        .find(|(n, _)| owned.contains(&n.as_str()))
    {
        return Err(format!("plugin tried to set the signature header {name:?}"));
    }
    let timestamp = now_ms.div_euclid(1000);
    let secrets = sub.signing_secrets(now_ms);
    // Never sent unsigned: a secret that cannot sign fails the attempt like any other
    // preparation error (recorded, retried on the schedule).
    let signed = sub
        .signature
        .sign(&secrets, &event.id, timestamp, &out.body)
        .map_err(|e| e.to_string())?;
    for (name, value) in signed {
        put(&mut map, &name, &value)?;
    }
    Ok(map)
}

fn put(map: &mut HeaderMap, name: &str, value: &str) -> Result<(), String> {
    let name = HeaderName::from_bytes(name.as_bytes())
        .map_err(|_| format!("invalid header name {name:?}"))?;
    let value =
        HeaderValue::from_str(value).map_err(|_| format!("invalid value for header {name}"))?;
    map.insert(name, value);
    Ok(())
}

/// A network failure as the attempt records it.
pub(super) fn net_error(err: &NetError) -> String {
    format!("{}: {err}", err.kind())
}
