-- The dashboards' read models: projections of the EVENTS stream, dropped
-- and replayed by a rebuild. Times are unix nanoseconds UTC.
CREATE TABLE IF NOT EXISTS dash_meta (
    id        INTEGER PRIMARY KEY,
    -- Bumped by every projected event: live pages poll it.
    version   {{bigint}} NOT NULL
);
INSERT INTO dash_meta (id, version) VALUES (1, 0) ON CONFLICT DO NOTHING;

CREATE TABLE IF NOT EXISTS dash_repos (
    name           TEXT PRIMARY KEY,
    default_branch TEXT NOT NULL
);

CREATE TABLE IF NOT EXISTS dash_changes (
    chain_id    TEXT PRIMARY KEY,
    repository  TEXT NOT NULL,
    kind        TEXT NOT NULL,
    ref         TEXT NOT NULL,
    branch      TEXT NOT NULL,
    commit_sha  TEXT NOT NULL,
    message     TEXT NOT NULL,
    author      TEXT NOT NULL,
    pushed_at   {{bigint}} NOT NULL
);
CREATE INDEX IF NOT EXISTS dash_changes_repo ON dash_changes (repository, branch, pushed_at);

CREATE TABLE IF NOT EXISTS dash_branches (
    repository TEXT NOT NULL,
    branch     TEXT NOT NULL,
    chain_id   TEXT NOT NULL,
    pushed_at  {{bigint}} NOT NULL,
    PRIMARY KEY (repository, branch)
);

CREATE TABLE IF NOT EXISTS dash_commits (
    repository TEXT NOT NULL,
    sha        TEXT NOT NULL,
    pushed_at  {{bigint}} NOT NULL,
    PRIMARY KEY (repository, sha)
);

CREATE TABLE IF NOT EXISTS dash_builds (
    id          TEXT PRIMARY KEY,
    chain_id    TEXT NOT NULL,
    repository  TEXT NOT NULL,
    number      {{bigint}} NOT NULL,
    ref         TEXT NOT NULL,
    commit_sha  TEXT NOT NULL,
    version     TEXT NOT NULL,
    status      TEXT NOT NULL,
    failed_step TEXT NOT NULL DEFAULT '',
    error       TEXT NOT NULL DEFAULT '',
    created_at  {{bigint}} NOT NULL,
    finished_at {{bigint}} NOT NULL DEFAULT 0,
    duration_ms {{bigint}} NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS dash_builds_chain ON dash_builds (chain_id);
CREATE INDEX IF NOT EXISTS dash_builds_repo ON dash_builds (repository, created_at);

CREATE TABLE IF NOT EXISTS dash_jobs (
    id         TEXT PRIMARY KEY,
    build_id   TEXT NOT NULL,
    kind       TEXT NOT NULL,
    status     TEXT NOT NULL,
    agent      TEXT NOT NULL DEFAULT '',
    matrix     TEXT NOT NULL DEFAULT '',
    steps      TEXT NOT NULL DEFAULT '',
    queued_at  {{bigint}} NOT NULL
);
CREATE INDEX IF NOT EXISTS dash_jobs_build ON dash_jobs (build_id);

CREATE TABLE IF NOT EXISTS dash_steps (
    job_id      TEXT NOT NULL,
    name        TEXT NOT NULL,
    status      TEXT NOT NULL,
    exit_code   INTEGER NOT NULL,
    duration_ms {{bigint}} NOT NULL,
    error       TEXT NOT NULL,
    PRIMARY KEY (job_id, name)
);

CREATE TABLE IF NOT EXISTS dash_testruns (
    run_id      TEXT PRIMARY KEY,
    build_id    TEXT NOT NULL,
    repository  TEXT NOT NULL,
    status      TEXT NOT NULL,
    tests       {{bigint}} NOT NULL DEFAULT 0,
    passed      {{bigint}} NOT NULL DEFAULT 0,
    failed      {{bigint}} NOT NULL DEFAULT 0,
    skipped     {{bigint}} NOT NULL DEFAULT 0,
    covered     {{bigint}} NOT NULL DEFAULT 0,
    coverable   {{bigint}} NOT NULL DEFAULT 0,
    error       TEXT NOT NULL DEFAULT '',
    failures    TEXT NOT NULL DEFAULT '[]',
    at          {{bigint}} NOT NULL
);
CREATE INDEX IF NOT EXISTS dash_testruns_build ON dash_testruns (build_id);

CREATE TABLE IF NOT EXISTS dash_gates (
    build_id    TEXT PRIMARY KEY,
    repository  TEXT NOT NULL,
    revision    INTEGER NOT NULL,
    status      TEXT NOT NULL,
    summary     TEXT NOT NULL,
    -- JSON list of conditions.
    conditions  TEXT NOT NULL,
    at          {{bigint}} NOT NULL
);

CREATE TABLE IF NOT EXISTS dash_deploys (
    id           TEXT PRIMARY KEY,
    chain_id     TEXT NOT NULL,
    repository   TEXT NOT NULL,
    environment  TEXT NOT NULL,
    release      TEXT NOT NULL,
    commit_sha   TEXT NOT NULL,
    build_id     TEXT NOT NULL,
    kind         TEXT NOT NULL,
    triggered_by TEXT NOT NULL,
    status       TEXT NOT NULL,
    reason       TEXT NOT NULL DEFAULT '',
    approvers    TEXT NOT NULL DEFAULT '',
    rolled_back  INTEGER NOT NULL DEFAULT 0,
    started_at   {{bigint}} NOT NULL DEFAULT 0,
    finished_at  {{bigint}} NOT NULL DEFAULT 0,
    -- The verification checks of deploy.finished, JSON.
    checks       TEXT NOT NULL DEFAULT '[]'
);
CREATE INDEX IF NOT EXISTS dash_deploys_repo ON dash_deploys (repository, environment, finished_at);
CREATE INDEX IF NOT EXISTS dash_deploys_chain ON dash_deploys (chain_id);

CREATE TABLE IF NOT EXISTS dash_environments (
    repository  TEXT NOT NULL,
    name        TEXT NOT NULL,
    deploy_id   TEXT NOT NULL DEFAULT '',
    release     TEXT NOT NULL DEFAULT '',
    status      TEXT NOT NULL DEFAULT '',
    since       {{bigint}} NOT NULL DEFAULT 0,
    locked      INTEGER NOT NULL DEFAULT 0,
    locked_by   TEXT NOT NULL DEFAULT '',
    lock_reason TEXT NOT NULL DEFAULT '',
    -- The latest freeze window (environment.frozen), unix nanoseconds.
    frozen_from   {{bigint}} NOT NULL DEFAULT 0,
    frozen_until  {{bigint}} NOT NULL DEFAULT 0,
    freeze_reason TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (repository, name)
);

CREATE TABLE IF NOT EXISTS dash_issues (
    issue_id    {{bigint}} NOT NULL,
    status      TEXT NOT NULL,
    repository  TEXT NOT NULL,
    project     TEXT NOT NULL,
    title       TEXT NOT NULL,
    level       TEXT NOT NULL,
    release     TEXT NOT NULL,
    environment TEXT NOT NULL,
    at          {{bigint}} NOT NULL,
    resolved_at {{bigint}} NOT NULL DEFAULT 0,
    PRIMARY KEY (issue_id, status, release, environment)
);
CREATE INDEX IF NOT EXISTS dash_issues_release ON dash_issues (repository, release);
