ALTER TABLE validators ADD COLUMN enabled BOOLEAN NOT NULL DEFAULT true;
UPDATE database_version SET version = 10 WHERE id = 1
