-- How the test run ended (testrun.finished): its TestRunStatus and error,
-- so that a run in error or without tests is never a silent pass.
ALTER TABLE gate_builds ADD COLUMN tests_status INTEGER NOT NULL DEFAULT 0;
ALTER TABLE gate_builds ADD COLUMN tests_error TEXT NOT NULL DEFAULT '';
