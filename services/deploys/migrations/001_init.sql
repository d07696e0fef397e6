-- Repositories as the change events describe them.
CREATE TABLE IF NOT EXISTS repositories (
    name           TEXT PRIMARY KEY,
    clone_url      TEXT NOT NULL,
    default_branch TEXT NOT NULL
);

-- Builds as build.created/build.finished describe them, with their config.
CREATE TABLE IF NOT EXISTS builds (
    id          TEXT PRIMARY KEY,
    repository  TEXT NOT NULL,
    number      {{bigint}} NOT NULL,
    ref         TEXT NOT NULL,
    commit_sha  TEXT NOT NULL,
    version     TEXT NOT NULL,
    trigger     TEXT NOT NULL,
    config      {{bytes}},
    status      INTEGER NOT NULL DEFAULT 0,
    artifacts   TEXT NOT NULL DEFAULT '',
    chain_id    TEXT NOT NULL DEFAULT '',
    created_at  {{bigint}} NOT NULL,
    finished_at {{bigint}} NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS builds_version ON builds (repository, version);

-- Commits seen in pushes, in arrival order, for ticket keys.
CREATE TABLE IF NOT EXISTS commits (
    seq        {{serial_pk}},
    repository TEXT NOT NULL,
    sha        TEXT NOT NULL,
    message    TEXT NOT NULL,
    UNIQUE (repository, sha)
);

CREATE TABLE IF NOT EXISTS pull_requests (
    repository TEXT NOT NULL,
    number     {{bigint}} NOT NULL,
    head_sha   TEXT NOT NULL,
    title      TEXT NOT NULL,
    open       INTEGER NOT NULL,
    PRIMARY KEY (repository, number)
);

-- Preview environments (the promotion path comes from the config).
CREATE TABLE IF NOT EXISTS previews (
    repository   TEXT NOT NULL,
    name         TEXT NOT NULL,
    pull_request {{bigint}} NOT NULL,
    created_at   {{bigint}} NOT NULL,
    deleted_at   {{bigint}} NOT NULL DEFAULT 0,
    PRIMARY KEY (repository, name)
);

CREATE TABLE IF NOT EXISTS deployments (
    id               TEXT PRIMARY KEY,
    repository       TEXT NOT NULL,
    environment      TEXT NOT NULL,
    build_id         TEXT NOT NULL,
    version          TEXT NOT NULL,
    commit_sha       TEXT NOT NULL,
    kind             TEXT NOT NULL,
    status           INTEGER NOT NULL,
    reason           TEXT NOT NULL DEFAULT '',
    triggered_by     TEXT NOT NULL,
    forced           INTEGER NOT NULL DEFAULT 0,
    job_id           TEXT NOT NULL DEFAULT '',
    previous_version TEXT NOT NULL DEFAULT '',
    rollback_of      TEXT NOT NULL DEFAULT '',
    cause            TEXT NOT NULL DEFAULT '',
    approvals_needed INTEGER NOT NULL DEFAULT 0,
    chain_id         TEXT NOT NULL DEFAULT '',
    created_at       {{bigint}} NOT NULL,
    started_at       {{bigint}} NOT NULL DEFAULT 0,
    finished_at      {{bigint}} NOT NULL DEFAULT 0,
    -- When its job succeeded: the release runs there from then on.
    deployed_at      {{bigint}} NOT NULL DEFAULT 0,
    -- Verification: the window's end and the next measurement.
    verify_until     {{bigint}} NOT NULL DEFAULT 0,
    next_check_at    {{bigint}} NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS deployments_env ON deployments (repository, environment, created_at);
CREATE INDEX IF NOT EXISTS deployments_job ON deployments (job_id);

CREATE TABLE IF NOT EXISTS approvals (
    deploy_id TEXT NOT NULL,
    approver  TEXT NOT NULL,
    comment   TEXT NOT NULL,
    at        {{bigint}} NOT NULL,
    PRIMARY KEY (deploy_id, approver)
);

-- One holder per environment: a running deploy or a person.
CREATE TABLE IF NOT EXISTS locks (
    repository  TEXT NOT NULL,
    environment TEXT NOT NULL,
    holder      TEXT NOT NULL,
    deploy_id   TEXT NOT NULL DEFAULT '',
    reason      TEXT NOT NULL,
    since       {{bigint}} NOT NULL,
    PRIMARY KEY (repository, environment)
);

CREATE TABLE IF NOT EXISTS freezes (
    id          {{serial_pk}},
    repository  TEXT NOT NULL,
    environment TEXT NOT NULL,
    starts_at   {{bigint}} NOT NULL,
    ends_at     {{bigint}} NOT NULL,
    reason      TEXT NOT NULL,
    created_by  TEXT NOT NULL
);

CREATE TABLE IF NOT EXISTS checks (
    deploy_id   TEXT NOT NULL,
    position    INTEGER NOT NULL,
    name        TEXT NOT NULL,
    status      INTEGER NOT NULL,
    value       DOUBLE PRECISION NOT NULL DEFAULT 0,
    reason      TEXT NOT NULL DEFAULT '',
    measured_at {{bigint}} NOT NULL DEFAULT 0,
    PRIMARY KEY (deploy_id, position)
);

-- errortrack signals per release and environment.
CREATE TABLE IF NOT EXISTS signals (
    event_id    TEXT PRIMARY KEY,
    repository  TEXT NOT NULL,
    release     TEXT NOT NULL,
    environment TEXT NOT NULL,
    kind        TEXT NOT NULL,
    issue_id    {{bigint}} NOT NULL,
    title       TEXT NOT NULL,
    at          {{bigint}} NOT NULL
);

CREATE TABLE IF NOT EXISTS tickets (
    deploy_id   TEXT NOT NULL,
    ticket      TEXT NOT NULL,
    repository  TEXT NOT NULL,
    environment TEXT NOT NULL,
    version     TEXT NOT NULL,
    commit_sha  TEXT NOT NULL,
    at          {{bigint}} NOT NULL,
    -- 1 once the outbound webhook accepted it (or none is configured).
    notified    INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (deploy_id, ticket)
);
