INSERT INTO race_once (id) VALUES (2);
