-- Monitors of environments as monitor.state_changed says: the newest state
-- of each, for the environments page.
CREATE TABLE IF NOT EXISTS dash_monitors (
    repository  TEXT NOT NULL,
    environment TEXT NOT NULL,
    name        TEXT NOT NULL,
    state       TEXT NOT NULL,
    since       {{bigint}} NOT NULL,
    detail      TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (repository, environment, name)
);
