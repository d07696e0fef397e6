-- What each release sent from each environment since the last
-- errortrack.release.counted event (deleted when that event is published).
CREATE TABLE IF NOT EXISTS release_counts (
    project_id     {{bigint}} NOT NULL,
    release        TEXT NOT NULL,
    environment    TEXT NOT NULL,
    errors         {{bigint}} NOT NULL DEFAULT 0,
    transactions   {{bigint}} NOT NULL DEFAULT 0,
    sessions       {{bigint}} NOT NULL DEFAULT 0,
    first_received {{bigint}} NOT NULL,
    last_received  {{bigint}} NOT NULL,
    PRIMARY KEY (project_id, release, environment)
);
