//! The pre-filled database: `history` finished deliveries (with their events and one attempt
//! each) spread over the five days before it was built, and `pending` deliveries due in a
//! year, across ten subscriptions whose patterns (`history.*`) no benchmark event matches.
//! Built once with direct SQL (the service would take hours to make as many), then cached in
//! `target/growth/` and copied for each run.

use std::path::{Path, PathBuf};
use std::time::Instant;

use rusqlite::Connection;
use serde_json::json;

use super::common::service::Service;

/// Subscriptions the history is spread over.
pub const SUBSCRIPTIONS: usize = 10;
/// Bumped when the layout of the fill changes, so a stale cache is not used.
const LAYOUT: u32 = 1;
const DAY_MS: i64 = 24 * 3600 * 1000;

/// A cached fill.
pub struct Fill {
    /// The data folder to copy.
    pub dir: PathBuf,
    /// The history's subscriptions.
    pub subscriptions: Vec<String>,
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/growth")
}

/// Creates the history's subscriptions through the API of a running service.
pub async fn create_subscriptions(service: &Service) -> Vec<String> {
    let http = reqwest::Client::new();
    let mut ids = Vec::new();
    for n in 0..SUBSCRIPTIONS {
        let created = service
            .call(
                &http,
                reqwest::Method::POST,
                "/v1/subscriptions",
                json!({"url": format!("http://127.0.0.1:9/history/{n}"), "events": ["history.*"]}),
            )
            .await;
        ids.push(created["id"].as_str().unwrap_or_default().to_owned());
    }
    ids
}

/// The cached fill of this size, built first if missing.
pub async fn cached(history: usize, pending: usize) -> Fill {
    let dir = root().join(format!("fill-{history}-{pending}-v{LAYOUT}"));
    let marker = dir.join("subscriptions.json");
    if let Ok(text) = std::fs::read_to_string(&marker) {
        let subscriptions: Vec<String> = serde_json::from_str(&text).unwrap_or_default();
        if subscriptions.len() == SUBSCRIPTIONS {
            eprintln!("growth: using the cached fill {}", dir.display());
            return Fill { dir, subscriptions };
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("fill folder");
    restrict(&dir);
    let data = dir.join("data");
    std::fs::create_dir_all(&data).expect("data folder");
    restrict(&data);
    // The service makes the schema, the keys and the subscriptions (sealed secrets and all).
    let service = Service::start_in(&data, &[("SWITCHYARD_BUNDLED_PLUGINS", "false")]).await;
    let subscriptions = create_subscriptions(&service).await;
    drop(service);
    let started = Instant::now();
    write_rows(
        &data.join("switchyard.db"),
        &subscriptions,
        history,
        pending,
    )
    .expect("fill the database");
    eprintln!(
        "growth: filled {history} finished + {pending} pending deliveries in {:.0?}",
        started.elapsed()
    );
    std::fs::write(
        &marker,
        serde_json::to_string(&subscriptions).unwrap_or_default(),
    )
    .expect("marker");
    Fill { dir, subscriptions }
}

fn restrict(dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700));
}

/// A copy of the fill's data folder in `to`, for one run to change.
pub fn copy(fill: &Fill, to: &Path) {
    let from = fill.dir.join("data");
    copy_dir(&from, to);
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("copy folder");
    restrict(to);
    for entry in std::fs::read_dir(from).expect("read fill").flatten() {
        let (path, name) = (entry.path(), entry.file_name());
        if name == "lock" {
            continue;
        }
        if path.is_dir() {
            copy_dir(&path, &to.join(name));
        } else {
            std::fs::copy(&path, to.join(&name)).expect("copy fill file");
        }
    }
}

