-- IDC monitoring (issue 18): sensors, receivers and silences (resource documents);
-- readings as sites' nodes forward them (kept for a retention window) and their
-- per-minute rollups (kept longer); each alert's current state (one row per rule and
-- sensor) and every transition once (by its id). Outbox streams are inspect_streams'.
-- Keep in step with the other backend's 0019_monitor.sql.
CREATE TABLE sensors (
    id TEXT PRIMARY KEY,
    site_id TEXT NOT NULL REFERENCES sites(id),
    body TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);

CREATE TABLE receivers (
    id TEXT PRIMARY KEY,
    body TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);

CREATE TABLE silences (
    id TEXT PRIMARY KEY,
    body TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);

CREATE TABLE readings (
    sensor_id TEXT NOT NULL,
    at_ms BIGINT NOT NULL,
    value DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (sensor_id, at_ms)
);

CREATE TABLE reading_minutes (
    sensor_id TEXT NOT NULL,
    minute_ms BIGINT NOT NULL,
    min_value DOUBLE PRECISION NOT NULL,
    max_value DOUBLE PRECISION NOT NULL,
    sum_value DOUBLE PRECISION NOT NULL,
    count BIGINT NOT NULL,
    last_value DOUBLE PRECISION NOT NULL,
    last_ms BIGINT NOT NULL,
    PRIMARY KEY (sensor_id, minute_ms)
);

CREATE TABLE alerts (
    key TEXT PRIMARY KEY,
    site_id TEXT NOT NULL,
    rule TEXT NOT NULL,
    sensor TEXT NOT NULL,
    severity TEXT NOT NULL,
    state TEXT NOT NULL,
    since_ms BIGINT NOT NULL,
    updated_ms BIGINT NOT NULL,
    body TEXT NOT NULL,
    acked_by TEXT,
    acked_ms BIGINT
);
CREATE INDEX alerts_state ON alerts (state, site_id);

CREATE TABLE alert_events (
    id TEXT PRIMARY KEY,
    key TEXT NOT NULL,
    at_ms BIGINT NOT NULL,
    node_id TEXT NOT NULL,
    body TEXT NOT NULL,
    -- The control plane's own transitions: when they were sent to the receivers.
    notified_ms BIGINT
);
CREATE INDEX alert_events_key ON alert_events (key, at_ms);
CREATE INDEX alert_events_unnotified ON alert_events (node_id, notified_ms);

-- Edges' and DNS servers' answer totals from their heartbeats (the last two), for the
-- platform's error-rate alerts.
CREATE TABLE node_answers (
    node_id TEXT PRIMARY KEY,
    run BIGINT NOT NULL,
    answered BIGINT NOT NULL,
    failed BIGINT NOT NULL,
    at_ms BIGINT NOT NULL,
    prev_answered BIGINT NOT NULL,
    prev_failed BIGINT NOT NULL,
    prev_at_ms BIGINT NOT NULL
);
