CREATE TABLE validators (
    id SERIAL PRIMARY KEY,
    public_key BYTEA NOT NULL UNIQUE
);
CREATE TABLE signed_blocks (
    validator_id INTEGER NOT NULL REFERENCES validators(id),
    slot NUMERIC(20) NOT NULL,
    signing_root BYTEA
);
CREATE TABLE signed_attestations (
    validator_id INTEGER NOT NULL REFERENCES validators(id),
    source_epoch NUMERIC(20) NOT NULL,
    target_epoch NUMERIC(20) NOT NULL,
    signing_root BYTEA
)
