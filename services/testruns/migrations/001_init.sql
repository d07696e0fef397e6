-- Builds this service has heard of (build.created), with their test plan
-- (build.tests_planned). Reports for other builds are refused.
CREATE TABLE IF NOT EXISTS tr_builds (
    build_id    TEXT PRIMARY KEY,
    repository  TEXT NOT NULL,
    ref         TEXT NOT NULL,
    commit_sha  TEXT NOT NULL,
    version     TEXT NOT NULL,
    chain_id    TEXT NOT NULL DEFAULT '',
    -- events.v1.TestPlan, empty without a test section.
    plan        {{bytes}},
    base_commit TEXT NOT NULL DEFAULT '',
    -- 1 once build.finished said success: the run starts when both that
    -- and the plan are here, in whichever order they arrive.
    succeeded   INTEGER NOT NULL DEFAULT 0,
    created_at  {{bigint}} NOT NULL
);

CREATE TABLE IF NOT EXISTS test_runs (
    id            TEXT PRIMARY KEY,
    build_id      TEXT NOT NULL,
    repository    TEXT NOT NULL,
    ref           TEXT NOT NULL,
    commit_sha    TEXT NOT NULL,
    version       TEXT NOT NULL,
    chain_id      TEXT NOT NULL DEFAULT '',
    status        INTEGER NOT NULL,
    jobs_total    INTEGER NOT NULL DEFAULT 0,
    jobs_done     INTEGER NOT NULL DEFAULT 0,
    retries       INTEGER NOT NULL DEFAULT 0,
    tests         {{bigint}} NOT NULL DEFAULT 0,
    passed        {{bigint}} NOT NULL DEFAULT 0,
    failed        {{bigint}} NOT NULL DEFAULT 0,
    errors        {{bigint}} NOT NULL DEFAULT 0,
    skipped       {{bigint}} NOT NULL DEFAULT 0,
    disabled      {{bigint}} NOT NULL DEFAULT 0,
    flaky         {{bigint}} NOT NULL DEFAULT 0,
    quarantined   {{bigint}} NOT NULL DEFAULT 0,
    duration_ns   {{bigint}} NOT NULL DEFAULT 0,
    has_coverage  INTEGER NOT NULL DEFAULT 0,
    lines_covered {{bigint}} NOT NULL DEFAULT 0,
    lines_total   {{bigint}} NOT NULL DEFAULT 0,
    raw_covered   {{bigint}} NOT NULL DEFAULT 0,
    raw_total     {{bigint}} NOT NULL DEFAULT 0,
    raw_unit      TEXT NOT NULL DEFAULT '',
    patch_covered {{bigint}} NOT NULL DEFAULT 0,
    patch_total   {{bigint}} NOT NULL DEFAULT 0,
    error         TEXT NOT NULL DEFAULT '',
    started_at    {{bigint}} NOT NULL,
    finished_at   {{bigint}} NOT NULL DEFAULT 0
);

CREATE INDEX IF NOT EXISTS test_runs_build ON test_runs (build_id, started_at);
CREATE INDEX IF NOT EXISTS test_runs_repo ON test_runs (repository, started_at, id);

-- The test jobs of a run; spec is the events.v1.Job, to queue a retry.
CREATE TABLE IF NOT EXISTS test_jobs (
    job_id     TEXT PRIMARY KEY,
    run_id     TEXT NOT NULL,
    attempt    INTEGER NOT NULL,
    spec       {{bytes}} NOT NULL,
    -- events.v1.BuildStatus; 0 until job.finished.
    status     INTEGER NOT NULL DEFAULT 0,
    error      TEXT NOT NULL DEFAULT '',
    retried    INTEGER NOT NULL DEFAULT 0
);

CREATE INDEX IF NOT EXISTS test_jobs_run ON test_jobs (run_id);

CREATE TABLE IF NOT EXISTS test_reports (
    id         {{serial_pk}},
    run_id     TEXT NOT NULL,
    job_id     TEXT NOT NULL,
    name       TEXT NOT NULL,
    format     TEXT NOT NULL,
    error      TEXT NOT NULL DEFAULT '',
    cases      {{bigint}} NOT NULL DEFAULT 0,
    created_at {{bigint}} NOT NULL
);

CREATE INDEX IF NOT EXISTS test_reports_run ON test_reports (run_id, id);

-- One row per test identity, with running statistics and quarantine.
CREATE TABLE IF NOT EXISTS tests (
    id                {{serial_pk}},
    repository        TEXT NOT NULL,
    suite             TEXT NOT NULL,
    class_name        TEXT NOT NULL,
    name              TEXT NOT NULL,
    runs              {{bigint}} NOT NULL DEFAULT 0,
    failures          {{bigint}} NOT NULL DEFAULT 0,
    total_duration_ns {{bigint}} NOT NULL DEFAULT 0,
    last_status       TEXT NOT NULL DEFAULT '',
    first_seen        {{bigint}} NOT NULL,
    last_seen         {{bigint}} NOT NULL,
    last_flaky        {{bigint}} NOT NULL DEFAULT 0,
    flaky_count       {{bigint}} NOT NULL DEFAULT 0,
    quarantined       INTEGER NOT NULL DEFAULT 0,
    quarantine_reason TEXT NOT NULL DEFAULT '',
    UNIQUE (repository, suite, class_name, name)
);

CREATE INDEX IF NOT EXISTS tests_flaky ON tests (repository, last_flaky);

-- Every result of every test: the history. TestHistory reads it by
-- (test_id, id) newest first; flaky detection by (test_id, commit_sha).
CREATE TABLE IF NOT EXISTS test_results (
    id          {{serial_pk}},
    test_id     {{bigint}} NOT NULL,
    run_id      TEXT NOT NULL,
    job_id      TEXT NOT NULL,
    attempt     INTEGER NOT NULL DEFAULT 1,
    commit_sha  TEXT NOT NULL,
    status      TEXT NOT NULL,
    duration_ns {{bigint}} NOT NULL DEFAULT 0,
    message     TEXT NOT NULL DEFAULT '',
    details     TEXT NOT NULL DEFAULT '',
    file        TEXT NOT NULL DEFAULT '',
    line        INTEGER NOT NULL DEFAULT 0,
    flaky       INTEGER NOT NULL DEFAULT 0,
    created_at  {{bigint}} NOT NULL
);

CREATE INDEX IF NOT EXISTS test_results_test ON test_results (test_id, id);
CREATE INDEX IF NOT EXISTS test_results_commit ON test_results (test_id, commit_sha);
CREATE INDEX IF NOT EXISTS test_results_run ON test_results (run_id, id);

-- Per-file coverage of a run, merged over its reports. lines holds the
-- line hits (see encodeLines).
CREATE TABLE IF NOT EXISTS coverage_files (
    run_id           TEXT NOT NULL,
    path             TEXT NOT NULL,
    lines            {{bytes}} NOT NULL,
    lines_covered    {{bigint}} NOT NULL,
    lines_total      {{bigint}} NOT NULL,
    branches_covered {{bigint}} NOT NULL DEFAULT 0,
    branches_total   {{bigint}} NOT NULL DEFAULT 0,
    patch_covered    {{bigint}} NOT NULL DEFAULT 0,
    patch_total      {{bigint}} NOT NULL DEFAULT 0,
    PRIMARY KEY (run_id, path)
);

-- Lines a change adds, per file (from a diff report), for patch coverage.
CREATE TABLE IF NOT EXISTS run_diffs (
    run_id TEXT NOT NULL,
    path   TEXT NOT NULL,
    lines  {{bytes}} NOT NULL,
    PRIMARY KEY (run_id, path)
);
