//! Every hot query reads an index that holds only what it returns: checked with `EXPLAIN QUERY
//! PLAN`. A `SCAN` of a table (every row of it) or a `USE TEMP B-TREE` (sorting every match
//! before the first can be returned) would make the query's cost grow with the history the
//! database keeps. The lease's own statements are checked in `queue_tests`.

use super::*;
use crate::store::deliveries::{self, DeliveryFilter, RECOVER_FAILED, list_query};
use crate::store::{attempts, events, queue, results, retention, subscriptions};

/// Column `column` of every row `EXPLAIN`-like `prefix` gives for `sql` (parameters unbound).
fn explained(conn: &Connection, prefix: &str, sql: &str, column: usize) -> Vec<String> {
    let mut stmt = conn
        .prepare(&format!("{prefix} {sql}"))
        .unwrap_or_else(|e| panic!("{e}: {sql}"));
    let unbound = vec![rusqlite::types::Null; stmt.parameter_count()];
    all_rows(&mut stmt, rusqlite::params_from_iter(unbound), |r| {
        Ok(r.get::<_, String>(column)?)
    })
    .unwrap()
}

/// The plan of `sql`, one detail per line joined by ` | `.
fn plan(conn: &Connection, sql: &str) -> String {
    explained(conn, "EXPLAIN QUERY PLAN", sql, 3).join(" | ")
}

/// The opcodes of `sql`.
fn opcodes(conn: &Connection, sql: &str) -> Vec<String> {
    explained(conn, "EXPLAIN", sql, 1)
}

/// Fails on a full scan of one of the tables that grow, and on a sort, unless `walk` allows
/// the one in-order walk of `walk`'s index (a newest-first page with no filter reads the
/// primary key backwards and stops at the limit).
fn assert_indexed(name: &str, plan: &str, walk: Option<&str>) {
    eprintln!("{name}: {plan}");
    assert!(!plan.contains("TEMP B-TREE"), "{name} sorts: {plan}");
    for step in plan.split(" | ") {
        // `json_each` is the bound list itself, not a table.
        let scans_table = step
            .strip_prefix("SCAN ")
            .is_some_and(|rest| !rest.starts_with("json_each"));
        if scans_table {
            let allowed = walk.is_some_and(|w| step.contains(w));
            assert!(allowed, "{name} scans a table: {step} (in {plan})");
        }
    }
}

