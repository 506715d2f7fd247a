-- Metering for billing: per node, counter run (epoch), service, the node's address the
-- clients reached (its line: the line of the pool it is from; '' when not known) and
-- wall-clock 5-minute interval, the largest totals reported (a report resent, repeated
-- or late is counted once). Tenant, site and line are recorded at intake, so a service or node deleted later
-- still bills and groups as it did. Kept raw for the retention (default 400 days).
-- Partitioned by month on start_ms: the control plane creates each month's partition
-- ahead of time (meter_samples_YYYY_MM) and drops whole partitions past the retention;
-- rows outside every month's partition land in the default one, never lost.
-- Keep in step with ../sqlite/0012_metering.sql.
CREATE TABLE meter_samples (
    start_ms BIGINT NOT NULL,
    node_id TEXT NOT NULL,
    epoch BIGINT NOT NULL,
    service_id TEXT NOT NULL,
    tenant_id TEXT NOT NULL,
    site_id TEXT NOT NULL,
    address TEXT NOT NULL,
    line_id TEXT NOT NULL,
    requests BIGINT NOT NULL,
    hit_requests BIGINT NOT NULL,
    miss_requests BIGINT NOT NULL,
    bytes_out BIGINT NOT NULL,
    hit_bytes_out BIGINT NOT NULL,
    miss_bytes_out BIGINT NOT NULL,
    bytes_in BIGINT NOT NULL,
    PRIMARY KEY (start_ms, node_id, epoch, service_id, address)
) PARTITION BY RANGE (start_ms);
CREATE TABLE meter_samples_default PARTITION OF meter_samples DEFAULT;
CREATE INDEX meter_samples_tenant ON meter_samples (tenant_id, start_ms);
CREATE INDEX meter_samples_service ON meter_samples (service_id, start_ms);
