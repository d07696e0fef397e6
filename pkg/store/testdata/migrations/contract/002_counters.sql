CREATE TABLE counters (
    id {{bigint}} PRIMARY KEY,
    n  {{bigint}} NOT NULL
);
INSERT INTO counters (id, n) VALUES (1, 0);
-- A trailing comment after the last statement is fine on both engines.