#[tokio::test]
async fn every_hot_query_reads_only_its_own_index_entries() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("db.sqlite")).await.unwrap();
    store
        .read(|conn| {
            let some = |s: &str| Some(s.to_owned());
            let failed = Some(DeliveryStatus::Failed);
            let lists = [
                (
                    "list",
                    DeliveryFilter::default(),
                    Some("sqlite_autoindex_deliveries_1"),
                ),
                (
                    "list ?subscription_id",
                    DeliveryFilter {
                        subscription_id: some("sub_1"),
                        ..Default::default()
                    },
                    None,
                ),
                (
                    "list ?status",
                    DeliveryFilter {
                        status: failed,
                        ..Default::default()
                    },
                    None,
                ),
                (
                    "list ?status&subscription_id",
                    DeliveryFilter {
                        subscription_id: some("sub_1"),
                        status: failed,
                        ..Default::default()
                    },
                    None,
                ),
                (
                    "list ?event_id",
                    DeliveryFilter {
                        event_id: some("evt_1"),
                        ..Default::default()
                    },
                    None,
                ),
                (
                    "list ?event_id&status",
                    DeliveryFilter {
                        event_id: some("evt_1"),
                        status: failed,
                        ..Default::default()
                    },
                    None,
                ),
            ];
            for (name, mut filter, walk) in lists {
                let (sql, _) = list_query(None, &filter, 51);
                assert_indexed(name, &plan(conn, &sql), walk);
                filter.before = some("dlv_1");
                let (sql, _) = list_query(None, &filter, 51);
                let plan = plan(conn, &sql);
                assert_indexed(&format!("{name}&cursor"), &plan, walk);
            }
            let expected = [
                ("list ?status", "deliveries_by_status"),
                (
                    "list ?status&subscription_id",
                    "deliveries_by_subscription_status",
                ),
                ("list ?event_id", "deliveries_by_event"),
                ("list ?event_id&status", "deliveries_by_event"),
            ];
            for (name, index) in expected {
                let filter = match name {
                    "list ?status" => DeliveryFilter {
                        status: failed,
                        ..Default::default()
                    },
                    "list ?event_id" => DeliveryFilter {
                        event_id: some("evt_1"),
                        ..Default::default()
                    },
                    "list ?event_id&status" => DeliveryFilter {
                        event_id: some("evt_1"),
                        status: failed,
                        ..Default::default()
                    },
                    _ => DeliveryFilter {
                        subscription_id: some("sub_1"),
                        status: failed,
                        ..Default::default()
                    },
                };
                let (sql, _) = list_query(None, &filter, 51);
                let plan = plan(conn, &sql);
                assert!(plan.contains(index), "{name} should use {index}: {plan}");
            }
            let statements = [
                ("attempt feed", attempts::FEED_AFTER, None),
                (
                    "attempt feed, latest",
                    attempts::FEED_LATEST,
                    Some("SCAN a"),
                ),
                (
                    "attempt feed ?subscription_id",
                    attempts::FEED_AFTER_OF,
                    None,
                ),
                (
                    "attempt feed ?subscription_id, latest",
                    attempts::FEED_LATEST_OF,
                    None,
                ),
                ("requeue expired leases", queue::REQUEUE_EXPIRED, None),
                ("earliest due", queue::EARLIEST_DUE, None),
                ("due queues", queue::DUE_QUEUES, None),
                ("lease", queue::LEASE_QUEUE, None),
                ("recover", RECOVER_FAILED, None),
                ("retention: old deliveries", retention::OLD_DELIVERIES, None),
                ("retention: old events", retention::OLD_EVENTS, None),
                ("retention: attempts", retention::DELETE_ATTEMPTS, None),
                ("retention: deliveries", retention::DELETE_DELIVERIES, None),
                (
                    "retention: events",
                    retention::DELETE_UNREFERENCED_EVENTS,
                    None,
                ),
                ("expunge", retention::EXPUNGE_EVENT, None),
                ("expunge responses", retention::EXPUNGE_RESPONSES, None),
            ];
            for (name, sql, walk) in statements {
                assert_indexed(name, &plan(conn, sql), walk);
            }
            for (sql, index) in subscriptions::CANCEL_UNFINISHED
                .iter()
                .zip(["deliveries_pending", "deliveries_leased"])
            {
                let plan = plan(conn, sql);
                // Walking `deliveries_leased` is reading the deliveries in flight, no more.
                assert_indexed("cancel unfinished", &plan, Some("deliveries_leased"));
                assert!(plan.contains(index), "{plan} should use {index}");
            }
            // Deliveries in flight are not in the status indexes: a list of them reads
            // `deliveries_leased`, which holds only them (as many as the dispatcher holds at
            // most), and sorts that handful.
            for subscription_id in [None, some("sub_1")] {
                let filter = DeliveryFilter {
                    subscription_id,
                    status: Some(DeliveryStatus::Delivering),
                    ..Default::default()
                };
                let (sql, _) = list_query(None, &filter, 51);
                let plan = plan(conn, &sql);
                eprintln!("list ?status=delivering: {plan}");
                assert!(plan.contains("deliveries_leased"), "{plan}");
            }
            let feed_of = plan(conn, attempts::FEED_LATEST_OF);
            assert!(feed_of.contains("attempts_by_subscription"), "{feed_of}");
            let old = plan(conn, retention::OLD_DELIVERIES);
            assert!(old.contains("deliveries_by_status"), "{old}");
            Ok(())
        })
        .await
        .unwrap();
    store.close().await;
}

/// Runs `check` on a new store's writer: its compiled programs, not a reader's (a read-only
/// connection leaves the constraint checks out).
async fn on_the_writer(check: impl FnOnce(&Connection) + Send + 'static) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("db.sqlite")).await.unwrap();
    store
        .write(|conn| {
            check(conn);
            Ok(())
        })
        .await
        .unwrap();
    store.close().await;
}

