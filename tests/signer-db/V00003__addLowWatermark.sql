CREATE TABLE low_watermarks (
    validator_id INTEGER NOT NULL UNIQUE REFERENCES validators(id),
    slot NUMERIC(20),
    target_epoch NUMERIC(20),
    source_epoch NUMERIC(20)
)
