-- Growth: retention, payload expunge, and indexes so that no hot query grows with history.
--
-- Every query the service runs often reads only the index entries it returns (checked with
-- EXPLAIN QUERY PLAN in store/plans_tests.rs): the API's lists and filters, the attempt feed,
-- and the retention job's own scans. On a big existing database this migration builds three
-- indexes and fills `attempts.subscription_id` once (about a minute per 10 million rows).

-- `DELETE /v1/events/{id}/content`: the payload is gone (`data` is '' and `expunged_at` says
-- when), the event's row, deliveries and attempt metadata stay.
ALTER TABLE events ADD COLUMN expunged_at INTEGER;

-- `GET /v1/deliveries?status=` and the retention job (the oldest finished deliveries of a
-- status, in id order, i.e. creation order: ids are ULIDs).
CREATE INDEX deliveries_by_status ON deliveries (status, id);
-- `GET /v1/deliveries?subscription_id=&status=`, the recovery of a subscription's failed
-- deliveries, and cancelling a deleted subscription's unfinished ones.
CREATE INDEX deliveries_by_subscription_status ON deliveries (subscription_id, status, id);
-- An event's deliveries newest first (`GET /v1/events/{id}`, `?event_id=`) without a sort.
DROP INDEX deliveries_by_event;
CREATE INDEX deliveries_by_event ON deliveries (event_id, id);

-- The attempt feed filtered by subscription (`GET /v1/attempts?subscription_id=`) walked every
-- attempt after the cursor (or back from the newest) to find that subscription's: attempts now
-- carry their subscription, indexed in feed order.
ALTER TABLE attempts ADD COLUMN subscription_id TEXT;
UPDATE attempts SET subscription_id = (SELECT d.subscription_id FROM deliveries d WHERE d.id = attempts.delivery_id);
CREATE INDEX attempts_by_subscription ON attempts (subscription_id, id);
