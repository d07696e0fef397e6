-- One row per flag and environment; definition is the Flag message as JSON.
CREATE TABLE flags (
    key TEXT NOT NULL,
    environment TEXT NOT NULL,
    definition TEXT NOT NULL,
    version {{bigint}} NOT NULL,
    updated_at {{bigint}} NOT NULL,
    PRIMARY KEY (key, environment)
);
