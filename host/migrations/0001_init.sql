-- Switchyard's schema. Times are unix milliseconds. Ids are prefixed ULIDs (sortable by time),
-- so cursor pagination is "id after/before the cursor".

CREATE TABLE settings (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

CREATE TABLE subscriptions (
    id                         TEXT PRIMARY KEY,          -- sub_…
    url                        TEXT NOT NULL,
    events                     TEXT NOT NULL,             -- JSON array of patterns
    plugin                     TEXT,
    plugin_config              TEXT,                      -- JSON text
    description                TEXT,
    headers                    TEXT NOT NULL DEFAULT '{}', -- JSON object
    signature                  TEXT NOT NULL,             -- JSON signing scheme
    secret                     TEXT NOT NULL,             -- never returned after creation
    previous_secret            TEXT,
    previous_secret_expires_at INTEGER,
    status                     TEXT NOT NULL DEFAULT 'enabled' CHECK (status IN ('enabled', 'disabled')),
    disabled_reason            TEXT,
    disabled_at                INTEGER,
    first_failure_at           INTEGER,                   -- start of the current failing streak
    created_at                 INTEGER NOT NULL,
    updated_at                 INTEGER NOT NULL,
    deleted_at                 INTEGER
);

CREATE TABLE events (
    id              TEXT PRIMARY KEY,                     -- evt_…
    idempotency_key TEXT UNIQUE,
    type            TEXT NOT NULL,
    data            TEXT NOT NULL,                        -- JSON text, as received
    created_at      INTEGER NOT NULL
);

CREATE TABLE deliveries (
    id              TEXT PRIMARY KEY,                     -- dlv_…
    event_id        TEXT NOT NULL REFERENCES events (id),
    subscription_id TEXT NOT NULL REFERENCES subscriptions (id),
    status          TEXT NOT NULL CHECK (status IN ('pending', 'delivering', 'succeeded', 'failed', 'skipped', 'cancelled')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL,
    lease_until     INTEGER,
    last_error      TEXT,
    skip_reason     TEXT,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL
);
CREATE INDEX deliveries_due ON deliveries (next_attempt_at) WHERE status = 'pending';
CREATE INDEX deliveries_leased ON deliveries (lease_until) WHERE status = 'delivering';
CREATE INDEX deliveries_by_subscription ON deliveries (subscription_id, id);
CREATE INDEX deliveries_by_event ON deliveries (event_id);

CREATE TABLE attempts (
    id             INTEGER PRIMARY KEY,
    delivery_id    TEXT NOT NULL REFERENCES deliveries (id),
    at             INTEGER NOT NULL,
    outcome        TEXT NOT NULL CHECK (outcome IN ('succeeded', 'failed', 'skipped')),
    status_code    INTEGER,
    latency_ms     INTEGER,
    error          TEXT,
    plugin_version TEXT,
    response_body  TEXT
);
CREATE INDEX attempts_by_delivery ON attempts (delivery_id);
