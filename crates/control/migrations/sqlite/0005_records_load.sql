-- The operator's static DNS records under the platform zone (body: the JSON record; name:
-- its owner, lowercase, so a service id and a record cannot claim the same name).
CREATE TABLE dns_records (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    rtype TEXT NOT NULL,
    body TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE INDEX dns_records_name ON dns_records(name);

-- The traffic each node served over its last load window (at least a few seconds of
-- usage reports), and that as a published share of its capacity: what DNS steering skips
-- overloaded nodes by. pending_bytes: reported since at_ms, not yet a full window.
CREATE TABLE node_load (
    node_id TEXT PRIMARY KEY REFERENCES nodes(id) ON DELETE CASCADE,
    mbps INTEGER NOT NULL,
    percent INTEGER NOT NULL,
    at_ms INTEGER NOT NULL,
    pending_bytes INTEGER NOT NULL DEFAULT 0
);
