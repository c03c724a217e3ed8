//! Subscription secrets at rest: sealed with ChaCha20-Poly1305 under a key kept outside the
//! database (the operator's, or one generated into `secrets.key`, mode `0600`), so a copy of
//! the database file — a backup, a support bundle — does not give away every receiver's key.
//!
//! A sealed value is `enc:v1:` + base64(12-byte random nonce ‖ ciphertext ‖ tag), with the
//! subscription's id as associated data (a sealed secret copied onto another subscription
//! does not open). The `v1` leaves room for another format later. The database also keeps a
//! sealed check value, so a wrong key is refused at start rather than on the first delivery.
//!
//! Secrets stored in plain text (databases from before this) are sealed on the first start,
//! and the file is then vacuumed and its log truncated, so no plain copy is left behind in
//! free pages.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD as BASE64, STANDARD_NO_PAD};
use rand::RngCore;
use ring::aead::{Aad, CHACHA20_POLY1305, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use rusqlite::{Connection, OptionalExtension, TransactionBehavior};

use super::StoreError;

/// Prefix of a sealed value (format version 1).
const SEALED_PREFIX: &str = "enc:v1:";
/// The settings row holding the sealed check value.
const CHECK_SETTING: &str = "secrets_key_check";
/// What the check value seals (with this associated data).
const CHECK_TEXT: &str = "switchyard secrets key check";
const CHECK_CONTEXT: &str = "settings";
const KEY_BYTES: usize = 32;

/// The 32-byte key that seals subscription secrets. Its `Debug` shows nothing of it.
#[derive(Clone)]
pub struct SecretKey([u8; KEY_BYTES]);

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretKey(..)")
    }
}

impl SecretKey {
    /// Parses a key given as base64 (with or without padding) or hex of 32 bytes.
    ///
    /// # Errors
    /// When the text is neither, or not 32 bytes.
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let bytes = if text.len() == 2 * KEY_BYTES && text.bytes().all(|b| b.is_ascii_hexdigit()) {
            hex::decode(text).ok()
        } else {
            BASE64
                .decode(text)
                .or_else(|_| STANDARD_NO_PAD.decode(text))
                .ok()
        };
        bytes
            .and_then(|b| <[u8; KEY_BYTES]>::try_from(b).ok())
            .map(Self)
            .ok_or_else(|| {
                "must be 32 bytes as base64 (e.g. `openssl rand -base64 32`) or 64 hex digits"
                    .to_owned()
            })
    }

    /// A new random key.
    pub fn generate() -> Self {
        let mut bytes = [0u8; KEY_BYTES];
        rand::rng().fill_bytes(&mut bytes);
        Self(bytes)
    }

    /// The key as base64, as it is written to a key file.
    pub fn to_base64(&self) -> String {
        BASE64.encode(self.0)
    }
}

/// Where the secrets key comes from.
#[derive(Debug, Clone)]
pub enum KeySource {
    /// Given by the operator (setting or environment).
    Given(SecretKey),
    /// Read from this file; generated into it (mode `0600`) when the file is missing and the
    /// database holds no sealed secrets yet.
    File(PathBuf),
}

/// Seals and opens secrets with the key. Cheap to clone.
#[derive(Clone)]
pub(crate) struct Sealer(Arc<LessSafeKey>);

impl Sealer {
    fn new(key: &SecretKey) -> Result<Self, StoreError> {
        let unbound = UnboundKey::new(&CHACHA20_POLY1305, &key.0)
            .map_err(|_| StoreError::SecretKey("the secrets key is not usable".into()))?;
        Ok(Self(Arc::new(LessSafeKey::new(unbound))))
    }

    /// `plain` sealed for `context` (the subscription's id).
    pub(crate) fn seal(&self, context: &str, plain: &str) -> Result<String, StoreError> {
        let mut nonce = [0u8; NONCE_LEN];
        rand::rng().fill_bytes(&mut nonce);
        let mut data = plain.as_bytes().to_vec();
        self.0
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(context.as_bytes()),
                &mut data,
            )
            .map_err(|_| StoreError::Corrupt("sealing a secret failed".into()))?;
        let mut out = Vec::with_capacity(NONCE_LEN + data.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&data);
        Ok(format!("{SEALED_PREFIX}{}", BASE64.encode(out)))
    }

    /// The plain text of a value sealed for `context`.
    pub(crate) fn open(&self, context: &str, sealed: &str) -> Result<String, StoreError> {
        let bad = || StoreError::Corrupt(format!("a sealed secret of {context} does not open"));
        let encoded = sealed.strip_prefix(SEALED_PREFIX).ok_or_else(bad)?;
        let bytes = BASE64.decode(encoded).map_err(|_| bad())?;
        if bytes.len() < NONCE_LEN {
            return Err(bad());
        }
        let (nonce, data) = bytes.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| bad())?;
        let mut data = data.to_vec();
        let plain = self
            .0
            .open_in_place(nonce, Aad::from(context.as_bytes()), &mut data)
            .map_err(|_| bad())?;
        String::from_utf8(plain.to_vec()).map_err(|_| bad())
    }
}

