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
    let keys = sub.signing_keys(now_ms);
    // Never sent unsigned: a secret that cannot sign fails the attempt like any other
    // preparation error (recorded, retried on the schedule).
    let signed = sub
        .signature
        .sign_with(&keys, &event.id, timestamp, &out.body)
        .map_err(|e| e.to_string())?;
    for (name, value) in signed {
        put(&mut map, &name, &value)?;
    }
    Ok(map)
}

fn put(map: &mut HeaderMap, name: &str, value: &str) -> Result<(), String> {
    let name = match name {
        // The names every delivery carries, without parsing and allocating them each time.
        "content-type" => axum::http::header::CONTENT_TYPE,
        "switchyard-event-type" => HeaderName::from_static("switchyard-event-type"),
        "webhook-id" => HeaderName::from_static("webhook-id"),
        "webhook-timestamp" => HeaderName::from_static("webhook-timestamp"),
        "webhook-signature" => HeaderName::from_static("webhook-signature"),
        _ => HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| format!("invalid header name {name:?}"))?,
    };
    let value =
        HeaderValue::from_str(value).map_err(|_| format!("invalid value for header {name}"))?;
    map.insert(name, value);
    Ok(())
}

/// A network failure as the attempt records it.
pub(super) fn net_error(err: &NetError) -> String {
    format!("{}: {err}", err.kind())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use std::hint::black_box;
    use std::time::{Duration, Instant};

    use axum::http::HeaderName;

    use crate::net::{Client, NetConfig};
    use crate::signing::{Scheme, generate_secret};

    /// Header names every delivery carries.
    const NAMES: [&str; 4] = [
        "content-type",
        "webhook-id",
        "webhook-timestamp",
        "webhook-signature",
    ];

    /// Nanoseconds per call of `f`, the median of 9 rounds of 20,000.
    fn per_call(mut f: impl FnMut()) -> u128 {
        let mut rounds: Vec<u128> = (0..9)
            .map(|_| {
                let start = Instant::now();
                (0..20_000).for_each(|_| f());
                start.elapsed().as_nanos() / 20_000
            })
            .collect();
        rounds.sort_unstable();
        rounds[4]
    }

    /// What an attempt's preparation costs with the work done per attempt (the URL parsed, the
    /// secret decoded and its key hashed, header names parsed) and with it done when the
    /// subscription is read. A measurement, not a check:
    /// `cargo test --release -p switchyard --lib -- --ignored --nocapture per_attempt`.
    #[test]
    #[ignore = "a measurement; run it by name"]
    fn per_attempt_costs() {
        let client = Client::new(NetConfig {
            allow_private_networks: false,
            timeout: Duration::from_secs(5),
            user_agent: "switchyard-test/1".into(),
            max_response_bytes: 1000,
            max_idle_per_host: 8,
        })
        .unwrap();
        let url = "https://hooks.example.com/services/T000/B000/XXXXXXXXXXXXXXXX";
        let parsed = client.check_url(url).unwrap();
        let scheme = Scheme::StandardWebhooks;
        let secret = generate_secret();
        let key = scheme.key(&secret);
        let body = vec![b'x'; 1024];
        let rows = [
            (
                "URL: parsed and checked",
                per_call(|| {
                    black_box(client.check_url(black_box(url)).unwrap());
                }),
                "checked, parsed at load",
                per_call(|| client.check_parsed(black_box(&parsed)).unwrap()),
            ),
            (
                "signature, 1 KB body: from the secret",
                per_call(|| {
                    black_box(
                        scheme
                            .sign(&[&secret], "evt_1", 7, black_box(&body))
                            .unwrap(),
                    );
                }),
                "from the key made at load",
                per_call(|| {
                    black_box(
                        scheme
                            .sign_with(&[&key], "evt_1", 7, black_box(&body))
                            .unwrap(),
                    );
                }),
            ),
            (
                "4 headers put, names parsed",
                per_call(|| {
                    let mut map = axum::http::HeaderMap::new();
                    for name in NAMES {
                        let name = HeaderName::from_bytes(black_box(name).as_bytes()).unwrap();
                        map.insert(name, axum::http::HeaderValue::from_str("v").unwrap());
                    }
                    black_box(map);
                }),
                "names static",
                per_call(|| {
                    let mut map = axum::http::HeaderMap::new();
                    for name in NAMES {
                        super::put(&mut map, black_box(name), "v").unwrap();
                    }
                    black_box(map);
                }),
            ),
        ];
        for (before, b, after, a) in rows {
            println!(
                "{before}: {b} ns | {after}: {a} ns | saved {} ns",
                b.saturating_sub(a)
            );
        }
    }
}
