-- Scheduled pipelines (.shiploop.yml schedules), as the default branch's
-- file last declared them. branch '' is the repository's default branch.
-- since (unix ns): only slots after it fire; it moves to now when the
-- schedule is added, its cron or timezone change, or it is resumed, so
-- none of those fires a slot of the past. paused survives file changes.
CREATE TABLE IF NOT EXISTS schedules (
    repository    TEXT NOT NULL,
    name          TEXT NOT NULL,
    cron          TEXT NOT NULL,
    timezone      TEXT NOT NULL,
    branch        TEXT NOT NULL DEFAULT '',
    paused        INTEGER NOT NULL DEFAULT 0,
    since         {{bigint}} NOT NULL,
    last_slot     {{bigint}} NOT NULL DEFAULT 0,
    last_event_id TEXT NOT NULL DEFAULT '',
    updated_at    {{bigint}} NOT NULL,
    PRIMARY KEY (repository, name)
);

-- One row per slot a schedule fired for, inserted in the transaction that
-- publishes the slot's change: the primary key is what keeps replicas and
-- restarts from firing a slot twice.
CREATE TABLE IF NOT EXISTS schedule_runs (
    repository TEXT NOT NULL,
    schedule   TEXT NOT NULL,
    slot       {{bigint}} NOT NULL,
    event_id   TEXT NOT NULL,
    fired_at   {{bigint}} NOT NULL,
    PRIMARY KEY (repository, schedule, slot)
);
