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

mod destination;
mod error;
mod headers;
mod request;
mod retry_after;

pub use error::NetError;
pub use headers::is_host_header;

use std::time::Duration;

use error::detail;

/// Upper bound on the time to establish a connection (TCP and TLS).
const MAX_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long an idle pooled connection is kept.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(90);

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
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests;
#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod url_tests;
