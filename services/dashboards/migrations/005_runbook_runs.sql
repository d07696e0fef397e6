-- Runbook runs (runbook.started/finished) and data copies
-- (environment.data_copied) for the environment page's history.
CREATE TABLE IF NOT EXISTS dash_runbook_runs (
    run_id      TEXT PRIMARY KEY,
    repository  TEXT NOT NULL,
    runbook     TEXT NOT NULL,
    environment TEXT NOT NULL DEFAULT '',
    from_env    TEXT NOT NULL DEFAULT '',
    kind        TEXT NOT NULL DEFAULT '',
    run_by      TEXT NOT NULL DEFAULT '',
    options     TEXT NOT NULL DEFAULT '',
    status      TEXT NOT NULL,
    reason      TEXT NOT NULL DEFAULT '',
    started_at  {{bigint}} NOT NULL DEFAULT 0,
    finished_at {{bigint}} NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS dash_runbook_runs_env ON dash_runbook_runs (repository, environment, started_at);
CREATE TABLE IF NOT EXISTS dash_data_copies (
    repository  TEXT NOT NULL,
    environment TEXT NOT NULL,
    run_id      TEXT NOT NULL,
    runbook     TEXT NOT NULL,
    from_env    TEXT NOT NULL,
    to_env      TEXT NOT NULL,
    run_by      TEXT NOT NULL DEFAULT '',
    at          {{bigint}} NOT NULL,
    PRIMARY KEY (repository, environment, run_id)
);
