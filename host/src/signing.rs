//! Webhook signatures. Standard Webhooks by default (`webhook-signature: v1,<base64>` over
//! `"{id}.{timestamp}.{body}"`, keyed by the base64 secret after `whsec_`), or a
//! receiver-compatible hex HMAC (`sha256=<hex>`) for receivers that already verify
//! GitHub- or SaaS-style signatures. Always computed over the exact bytes sent.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, KeyInit, Mac};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::Sha256;

/// Random bytes in a generated secret (the spec allows 24–64).
const SECRET_BYTES: usize = 32;
const SECRET_PREFIX: &str = "whsec_";

/// A secret or scheme the caller gave is not usable.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum SigningError {
    /// A Standard Webhooks secret must be `whsec_` + base64 of 24–64 bytes.
    #[error("secret must be \"whsec_\" followed by the base64 of 24 to 64 random bytes")]
    BadStandardSecret,
    /// A hex-scheme secret must be 16–256 printable characters.
    #[error("secret must be 16 to 256 printable ASCII characters")]
    BadHexSecret,
    /// The scheme's header names are not valid or collide with headers the host sets.
    #[error("{0}")]
    BadScheme(String),
    /// No signature could be made: the current secret does not fit the scheme (e.g. a
    /// hex-scheme secret left in place when the scheme was changed). Sending the request
    /// unsigned instead would look like a forgery to the receiver, or be accepted by one
    /// that does not check.
    #[error(
        "cannot sign: the subscription's current secret does not fit its {scheme} scheme ({why}); rotate the secret"
    )]
    CannotSign {
        /// The scheme's name.
        scheme: &'static str,
        /// What is wrong with the secret.
        why: String,
    },
}

/// How a subscription's deliveries are signed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(tag = "scheme", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Scheme {
    /// Standard Webhooks: `webhook-id`, `webhook-timestamp`, `webhook-signature: v1,<base64>`.
    #[default]
    StandardWebhooks,
    /// `<prefix><hex HMAC-SHA256>` in `header`, keyed by the secret's text as-is (what
    /// GitHub-style verifiers expect), over the body, or over `"<timestamp>.<body>"` when
    /// `timestamp_header` is set (that header then carries the unix timestamp).
    HmacSha256Hex {
        /// Header carrying the signature, e.g. `x-hub-signature-256`.
        header: String,
        /// Text before the hex digest. Default `sha256=`.
        #[serde(default = "default_prefix")]
        prefix: String,
        /// When set, the timestamp is signed too and sent in this header.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        timestamp_header: Option<String>,
    },
}

fn default_prefix() -> String {
    "sha256=".to_owned()
}

impl Scheme {
    /// Checks header names; normalises them to lower case.
    ///
    /// # Errors
    /// An invalid header name, or one the host sets itself.
    pub fn validated(self) -> Result<Self, SigningError> {
        match self {
            Self::StandardWebhooks => Ok(self),
            Self::HmacSha256Hex {
                header,
                prefix,
                timestamp_header,
            } => {
                let header = check_header_name(&header)?;
                let timestamp_header = timestamp_header
                    .as_deref()
                    .map(check_header_name)
                    .transpose()?;
                if timestamp_header.as_deref() == Some(header.as_str()) {
                    return Err(SigningError::BadScheme(
                        "header and timestamp_header must differ".into(),
                    ));
                }
                if prefix.len() > 64 || axum::http::HeaderValue::from_str(&prefix).is_err() {
                    return Err(SigningError::BadScheme(
                        "prefix must be at most 64 printable characters".into(),
                    ));
                }
                Ok(Self::HmacSha256Hex {
                    header,
                    prefix,
                    timestamp_header,
                })
            }
        }
    }

    /// The header names this scheme writes (plugins and custom headers may not set them).
    pub fn header_names(&self) -> Vec<&str> {
        match self {
            Self::StandardWebhooks => vec!["webhook-id", "webhook-timestamp", "webhook-signature"],
            Self::HmacSha256Hex {
                header,
                timestamp_header,
                ..
            } => {
                let mut names = vec!["webhook-id", "webhook-timestamp", header.as_str()];
                names.extend(timestamp_header.as_deref());
                names
            }
        }
    }

