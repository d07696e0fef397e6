-- What each release sent errortrack from each environment, as the
-- errortrack.release.counted events say (one row per event), for the
-- errortrack.error_rate_ratio check. Rows older than 30 days are pruned.
CREATE TABLE IF NOT EXISTS error_counts (
    event_id       TEXT PRIMARY KEY,
    repository     TEXT NOT NULL,
    release        TEXT NOT NULL,
    environment    TEXT NOT NULL,
    errors         {{bigint}} NOT NULL,
    traffic        {{bigint}} NOT NULL,
    first_received {{bigint}} NOT NULL,
    last_received  {{bigint}} NOT NULL
);
CREATE INDEX IF NOT EXISTS error_counts_env ON error_counts (environment, last_received);
