-- Metering for billing: per node, counter run (epoch), service, the node's address the
-- clients reached (its line: the line of the pool it is from; '' when not known) and
-- wall-clock 5-minute interval, the largest totals reported (a report resent, repeated
-- or late is counted once). Tenant, site and line are recorded at intake, so a service or node deleted later
-- still bills and groups as it did. Kept raw for the retention (default 400 days).
-- Keep in step with ../postgres/0012_metering.sql.
CREATE TABLE meter_samples (
    start_ms INTEGER NOT NULL,
    node_id TEXT NOT NULL,
    epoch INTEGER NOT NULL,
    service_id TEXT NOT NULL,
    tenant_id TEXT NOT NULL,
    site_id TEXT NOT NULL,
    address TEXT NOT NULL,
    line_id TEXT NOT NULL,
    requests INTEGER NOT NULL,
    hit_requests INTEGER NOT NULL,
    miss_requests INTEGER NOT NULL,
    bytes_out INTEGER NOT NULL,
    hit_bytes_out INTEGER NOT NULL,
    miss_bytes_out INTEGER NOT NULL,
    bytes_in INTEGER NOT NULL,
    PRIMARY KEY (start_ms, node_id, epoch, service_id, address)
);
CREATE INDEX meter_samples_tenant ON meter_samples (tenant_id, start_ms);
CREATE INDEX meter_samples_service ON meter_samples (service_id, start_ms);
