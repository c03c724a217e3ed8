//! Bearer-key authentication of `/v1`. Only a SHA-256 of the key is kept in memory and on
//! disk; comparison is constant-time.
//!
//! Wrong keys are limited per client (its IP address; IPv6 per /64, which one host usually
//! has whole): a token bucket of `max_auth_failures` per minute. A client past it gets `429`
//! with `Retry-After`, and its key is not checked at all meanwhile — otherwise the limit would
//! only change the status of wrong guesses, not how fast they can be made. Clients that send
//! the right key never spend from their bucket. Memory is bounded: at most
//! [`MAX_CLIENTS`] buckets, refilled ones dropped first, then the least recently failed.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::extract::{ConnectInfo, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use sha2::{Digest, Sha256};
use tokio::time::Instant;

use super::principal::{Permission, Principal};
use super::{ApiError, AppState};
use crate::store::key_id;

/// Clients whose failures are remembered at most.
pub const MAX_CLIENTS: usize = 10_000;
/// The window `max_auth_failures` is counted over.
const WINDOW: Duration = Duration::from_secs(60);

/// The admin key, as a hash.
#[derive(Debug, Clone)]
pub struct ApiKey([u8; 32]);

impl ApiKey {
    /// From the key itself.
    pub fn from_key(key: &str) -> Self {
        Self(Sha256::digest(key.as_bytes()).into())
    }

    /// From a stored hex hash.
    pub fn from_hex(hash: &str) -> Option<Self> {
        let bytes = hex::decode(hash).ok()?;
        Some(Self(bytes.try_into().ok()?))
    }

    /// The hash as hex, for storing.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// Whether `key` is this key, in constant time.
    pub fn matches(&self, key: &str) -> bool {
        let other: [u8; 32] = Sha256::digest(key.as_bytes()).into();
        self.0
            .iter()
            .zip(other.iter())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
    }
}

/// What the authentication middleware needs: the service and the failure buckets.
#[derive(Clone)]
pub struct Guard {
    state: AppState,
    failures: Arc<FailureLimiter>,
}

impl Guard {
    /// A guard with fresh buckets of `state.config.max_auth_failures` per minute.
    pub fn new(state: AppState) -> Self {
        let failures = Arc::new(FailureLimiter::new(state.config.max_auth_failures));
        Self { state, failures }
    }
}

/// Rejects requests without `Authorization: Bearer <a key>` — the bootstrap admin key, or a key
/// of `POST /v1/keys` that is neither revoked nor expired — and clients that sent too many
/// wrong keys lately. The request gets the key's [`Principal`].
pub async fn require_key(
    State(guard): State<Guard>,
    mut request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let client = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| client_of(addr.ip()));
    if let Some(client) = client {
        guard
            .failures
            .admit(client, Instant::now())
            .map_err(|retry_after| ApiError::AuthLimited { retry_after })?;
    }
    let given = request
        .headers()
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim);
    let principal = match given {
        Some(key) if guard.state.api_key.matches(key) => Some(Principal::admin()),
        Some(key) => issued_key(&guard.state, key).await?,
        None => None,
    };
    match principal {
        Some(principal) => {
            request.extensions_mut().insert(principal);
            Ok(next.run(request).await)
        }
        None => {
            if let Some(client) = client {
                guard.failures.failed(client, Instant::now());
            }
            Err(ApiError::Unauthorized)
        }
    }
}

/// The principal of an issued key (`sy_key_…`), read from the database on every request so a
/// revoke or an expiry counts at once; `None` for anything else.
async fn issued_key(state: &AppState, key: &str) -> Result<Option<Principal>, ApiError> {
    let Some(id) = key_id(key) else {
        return Ok(None);
    };
    let Some(stored) = state.store.key(id).await? else {
        return Ok(None);
    };
    let now = state.store.clock().now_ms();
    let live = stored.revoked_at.is_none() && stored.expires_at.is_none_or(|at| at > now);
    let matches = ApiKey::from_hex(&stored.hash).is_some_and(|hash| hash.matches(key));
    if !(live && matches) {
        return Ok(None);
    }
    // Memory only: written off this path, at most once a minute per key.
    state.store.key_used(&stored.id);
    let permissions = stored
        .scopes
        .iter()
        .filter_map(|s| Permission::parse(s))
        .collect();
    Ok(Some(Principal::new(stored.tenant_id, permissions)))
}

/// The bucket a peer address counts in: IPv4 (also IPv4-mapped IPv6) as is, IPv6 by /64.
fn client_of(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => IpAddr::V6(Ipv6Addr::from(u128::from(v6) & !(u128::MAX >> 64))),
        v4 => v4,
    }
}

/// Token buckets of failed authentications, per client.
#[derive(Debug)]
pub struct FailureLimiter {
    /// Bucket size, and refills per [`WINDOW`].
    per_window: f64,
    buckets: Mutex<HashMap<IpAddr, Bucket>>,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    updated: Instant,
}