/// Whether a stored value is sealed (not plain text from before encryption).
pub(crate) fn is_sealed(stored: &str) -> bool {
    stored.starts_with(SEALED_PREFIX)
}

/// At open: finds the key, checks it against the database, and seals any plain-text secrets.
pub(super) fn prepare(conn: &mut Connection, source: &KeySource) -> Result<Sealer, StoreError> {
    let check: Option<String> = conn
        .query_row(
            "SELECT value FROM settings WHERE key = ?",
            [CHECK_SETTING],
            |r| r.get(0),
        )
        .optional()?;
    let key = match source {
        KeySource::Given(key) => key.clone(),
        KeySource::File(path) => key_from_file(path, check.is_some())?,
    };
    let sealer = Sealer::new(&key)?;
    match &check {
        Some(check) => {
            if sealer.open(CHECK_CONTEXT, check).ok().as_deref() != Some(CHECK_TEXT) {
                return Err(wrong_key(source));
            }
        }
        None => {
            conn.execute(
                "INSERT INTO settings (key, value) VALUES (?, ?)",
                (CHECK_SETTING, sealer.seal(CHECK_CONTEXT, CHECK_TEXT)?),
            )?;
        }
    }
    if seal_plain_secrets(conn, &sealer)? > 0 {
        scrub(conn)?;
    }
    Ok(sealer)
}

