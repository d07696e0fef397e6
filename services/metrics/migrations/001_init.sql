-- The series index: one row per series (plain "a.b.c" or canonical tagged
-- "name;k=v" form). Points live in chunks: one row per series, archive
-- (retention level) and aligned time span, with the span's slots encoded as
-- little-endian float64s (NaN = no point).
CREATE TABLE IF NOT EXISTS series (
    id         {{serial_pk}},
    name       TEXT NOT NULL UNIQUE,
    created_at {{bigint}} NOT NULL
);

CREATE TABLE IF NOT EXISTS chunks (
    series_id   {{bigint}} NOT NULL,
    archive     INTEGER NOT NULL,
    chunk_start {{bigint}} NOT NULL,
    data        {{bytes}} NOT NULL,
    PRIMARY KEY (series_id, archive, chunk_start)
);

-- Graphite events (annotations): /events/ and deploys.
CREATE TABLE IF NOT EXISTS graphite_events (
    id       {{serial_pk}},
    at       {{bigint}} NOT NULL,
    what     TEXT NOT NULL,
    tags     TEXT NOT NULL,
    data     TEXT NOT NULL,
    event_id TEXT NOT NULL DEFAULT ''
);

CREATE INDEX IF NOT EXISTS graphite_events_at ON graphite_events (at);

-- Build timestamps the built-in CD metrics need across events (queue time).
CREATE TABLE IF NOT EXISTS build_times (
    build_id   TEXT PRIMARY KEY,
    repository TEXT NOT NULL,
    created_at {{bigint}} NOT NULL DEFAULT 0,
    started_at {{bigint}} NOT NULL DEFAULT 0
);
