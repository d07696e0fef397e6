CREATE TABLE IF NOT EXISTS repositories (
    name           TEXT PRIMARY KEY,
    clone_url      TEXT NOT NULL,
    default_branch TEXT NOT NULL,
    webhook_secret TEXT NOT NULL,
    created_at     {{bigint}} NOT NULL,
    -- Commit statuses: the forge kind (github, gitlab, gitea, forgejo, or
    -- empty for none), its API base URL, the repository as that API names
    -- it, and the token, which never leaves the service.
    forge          TEXT NOT NULL DEFAULT '',
    forge_api_url  TEXT NOT NULL DEFAULT '',
    forge_repo     TEXT NOT NULL DEFAULT '',
    forge_token    TEXT NOT NULL DEFAULT '',
    -- git or hg; public_only = 1 builds only public-phase changesets from
    -- pushes (hg drafts come through Harbormaster).
    vcs            TEXT NOT NULL DEFAULT 'git',
    public_only    INTEGER NOT NULL DEFAULT 0,
    -- Phabricator/Phorge Harbormaster: Conduit base URL and API token (never
    -- returned), the Diffusion callsign, the staging area for diffs.
    conduit_url    TEXT NOT NULL DEFAULT '',
    conduit_token  TEXT NOT NULL DEFAULT '',
    callsign       TEXT NOT NULL DEFAULT '',
    staging_url    TEXT NOT NULL DEFAULT ''
);

CREATE TABLE IF NOT EXISTS deliveries (
    forge       TEXT NOT NULL,
    delivery_id TEXT NOT NULL,
    event_id    TEXT NOT NULL,
    received_at {{bigint}} NOT NULL,
    PRIMARY KEY (forge, delivery_id)
);

CREATE TABLE IF NOT EXISTS builds (
    id          TEXT PRIMARY KEY,
    repository  TEXT NOT NULL,
    number      {{bigint}} NOT NULL,
    ref         TEXT NOT NULL,
    commit_sha  TEXT NOT NULL,
    version     TEXT NOT NULL,
    status      INTEGER NOT NULL,
    trigger     TEXT NOT NULL,
    failed_step TEXT NOT NULL DEFAULT '',
    error       TEXT NOT NULL DEFAULT '',
    chain_id    TEXT NOT NULL,
    change_id   TEXT NOT NULL,
    created_at  {{bigint}} NOT NULL,
    started_at  {{bigint}} NOT NULL DEFAULT 0,
    finished_at {{bigint}} NOT NULL DEFAULT 0,
    -- The last commit status posted to the forge: 0 none, 1 pending,
    -- 2 running, 3 final. A status never replaces a later one.
    status_posted INTEGER NOT NULL DEFAULT 0,
    -- 1 when a test plan was published: the build's final word to
    -- Harbormaster waits for the test run.
    has_tests   INTEGER NOT NULL DEFAULT 0,
    UNIQUE (repository, number),
    UNIQUE (change_id)
);

CREATE INDEX IF NOT EXISTS builds_created ON builds (created_at, id);

CREATE TABLE IF NOT EXISTS jobs (
    id          TEXT PRIMARY KEY,
    build_id    TEXT NOT NULL,
    position    INTEGER NOT NULL,
    kind        TEXT NOT NULL,
    matrix      TEXT NOT NULL DEFAULT '{}',
    status      INTEGER NOT NULL,
    agent       TEXT NOT NULL DEFAULT '',
    failed_step TEXT NOT NULL DEFAULT '',
    error       TEXT NOT NULL DEFAULT '',
    log_key     TEXT NOT NULL DEFAULT '',
    -- Concurrency group: a job of a group waits (dispatched = 0, spec kept)
    -- until fewer than the group's limit of its jobs are out with agents.
    group_name  TEXT NOT NULL DEFAULT '',
    dispatched  INTEGER NOT NULL DEFAULT 1,
    spec        {{bytes}},
    queued_at   {{bigint}} NOT NULL DEFAULT 0
);

CREATE INDEX IF NOT EXISTS jobs_group ON jobs (group_name, dispatched, status);

CREATE TABLE IF NOT EXISTS concurrency_groups (
    name       TEXT PRIMARY KEY,
    job_limit  INTEGER NOT NULL
);

CREATE INDEX IF NOT EXISTS jobs_build ON jobs (build_id);

CREATE TABLE IF NOT EXISTS build_steps (
    build_id    TEXT NOT NULL,
    job_id      TEXT NOT NULL,
    position    INTEGER NOT NULL,
    name        TEXT NOT NULL,
    status      INTEGER NOT NULL,
    exit_code   INTEGER NOT NULL DEFAULT 0,
    started_at  {{bigint}} NOT NULL DEFAULT 0,
    duration_ns {{bigint}} NOT NULL DEFAULT 0,
    error       TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (job_id, name)
);

CREATE INDEX IF NOT EXISTS build_steps_build ON build_steps (build_id);

CREATE TABLE IF NOT EXISTS secrets (
    repository TEXT NOT NULL,
    name       TEXT NOT NULL,
    value      TEXT NOT NULL,
    updated_at {{bigint}} NOT NULL,
    PRIMARY KEY (repository, name)
);

CREATE TABLE IF NOT EXISTS artifacts (
    build_id   TEXT NOT NULL,
    job_id     TEXT NOT NULL,
    name       TEXT NOT NULL,
    step       TEXT NOT NULL,
    size       {{bigint}} NOT NULL,
    sha256     TEXT NOT NULL,
    object_key TEXT NOT NULL,
    PRIMARY KEY (job_id, name)
);

CREATE INDEX IF NOT EXISTS artifacts_build ON artifacts (build_id);

-- Harbormaster build targets: one per change a "Make HTTP Request" step
-- started, and what harbormaster.sendmessage has been told (sent: 0 none,
-- 1 work, 2 final), so a redelivered event never reports twice.
CREATE TABLE IF NOT EXISTS harbormaster_targets (
    change_id   TEXT PRIMARY KEY,
    repository  TEXT NOT NULL,
    target_phid TEXT NOT NULL,
    diff_id     {{bigint}} NOT NULL DEFAULT 0,
    revision_id {{bigint}} NOT NULL DEFAULT 0,
    sent        INTEGER NOT NULL DEFAULT 0,
    sent_type   TEXT NOT NULL DEFAULT '',
    -- Failed attempts at the message failing_type (work, pass, fail).
    attempts     INTEGER NOT NULL DEFAULT 0,
    failing_type TEXT NOT NULL DEFAULT '',
    last_error   TEXT NOT NULL DEFAULT '',
    updated_at  {{bigint}} NOT NULL DEFAULT 0,
    -- 1 when the build's gate reads static-analysis reports: the final
    -- message waits (a bounded time) for gate.evaluated, whose findings go
    -- with it as lint. gate_lint is that lint (JSON) once the gate spoke;
    -- held is the final message (JSON) kept since held_at until then, sent
    -- by the sweeper (harbormaster.go) no earlier than retry_at.
    gate_wait   INTEGER NOT NULL DEFAULT 0,
    gate_lint   {{bytes}},
    held        {{bytes}},
    held_at     {{bigint}} NOT NULL DEFAULT 0,
    retry_at    {{bigint}} NOT NULL DEFAULT 0
);

CREATE INDEX IF NOT EXISTS harbormaster_targets_held ON harbormaster_targets (retry_at);