fn key_from_file(path: &Path, database_has_sealed: bool) -> Result<SecretKey, StoreError> {
    match std::fs::read_to_string(path) {
        Ok(text) => SecretKey::parse(&text).map_err(|e| {
            StoreError::SecretKey(format!("secrets key file {}: {e}", path.display()))
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !database_has_sealed => {
            let key = SecretKey::generate();
            write_key_file(path, &key).map_err(|e| {
                StoreError::SecretKey(format!(
                    "cannot write the secrets key file {}: {e}",
                    path.display()
                ))
            })?;
            tracing::info!(path = %path.display(), "generated the key that encrypts subscription secrets; back it up with the database");
            Ok(key)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(StoreError::SecretKey(format!(
            "the secrets key file {} is missing, but the database holds secrets encrypted with it: restore the file, or set SWITCHYARD_SECRET_KEY to the key",
            path.display()
        ))),
        Err(e) => Err(StoreError::SecretKey(format!(
            "cannot read the secrets key file {}: {e}",
            path.display()
        ))),
    }
}

/// Writes a new key file readable only by its owner, atomically (never a half key).
fn write_key_file(path: &Path, key: &SecretKey) -> std::io::Result<()> {
    use std::io::Write as _;
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    // Temp files are created with mode 0600.
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    writeln!(tmp, "{}", key.to_base64())?;
    tmp.as_file().sync_all()?;
    tmp.persist_noclobber(path).map_err(|e| e.error)?;
    std::fs::File::open(dir)?.sync_all()
}

fn wrong_key(source: &KeySource) -> StoreError {
    let from = match source {
        KeySource::Given(_) => "the configured secret_key (SWITCHYARD_SECRET_KEY)".to_owned(),
        KeySource::File(path) => format!("the key in {}", path.display()),
    };
    StoreError::SecretKey(format!(
        "{from} is not the key this database's subscription secrets were encrypted with: restore the original key (file or SWITCHYARD_SECRET_KEY)"
    ))
}

/// Seals every secret still stored in plain text; returns how many values it sealed.
fn seal_plain_secrets(conn: &mut Connection, sealer: &Sealer) -> Result<usize, StoreError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let rows: Vec<(String, String, String)> = {
        let mut stmt = tx.prepare(
            "SELECT id, secret, previous_secrets FROM subscriptions
             WHERE secret NOT LIKE 'enc:v1:%' OR EXISTS (SELECT 1 FROM json_each(previous_secrets)
                 WHERE json_extract(value, '$.secret') NOT LIKE 'enc:v1:%')",
        )?;
        super::all_rows(&mut stmt, [], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
    };
    let mut sealed = 0;
    for (id, secret, previous) in rows {
        let mut list: Vec<super::models::StoredSecret> = serde_json::from_str(&previous)
            .map_err(|e| StoreError::Corrupt(format!("subscription {id} previous secrets: {e}")))?;
        let mut changed = false;
        for entry in &mut list {
            if !is_sealed(&entry.secret) {
                entry.secret = sealer.seal(&id, &entry.secret)?;
                changed = true;
            }
        }
        let secret = if is_sealed(&secret) {
            secret
        } else {
            changed = true;
            sealer.seal(&id, &secret)?
        };
        if changed {
            let list =
                serde_json::to_string(&list).map_err(|e| StoreError::Corrupt(e.to_string()))?;
            tx.execute(
                "UPDATE subscriptions SET secret = ?, previous_secrets = ? WHERE id = ?",
                (secret, list, &id),
            )?;
            sealed += 1;
        }
    }
    tx.commit()?;
    if sealed > 0 {
        tracing::info!(
            subscriptions = sealed,
            "encrypted subscription secrets stored in plain text"
        );
    }
    Ok(sealed)
}

/// Rewrites the database so the plain-text secrets just sealed survive nowhere in it: not in
/// free pages (`VACUUM` builds the file afresh) nor in the write-ahead log (truncated).
fn scrub(conn: &mut Connection) -> Result<(), StoreError> {
    conn.execute_batch("VACUUM")?;
    conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_secret_opens_only_with_its_key_and_context() {
        let sealer = Sealer::new(&SecretKey::generate()).unwrap();
        let sealed = sealer.seal("sub_1", "whsec_abc").unwrap();
        assert!(is_sealed(&sealed));
        assert!(!sealed.contains("whsec_abc"));
        assert_eq!(sealer.open("sub_1", &sealed).unwrap(), "whsec_abc");
        assert!(sealer.open("sub_2", &sealed).is_err(), "bound to its row");
        let other = Sealer::new(&SecretKey::generate()).unwrap();
        assert!(other.open("sub_1", &sealed).is_err());
        assert_ne!(
            sealed,
            sealer.seal("sub_1", "whsec_abc").unwrap(),
            "a fresh nonce each time"
        );
        assert!(sealer.open("sub_1", "whsec_abc").is_err());
        assert!(sealer.open("sub_1", "enc:v1:AAAA").is_err());
    }

    #[test]
    fn keys_parse_from_base64_or_hex() {
        let key = SecretKey::generate();
        assert_eq!(SecretKey::parse(&key.to_base64()).unwrap().0, key.0);
        assert_eq!(SecretKey::parse(&hex::encode(key.0)).unwrap().0, key.0);
        let unpadded = key.to_base64().trim_end_matches('=').to_owned();
        assert_eq!(SecretKey::parse(&unpadded).unwrap().0, key.0);
        assert!(SecretKey::parse("c2hvcnQ=").is_err());
        assert!(SecretKey::parse("not a key").is_err());
        assert_eq!(format!("{key:?}"), "SecretKey(..)");
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn a_generated_key_file_is_private_and_a_missing_one_is_refused_later() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("db.sqlite");
        let store = super::super::Store::open(&db).await.unwrap();
        store.close().await;
        let key_file = dir.path().join("secrets.key");
        let mode = std::fs::metadata(&key_file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        std::fs::remove_file(&key_file).unwrap();
        let err = super::super::Store::open(&db).await.err().unwrap();
        assert!(err.to_string().contains("is missing"), "{err}");
        assert!(!key_file.exists(), "no new key replaces the lost one");
    }

    #[tokio::test]
    async fn a_configured_key_that_does_not_match_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("db.sqlite");
        let key = SecretKey::generate();
        let store = super::super::Store::open_with(&db, KeySource::Given(key.clone()))
            .await
            .unwrap();
        store.close().await;
        let store = super::super::Store::open_with(&db, KeySource::Given(key))
            .await
            .unwrap();
        store.close().await;
        let err = super::super::Store::open_with(&db, KeySource::Given(SecretKey::generate()))
            .await
            .err()
            .unwrap();
        assert!(
            err.to_string().contains("is not the key"),
            "a clear message: {err}"
        );
        assert!(
            !dir.path().join("secrets.key").exists(),
            "a given key writes no file"
        );
    }
}
