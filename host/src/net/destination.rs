//! Which URLs the client accepts as destinations: checked when a subscription is created and
//! again before each send. Apart from the request path because it is pure (no I/O) and is
//! the first half of the SSRF guard: IP-literal hosts, which are never resolved, are judged
//! here; names are judged by [`super::ssrf`] when they are resolved.

use url::{Host, Url};

use super::{Client, NetError, ssrf};

/// Longest subscription URL accepted.
pub(super) const MAX_URL_LEN: usize = 2048;

impl Client {
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
        self.check_parsed(&parsed)?;
        Ok(parsed)
    }

    /// [`Client::check_url`] on a URL parsed already (a subscription's, parsed when it was
    /// loaded): the same policy, without parsing the text again before every send.
    /// (The length bound is on the text as given, so it is checked by `check_url` alone.)
    pub fn check_parsed(&self, url: &Url) -> Result<(), NetError> {
        self.check_scheme(url)?;
        if !url.username().is_empty() || url.password().is_some() {
            return Err(invalid("credentials (user:password@) are not allowed"));
        }
        let host = url.host().ok_or_else(|| invalid("no host"))?;
        if !self.allow_private_networks {
            check_ip_literal(&host)?;
        }
        Ok(())
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
