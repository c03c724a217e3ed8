//! The outbound HTTP client that delivers webhooks.
//!
//! Every delivery goes through one pooled [`Client`] so connections to a busy receiver are
//! reused. Because the destination URLs come from users, the client is also the host's SSRF
//! boundary: it checks URLs ([`Client::check_url`]), vets every resolved address at connection
//! time ([`ssrf`]), follows no redirects (a `302` to `169.254.169.254` would otherwise undo the
//! guard) and ignores proxy environment variables (a proxy would resolve names for us, out of
//! the guard's sight). Responses are reduced to what the dispatcher records: the status, a
//! parsed `Retry-After` and a bounded prefix of the body.

pub mod ssrf;

use std::error::Error as StdError;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use reqwest::header::{HeaderMap, RETRY_AFTER};
use url::{Host, Url};

/// Longest subscription URL accepted.
const MAX_URL_LEN: usize = 2048;
/// Upper bound on the time to establish a connection (TCP and TLS).
const MAX_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long an idle pooled connection is kept.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(90);

/// Framing and identity headers of a delivery request, set only by the host, and the
/// hop-by-hop headers (RFC 9110 7.6.1), which describe one connection rather than the
/// message: set by a subscription or a plugin they could change the request's framing
/// (`transfer-encoding`, `te`, `trailer`), stall it (`expect: 100-continue`) or ask for
/// another protocol (`upgrade`).
const HOST_HEADERS: &[&str] = &[
    "content-type",
    "content-length",
    "transfer-encoding",
    "connection",
    "host",
    "user-agent",
    "te",
    "trailer",
    "upgrade",
    "keep-alive",
    "expect",
];
/// Prefixes of the headers the host writes on every delivery (`webhook-id`, `-timestamp`,
/// `-signature`, `switchyard-event-type`), and the hop-by-hop `proxy-*` family.
const HOST_HEADER_PREFIXES: &[&str] = &["webhook-", "switchyard-", "proxy-"];

/// Whether a delivery header (lower-case name) belongs to the host: a subscription's custom
/// headers, a plugin's headers and a signing scheme's header names may not use it.
pub fn is_host_header(lower_name: &str) -> bool {
    HOST_HEADERS.contains(&lower_name)
        || HOST_HEADER_PREFIXES
            .iter()
            .any(|p| lower_name.starts_with(p))
}

/// Installs the process-wide TLS crypto provider (ring) that reqwest's rustls needs before
/// any client is built. Idempotent; call it before building any other `reqwest::Client`.
pub fn install_crypto_provider() {
    // An error only means a provider is installed already.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Settings for outbound deliveries.
#[derive(Debug, Clone)]
pub struct NetConfig {
    /// Turns the SSRF guard off and allows plain `http://`: for development and tests, where
    /// receivers run on loopback or a private network.
    pub allow_private_networks: bool,
    /// Time limit for a whole delivery: connecting, sending and reading the response.
    pub timeout: Duration,
    /// The `User-Agent` header sent with every delivery.
    pub user_agent: String,
    /// The most response-body bytes read (and kept) per delivery.
    pub max_response_bytes: usize,
    /// Idle connections kept per receiver host: as many as may be in flight to one host, so a
    /// busy receiver's connections are reused instead of closed and opened again (each a TCP
    /// handshake and a socket in `TIME_WAIT`).
    pub max_idle_per_host: usize,
}

/// The delivery client: one connection pool shared by all clones.
#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    allow_private_networks: bool,
    max_response_bytes: usize,
}

/// What the receiver answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// The HTTP status code. A `3xx` is returned as is: redirects are never followed.
    pub status: u16,
    /// The parsed `Retry-After` header (delta-seconds, or an HTTP-date counted from now; a
    /// past date is zero). Whether to honour it is the caller's decision.
    pub retry_after: Option<Duration>,
    /// At most `max_response_bytes` of the response body.
    pub body: Vec<u8>,
}