    /// Generates a fresh secret suitable for this scheme (`whsec_…` for both: the hex scheme
    /// uses its text as the key).
    pub fn generate_secret(&self) -> String {
        generate_secret()
    }

    /// Checks a secret the user supplied.
    ///
    /// # Errors
    /// When the secret does not fit the scheme.
    pub fn check_secret(&self, secret: &str) -> Result<(), SigningError> {
        match self {
            Self::StandardWebhooks => standard_key(secret).map(|_| ()),
            Self::HmacSha256Hex { .. } => {
                let printable = secret.bytes().all(|b| (0x21..0x7f).contains(&b));
                if (16..=256).contains(&secret.len()) && printable {
                    Ok(())
                } else {
                    Err(SigningError::BadHexSecret)
                }
            }
        }
    }

    /// The scheme's name as written in its `scheme` field.
    pub fn name(&self) -> &'static str {
        match self {
            Self::StandardWebhooks => "standard-webhooks",
            Self::HmacSha256Hex { .. } => "hmac-sha256-hex",
        }
    }

    /// The signing key of `secret` under this scheme, or why it cannot sign: Standard Webhooks
    /// needs its `whsec_` base64 key; the hex scheme takes any text as its HMAC key, but not
    /// none.
    ///
    /// # Errors
    /// When the secret does not fit the scheme.
    pub fn key(&self, secret: &str) -> Result<SigningKey, SigningError> {
        match self {
            Self::StandardWebhooks => standard_key(secret).map(|key| SigningKey(hmac(&key))),
            Self::HmacSha256Hex { .. } if secret.is_empty() => Err(SigningError::BadHexSecret),
            Self::HmacSha256Hex { .. } => Ok(SigningKey(hmac(secret.as_bytes()))),
        }
    }

    /// The signature headers for one request, `secrets` newest first (several during a
    /// rotation: Standard Webhooks sends one signature per secret, space-separated; the hex
    /// scheme has room for one, the newest). Rotated-out secrets that do not fit the scheme
    /// (they were made for the one before a scheme change) are left out.
    ///
    /// # Errors
    /// [`SigningError::CannotSign`] when the newest secret does not fit the scheme (or there
    /// is none): the request must not be sent.
    pub fn sign(
        &self,
        secrets: &[&str],
        msg_id: &str,
        timestamp: i64,
        body: &[u8],
    ) -> Result<Vec<(String, String)>, SigningError> {
        let keys: Vec<_> = secrets.iter().map(|secret| self.key(secret)).collect();
        self.sign_with(&keys.iter().collect::<Vec<_>>(), msg_id, timestamp, body)
    }

    /// [`Scheme::sign`] with the secrets' keys made already ([`Scheme::key`], once per
    /// subscription load), so an attempt hashes only its own message.
    ///
    /// # Errors
    /// As [`Scheme::sign`].
    pub fn sign_with(
        &self,
        keys: &[&Result<SigningKey, SigningError>],
        msg_id: &str,
        timestamp: i64,
        body: &[u8],
    ) -> Result<Vec<(String, String)>, SigningError> {
        let cannot = |why: String| SigningError::CannotSign {
            scheme: self.name(),
            why,
        };
        let current = keys
            .first()
            .ok_or_else(|| cannot("there is no secret".into()))?
            .as_ref()
            .map_err(|e| cannot(e.to_string()))?;
        let timestamp_text = timestamp.to_string();
        let mut headers = vec![
            ("webhook-id".to_owned(), msg_id.to_owned()),
            ("webhook-timestamp".to_owned(), timestamp_text.clone()),
        ];
        match self {
            Self::StandardWebhooks => {
                let signatures: Vec<String> = keys
                    .iter()
                    .filter_map(|key| key.as_ref().ok())
                    .map(|key| signature_with(key, msg_id, &timestamp_text, body))
                    .collect();
                headers.push(("webhook-signature".to_owned(), signatures.join(" ")));
            }
            Self::HmacSha256Hex {
                header,
                prefix,
                timestamp_header,
            } => {
                let mut mac = current.0.clone();
                if let Some(ts_header) = timestamp_header {
                    mac.update(timestamp_text.as_bytes());
                    mac.update(b".");
                    headers.push((ts_header.clone(), timestamp_text));
                }
                mac.update(body);
                headers.push((
                    header.clone(),
                    format!("{prefix}{}", hex::encode(mac.finalize().into_bytes())),
                ));
            }
        }
        Ok(headers)
    }
}

