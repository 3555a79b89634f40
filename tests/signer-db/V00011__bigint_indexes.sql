ALTER TABLE signed_blocks ALTER COLUMN id TYPE BIGINT;
ALTER TABLE signed_attestations ALTER COLUMN id TYPE BIGINT;
UPDATE database_version SET version = 11 WHERE id = 1