/// Why a URL was refused or a delivery did not get a response.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// The URL is malformed or not acceptable as a webhook destination.
    #[error("invalid URL: {0}")]
    InvalidUrl(String),
    /// The host is, or resolves to, an address the SSRF guard refuses.
    #[error("forbidden address {host}: {reason}")]
    Forbidden {
        /// The host as written in the URL; for a name, followed by the refused address it
        /// resolved to, in parentheses.
        host: String,
        /// Why the address is refused, e.g. `"loopback"` or `"private"`.
        reason: &'static str,
    },
    /// The name could not be resolved.
    #[error("DNS lookup failed: {0}")]
    Dns(String),
    /// No connection could be made (refused, unreachable, TLS handshake failed…).
    #[error("connection failed: {0}")]
    Connect(String),
    /// The delivery took longer than the configured timeout.
    #[error("timed out")]
    Timeout,
    /// Any other HTTP-level failure (also: the client could not be built).
    #[error("HTTP error: {0}")]
    Http(String),
}

impl NetError {
    /// A stable snake_case word for metrics and stored delivery attempts.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::InvalidUrl(_) => "invalid_url",
            Self::Forbidden { .. } => "forbidden_address",
            Self::Dns(_) => "dns",
            Self::Connect(_) => "connect",
            Self::Timeout => "timeout",
            Self::Http(_) => "http",
        }
    }
}

impl Client {
    /// Builds the pooled client. With the guard on, every name is resolved through
    /// [`ssrf`]'s resolver.
    pub fn new(config: NetConfig) -> Result<Client, NetError> {
        // `rustls-no-provider`: reqwest panics on the first TLS client unless a process-wide
        // provider is installed. An error only means one already is.
        install_crypto_provider();
        let mut builder = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(config.timeout)
            .connect_timeout(config.timeout.min(MAX_CONNECT_TIMEOUT))
            .user_agent(config.user_agent)
            .pool_idle_timeout(POOL_IDLE_TIMEOUT)
            .pool_max_idle_per_host(config.max_idle_per_host)
            .no_proxy();
        if !config.allow_private_networks {
            builder = builder.dns_resolver(ssrf::GuardedResolver);
        }
        let http = builder
            .build()
            .map_err(|e| NetError::Http(format!("cannot build the HTTP client: {}", detail(&e))))?;
        Ok(Client {
            http,
            allow_private_networks: config.allow_private_networks,
            max_response_bytes: config.max_response_bytes,
        })
    }

    /// Validates a subscription URL at creation time and before each send: absolute http(s) URL,
    /// host present, no userinfo (`user:pass@`), at most 2048 bytes, `https` only unless
    /// `allow_private_networks`; and if the host is an IP literal (in any form the `url` crate
    /// normalises to an IP, such as `http://2130706433/` or `http://0x7f.1/`), it must pass the
    /// address policy unless `allow_private_networks`. Names are vetted when they are resolved.
    pub fn check_url(&self, url: &str) -> Result<Url, NetError> {
        if url.len() > MAX_URL_LEN {
            return Err(invalid(format!("longer than {MAX_URL_LEN} bytes")));
        }
        let parsed = Url::parse(url).map_err(|e| invalid(e.to_string()))?;
        self.check_scheme(&parsed)?;
        if !parsed.username().is_empty() || parsed.password().is_some() {
            return Err(invalid("credentials (user:password@) are not allowed"));
        }
        let host = parsed.host().ok_or_else(|| invalid("no host"))?;
        if !self.allow_private_networks {
            check_ip_literal(&host)?;
        }
        Ok(parsed)
    }

