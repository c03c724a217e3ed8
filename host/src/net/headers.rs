//! The delivery headers that belong to the host. Kept apart from the client: the subscription
//! validator, the signing schemes and the plugin call check names against the same list.

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

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;

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
}
