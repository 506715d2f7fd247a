-- Road inspection (issue 17). Keep in step with the other backend's 0018_inspect.sql.
-- Devices (patrol cameras) and crews are resource documents of a tenant; a device's
-- credential is kept as SHA-256 and reaches edge AI nodes in the `aiot` snapshot.
CREATE TABLE devices (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL REFERENCES tenants(id),
    body TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE TABLE device_tokens (
    device_id TEXT PRIMARY KEY REFERENCES devices(id) ON DELETE CASCADE,
    token_sha256 TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE TABLE crews (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL REFERENCES tenants(id),
    body TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
-- One row per tenant with road inspection: its row lock serialises that tenant's intake
-- and work-order actions (de-duplication reads, then writes), tenants in parallel.
CREATE TABLE inspect_locks (
    tenant_id TEXT PRIMARY KEY,
    taken INTEGER NOT NULL
);
CREATE TABLE inspect_policies (
    tenant_id TEXT PRIMARY KEY REFERENCES tenants(id) ON DELETE CASCADE,
    body TEXT NOT NULL
);
-- Counters: ids of defects and work orders.
CREATE TABLE inspect_counters (
    name TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
INSERT INTO inspect_counters (name, value) VALUES ('defect', 0), ('work_order', 0);
-- Each node outbox stream: every record through `through` is kept (records at or below
-- it sent again are skipped: nothing is counted twice).
CREATE TABLE inspect_streams (
    stream TEXT PRIMARY KEY,
    node_id TEXT NOT NULL,
    through INTEGER NOT NULL,
    updated_ms INTEGER NOT NULL
);
-- Every frame forwarded: where the road was seen, and what was seen there.
CREATE TABLE inspect_frames (
    stream TEXT NOT NULL,
    seq INTEGER NOT NULL,
    node_id TEXT NOT NULL,
    tenant_id TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    device_id TEXT NOT NULL,
    run_id TEXT NOT NULL,
    frame TEXT NOT NULL,
    taken_ms INTEGER NOT NULL,
    lat REAL NOT NULL,
    lon REAL NOT NULL,
    detections TEXT NOT NULL,
    PRIMARY KEY (stream, seq)
);
-- One camera frame is one row, whichever node or stream it came through (a camera that
-- sends a frame again, to this node or another, counts once).
CREATE UNIQUE INDEX inspect_frames_once ON inspect_frames (tenant_id, device_id, run_id, frame);
CREATE INDEX inspect_frames_run ON inspect_frames (tenant_id, device_id, run_id, taken_ms);
CREATE INDEX inspect_frames_taken ON inspect_frames (taken_ms);
-- Inspection runs (patrols) of a device: the path covered is their frames' positions in
-- time order.
CREATE TABLE inspect_runs (
    tenant_id TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    started_ms INTEGER NOT NULL,
    last_ms INTEGER NOT NULL,
    frames INTEGER NOT NULL,
    detections INTEGER NOT NULL,
    length_m REAL NOT NULL,
    last_lat REAL NOT NULL,
    last_lon REAL NOT NULL,
    PRIMARY KEY (tenant_id, device_id, id)
);
-- Defects: detections of one class within the tenant's merge distance, across frames,
-- runs and vehicles. state: open | dismissed (its order was cancelled) | duplicate |
-- repaired (its order closed: a new sighting there is a new defect).
CREATE TABLE defects (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    class TEXT NOT NULL,
    lat REAL NOT NULL,
    lon REAL NOT NULL,
    state TEXT NOT NULL,
    source TEXT NOT NULL,
    first_seen_ms INTEGER NOT NULL,
    last_seen_ms INTEGER NOT NULL,
    sightings INTEGER NOT NULL,
    best_score REAL NOT NULL,
    severity INTEGER NOT NULL,
    description TEXT
);
CREATE INDEX defects_place ON defects (tenant_id, class, lat, lon);
CREATE INDEX defects_first_seen ON defects (tenant_id, first_seen_ms);
CREATE INDEX defects_at ON defects (tenant_id, lat, lon);
-- A defect's best frames (at most three, by score). The image is kept here (`image`) until
-- the tenant's policy names an evidence bucket; then `evidence.rs` moves it there
-- (`object_key` = `bucket/key`, `image` NULL).
CREATE TABLE defect_evidence (
    defect_id TEXT NOT NULL REFERENCES defects(id) ON DELETE CASCADE,
    stream TEXT NOT NULL,
    seq INTEGER NOT NULL,
    score REAL NOT NULL,
    taken_ms INTEGER NOT NULL,
    device_id TEXT NOT NULL,
    frame TEXT NOT NULL,
    image BLOB,
    object_key TEXT,
    PRIMARY KEY (defect_id, stream, seq)
);
CREATE TABLE work_orders (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    defect_id TEXT NOT NULL REFERENCES defects(id) ON DELETE CASCADE,
    state TEXT NOT NULL,
    crew_id TEXT,
    due_ms INTEGER,
    opened_ms INTEGER NOT NULL,
    updated_ms INTEGER NOT NULL,
    fixed_ms INTEGER,
    closed_ms INTEGER,
    verifying_since_ms INTEGER,
    clear_frames INTEGER NOT NULL,
    note TEXT,
    photo TEXT
);
CREATE INDEX work_orders_by_state ON work_orders (tenant_id, state);
CREATE INDEX work_orders_by_defect ON work_orders (defect_id);
CREATE INDEX work_orders_by_crew ON work_orders (crew_id, state);
-- Every transition: who, when, from which state to which.
CREATE TABLE work_order_events (
    work_order_id TEXT NOT NULL REFERENCES work_orders(id) ON DELETE CASCADE,
    seq INTEGER NOT NULL,
    at_ms INTEGER NOT NULL,
    who TEXT NOT NULL,
    action TEXT NOT NULL,
    from_state TEXT,
    to_state TEXT NOT NULL,
    detail TEXT,
    PRIMARY KEY (work_order_id, seq)
);
