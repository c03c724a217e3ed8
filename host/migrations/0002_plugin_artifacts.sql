-- Digests of the compiled plugin artefacts in <data dir>/plugin-cache. A cached artefact is
-- native code; it is loaded only when its sha256 matches the one recorded here when the
-- service wrote it (the database is the service's own; the cache folder may be shared with
-- less care). Keyed by the component's version (sha256 of its bytes) and the engine's
-- compatibility hash.
CREATE TABLE plugin_artifacts (
    version    TEXT NOT NULL,
    engine     TEXT NOT NULL,
    sha256     TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (version, engine)
) WITHOUT ROWID;
