-- Runbook runs: the audit trail of runbooks (who ran what, when, with
-- which options, and how it ended). A run against an environment holds
-- that environment's row of locks (deploy_id = the run's id) while it runs.
CREATE TABLE IF NOT EXISTS runbook_runs (
    id          TEXT PRIMARY KEY,
    repository  TEXT NOT NULL,
    runbook     TEXT NOT NULL,
    environment TEXT NOT NULL DEFAULT '',
    kind        TEXT NOT NULL,
    from_env    TEXT NOT NULL DEFAULT '',
    run_by      TEXT NOT NULL,
    options     TEXT NOT NULL DEFAULT '{}',
    build_id    TEXT NOT NULL,
    commit_sha  TEXT NOT NULL,
    job_id      TEXT NOT NULL DEFAULT '',
    status      TEXT NOT NULL,
    reason      TEXT NOT NULL DEFAULT '',
    created_at  {{bigint}} NOT NULL,
    started_at  {{bigint}} NOT NULL DEFAULT 0,
    finished_at {{bigint}} NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS runbook_runs_repo ON runbook_runs (repository, runbook, created_at);
CREATE INDEX IF NOT EXISTS runbook_runs_job ON runbook_runs (job_id);
CREATE INDEX IF NOT EXISTS runbook_runs_env ON runbook_runs (repository, environment, status, created_at);
