-- Gates that passed before deploys had seen their build's build.created
-- (a redelivery after a crash can bring the events in that order): the
-- build deploys when build.created arrives.
CREATE TABLE IF NOT EXISTS passed_gates (
    build_id TEXT PRIMARY KEY,
    at       {{bigint}} NOT NULL
);
