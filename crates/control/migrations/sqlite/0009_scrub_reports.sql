-- Storage nodes report their scrubs with their disk: when the last pass finished (ms since
-- the Unix epoch), whether one runs now (0/1), corrupt pieces found since the node started.
-- Keep in step with ../postgres/0009_scrub_reports.sql.
ALTER TABLE storage_reports ADD COLUMN last_scrub_ms BIGINT;
ALTER TABLE storage_reports ADD COLUMN scrub_running BIGINT NOT NULL DEFAULT 0;
ALTER TABLE storage_reports ADD COLUMN corrupt_found BIGINT NOT NULL DEFAULT 0;
