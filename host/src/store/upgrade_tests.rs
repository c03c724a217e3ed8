//! `migrations/0007_cheaper_delivery_writes.sql` on a database the previous release left: the
//! rewritten CHECK constraints still refuse what they refused, every row stays, and the status
//! lists still find every delivery, in flight or not.

use rusqlite::Connection;

use super::*;
use crate::tenant::Scope;

/// The schema before `0007`.
const BEFORE: usize = 6;

/// A database at [`BEFORE`] with one delivery in each status and an attempt.
fn previous_release(path: &std::path::Path) {
    let mut conn = Connection::open(path).unwrap();
    conn.pragma_update(None, "journal_mode", "WAL").unwrap();
    migrate_as_of(&mut conn, BEFORE);
    conn.execute_batch(
        r#"INSERT INTO subscriptions (id, url, events, signature, secret, created_at, updated_at)
           VALUES ('sub_1', 'https://receiver.example/hook', '["*"]', '{"scheme":"standard-webhooks"}',
                   'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw', 1, 1);
           INSERT INTO events (id, type, data, created_at) VALUES ('evt_1', 'a', '{}', 1);
           INSERT INTO deliveries (id, event_id, subscription_id, status, attempts, next_attempt_at, created_at, updated_at, lease_until)
           VALUES ('dlv_1', 'evt_1', 'sub_1', 'pending', 0, 1, 1, 1, NULL),
                  ('dlv_2', 'evt_1', 'sub_1', 'delivering', 0, 1, 1, 1, 99),
                  ('dlv_3', 'evt_1', 'sub_1', 'succeeded', 1, 1, 1, 1, NULL),
                  ('dlv_4', 'evt_1', 'sub_1', 'failed', 1, 1, 1, 1, NULL),
                  ('dlv_5', 'evt_1', 'sub_1', 'skipped', 1, 1, 1, 1, NULL),
                  ('dlv_6', 'evt_1', 'sub_1', 'cancelled', 0, 1, 1, 1, NULL);
           INSERT INTO attempts (delivery_id, subscription_id, at, outcome, status_code)
           VALUES ('dlv_3', 'sub_1', 1, 'succeeded', 200);"#,
    )
    .unwrap();
}

#[tokio::test]
async fn the_cheaper_checks_refuse_what_the_old_ones_did_and_every_row_stays() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db.sqlite");
    previous_release(&path);
    // Once as migrated, once reopened (the schema as read back from the file).
    for _ in 0..2 {
        let store = Store::open(&path).await.unwrap();
        every_status_is_listed(&store).await;
        the_checks_hold(&store).await;
        store.close().await;
    }
}

async fn every_status_is_listed(store: &Store) {
    for status in DeliveryStatus::ALL {
        let filter = DeliveryFilter {
            status: Some(status),
            ..Default::default()
        };
        let found = store
            .list_deliveries(&Scope::Any, &filter, 10)
            .await
            .unwrap();
        assert_eq!(found.len(), 1, "{status:?}: {found:?}");
        assert_eq!(found[0].status, status);
    }
}

async fn the_checks_hold(store: &Store) {
    let (check, schema, refused) = store
        .write(|conn| {
            let check: String = conn.query_row("PRAGMA integrity_check", [], |r| r.get(0))?;
            let schema: String = conn.query_row(
                "SELECT group_concat(sql, ' ') FROM sqlite_schema WHERE name IN ('deliveries', 'attempts')",
                [],
                |r| r.get(0),
            )?;
            let delivery = conn.execute(
                "INSERT INTO deliveries (id, event_id, subscription_id, status, next_attempt_at, created_at, updated_at)
                 VALUES ('dlv_x', 'evt_1', 'sub_1', 'lost', 1, 1, 1)",
                [],
            );
            let attempt = conn.execute(
                "INSERT INTO attempts (delivery_id, at, outcome) VALUES ('dlv_3', 1, 'maybe')",
                [],
            );
            let renamed =
                conn.execute("UPDATE deliveries SET status = 'done' WHERE id = 'dlv_1'", []);
            let refused = [delivery, attempt, renamed].map(|r| {
                matches!(r, Err(rusqlite::Error::SqliteFailure(e, _))
                    if e.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_CHECK)
            });
            Ok((check, schema, refused))
        })
        .await
        .unwrap();
    assert_eq!(check, "ok");
    assert!(!schema.contains(" IN ("), "{schema}");
    assert!(schema.contains("status = 'cancelled'"), "{schema}");
    assert!(schema.contains("outcome = 'skipped'"), "{schema}");
    assert_eq!(refused, [true; 3]);
}