/// Every statement a delivery runs once per row builds no temporary b-tree. SQLite evaluates
/// a CHECK constraint's `IN` list of more than two constants with one, built anew for every
/// row written (two pages allocated and zeroed each time): about a third of SQLite's
/// instructions per delivery until `migrations/0007_cheaper_delivery_writes.sql`. (The lease,
/// once per batch, keeps its two: the rows its subquery picks, and those it returns.)
#[tokio::test]
async fn a_delivery_writes_without_temporary_btrees() {
    on_the_writer(|conn| {
        let statements = [
            ("insert event", events::INSERT_EVENT),
            ("insert pending delivery", events::INSERT_PENDING),
            ("insert leased delivery", events::INSERT_LEASED),
            ("record result", results::UPDATE_RESULT),
            ("record a retry", results::UPDATE_RETRY),
            ("insert attempt", results::INSERT_ATTEMPT),
        ];
        for (name, sql) in statements {
            let ops = opcodes(conn, sql);
            assert!(
                !ops.iter().any(|op| op == "OpenEphemeral"),
                "{name} builds a temporary b-tree: {ops:?}"
            );
        }
    })
    .await;
}

/// The queue's `delivery_requeued` trigger runs in every statement that makes a delivery
/// pending, so its queue says when it is due, and in none of the others a delivery runs (a
/// lease, a finished result), which it only cost (`migrations/0007_cheaper_delivery_writes.sql`).
#[tokio::test]
async fn the_queue_trigger_runs_exactly_where_deliveries_become_pending() {
    on_the_writer(|conn| {
        let runs_a_trigger = |sql: &str| opcodes(conn, sql).iter().any(|op| op == "Program");
        let pending = [
            ("retry", results::UPDATE_RETRY),
            ("give back", queue::GIVE_BACK),
            ("requeue expired leases", queue::REQUEUE_EXPIRED),
            ("recover", RECOVER_FAILED),
            ("retry by hand", deliveries::RETRY_BY_HAND),
        ];
        for (name, sql) in pending {
            assert!(runs_a_trigger(sql), "{name} leaves the queue behind");
        }
        let other = [
            ("lease", queue::LEASE_QUEUE),
            ("finished result", results::UPDATE_RESULT),
            ("insert leased delivery", events::INSERT_LEASED),
            ("insert pending delivery", events::INSERT_PENDING),
        ];
        for (name, sql) in other {
            assert!(!runs_a_trigger(sql), "{name} runs a trigger");
        }
    })
    .await;
}

/// Times `sql` was compiled again over four runs with a different bound `LIMIT` each (the
/// limit is parameter `limit_at`, the others bound to `rest`).
fn recompiles(conn: &Connection, sql: &str, limit_at: usize, rest: &[&dyn rusqlite::ToSql]) -> i32 {
    let mut stmt = conn.prepare_cached(sql).unwrap();
    for limit in 1..=4_i64 {
        let mut params: Vec<&dyn rusqlite::ToSql> = rest.to_vec();
        params.insert(limit_at, &limit);
        all_rows(&mut stmt, params.as_slice(), |_| Ok(())).unwrap();
    }
    stmt.get_status(rusqlite::StatementStatus::RePrepare)
}

/// A lease's `LIMIT ?` is the room left, different almost every time. SQLite compiles a bound
/// limit into the plan unless the connection asks for one plan per statement (QPSG), and then
/// recompiled the lease's statements on nearly every lease: 46% of the lease's time in a
/// profile. Checked on the writer (the lease itself) and on a reader (the lists page with
/// `LIMIT ?` too).
#[tokio::test]
async fn a_bound_limit_that_changes_does_not_recompile_the_statement() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("db.sqlite")).await.unwrap();
    let leased = store
        .bookkeeping(|tx| {
            let rest: [&dyn rusqlite::ToSql; 3] = [&2_i64, &1_i64, &"sub_1"];
            Ok(recompiles(tx, queue::LEASE_QUEUE, 3, &rest))
        })
        .await
        .unwrap();
    assert_eq!(leased, 0, "the lease was compiled again");
    let due = store
        .read(|conn| {
            let rest: [&dyn rusqlite::ToSql; 3] = [&1_i64, &"[]", &"[]"];
            Ok(recompiles(conn, queue::DUE_QUEUES, 2, &rest))
        })
        .await
        .unwrap();
    assert_eq!(due, 0, "the due queues' query was compiled again");
}
