-- Sentry-style short ids (SHOP-1, SHOP-2...): a per-project number given in
-- the order issues opened, i.e. the order their first events were stored.
-- Existing issues are numbered by when they were first seen.
ALTER TABLE issues ADD COLUMN short_number {{bigint}} NOT NULL DEFAULT 0;

UPDATE issues SET short_number = (SELECT COUNT(*) FROM issues i2 WHERE i2.project_id = issues.project_id
    AND (i2.first_seen < issues.first_seen OR (i2.first_seen = issues.first_seen AND i2.id <= issues.id)));

CREATE UNIQUE INDEX IF NOT EXISTS issues_short_number ON issues (project_id, short_number);
