CREATE TABLE database_version (id INTEGER PRIMARY KEY, version INTEGER NOT NULL);
INSERT INTO database_version (id, version) VALUES (1, 7)
