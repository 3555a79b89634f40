ALTER TABLE low_watermarks ADD CONSTRAINT both_epochs_set_or_null CHECK ((source_epoch IS NULL) = (target_epoch IS NULL));
