CREATE TABLE broken_ok (id {{bigint}} PRIMARY KEY);
