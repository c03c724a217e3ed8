-- Tenants: one Switchyard serves many customers. Every subscription, event and delivery
-- belongs to one tenant; everything from before belongs to `default`, which always exists.
-- (Run with foreign keys off, as SQLite's table rebuild requires: see `migrate` in store/mod.rs,
-- which checks them before the commit.)

CREATE TABLE tenants (
    id         TEXT PRIMARY KEY,                 -- the provider's own id, [A-Za-z0-9_.:-]{1,128}
    name       TEXT,
    metadata   TEXT NOT NULL DEFAULT '{}',       -- JSON object
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    deleted_at INTEGER
) WITHOUT ROWID;
INSERT INTO tenants (id, name, created_at, updated_at)
VALUES ('default', 'default', CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER), CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER));

-- API keys beside the bootstrap admin key: `sy_<id>_<secret>`, looked up by id, the SHA-256
-- of the whole key compared in constant time. `tenant_id` NULL: the key may act in any tenant.
CREATE TABLE api_keys (
    id           TEXT PRIMARY KEY,               -- key_…
    tenant_id    TEXT REFERENCES tenants (id),
    hash         TEXT NOT NULL,                  -- hex SHA-256 of the key
    prefix       TEXT NOT NULL,                  -- the key's public start (`sy_key_…`), for people
    scopes       TEXT NOT NULL,                  -- JSON array
    description  TEXT,
    created_at   INTEGER NOT NULL,
    expires_at   INTEGER,
    last_used_at INTEGER,
    revoked_at   INTEGER
) WITHOUT ROWID;
CREATE INDEX api_keys_by_tenant ON api_keys (tenant_id, id);

ALTER TABLE subscriptions ADD COLUMN tenant_id TEXT NOT NULL DEFAULT 'default';
CREATE INDEX subscriptions_by_tenant ON subscriptions (tenant_id, id);

-- Denormalised from the event: deliveries are listed, scoped, shared fairly and retained per
-- tenant without a join.
ALTER TABLE deliveries ADD COLUMN tenant_id TEXT NOT NULL DEFAULT 'default';
CREATE INDEX deliveries_by_tenant ON deliveries (tenant_id, id);

-- Idempotency keys become unique per tenant. The old column-level UNIQUE cannot be dropped in
-- place, so the table is rebuilt (SQLite's documented procedure: new table, copy, drop, rename).
CREATE TABLE events_new (
    id              TEXT PRIMARY KEY,            -- evt_…
    tenant_id       TEXT NOT NULL DEFAULT 'default',
    idempotency_key TEXT,
    type            TEXT NOT NULL,
    data            TEXT NOT NULL,               -- JSON text, as received
    created_at      INTEGER NOT NULL,
    UNIQUE (tenant_id, idempotency_key)
);
INSERT INTO events_new (id, tenant_id, idempotency_key, type, data, created_at)
SELECT id, 'default', idempotency_key, type, data, created_at FROM events;
DROP TABLE events;
ALTER TABLE events_new RENAME TO events;
