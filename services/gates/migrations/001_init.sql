-- Builds as gates knows them: the gate section of their .shiploop.yml (a
-- GatePolicy protobuf, empty without one), the base ref and test results.
CREATE TABLE IF NOT EXISTS gate_builds (
    build_id      TEXT PRIMARY KEY,
    repository    TEXT NOT NULL,
    number        {{bigint}} NOT NULL,
    ref           TEXT NOT NULL,
    commit_sha    TEXT NOT NULL,
    version       TEXT NOT NULL,
    base_ref      TEXT NOT NULL,
    has_tests     INTEGER NOT NULL,
    policy        {{bytes}},
    build_status  INTEGER NOT NULL DEFAULT 0,
    -- The test run (testrun.finished): has_testrun 0 until it came.
    has_testrun   INTEGER NOT NULL DEFAULT 0,
    tests_total   {{bigint}} NOT NULL DEFAULT 0,
    tests_failed  {{bigint}} NOT NULL DEFAULT 0,
    tests_flaky   {{bigint}} NOT NULL DEFAULT 0,
    tests_skipped {{bigint}} NOT NULL DEFAULT 0,
    lines_covered {{bigint}} NOT NULL DEFAULT 0,
    lines_total   {{bigint}} NOT NULL DEFAULT 0,
    patch_covered {{bigint}} NOT NULL DEFAULT 0,
    patch_total   {{bigint}} NOT NULL DEFAULT 0,
    -- 1 once build.created came: until then the policy and whether tests
    -- follow are unknown, and nothing is judged (events can arrive out of
    -- order after a redelivery).
    created_seen  INTEGER NOT NULL DEFAULT 0,
    created_at    {{bigint}} NOT NULL
);

CREATE INDEX IF NOT EXISTS gate_builds_repo ON gate_builds (repository, ref, number);

-- Reports read for a build: fingerprints (9 bytes a finding), the findings
-- as gzip JSON for display, or the error that made the report unreadable.
-- Metrics reports keep their numbers as JSON in findings_json.
CREATE TABLE IF NOT EXISTS gate_reports (
    build_id      TEXT NOT NULL,
    name          TEXT NOT NULL,
    format        TEXT NOT NULL,
    error         TEXT NOT NULL,
    findings      {{bigint}} NOT NULL,
    fingerprints  {{bytes}},
    findings_json {{bytes}},
    PRIMARY KEY (build_id, name)
);

-- The latest evaluation of each build (a GateEvaluated protobuf), and its
-- first new findings for display.
CREATE TABLE IF NOT EXISTS gate_evaluations (
    build_id     TEXT PRIMARY KEY,
    repository   TEXT NOT NULL,
    number       {{bigint}} NOT NULL,
    ref          TEXT NOT NULL,
    revision     INTEGER NOT NULL,
    status       INTEGER NOT NULL,
    coverage     DOUBLE PRECISION,
    result       {{bytes}} NOT NULL,
    new_findings {{bytes}},
    evaluated_at {{bigint}} NOT NULL
);

CREATE INDEX IF NOT EXISTS gate_evaluations_repo ON gate_evaluations (repository, ref, number);

-- Policies set by administrators: repository "" is the installation's.
CREATE TABLE IF NOT EXISTS gate_policies (
    repository TEXT PRIMARY KEY,
    policy     {{bytes}} NOT NULL,
    updated_at {{bigint}} NOT NULL
);

-- The revision of each build's gate posted to the forge.
CREATE TABLE IF NOT EXISTS gate_status_posted (
    build_id TEXT PRIMARY KEY,
    revision INTEGER NOT NULL
);
