-- Node health from active probes: the current state per node, and every change with its
-- time and reason (what uptime and SLA reports are computed from).
CREATE TABLE node_health (
    node_id TEXT PRIMARY KEY REFERENCES nodes(id) ON DELETE CASCADE,
    healthy INTEGER NOT NULL,
    since TEXT NOT NULL,
    since_ms INTEGER NOT NULL,
    reason TEXT NOT NULL
);
CREATE TABLE health_events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    node_id TEXT NOT NULL,
    healthy INTEGER NOT NULL,
    at TEXT NOT NULL,
    at_ms INTEGER NOT NULL,
    reason TEXT NOT NULL
);
CREATE INDEX health_events_node ON health_events(node_id, at_ms);
