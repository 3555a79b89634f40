CREATE TABLE metadata (id INTEGER PRIMARY KEY, genesis_validators_root BYTEA NOT NULL)
