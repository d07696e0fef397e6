-- A runbook run's job and the build its file came from: the environment
-- page links the run to its job's log (/builds/{build}/jobs/{job}/log.txt).
ALTER TABLE dash_runbook_runs ADD COLUMN build_id TEXT NOT NULL DEFAULT '';
ALTER TABLE dash_runbook_runs ADD COLUMN job_id TEXT NOT NULL DEFAULT '';
