//! Bearer-key authentication of `/v1`. Only a SHA-256 of the key is kept in memory and on
//! disk; comparison is constant-time.

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use sha2::{Digest, Sha256};

use super::{ApiError, AppState};

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

/// Rejects requests without `Authorization: Bearer <the key>`.
pub async fn require_key(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let given = request
        .headers()
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim);
    match given {
        Some(key) if state.api_key.matches(key) => Ok(next.run(request).await),
        _ => Err(ApiError::Unauthorized),
    }
}

#[cfg(test)]
mod tests {
    use super::ApiKey;

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
