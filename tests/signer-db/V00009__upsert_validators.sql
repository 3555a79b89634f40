CREATE OR REPLACE FUNCTION upsert_validators(keys BYTEA[]) RETURNS SETOF validators AS $body$
BEGIN
    INSERT INTO validators (public_key) SELECT unnest(keys) ON CONFLICT DO NOTHING;
    RETURN QUERY SELECT * FROM validators WHERE public_key = ANY(keys);
END
$body$ LANGUAGE plpgsql;
UPDATE database_version SET version = 9 WHERE id = 1;