impl FailureLimiter {
    /// Buckets of `per_minute` failures, refilled at that rate.
    pub fn new(per_minute: u32) -> Self {
        Self {
            per_window: f64::from(per_minute.max(1)),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    fn rate_per_second(&self) -> f64 {
        self.per_window / WINDOW.as_secs_f64()
    }

    /// The bucket's tokens at `now`.
    fn refilled(&self, bucket: Bucket, now: Instant) -> f64 {
        let elapsed = now.saturating_duration_since(bucket.updated).as_secs_f64();
        (bucket.tokens + elapsed * self.rate_per_second()).min(self.per_window)
    }

    /// `Ok` when `client` may have its key checked; else the seconds until it may.
    pub fn admit(&self, client: IpAddr, now: Instant) -> Result<(), u64> {
        let buckets = self.buckets.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(bucket) = buckets.get(&client) else {
            return Ok(());
        };
        let tokens = self.refilled(*bucket, now);
        if tokens >= 1.0 {
            Ok(())
        } else {
            let wait = ((1.0 - tokens) / self.rate_per_second()).ceil();
            // At most the window; the float is small and positive.
            Err((wait.clamp(1.0, WINDOW.as_secs_f64())) as u64)
        }
    }

    /// Counts one failure of `client`.
    pub fn failed(&self, client: IpAddr, now: Instant) {
        let mut buckets = self.buckets.lock().unwrap_or_else(PoisonError::into_inner);
        if !buckets.contains_key(&client) && buckets.len() >= MAX_CLIENTS {
            self.evict(&mut buckets, now);
        }
        let tokens = match buckets.get(&client) {
            Some(bucket) => self.refilled(*bucket, now),
            None => self.per_window,
        };
        buckets.insert(
            client,
            Bucket {
                tokens: (tokens - 1.0).max(0.0),
                updated: now,
            },
        );
    }

    /// Makes room: drops the buckets that have refilled (they hold no information), or,
    /// when none has, the one that failed longest ago.
    fn evict(&self, buckets: &mut HashMap<IpAddr, Bucket>, now: Instant) {
        buckets.retain(|_, b| self.refilled(*b, now) < self.per_window);
        if buckets.len() >= MAX_CLIENTS
            && let Some(oldest) = buckets
                .iter()
                .min_by_key(|(_, b)| b.updated)
                .map(|(ip, _)| *ip)
        {
            buckets.remove(&oldest);
        }
    }

    /// Clients remembered now.
    #[cfg(test)]
    fn tracked(&self) -> usize {
        self.buckets
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[tokio::test(start_paused = true)]
    async fn a_client_past_its_failures_waits_and_others_do_not() {
        let limiter = FailureLimiter::new(6); // one refill every 10 s
        let (attacker, other) = (ip("192.0.2.1"), ip("192.0.2.2"));
        for _ in 0..6 {
            assert_eq!(limiter.admit(attacker, Instant::now()), Ok(()));
            limiter.failed(attacker, Instant::now());
        }
        assert_eq!(limiter.admit(attacker, Instant::now()), Err(10));
        assert_eq!(limiter.admit(other, Instant::now()), Ok(()));
        tokio::time::advance(Duration::from_secs(4)).await;
        assert_eq!(limiter.admit(attacker, Instant::now()), Err(6));
        tokio::time::advance(Duration::from_secs(6)).await;
        assert_eq!(
            limiter.admit(attacker, Instant::now()),
            Ok(()),
            "one more try"
        );
        limiter.failed(attacker, Instant::now());
        assert!(limiter.admit(attacker, Instant::now()).is_err());
    }

    #[test]
    fn ipv6_clients_count_per_64_and_mapped_ipv4_as_ipv4() {
        assert_eq!(
            client_of(ip("2001:db8:1:2:aaaa::1")),
            client_of(ip("2001:db8:1:2:bbbb::9"))
        );
        assert_ne!(
            client_of(ip("2001:db8:1:2::1")),
            client_of(ip("2001:db8:1:3::1"))
        );
        assert_eq!(client_of(ip("::ffff:192.0.2.7")), ip("192.0.2.7"));
    }

    #[tokio::test(start_paused = true)]
    async fn memory_is_bounded_however_many_clients_fail() {
        let limiter = FailureLimiter::new(10);
        for n in 0..(MAX_CLIENTS as u32 + 500) {
            limiter.failed(IpAddr::from(n.to_be_bytes()), Instant::now());
        }
        assert_eq!(limiter.tracked(), MAX_CLIENTS);
        // Once refilled, buckets make room for new clients without pushing out busy ones.
        tokio::time::advance(WINDOW).await;
        let busy = ip("198.51.100.1");
        for _ in 0..10 {
            limiter.failed(busy, Instant::now());
        }
        limiter.failed(ip("198.51.100.2"), Instant::now());
        assert!(limiter.tracked() <= 3, "{}", limiter.tracked());
        assert!(limiter.admit(busy, Instant::now()).is_err());
    }

    #[test]
    fn keys_match_only_themselves() {
        let key = ApiKey::from_key("sk_correct-horse-battery");
        assert!(key.matches("sk_correct-horse-battery"));
        assert!(!key.matches("sk_correct-horse-batterz"));
        assert!(!key.matches(""));
        let again = ApiKey::from_hex(&key.to_hex()).unwrap();
        assert!(again.matches("sk_correct-horse-battery"));
        assert!(ApiKey::from_hex("zz").is_none());
    }
}
