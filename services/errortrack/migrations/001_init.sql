CREATE TABLE IF NOT EXISTS projects (
    id                    {{serial_pk}},
    name                  TEXT NOT NULL UNIQUE,
    rate_limit_per_minute {{bigint}} NOT NULL DEFAULT 0,
    quota_per_hour        {{bigint}} NOT NULL DEFAULT 0,
    grouping_version      INTEGER NOT NULL,
    repository            TEXT NOT NULL DEFAULT '',
    created_at            {{bigint}} NOT NULL
);

CREATE TABLE IF NOT EXISTS project_keys (
    public_key TEXT PRIMARY KEY,
    project_id {{bigint}} NOT NULL,
    secret_key TEXT NOT NULL,
    created_at {{bigint}} NOT NULL,
    revoked_at {{bigint}} NOT NULL DEFAULT 0
);

CREATE INDEX IF NOT EXISTS project_keys_project ON project_keys (project_id);

CREATE TABLE IF NOT EXISTS issues (
    id                  {{serial_pk}},
    project_id          {{bigint}} NOT NULL,
    title               TEXT NOT NULL,
    culprit             TEXT NOT NULL,
    level               TEXT NOT NULL,
    type                TEXT NOT NULL,
    platform            TEXT NOT NULL,
    status              INTEGER NOT NULL,
    resolved_in_release TEXT NOT NULL DEFAULT '',
    resolved_at         {{bigint}} NOT NULL DEFAULT 0,
    regressed           INTEGER NOT NULL DEFAULT 0,
    times_seen          {{bigint}} NOT NULL,
    users               {{bigint}} NOT NULL DEFAULT 0,
    first_seen          {{bigint}} NOT NULL,
    last_seen           {{bigint}} NOT NULL,
    first_release       TEXT NOT NULL,
    last_release        TEXT NOT NULL,
    first_environment   TEXT NOT NULL,
    first_deploy_id     TEXT NOT NULL DEFAULT '',
    last_event_id       TEXT NOT NULL,
    grouping_version    INTEGER NOT NULL,
    files               TEXT NOT NULL DEFAULT '[]'
);

CREATE INDEX IF NOT EXISTS issues_project_seen ON issues (project_id, last_seen, id);

CREATE TABLE IF NOT EXISTS issue_hashes (
    project_id       {{bigint}} NOT NULL,
    hash             TEXT NOT NULL,
    issue_id         {{bigint}} NOT NULL,
    grouping_version INTEGER NOT NULL,
    PRIMARY KEY (project_id, hash)
);

CREATE INDEX IF NOT EXISTS issue_hashes_issue ON issue_hashes (issue_id);

CREATE TABLE IF NOT EXISTS issue_users (
    issue_id {{bigint}} NOT NULL,
    user_key TEXT NOT NULL,
    PRIMARY KEY (issue_id, user_key)
);

CREATE TABLE IF NOT EXISTS issue_releases (
    issue_id    {{bigint}} NOT NULL,
    release     TEXT NOT NULL,
    environment TEXT NOT NULL,
    times_seen  {{bigint}} NOT NULL,
    first_seen  {{bigint}} NOT NULL,
    last_seen   {{bigint}} NOT NULL,
    PRIMARY KEY (issue_id, release, environment)
);

CREATE TABLE IF NOT EXISTS events (
    project_id  {{bigint}} NOT NULL,
    event_id    TEXT NOT NULL,
    issue_id    {{bigint}} NOT NULL DEFAULT 0,
    type        TEXT NOT NULL,
    title       TEXT NOT NULL,
    message     TEXT NOT NULL,
    level       TEXT NOT NULL,
    release     TEXT NOT NULL,
    environment TEXT NOT NULL,
    platform    TEXT NOT NULL,
    occurred_at {{bigint}} NOT NULL,
    received_at {{bigint}} NOT NULL,
    data        TEXT NOT NULL,
    PRIMARY KEY (project_id, event_id)
);

CREATE INDEX IF NOT EXISTS events_issue ON events (issue_id, received_at);

CREATE TABLE IF NOT EXISTS attachments (
    project_id      {{bigint}} NOT NULL,
    event_id        TEXT NOT NULL,
    position        INTEGER NOT NULL,
    filename        TEXT NOT NULL,
    content_type    TEXT NOT NULL,
    attachment_type TEXT NOT NULL,
    data            {{bytes}} NOT NULL,
    PRIMARY KEY (project_id, event_id, position)
);

CREATE TABLE IF NOT EXISTS releases (
    project_id {{bigint}} NOT NULL,
    version    TEXT NOT NULL,
    first_seen {{bigint}} NOT NULL,
    PRIMARY KEY (project_id, version)
);

CREATE TABLE IF NOT EXISTS sessions (
    project_id  {{bigint}} NOT NULL,
    sid         TEXT NOT NULL,
    release     TEXT NOT NULL,
    environment TEXT NOT NULL,
    status      TEXT NOT NULL,
    errors      {{bigint}} NOT NULL,
    started     {{bigint}} NOT NULL,
    updated     {{bigint}} NOT NULL,
    PRIMARY KEY (project_id, sid)
);

CREATE TABLE IF NOT EXISTS session_aggregates (
    project_id  {{bigint}} NOT NULL,
    release     TEXT NOT NULL,
    environment TEXT NOT NULL,
    started     {{bigint}} NOT NULL,
    exited      {{bigint}} NOT NULL DEFAULT 0,
    errored     {{bigint}} NOT NULL DEFAULT 0,
    crashed     {{bigint}} NOT NULL DEFAULT 0,
    abnormal    {{bigint}} NOT NULL DEFAULT 0,
    PRIMARY KEY (project_id, release, environment, started)
);

CREATE TABLE IF NOT EXISTS counters (
    project_id {{bigint}} NOT NULL,
    name       TEXT NOT NULL,
    value      {{bigint}} NOT NULL,
    PRIMARY KEY (project_id, name)
);

CREATE TABLE IF NOT EXISTS deploys (
    id          TEXT PRIMARY KEY,
    project_id  {{bigint}} NOT NULL,
    release     TEXT NOT NULL,
    environment TEXT NOT NULL,
    deployed_at {{bigint}} NOT NULL,
    commits     TEXT NOT NULL
);

CREATE INDEX IF NOT EXISTS deploys_release ON deploys (project_id, release, environment, deployed_at);
