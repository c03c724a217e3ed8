-- The delivery queue, per subscription.
--
-- The leaser must only ever look at deliveries it may lease: a disabled subscription can park
-- millions of pending deliveries, and a slow one can have a long backlog, and neither may cost
-- anything while the service waits. So each subscription has one queue row saying whether it
-- may run and when its earliest pending delivery is due; the leaser walks the runnable queues in
-- order of that time (an index that holds only runnable queues with something pending) and then
-- takes each chosen subscription's due deliveries from its own index.
--
-- `next_due` is never later than the subscription's earliest pending delivery (triggers lower
-- it whenever a delivery becomes pending, in the same transaction); it may be earlier for a
-- moment (after a lease), and the leaser sets it exactly whenever it leases from the queue.
-- `runnable` follows the subscription (enabled and not deleted), also by trigger, so disabling a
-- subscription parks its whole backlog with one row's change and enabling it releases it.

CREATE TABLE subscription_queues (
    subscription_id TEXT PRIMARY KEY REFERENCES subscriptions (id),
    runnable        INTEGER NOT NULL,
    next_due        INTEGER
) WITHOUT ROWID;
CREATE INDEX subscription_queues_due ON subscription_queues (next_due)
    WHERE runnable = 1 AND next_due IS NOT NULL;

INSERT INTO subscription_queues (subscription_id, runnable, next_due)
SELECT s.id, s.status = 'enabled' AND s.deleted_at IS NULL,
       (SELECT MIN(d.next_attempt_at) FROM deliveries d WHERE d.subscription_id = s.id AND d.status = 'pending')
FROM subscriptions s;

CREATE TRIGGER subscription_queue_created AFTER INSERT ON subscriptions
BEGIN
    INSERT INTO subscription_queues (subscription_id, runnable, next_due)
    VALUES (NEW.id, NEW.status = 'enabled' AND NEW.deleted_at IS NULL, NULL);
END;

CREATE TRIGGER subscription_queue_runnable AFTER UPDATE OF status, deleted_at ON subscriptions
BEGIN
    UPDATE subscription_queues SET runnable = (NEW.status = 'enabled' AND NEW.deleted_at IS NULL)
    WHERE subscription_id = NEW.id;
END;

CREATE TRIGGER delivery_queued AFTER INSERT ON deliveries WHEN NEW.status = 'pending'
BEGIN
    UPDATE subscription_queues SET next_due = NEW.next_attempt_at
    WHERE subscription_id = NEW.subscription_id AND (next_due IS NULL OR next_due > NEW.next_attempt_at);
END;

CREATE TRIGGER delivery_requeued AFTER UPDATE OF status, next_attempt_at ON deliveries WHEN NEW.status = 'pending'
BEGIN
    UPDATE subscription_queues SET next_due = NEW.next_attempt_at
    WHERE subscription_id = NEW.subscription_id AND (next_due IS NULL OR next_due > NEW.next_attempt_at);
END;

-- One subscription's pending deliveries in due order: what a lease takes from a chosen queue,
-- and how its `next_due` is recomputed. It replaces the global due index, which made every lease
-- walk past the pending deliveries of the subscriptions it could not take from.
DROP INDEX deliveries_due;
CREATE INDEX deliveries_pending ON deliveries (subscription_id, next_attempt_at) WHERE status = 'pending';

-- Fencing: every lease gets the next token, and a result or a release counts only while the
-- delivery still holds the lease it was given (a late result of an expired lease changes nothing).
ALTER TABLE deliveries ADD COLUMN lease_token INTEGER NOT NULL DEFAULT 0;
