//! Why a URL was refused or a delivery got no response, and how a failed reqwest request maps
//! onto it: the guard's refusals first, then reqwest's own kinds, with the error's sources as
//! the message.

use std::error::Error as StdError;

use super::ssrf;

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

/// Maps a failed request onto [`NetError`], the guard's refusals first.
pub(super) fn classify(err: reqwest::Error) -> NetError {
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
pub(super) fn detail(err: &reqwest::Error) -> String {
    err.source().map_or_else(|| err.to_string(), chain)
}

/// `err` and its sources, joined with `": "`.
pub(super) fn chain(err: &(dyn StdError + 'static)) -> String {
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