/// A secret made ready to sign with: the HMAC state after its key, copied for each message
/// (two SHA-256 blocks and the key's decoding saved per delivery). Never printed.
#[derive(Clone)]
pub struct SigningKey(Hmac<Sha256>);

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SigningKey(..)")
    }
}

/// `whsec_` + base64 of 32 random bytes.
pub fn generate_secret() -> String {
    let mut bytes = [0u8; SECRET_BYTES];
    rand::rng().fill_bytes(&mut bytes);
    format!("{SECRET_PREFIX}{}", BASE64.encode(bytes))
}

/// The HMAC key of a Standard Webhooks secret.
fn standard_key(secret: &str) -> Result<Vec<u8>, SigningError> {
    let encoded = secret
        .strip_prefix(SECRET_PREFIX)
        .ok_or(SigningError::BadStandardSecret)?;
    let key = BASE64
        .decode(encoded)
        .map_err(|_| SigningError::BadStandardSecret)?;
    if (24..=64).contains(&key.len()) {
        Ok(key)
    } else {
        Err(SigningError::BadStandardSecret)
    }
}

/// `v1,<base64 HMAC-SHA256(key, "{id}.{timestamp}.{body}")>`.
pub fn standard_signature(key: &[u8], msg_id: &str, timestamp: i64, body: &[u8]) -> String {
    signature_with(&SigningKey(hmac(key)), msg_id, &timestamp.to_string(), body)
}

