-- Colocation and costs: cabinets (a resource document; their assignments and
-- cross-connects inside it), the cross-connects' traffic per 5-minute interval as the
-- operator's collectors measure it (a sample sent again replaces the one kept), the operator's costs per site (a document each: a bandwidth
-- contract priced flat or by the site's 95th percentile, cabinets, power, other fixed
-- costs), and incidents the operator records (a site's uplinks down: colocation SLA).
-- Keep in step with the other backend's 0014_colocation.sql.
CREATE TABLE cabinets (
    id TEXT PRIMARY KEY,
    site_id TEXT NOT NULL REFERENCES sites(id),
    body TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);

CREATE TABLE site_costs (
    id TEXT PRIMARY KEY,
    site_id TEXT NOT NULL,
    doc TEXT NOT NULL
);

CREATE TABLE incidents (
    id TEXT PRIMARY KEY,
    site_id TEXT NOT NULL,
    start_ms BIGINT NOT NULL,
    end_ms BIGINT NOT NULL,
    doc TEXT NOT NULL
);
CREATE INDEX incidents_site ON incidents (site_id, start_ms);

CREATE TABLE colo_samples (
    cabinet_id TEXT NOT NULL,
    cross_connect_id TEXT NOT NULL,
    tenant_id TEXT NOT NULL,
    start_ms BIGINT NOT NULL,
    bytes_in BIGINT NOT NULL,
    bytes_out BIGINT NOT NULL,
    PRIMARY KEY (cabinet_id, cross_connect_id, start_ms)
);
CREATE INDEX colo_samples_tenant ON colo_samples (tenant_id, start_ms);
