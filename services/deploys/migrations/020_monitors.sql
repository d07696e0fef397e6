-- Monitors: the checks environments[].monitors declares, kept running
-- against each environment for the release deployed there. One row per
-- monitor; owner and lease_until make one replica check it at a time.
CREATE TABLE IF NOT EXISTS monitors (
    repository       TEXT NOT NULL,
    environment      TEXT NOT NULL,
    name             TEXT NOT NULL,
    release          TEXT NOT NULL DEFAULT '',
    build_id         TEXT NOT NULL DEFAULT '',
    deploy_id        TEXT NOT NULL DEFAULT '',
    check_text       TEXT NOT NULL DEFAULT '',
    blocks_promotion INTEGER NOT NULL DEFAULT 0,
    active           INTEGER NOT NULL DEFAULT 1,
    state            INTEGER NOT NULL,
    since            {{bigint}} NOT NULL DEFAULT 0,
    detail           TEXT NOT NULL DEFAULT '',
    failures         INTEGER NOT NULL DEFAULT 0,
    checked_at       {{bigint}} NOT NULL DEFAULT 0,
    notified_at      {{bigint}} NOT NULL DEFAULT 0,
    next_at          {{bigint}} NOT NULL DEFAULT 0,
    owner            TEXT NOT NULL DEFAULT '',
    lease_until      {{bigint}} NOT NULL DEFAULT 0,
    PRIMARY KEY (repository, environment, name)
);

-- Silences: alerts of a monitor ('' every monitor of the environment) are
-- recorded but not sent until ends_at, or until removed.
CREATE TABLE IF NOT EXISTS monitor_silences (
    id          {{serial_pk}},
    repository  TEXT NOT NULL,
    environment TEXT NOT NULL,
    monitor     TEXT NOT NULL,
    ends_at     {{bigint}} NOT NULL,
    reason      TEXT NOT NULL,
    created_by  TEXT NOT NULL,
    created_at  {{bigint}} NOT NULL,
    removed_at  {{bigint}} NOT NULL DEFAULT 0,
    removed_by  TEXT NOT NULL DEFAULT ''
);

-- Alerts, one per state change and webhook: pending until sent (claimed
-- through next_at so one replica sends each), sent, silenced or failed.
CREATE TABLE IF NOT EXISTS monitor_alerts (
    id          {{serial_pk}},
    repository  TEXT NOT NULL,
    environment TEXT NOT NULL,
    monitor     TEXT NOT NULL,
    from_state  INTEGER NOT NULL,
    to_state    INTEGER NOT NULL,
    webhook     TEXT NOT NULL,
    format      TEXT NOT NULL,
    payload     TEXT NOT NULL,
    status      TEXT NOT NULL,
    silence_id  {{bigint}} NOT NULL DEFAULT 0,
    attempts    INTEGER NOT NULL DEFAULT 0,
    next_at     {{bigint}} NOT NULL DEFAULT 0,
    error       TEXT NOT NULL DEFAULT '',
    created_at  {{bigint}} NOT NULL,
    sent_at     {{bigint}} NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS monitor_alerts_pending ON monitor_alerts (status, next_at);
