-- The first statement succeeds and the second fails: the whole file must roll back.
CREATE TABLE broken_partial (id {{bigint}} PRIMARY KEY);
INSERT INTO no_such_table (id) VALUES (1);
