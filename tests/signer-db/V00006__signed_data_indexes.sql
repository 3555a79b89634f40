CREATE INDEX signed_blocks_validator_slot ON signed_blocks (validator_id, slot);
CREATE INDEX signed_attestations_validator_target ON signed_attestations (validator_id, target_epoch)