    /// POSTs `body` with `headers` to `url` (already checked; IP-literal hosts are checked again
    /// here, since they are never resolved). No redirect is followed: a `3xx` comes back as a
    /// response. Reads at most `max_response_bytes` of the response body and drops the rest.
    pub async fn post(
        &self,
        url: &Url,
        headers: HeaderMap,
        body: Bytes,
    ) -> Result<Response, NetError> {
        let url = self.check_url(url.as_str())?;
        let response = self
            .http
            .post(url)
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

    /// Refuses schemes other than `https`, and `http` unless private networks are allowed.
    fn check_scheme(&self, url: &Url) -> Result<(), NetError> {
        match url.scheme() {
            "https" => Ok(()),
            "http" if self.allow_private_networks => Ok(()),
            "http" => Err(invalid("plain http is not allowed; use https")),
            other => Err(invalid(format!("scheme {other:?} is not supported"))),
        }
    }
}

/// An [`NetError::InvalidUrl`].
fn invalid(message: impl Into<String>) -> NetError {
    NetError::InvalidUrl(message.into())
}

/// Applies the address policy to an IP-literal host; names pass (they are vetted on lookup).
fn check_ip_literal(host: &Host<&str>) -> Result<(), NetError> {
    let ip = match host {
        Host::Ipv4(ip) => (*ip).into(),
        Host::Ipv6(ip) => (*ip).into(),
        Host::Domain(_) => return Ok(()),
    };
    match ssrf::forbidden_reason(ip) {
        Some(reason) => Err(NetError::Forbidden {
            host: host.to_string(),
            reason,
        }),
        None => Ok(()),
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

/// Maps a failed request onto [`NetError`], the guard's refusals first.
fn classify(err: reqwest::Error) -> NetError {
    // The URL may carry a token; the caller knows it anyway.
    let err = err.without_url();
    if let Some(refused) = ssrf::find_forbidden(&err) {
        return NetError::Forbidden {
            host: format!("{} ({})", refused.host, refused.ip),
            reason: refused.reason,
        };
    }
    if err.is_timeout() {
        NetError::Timeout
    } else if err.is_dns() {
        NetError::Dns(detail(&err))
    } else if err.is_connect() {
        NetError::Connect(detail(&err))
    } else {
        NetError::Http(detail(&err))
    }
}

/// What went wrong inside a reqwest error: its sources, since its own message ("error sending
/// request") says only that something did.
fn detail(err: &reqwest::Error) -> String {
    err.source().map_or_else(|| err.to_string(), chain)
}

/// `err` and its sources, joined with `": "`.
fn chain(err: &(dyn StdError + 'static)) -> String {
    let mut message = err.to_string();
    let mut source = err.source();
    while let Some(e) = source {
        let text = e.to_string();
        if !message.ends_with(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        source = e.source();
    }
    message
}

/// Parses a `Retry-After` value, delta-seconds or an IMF-fixdate, into a wait from `now`.
fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        // Absurdly many digits overflow u64: treat as the longest wait there is.
        return Some(Duration::from_secs(value.parse().unwrap_or(u64::MAX)));
    }
    let at = UNIX_EPOCH + Duration::from_secs(parse_imf_fixdate(value)?);
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// Month abbreviations of an HTTP-date, in order.
const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// Seconds since the Unix epoch of an IMF-fixdate (`Wed, 21 Oct 2015 07:28:00 GMT`), the HTTP
/// date format senders must use (RFC 9110 §5.6.7). Dates before 1970 are clamped to the epoch.
fn parse_imf_fixdate(value: &str) -> Option<u64> {
    let parts: Vec<&str> = value.split(' ').collect();
    let [weekday, day, month, year, time, "GMT"] = parts.as_slice() else {
        return None;
    };
    if weekday.len() != 4 || !weekday.ends_with(',') || day.len() != 2 || year.len() != 4 {
        return None;
    }
    let day: u32 = digits(day)?;
    let month = MONTHS.iter().position(|m| m == month)? + 1;
    let year: i64 = digits(year)?;
    let (hour, minute, second) = parse_time(time)?;
    if !(1..=31).contains(&day) {
        return None;
    }
    let days = days_from_civil(year, u32::try_from(month).ok()?, day);
    let seconds = days * 86_400 + i64::from(hour * 3600 + minute * 60 + second);
    Some(u64::try_from(seconds).unwrap_or(0))
}

/// `hh:mm:ss` (a leap second allowed).
fn parse_time(time: &str) -> Option<(u32, u32, u32)> {
    let parts: Vec<&str> = time.split(':').collect();
    let [h, m, s] = parts.as_slice() else {
        return None;
    };
    if h.len() != 2 || m.len() != 2 || s.len() != 2 {
        return None;
    }
    let (h, m, s) = (digits(h)?, digits(m)?, digits(s)?);
    (h < 24 && m < 60 && s <= 60).then_some((h, m, s))
}

/// A run of ASCII digits as a number (no sign, no spaces).
fn digits<T: std::str::FromStr>(text: &str) -> Option<T> {
    if text.bytes().all(|b| b.is_ascii_digit()) {
        text.parse().ok()
    } else {
        None
    }
}

/// Days from 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's `days_from_civil`).
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month_from_march = i64::from((month + 9) % 12);
    let day_of_year = (153 * month_from_march + 2) / 5 + i64::from(day) - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;
    use std::net::SocketAddr;
    use std::sync::Arc;

    /// Hop-by-hop headers (RFC 9110 7.6.1) describe one connection, not the message: a
    /// subscription, plugin or scheme that sets them could break the framing of the request.
    #[test]
    fn hop_by_hop_headers_belong_to_the_host() {
        for name in [
            "te",
            "upgrade",
            "keep-alive",
            "trailer",
            "expect",
            "connection",
            "transfer-encoding",
            "proxy-authorization",
            "proxy-connection",
            "host",
            "content-length",
            "webhook-signature",
            "switchyard-event-type",
        ] {
            assert!(is_host_header(name), "{name} must be reserved");
        }
        for name in ["x-api-key", "authorization", "tenant", "proxy", "expected"] {
            assert!(!is_host_header(name), "{name} is the user's");
        }
    }
    use std::sync::atomic::{AtomicUsize, Ordering};

    use axum::Router;
    use axum::http::{HeaderMap as AxumHeaders, StatusCode, header};
    use axum::response::IntoResponse;
    use axum::routing::post;
    use tokio::net::TcpListener;

    fn config(allow_private_networks: bool) -> NetConfig {
        NetConfig {
            allow_private_networks,
            timeout: Duration::from_secs(5),
            user_agent: "switchyard-test/1".into(),
            max_response_bytes: 1000,
            max_idle_per_host: 8,
        }
    }

    fn guarded() -> Client {
        Client::new(config(false)).unwrap()
    }

    fn open() -> Client {
        Client::new(config(true)).unwrap()
    }

    /// Serves `app` on an ephemeral loopback port.
    async fn serve(app: Router) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        addr
    }

    /// A raw listener that counts accepted connections (and drops them at once).
    async fn counting_listener() -> (SocketAddr, Arc<AtomicUsize>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&accepted);
        tokio::spawn(async move {
            while listener.accept().await.is_ok() {
                counter.fetch_add(1, Ordering::SeqCst);
            }
        });
        (addr, accepted)
    }

    async fn post_to(client: &Client, url: &str) -> Result<Response, NetError> {
        let url = Url::parse(url).unwrap();
        client.post(&url, HeaderMap::new(), Bytes::new()).await
    }

    #[track_caller]
    fn assert_forbidden(result: Result<Url, NetError>, url: &str) {
        match result {
            Err(NetError::Forbidden { .. }) => {}
            other => panic!("{url}: expected Forbidden, got {other:?}"),
        }
    }

    #[track_caller]
    fn assert_invalid(result: Result<Url, NetError>, url: &str) {
        match result {
            Err(NetError::InvalidUrl(_)) => {}
            other => panic!("{url}: expected InvalidUrl, got {other:?}"),
        }
    }

    #[test]
    fn check_url_accepts_public_https() {
        let client = guarded();
        for url in [
            "https://example.com/hook",
            "https://example.com:8443/a/b?c=d",
            "https://93.184.216.34/hook",
            "https://[2606:4700::1111]/hook",
        ] {
            assert!(client.check_url(url).is_ok(), "{url}");
        }
    }

    #[test]
    fn check_url_refuses_malformed_or_unsupported_urls() {
        let client = guarded();
        let long = format!("https://example.com/{}", "a".repeat(MAX_URL_LEN));
        for url in [
            "http://example.com/hook",
            "ftp://example.com/",
            "file:///etc/passwd",
            "gopher://example.com/",
            "javascript:alert(1)",
            "/relative/path",
            "https://",
            "https://user:pass@example.com/",
            "https://user@example.com/",
            "https://:pass@example.com/",
            long.as_str(),
        ] {
            assert_invalid(client.check_url(url), url);
        }
        let open = open();
        assert_invalid(open.check_url("ftp://127.0.0.1/"), "ftp with allow_private");
        assert_invalid(
            open.check_url("http://u:p@127.0.0.1/"),
            "userinfo with allow_private",
        );
    }

    #[test]
    fn check_url_refuses_internal_ip_literals_in_any_spelling() {
        let client = guarded();
        for url in [
            "https://127.0.0.1/",
            "https://[::1]/",
            "https://[::ffff:127.0.0.1]/",
            "https://[::ffff:7f00:1]/",
            "https://2130706433/",
            "https://0x7f.1/",
            "https://0177.0.0.1/",
            "https://127.1/",
            "https://127.0.0.1./",
            "https://169.254.169.254/latest/meta-data",
            "https://10.0.0.1/",
            "https://[fe80::1]/",
            "https://0.0.0.0/",
            "https://[::]/",
            "https://[64:ff9b::10.0.0.1]/",
        ] {
            assert_forbidden(client.check_url(url), url);
        }
        match client.check_url("https://0x7f.1/") {
            Err(NetError::Forbidden { host, reason }) => {
                assert_eq!((host.as_str(), reason), ("127.0.0.1", "loopback"));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn allow_private_networks_accepts_loopback_over_http_and_https() {
        let client = open();
        for url in [
            "http://127.0.0.1:8080/hook",
            "https://127.0.0.1/",
            "http://[::1]/",
            "https://[::1]:9000/",
            "http://localhost/",
            "http://2130706433/",
            "http://10.0.0.1/",
        ] {
            assert!(client.check_url(url).is_ok(), "{url}");
        }
    }

    #[test]
    fn error_kinds_are_stable() {
        let kinds = [
            NetError::InvalidUrl(String::new()).kind(),
            NetError::Forbidden {
                host: String::new(),
                reason: "",
            }
            .kind(),
            NetError::Dns(String::new()).kind(),
            NetError::Connect(String::new()).kind(),
            NetError::Timeout.kind(),
            NetError::Http(String::new()).kind(),
        ];
        assert_eq!(
            kinds,
            [
                "invalid_url",
                "forbidden_address",
                "dns",
                "connect",
                "timeout",
                "http"
            ]
        );
    }

    #[tokio::test]
    async fn a_name_resolving_to_loopback_is_refused_before_connecting() {
        let (addr, accepted) = counting_listener().await;
        let client = guarded();
        let result = post_to(&client, &format!("https://localhost:{}/", addr.port())).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(accepted.load(Ordering::SeqCst), 0, "{result:?}");
        match result {
            Err(NetError::Forbidden { host, reason }) => {
                assert!(host.starts_with("localhost ("), "{host}");
                assert_eq!(reason, "loopback");
            }
            other => panic!("expected Forbidden, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn post_checks_ip_literals_itself() {
        let (addr, accepted) = counting_listener().await;
        let client = guarded();
        // An URL that skipped check_url: reqwest never resolves an IP literal.
        let result = post_to(&client, &format!("https://127.0.0.1:{}/", addr.port())).await;
        assert!(
            matches!(result, Err(NetError::Forbidden { .. })),
            "{result:?}"
        );
        let result = post_to(&client, &format!("http://127.0.0.1:{}/", addr.port())).await;
        assert!(matches!(result, Err(NetError::InvalidUrl(_))), "{result:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(accepted.load(Ordering::SeqCst), 0);
    }

    #[tokio::test]
    async fn posts_body_and_headers_and_returns_status_and_body() {
        async fn echo(headers: AxumHeaders, body: Bytes) -> impl IntoResponse {
            let agent = headers.get(header::USER_AGENT).cloned();
            let signature = headers.get("webhook-signature").cloned();
            let reply = format!("{agent:?} {signature:?} {}", String::from_utf8_lossy(&body));
            (StatusCode::ACCEPTED, reply)
        }
        let addr = serve(Router::new().route("/hook", post(echo))).await;
        let mut headers = HeaderMap::new();
        headers.insert("webhook-signature", "v1,abc".parse().unwrap());
        let url = Url::parse(&format!("http://{addr}/hook")).unwrap();
        let response = open()
            .post(&url, headers, Bytes::from_static(b"{\"a\":1}"))
            .await
            .unwrap();
        assert_eq!(response.status, 202);
        assert_eq!(response.retry_after, None);
        assert_eq!(
            String::from_utf8(response.body).unwrap(),
            r#"Some("switchyard-test/1") Some("v1,abc") {"a":1}"#
        );
    }

    #[tokio::test]
    async fn redirects_are_returned_not_followed() {
        let hits = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&hits);
        let target = serve(Router::new().route(
            "/target",
            post(move || async move {
                counter.fetch_add(1, Ordering::SeqCst);
                "reached"
            }),
        ))
        .await;
        let location = format!("http://{target}/target");
        let redirect = move || async move {
            (
                StatusCode::TEMPORARY_REDIRECT,
                [(header::LOCATION, location)],
            )
        };
        let addr = serve(Router::new().route("/hook", post(redirect))).await;
        let response = post_to(&open(), &format!("http://{addr}/hook"))
            .await
            .unwrap();
        assert_eq!(response.status, 307);
        assert_eq!(hits.load(Ordering::SeqCst), 0);
    }

    #[tokio::test]
    async fn the_response_body_is_truncated() {
        let big = || async { vec![b'x'; 100_000] };
        let addr = serve(Router::new().route("/hook", post(big))).await;
        let response = post_to(&open(), &format!("http://{addr}/hook"))
            .await
            .unwrap();
        assert_eq!(response.status, 200);
        assert_eq!(response.body.len(), 1000);
    }

    #[tokio::test]
    async fn a_slow_receiver_times_out() {
        let slow = || async {
            tokio::time::sleep(Duration::from_secs(10)).await;
            "late"
        };
        let addr = serve(Router::new().route("/hook", post(slow))).await;
        let client = Client::new(NetConfig {
            timeout: Duration::from_millis(300),
            ..config(true)
        })
        .unwrap();
        let result = post_to(&client, &format!("http://{addr}/hook")).await;
        assert!(matches!(result, Err(NetError::Timeout)), "{result:?}");
    }

    /// As many requests in flight to one host as the pool keeps idle: the second round reuses
    /// every connection of the first instead of opening new ones.
    #[tokio::test]
    async fn a_busy_receiver_keeps_its_connections() {
        const IN_FLIGHT: usize = 80;
        let peers = Arc::new(std::sync::Mutex::new(std::collections::HashSet::new()));
        let seen = Arc::clone(&peers);
        let app = Router::new()
            .route(
                "/hook",
                post(
                    async move |axum::extract::ConnectInfo(peer): axum::extract::ConnectInfo<
                        SocketAddr,
                    >| {
                        seen.lock().unwrap().insert(peer);
                        // Long enough that every request of a round holds its own connection.
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    },
                ),
            )
            .into_make_service_with_connect_info::<SocketAddr>();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        let client = Client::new(NetConfig {
            max_idle_per_host: IN_FLIGHT,
            ..config(true)
        })
        .unwrap();
        let url = format!("http://{addr}/hook");
        for _round in 0..2 {
            let calls = (0..IN_FLIGHT).map(|_| post_to(&client, &url));
            for result in futures::future::join_all(calls).await {
                assert_eq!(result.unwrap().status, 200);
            }
        }
        let connections = peers.lock().unwrap().len();
        assert!(
            connections <= IN_FLIGHT,
            "{connections} connections for {IN_FLIGHT} in flight: the pool closed some"
        );
    }

    #[tokio::test]
    async fn a_closed_port_is_a_connect_error() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let result = post_to(&open(), &format!("http://{addr}/hook")).await;
        assert!(matches!(result, Err(NetError::Connect(_))), "{result:?}");
    }

    #[tokio::test]
    async fn an_unknown_name_is_a_dns_error() {
        let result = post_to(&guarded(), "https://no-such-host.invalid/hook").await;
        assert!(matches!(result, Err(NetError::Dns(_))), "{result:?}");
    }

    #[tokio::test]
    async fn https_to_a_plain_tcp_listener_fails_the_tls_handshake() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                use tokio::io::AsyncWriteExt;
                let _ = stream.write_all(b"HTTP/1.1 400 Bad Request\r\n\r\n").await;
            }
        });
        let result = post_to(&open(), &format!("https://{addr}/hook")).await;
        match result {
            // rustls's words for plaintext where a TLS record was expected.
            Err(NetError::Connect(message)) => {
                assert!(message.contains("corrupt message"), "{message}");
            }
            other => panic!("expected Connect, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn retry_after_is_parsed_from_the_response() {
        let seconds = || async { (StatusCode::TOO_MANY_REQUESTS, [(header::RETRY_AFTER, "7")]) };
        let date = || async {
            let when = "Fri, 01 Jan 2100 00:00:00 GMT";
            (
                StatusCode::SERVICE_UNAVAILABLE,
                [(header::RETRY_AFTER, when)],
            )
        };
        let app = Router::new()
            .route("/seconds", post(seconds))
            .route("/date", post(date));
        let addr = serve(app).await;
        let client = open();
        let response = post_to(&client, &format!("http://{addr}/seconds"))
            .await
            .unwrap();
        assert_eq!(response.status, 429);
        assert_eq!(response.retry_after, Some(Duration::from_secs(7)));
        let response = post_to(&client, &format!("http://{addr}/date"))
            .await
            .unwrap();
        assert_eq!(response.status, 503);
        let expected = UNIX_EPOCH + Duration::from_secs(4_102_444_800);
        let expected = expected.duration_since(SystemTime::now()).unwrap();
        let got = response.retry_after.unwrap();
        assert!(
            got.abs_diff(expected) < Duration::from_secs(5),
            "{got:?} vs {expected:?}"
        );
    }

    #[test]
    fn retry_after_values() {
        let now = UNIX_EPOCH + Duration::from_secs(1_445_412_480 - 60);
        let parse = |value| parse_retry_after(value, now);
        assert_eq!(parse("0"), Some(Duration::ZERO));
        assert_eq!(parse(" 120 "), Some(Duration::from_secs(120)));
        assert_eq!(
            parse("99999999999999999999999"),
            Some(Duration::from_secs(u64::MAX))
        );
        assert_eq!(
            parse("Wed, 21 Oct 2015 07:28:00 GMT"),
            Some(Duration::from_secs(60))
        );
        assert_eq!(parse("Wed, 21 Oct 2015 07:27:00 GMT"), Some(Duration::ZERO));
        assert_eq!(parse("Thu, 01 Jan 1970 00:00:00 GMT"), Some(Duration::ZERO));
        for bad in [
            "",
            "-5",
            "1.5",
            "soon",
            "Wed, 21 Oct 2015 07:28:00 UTC",
            "Wed, 21 Foo 2015 07:28:00 GMT",
            "Wed, 32 Oct 2015 07:28:00 GMT",
            "Wed, 21 Oct 2015 24:00:00 GMT",
            "Wed, 21 Oct 2015 7:28:00 GMT",
            "Wednesday, 21-Oct-15 07:28:00 GMT",
        ] {
            assert_eq!(parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn imf_fixdate_matches_known_timestamps() {
        let at = |value| parse_imf_fixdate(value).unwrap();
        assert_eq!(at("Thu, 01 Jan 1970 00:00:00 GMT"), 0);
        assert_eq!(at("Wed, 21 Oct 2015 07:28:00 GMT"), 1_445_412_480);
        assert_eq!(at("Tue, 29 Feb 2000 12:00:00 GMT"), 951_825_600);
        assert_eq!(at("Fri, 01 Jan 2100 00:00:00 GMT"), 4_102_444_800);
        assert_eq!(at("Sat, 31 Dec 1960 23:59:59 GMT"), 0);
    }
}
