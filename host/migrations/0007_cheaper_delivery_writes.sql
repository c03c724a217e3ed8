-- Performance: four changes to what every delivery writes (measured in docs/PERFORMANCE.md,
-- "Cheaper delivery writes").
--
-- 1. CHECK constraints without a list. SQLite evaluates `x IN ('a', 'b', 'c')` with more than
--    two constants by building a temporary b-tree of the list, and in a CHECK constraint it
--    does so on every row written: each insert or update of a delivery and each attempt
--    allocated and zeroed two pages for it, about a third of SQLite's instructions per
--    delivery. The same conditions spelled as `OR` of `=` compare in place.
--
--    SQLite cannot alter a CHECK constraint, and rebuilding `deliveries` and `attempts` would
--    copy every row. The condition is equivalent, so no stored row can break it, and SQLite's
--    documented procedure for changing a table's constraints without rebuilding it applies:
--    the table's definition is rewritten in `sqlite_schema`, and the schema is reloaded. (The
--    `DROP INDEX`/`CREATE INDEX` below change the schema cookie, so any other connection
--    reloads it too.) `replace` leaves a definition that does not read as expected untouched:
--    slower, never wrong.
PRAGMA writable_schema = ON;
UPDATE sqlite_schema
SET sql = replace(sql,
    'CHECK (status IN (''pending'', ''delivering'', ''succeeded'', ''failed'', ''skipped'', ''cancelled''))',
    'CHECK (status = ''pending'' OR status = ''delivering'' OR status = ''succeeded'' OR status = ''failed'' OR status = ''skipped'' OR status = ''cancelled'')')
WHERE type = 'table' AND name = 'deliveries';
UPDATE sqlite_schema
SET sql = replace(sql,
    'CHECK (outcome IN (''succeeded'', ''failed'', ''skipped''))',
    'CHECK (outcome = ''succeeded'' OR outcome = ''failed'' OR outcome = ''skipped'')')
WHERE type = 'table' AND name = 'attempts';
PRAGMA writable_schema = RESET;

-- 2. The two status indexes leave deliveries in flight out. A delivery is `delivering` for
--    the few milliseconds of its attempt: written so at ingest (handed to the dispatcher
--    already leased) or at its lease, and changed to its outcome when the attempt's result is
--    recorded. Each of those writes changed both status indexes (an entry in, then out again):
--    four index updates per delivery, and two more pages per commit, for rows that no list
--    pages through. The deliveries in flight are at most what the dispatcher holds, and
--    `deliveries_leased` (partial: `delivering` only) finds them.
--
--    Queries on another status say `status <> 'delivering'` as well, which is how SQLite knows
--    that these partial indexes hold every row they ask for. On a big existing database this
--    rebuilds the two indexes once (30 s for 10 million deliveries on a 2-core VM).
DROP INDEX deliveries_by_status;
CREATE INDEX deliveries_by_status ON deliveries (status, id) WHERE status <> 'delivering';
DROP INDEX deliveries_by_subscription_status;
CREATE INDEX deliveries_by_subscription_status ON deliveries (subscription_id, status, id)
    WHERE status <> 'delivering';

-- 3. No trigger on inserting a delivery. `delivery_queued` lowered the subscription's queue's
--    `next_due` for a delivery inserted pending; it ran (as a sub-program, which also makes
--    SQLite keep a statement journal for every insert) for every delivery, also those handed
--    to the dispatcher already leased, which most are under load. The two places that insert
--    pending deliveries (ingest, `store::events`; operational events, `store::operational`)
--    now lower `next_due` themselves in the same transaction, once per subscription
--    (`store::queue::queued`). Deliveries that become pending by an update (a retry, a lease
--    given back or expired, a recovery) still go through `delivery_requeued`.
DROP TRIGGER delivery_queued;

-- 4. The update trigger watches `next_attempt_at` only. `delivery_requeued` ran for every
--    change of status, so for every lease and every recorded result too, only to find the
--    delivery was not pending. Every statement that makes a delivery pending sets
--    `next_attempt_at` (a retry, a lease given back, expired leases, a recovery, a retry by
--    hand), and the others (a lease, a finished result) do not, so it now runs exactly where it
--    has work (`plans_tests` checks both sides).
DROP TRIGGER delivery_requeued;
CREATE TRIGGER delivery_requeued AFTER UPDATE OF next_attempt_at ON deliveries WHEN NEW.status = 'pending'
BEGIN
    UPDATE subscription_queues SET next_due = NEW.next_attempt_at
    WHERE subscription_id = NEW.subscription_id AND (next_due IS NULL OR next_due > NEW.next_attempt_at);
END;
