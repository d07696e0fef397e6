CREATE TABLE broken_never (id {{bigint}} PRIMARY KEY);
