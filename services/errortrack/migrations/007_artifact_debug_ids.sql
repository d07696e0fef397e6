-- The debug ids (sentry-cli injects one per minified file and its source
-- map) an assembled artifact bundle holds: events name them in
-- debug_meta.images, and symbolication finds the bundle by them before
-- trying the release's bundles by URL.
CREATE TABLE IF NOT EXISTS artifact_bundle_debug_ids (
    debug_id TEXT NOT NULL,
    checksum TEXT NOT NULL,
    PRIMARY KEY (debug_id, checksum)
);