/// [`standard_signature`] from a prepared key.
fn signature_with(key: &SigningKey, msg_id: &str, timestamp: &str, body: &[u8]) -> String {
    let mut mac = key.0.clone();
    mac.update(msg_id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("v1,{}", BASE64.encode(mac.finalize().into_bytes()))
}

fn hmac(key: &[u8]) -> Hmac<Sha256> {
    // HMAC takes keys of any length; this cannot fail.
    match Hmac::<Sha256>::new_from_slice(key) {
        Ok(mac) => mac,
        Err(_) => unreachable!("HMAC accepts keys of every length"),
    }
}

fn check_header_name(name: &str) -> Result<String, SigningError> {
    let lower = name.trim().to_ascii_lowercase();
    if axum::http::HeaderName::from_bytes(lower.as_bytes()).is_err() {
        return Err(SigningError::BadScheme(format!(
            "{name:?} is not a valid header name"
        )));
    }
    if crate::net::is_host_header(&lower) {
        return Err(SigningError::BadScheme(format!(
            "{name:?} is a header the host sets itself"
        )));
    }
    Ok(lower)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The test vector of the Standard Webhooks reference libraries.
    #[test]
    fn standard_webhooks_spec_vector() {
        let secret = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
        let body = br#"{"email":"test@example.com","username":"test_user"}"#;
        let headers = Scheme::StandardWebhooks
            .sign(
                &[secret],
                "msg_27UH4WbU6Z5A5EzD8u03UvzRbpk",
                1649367553,
                body,
            )
            .unwrap();
        let signature = headers
            .iter()
            .find(|(n, _)| n == "webhook-signature")
            .map(|(_, v)| v.as_str());
        assert_eq!(
            signature,
            Some("v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw=")
        );
    }

    #[test]
    fn rotation_sends_one_signature_per_secret_newest_first() {
        let (new, old) = (generate_secret(), generate_secret());
        let headers = Scheme::StandardWebhooks
            .sign(&[&new, &old], "evt_1", 1, b"{}")
            .unwrap();
        let sig = &headers
            .iter()
            .find(|(n, _)| n == "webhook-signature")
            .unwrap()
            .1;
        let parts: Vec<&str> = sig.split(' ').collect();
        assert_eq!(parts.len(), 2);
        assert_eq!(
            parts[0],
            standard_signature(&standard_key(&new).unwrap(), "evt_1", 1, b"{}")
        );
        assert_eq!(
            parts[1],
            standard_signature(&standard_key(&old).unwrap(), "evt_1", 1, b"{}")
        );
    }

    #[test]
    fn hex_scheme_matches_a_github_style_verifier() {
        let scheme = Scheme::HmacSha256Hex {
            header: "x-hub-signature-256".into(),
            prefix: "sha256=".into(),
            timestamp_header: None,
        };
        let headers = scheme
            .sign(
                &["It's a Secret to Everybody"],
                "evt_1",
                1,
                b"Hello, World!",
            )
            .unwrap();
        let sig = &headers
            .iter()
            .find(|(n, _)| n == "x-hub-signature-256")
            .unwrap()
            .1;
        // GitHub's documented example for this secret and payload.
        assert_eq!(
            sig,
            "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
        );
    }

    #[test]
    fn hex_scheme_with_timestamp_signs_timestamp_dot_body() {
        let scheme = Scheme::HmacSha256Hex {
            header: "x-signature".into(),
            prefix: String::new(),
            timestamp_header: Some("x-timestamp".into()),
        };
        let headers = scheme
            .sign(&["0123456789abcdef"], "evt_1", 1700000000, b"{}")
            .unwrap();
        let mut mac = hmac(b"0123456789abcdef");
        mac.update(b"1700000000.{}");
        let expected = hex::encode(mac.finalize().into_bytes());
        assert!(headers.contains(&("x-signature".to_owned(), expected)));
        assert!(headers.contains(&("x-timestamp".to_owned(), "1700000000".to_owned())));
    }

    /// A subscription switched from the hex scheme to Standard Webhooks kept its text secret:
    /// signing used to skip it and send an empty `webhook-signature`.
    #[test]
    fn a_secret_that_cannot_serve_the_scheme_fails_signing_instead_of_sending_unsigned() {
        let text_secret = "It's a Secret to Everybody";
        let err = Scheme::StandardWebhooks
            .sign(&[text_secret], "evt_1", 1, b"{}")
            .unwrap_err();
        assert!(matches!(
            err,
            SigningError::CannotSign {
                scheme: "standard-webhooks",
                ..
            }
        ));
        assert!(err.to_string().contains("rotate"), "{err}");
        let hex = Scheme::HmacSha256Hex {
            header: "x-signature".into(),
            prefix: String::new(),
            timestamp_header: None,
        };
        assert!(hex.sign(&[], "evt_1", 1, b"{}").is_err());
        assert!(hex.sign(&[""], "evt_1", 1, b"{}").is_err());
        // After a rotation, a rotated-out secret of the old scheme is only left out.
        let new = generate_secret();
        let headers = Scheme::StandardWebhooks
            .sign(&[&new, text_secret], "evt_1", 1, b"{}")
            .unwrap();
        let signature = &headers
            .iter()
            .find(|(n, _)| n == "webhook-signature")
            .unwrap()
            .1;
        assert_eq!(
            signature,
            &standard_signature(&standard_key(&new).unwrap(), "evt_1", 1, b"{}")
        );
    }

    #[test]
    fn secrets_and_schemes_are_validated() {
        assert!(
            Scheme::StandardWebhooks
                .check_secret(&generate_secret())
                .is_ok()
        );
        assert_eq!(
            Scheme::StandardWebhooks.check_secret("whsec_c2hvcnQ="),
            Err(SigningError::BadStandardSecret)
        );
        assert_eq!(
            Scheme::StandardWebhooks.check_secret("nope"),
            Err(SigningError::BadStandardSecret)
        );
        let bad = Scheme::HmacSha256Hex {
            header: "webhook-signature".into(),
            prefix: "sha256=".into(),
            timestamp_header: None,
        };
        assert!(bad.validated().is_err());
        let bad = Scheme::HmacSha256Hex {
            header: "bad header".into(),
            prefix: "sha256=".into(),
            timestamp_header: None,
        };
        assert!(bad.validated().is_err());
        let ok = Scheme::HmacSha256Hex {
            header: "X-Hub-Signature-256".into(),
            prefix: "sha256=".into(),
            timestamp_header: None,
        };
        assert!(
            matches!(ok.validated(), Ok(Scheme::HmacSha256Hex { header, .. }) if header == "x-hub-signature-256")
        );
    }
}
