-- Lingjing control plane schema (PostgreSQL). Resources are stored as validated JSON documents
-- (`body`) with the columns that other rows reference or that queries filter on pulled out
-- and constrained. Keep in step with ../sqlite/0001_init.sql.

CREATE TABLE config_version (
    id BIGINT PRIMARY KEY CHECK (id = 1),
    version BIGINT NOT NULL
);
INSERT INTO config_version (id, version) VALUES (1, 0);

CREATE TABLE meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

CREATE TABLE regions (
    id TEXT PRIMARY KEY,
    parent_id TEXT REFERENCES regions(id),
    body TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);

CREATE TABLE lines (
    id TEXT PRIMARY KEY,
    body TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);

CREATE TABLE line_prefixes (
    line_id TEXT NOT NULL REFERENCES lines(id) ON DELETE CASCADE,
    cidr TEXT NOT NULL,
    region_id TEXT REFERENCES regions(id),
    PRIMARY KEY (line_id, cidr)
);
CREATE INDEX line_prefixes_region ON line_prefixes(region_id);

CREATE TABLE sites (
    id TEXT PRIMARY KEY,
    region_id TEXT NOT NULL REFERENCES regions(id),
    parent_id TEXT REFERENCES sites(id),
    body TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);

CREATE TABLE nodes (
    id TEXT PRIMARY KEY,
    site_id TEXT NOT NULL REFERENCES sites(id),
    body TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);

CREATE TABLE ip_pools (
    id TEXT PRIMARY KEY,
    site_id TEXT NOT NULL REFERENCES sites(id),
    line_id TEXT REFERENCES lines(id),
    body TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);

CREATE TABLE ip_allocations (
    pool_id TEXT NOT NULL REFERENCES ip_pools(id),
    address TEXT NOT NULL,
    node_id TEXT NOT NULL REFERENCES nodes(id) ON DELETE CASCADE,
    allocated_at TEXT NOT NULL,
    PRIMARY KEY (pool_id, address)
);
CREATE INDEX ip_allocations_node ON ip_allocations(node_id);

CREATE TABLE tenants (
    id TEXT PRIMARY KEY,
    body TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);

CREATE TABLE api_keys (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    secret_sha256 TEXT NOT NULL UNIQUE,
    created_at TEXT NOT NULL
);

CREATE TABLE services (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL REFERENCES tenants(id),
    body TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);

CREATE TABLE service_hostnames (
    hostname TEXT PRIMARY KEY,
    service_id TEXT NOT NULL REFERENCES services(id) ON DELETE CASCADE
);

CREATE TABLE node_status (
    node_id TEXT NOT NULL REFERENCES nodes(id) ON DELETE CASCADE,
    role TEXT NOT NULL,
    registered_at TEXT NOT NULL,
    last_heartbeat TEXT NOT NULL,
    last_heartbeat_ms BIGINT NOT NULL,
    applied_version BIGINT NOT NULL,
    agent TEXT,
    PRIMARY KEY (node_id, role)
);
