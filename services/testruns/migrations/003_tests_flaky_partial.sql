-- FlakyTests reads only tests that were ever flaky (last_flaky > 0); every
-- other test kept an entry in this index that each new test had to add.
-- A partial index holds the flaky ones only.
DROP INDEX IF EXISTS tests_flaky;
CREATE INDEX IF NOT EXISTS tests_flaky ON tests (repository, last_flaky) WHERE last_flaky > 0;