fn now_ms() -> i64 {
    (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64
}

fn id(prefix: &str, ms: i64, n: usize) -> String {
    format!("{prefix}_{}", ulid::Ulid::from_parts(ms as u64, n as u128))
}

/// Inserts the rows, 100,000 deliveries per transaction, without a journal or fsync (a
/// crash means building again: the marker is written last).
fn write_rows(
    db: &Path,
    subscriptions: &[String],
    history: usize,
    pending: usize,
) -> rusqlite::Result<()> {
    let mut conn = Connection::open(db)?;
    conn.pragma_update(None, "journal_mode", "DELETE")?;
    conn.pragma_update(None, "synchronous", "OFF")?;
    conn.pragma_update(None, "cache_size", -262_144)?;
    let end = now_ms() - 3_600_000;
    let start = end - 5 * DAY_MS;
    let step = (end - start) / (history.max(1) as i64);
    let data = json!({"title": "A post from the past", "author": {"name": "Ann Example"},
        "tags": ["history"], "body": "x".repeat(120)})
    .to_string();
    let total = history + pending;
    let mut n = 0;
    let report = Instant::now();
    while n < total {
        let tx = conn.transaction()?;
        {
            let mut event = tx.prepare_cached(
                "INSERT INTO events (id, type, data, created_at) VALUES (?, 'history.post', ?, ?)",
            )?;
            let mut delivery = tx.prepare_cached(
                "INSERT INTO deliveries (id, event_id, subscription_id, status, attempts, next_attempt_at, last_error,
                 skip_reason, created_at, updated_at, lease_token) VALUES (?, ?, ?, ?, 1, ?, ?, ?, ?, ?, 1)",
            )?;
            let mut attempt = tx.prepare_cached(
                "INSERT INTO attempts (delivery_id, subscription_id, at, outcome, status_code, latency_ms, error, response_body)
                 VALUES (?, ?, ?, ?, ?, 12, ?, ?)",
            )?;
            for _ in 0..100_000 {
                if n >= total {
                    break;
                }
                let sub = &subscriptions[n % subscriptions.len()];
                let (at, status, next) = if n < history {
                    let at = start + step * n as i64;
                    let status = match n % 100 {
                        0 | 1 => "failed",
                        2 => "skipped",
                        _ => "succeeded",
                    };
                    (at, status, at)
                } else {
                    (end, "pending", now_ms() + 365 * DAY_MS)
                };
                let (evt, dlv) = (id("evt", at, n), id("dlv", at, n));
                event.execute((&evt, &data, at))?;
                let error = (status == "failed" || status == "pending").then_some("HTTP 500");
                let skip = (status == "skipped").then_some("filtered out");
                delivery.execute((&dlv, &evt, sub, status, next, error, skip, at, at + 50))?;
                let (outcome, code, body) = match status {
                    "succeeded" => ("succeeded", Some(204), None),
                    "skipped" => ("skipped", None, None),
                    _ => ("failed", Some(500), Some("internal error")),
                };
                attempt.execute((&dlv, sub, at, outcome, code, error, body))?;
                n += 1;
            }
        }
        tx.commit()?;
        eprintln!("growth: {n} of {total} rows in {:.0?}", report.elapsed());
    }
    // The service finds the database as it left it.
    conn.pragma_update(None, "journal_mode", "WAL")?;
    drop(conn);
    Ok(())
}

/// The database's page count and free pages, read beside the running service.
pub fn pages(db: &Path) -> (i64, i64) {
    let Ok(conn) = Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
    else {
        return (0, 0);
    };
    let get = |pragma: &str| {
        conn.query_row(&format!("PRAGMA {pragma}"), [], |r| r.get::<_, i64>(0))
            .unwrap_or(0)
    };
    (get("page_count"), get("freelist_count"))
}

/// Rows in a table, read beside the running service.
pub fn rows(db: &Path, table: &str) -> i64 {
    Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .and_then(|c| c.query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |r| r.get(0)))
        .unwrap_or(0)
}

/// The filtered lists' statements timed directly on `db` (no service running): with the
/// indexes of `migrations/0006_retention.sql`, and forced onto the index the same filter used
/// before them (`deliveries_by_subscription`, then the status checked row by row). Returns
/// (filter, p50 ms now, p50 ms before).
pub fn old_plans(db: &Path, subscription: &str) -> Vec<(String, f64, f64)> {
    let Ok(conn) = Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
    else {
        return Vec::new();
    };
    let columns = "id, event_id, subscription_id, status, attempts, next_attempt_at, last_error, skip_reason, created_at, updated_at";
    let mut out = Vec::new();
    for status in ["failed", "cancelled"] {
        let p50 = |indexed: &str| {
            let sql = format!(
                "SELECT {columns} FROM deliveries {indexed} WHERE subscription_id = ?1 AND status = ?2 ORDER BY id DESC LIMIT 51"
            );
            let mut samples = Vec::new();
            for _ in 0..21 {
                let at = Instant::now();
                let rows = conn.prepare_cached(&sql).and_then(|mut stmt| {
                    let mut rows = stmt.query((subscription, status))?;
                    let mut n = 0;
                    while rows.next()?.is_some() {
                        n += 1;
                    }
                    Ok(n)
                });
                assert!(rows.is_ok(), "{sql}: {rows:?}");
                samples.push(at.elapsed().as_secs_f64() * 1e3);
            }
            samples.sort_by(f64::total_cmp);
            samples[samples.len() / 2]
        };
        let now = p50("");
        let before = p50("INDEXED BY deliveries_by_subscription");
        out.push((format!("status={status}&subscription_id="), now, before));
    }
    out
}
