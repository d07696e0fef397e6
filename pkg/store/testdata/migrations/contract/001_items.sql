-- Two tables in one file: proves a migration may hold several statements on both engines.
CREATE TABLE items (
    id         {{serial_pk}},
    name       TEXT NOT NULL UNIQUE,
    qty        {{bigint}} NOT NULL DEFAULT 0,
    payload    {{bytes}},
    created_ns {{bigint}} NOT NULL
);

CREATE TABLE kv (
    k          TEXT PRIMARY KEY,
    v          TEXT NOT NULL,
    updated_ms {{bigint}} NOT NULL
);
