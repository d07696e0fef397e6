-- A run's failing results, for finishing it (flaky detection, the failures
-- in testrun.finished) without reading every result of the run: a report of
-- 500,000 cases has a few thousand failures. Only failing rows are in it,
-- so a passing result costs it nothing.
CREATE INDEX IF NOT EXISTS test_results_run_failed ON test_results (run_id) WHERE status IN ('failed', 'error');
CREATE INDEX IF NOT EXISTS test_runs_commit ON test_runs (commit_sha);
