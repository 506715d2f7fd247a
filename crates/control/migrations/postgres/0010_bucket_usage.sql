-- Object storage usage for billing, reported by the S3 gateways with their heartbeats:
-- traffic per bucket, gateway and minute (summed; a resent report is counted once, by
-- usage_reports), and what each bucket holds, sampled on 5-minute boundaries (a sample
-- received twice is kept once). Keep in step with ../sqlite/0010_bucket_usage.sql.
CREATE TABLE bucket_traffic_minutes (
    bucket TEXT NOT NULL,
    tenant_id TEXT NOT NULL,
    node_id TEXT NOT NULL,
    minute_ms BIGINT NOT NULL,
    requests BIGINT NOT NULL,
    bytes_in BIGINT NOT NULL,
    bytes_out BIGINT NOT NULL,
    PRIMARY KEY (bucket, node_id, minute_ms)
);
CREATE INDEX bucket_traffic_tenant ON bucket_traffic_minutes (tenant_id, minute_ms);

CREATE TABLE bucket_stored (
    bucket TEXT NOT NULL,
    tenant_id TEXT NOT NULL,
    at_ms BIGINT NOT NULL,
    objects BIGINT NOT NULL,
    stored_bytes BIGINT NOT NULL,
    raw_bytes BIGINT NOT NULL,
    parity_bytes BIGINT NOT NULL,
    PRIMARY KEY (bucket, at_ms)
);
CREATE INDEX bucket_stored_tenant ON bucket_stored (tenant_id, at_ms);
