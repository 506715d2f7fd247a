-- Traffic defence: rules (manual, or made from a detection; expired ones are ignored and
-- swept), attacks as events merged from the edge nodes' reports, and which event each
-- node's incident belongs to. Keep in step with ../postgres/0011_defence.sql.
CREATE TABLE defence_rules (
    id TEXT PRIMARY KEY,
    service_id TEXT,
    tenant_id TEXT,
    event_id TEXT,
    created_ms BIGINT NOT NULL,
    expires_ms BIGINT,
    doc TEXT NOT NULL
);
CREATE INDEX defence_rules_service ON defence_rules (service_id);
CREATE INDEX defence_rules_event ON defence_rules (event_id);

CREATE TABLE defence_events (
    id TEXT PRIMARY KEY,
    service_id TEXT NOT NULL,
    tenant_id TEXT NOT NULL,
    started_ms BIGINT NOT NULL,
    last_ms BIGINT NOT NULL,
    ended_ms BIGINT,
    doc TEXT NOT NULL
);
CREATE INDEX defence_events_service ON defence_events (service_id, last_ms);
CREATE INDEX defence_events_started ON defence_events (started_ms);

CREATE TABLE defence_incidents (
    node_id TEXT NOT NULL,
    incident TEXT NOT NULL,
    event_id TEXT NOT NULL,
    PRIMARY KEY (node_id, incident)
);

-- Per service and minute, the busiest second any edge node saw (of the whole service, of
-- one address, of one /24 or /48): what learned thresholds are computed from.
CREATE TABLE defence_minutes (
    service_id TEXT NOT NULL,
    minute_ms BIGINT NOT NULL,
    service_rps BIGINT NOT NULL,
    source_rps BIGINT NOT NULL,
    prefix_rps BIGINT NOT NULL,
    PRIMARY KEY (service_id, minute_ms)
);
CREATE INDEX defence_minutes_minute ON defence_minutes (minute_ms);

-- The thresholds learned per service (a JSON LearnedThresholds), sent to edges.
CREATE TABLE defence_learned (
    service_id TEXT PRIMARY KEY,
    doc TEXT NOT NULL
);
