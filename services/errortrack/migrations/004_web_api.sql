-- Sentry's web API (/api/0/...), as sentry-cli uses it.
-- A release as the web API made it: versions are organization-wide (one
-- organization), its projects are its rows in releases.
CREATE TABLE IF NOT EXISTS release_meta (
    id            {{serial_pk}},
    version       TEXT NOT NULL UNIQUE,
    ref           TEXT NOT NULL DEFAULT '',
    url           TEXT NOT NULL DEFAULT '',
    status        TEXT NOT NULL DEFAULT 'open',
    date_created  {{bigint}} NOT NULL,
    date_started  {{bigint}} NOT NULL DEFAULT 0,
    date_released {{bigint}} NOT NULL DEFAULT 0
);

-- A release's commits (PUT commits, or refs: the head commit of each repository).
CREATE TABLE IF NOT EXISTS release_commits (
    version         TEXT NOT NULL,
    position        INTEGER NOT NULL,
    repository      TEXT NOT NULL,
    commit_id       TEXT NOT NULL,
    previous_commit TEXT NOT NULL DEFAULT '',
    message         TEXT NOT NULL DEFAULT '',
    author_name     TEXT NOT NULL DEFAULT '',
    author_email    TEXT NOT NULL DEFAULT '',
    committed_at    {{bigint}} NOT NULL DEFAULT 0,
    files           TEXT NOT NULL DEFAULT '[]',
    PRIMARY KEY (version, position)
);

-- Deploys made through the web API; each also has a row per project in
-- deploys (id sentry-<id>-<project>), which regressions and verification read.
CREATE TABLE IF NOT EXISTS release_deploys (
    id            {{serial_pk}},
    version       TEXT NOT NULL,
    environment   TEXT NOT NULL,
    name          TEXT NOT NULL DEFAULT '',
    url           TEXT NOT NULL DEFAULT '',
    date_started  {{bigint}} NOT NULL DEFAULT 0,
    date_finished {{bigint}} NOT NULL
);

CREATE INDEX IF NOT EXISTS release_deploys_version ON release_deploys (version, id);

-- Source map bundles assembled from uploaded chunks (the bytes are in the
-- Object Store bucket errortrack-bundles, named by checksum).
CREATE TABLE IF NOT EXISTS artifact_bundles (
    checksum   TEXT PRIMARY KEY,
    release    TEXT NOT NULL DEFAULT '',
    dist       TEXT NOT NULL DEFAULT '',
    projects   TEXT NOT NULL DEFAULT '[]',
    size       {{bigint}} NOT NULL,
    created_at {{bigint}} NOT NULL
);

-- Release views count a version's issues and events.
CREATE INDEX IF NOT EXISTS issue_releases_release ON issue_releases (release);
