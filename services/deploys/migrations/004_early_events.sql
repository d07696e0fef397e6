-- Events about a build that reached deploys before its build.created (a
-- redelivery after a crash can bring them in that order): build.finished
-- (any status) and a passed gate.evaluated. build.created applies them,
-- build.finished first, and deletes them. This replaces passed_gates
-- (003), which kept only the gate.
CREATE TABLE IF NOT EXISTS early_events (
    build_id TEXT NOT NULL,
    type     TEXT NOT NULL,
    status   INTEGER NOT NULL,
    at       {{bigint}} NOT NULL,
    PRIMARY KEY (build_id, type)
);
INSERT INTO early_events (build_id, type, status, at)
    SELECT build_id, 'gate.evaluated', 1, at FROM passed_gates WHERE true
    ON CONFLICT (build_id, type) DO NOTHING;
DROP TABLE passed_gates;
