-- Fails if applied twice: no IF NOT EXISTS, and the insert would hit the primary key.
CREATE TABLE race_once (id {{bigint}} PRIMARY KEY);
INSERT INTO race_once (id) VALUES (1);
