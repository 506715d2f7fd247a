-- Traffic reported by data planes: per service, node and minute; and which reports were
-- counted, so a resent report is counted once.
CREATE TABLE usage_minutes (
    service_id TEXT NOT NULL,
    node_id TEXT NOT NULL,
    minute_ms INTEGER NOT NULL,
    requests INTEGER NOT NULL,
    bytes_out INTEGER NOT NULL,
    PRIMARY KEY (service_id, node_id, minute_ms)
);
CREATE TABLE usage_reports (
    node_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    received_ms INTEGER NOT NULL,
    PRIMARY KEY (node_id, seq)
);
