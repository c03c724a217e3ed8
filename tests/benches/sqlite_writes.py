#!/usr/bin/env python3
"""What SQLite does per delivery, counted in instructions rather than timed.

Replays the writes of the e2e scenario against the project's own migrations: per batch of 20
events, one transaction inserting each event and its delivery already leased (as the ingest
hand-off does), then one recording each result and its attempt (as the recorder does), with
the service's pragmas. Run under callgrind by sqlite_writes.sh, which counts the instructions
inside sqlite3_step: repeatable to the instruction for the same SQLite, whatever else the
machine does, where the load benchmark's CPU per delivery moves by +-6% between runs.

The statements are copies of host/src/store/events.rs (INSERT_EVENT, INSERT_LEASED) and
results.rs (UPDATE_RESULT, INSERT_ATTEMPT); the SQLite is Python's (Debian's 3.40 here), not
the service's bundled one, so the figures compare schemas, not builds.

usage: sqlite_writes.py UPTO [ROUNDS]   (UPTO: apply migrations 0001..UPTO, e.g. 0006)
"""
import glob
import os
import sqlite3
import sys
import tempfile

BATCH = 20

INSERT_EVENT = "INSERT INTO events (id, tenant_id, idempotency_key, type, data, created_at) VALUES (?, ?, ?, ?, ?, ?)"
INSERT_LEASED = """INSERT INTO deliveries (id, tenant_id, event_id, subscription_id, status, attempts, next_attempt_at, created_at, updated_at, lease_until, lease_token)
     VALUES (?, ?, ?, ?, 'delivering', 0, ?, ?, ?, ?, 1)"""
# Before 0007 the result also set next_attempt_at (its trigger watched status too).
UPDATE_RESULT = """UPDATE deliveries SET status = ?1, attempts = ?2, lease_until = NULL, last_error = ?3,
     skip_reason = ?4, updated_at = ?5 WHERE id = ?6 AND status = 'delivering' AND lease_token = ?7"""
INSERT_ATTEMPT = """INSERT INTO attempts (delivery_id, subscription_id, at, outcome, status_code, latency_ms, error, plugin_version,
     response_body)
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8,
             CASE WHEN ?9 IS NOT NULL AND (SELECT expunged_at FROM events WHERE id = ?10) IS NULL THEN ?9 END)"""
DATA = '{"title":"Ships & Boats","url":"https://blog.example/ships","words":1200,"tags":["sea","travel"]}'


def open_database(path, upto="9999"):
    """A database at `path` with migrations 0001..`upto`, the service's pragmas and one
    subscription, `sub_1`."""
    here = os.path.dirname(os.path.abspath(__file__))
    migrations = sorted(glob.glob(os.path.join(here, "../../host/migrations/*.sql")))
    c = sqlite3.connect(path, isolation_level=None)
    c.execute("PRAGMA journal_mode = WAL")
    for pragma in ["synchronous = NORMAL", "foreign_keys = ON", "temp_store = MEMORY"]:
        c.execute(f"PRAGMA {pragma}")
    for m in migrations:
        if os.path.basename(m)[:4] <= upto:
            with open(m) as f:
                c.executescript(f.read())
    c.execute(
        "INSERT INTO subscriptions (id, url, events, signature, secret, created_at, updated_at)"
        " VALUES ('sub_1', 'http://127.0.0.1/', '[\"*\"]', '{}', 's', 0, 0)"
    )
    return c


def main():
    upto = sys.argv[1]
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 200
    with tempfile.TemporaryDirectory() as tmp:
        c = open_database(os.path.join(tmp, "db.sqlite"), upto)
        n = 0
        for _ in range(rounds):
            batch = []
            c.execute("BEGIN IMMEDIATE")
            for _ in range(BATCH):
                n += 1
                event, delivery = f"evt_{n:012}", f"dlv_{n:012}"
                batch.append((event, delivery))
                c.execute(INSERT_EVENT, (event, "default", None, "post.published", DATA, n))
                c.execute(INSERT_LEASED, (delivery, "default", event, "sub_1", n, n, n, n + 30_000))
            c.execute("COMMIT")
            c.execute("BEGIN IMMEDIATE")
            for event, delivery in batch:
                c.execute(UPDATE_RESULT, ("succeeded", 1, None, None, n, delivery, 1))
                c.execute(INSERT_ATTEMPT, (delivery, "sub_1", n, "succeeded", 200, 1, None, None, None, event))
            c.execute("COMMIT")
        print(f"deliveries {n}")


if __name__ == "__main__":
    main()
