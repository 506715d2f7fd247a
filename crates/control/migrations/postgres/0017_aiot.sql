-- Edge AI (EdgeAIoT) on nodes. Keep in step with the other backend's 0017_aiot.sql.
-- What each edge AI node's slots should run: desired state, so a change bumps the
-- configuration version and reaches the nodes in the `aiot` snapshot. `revision` is the
-- configuration version that set the row (it only grows, also after a row was removed);
-- version 0 tells the node to serve nothing in that slot.
CREATE TABLE aiot_targets (
    node_id TEXT NOT NULL REFERENCES nodes(id) ON DELETE CASCADE,
    slot TEXT NOT NULL,
    version BIGINT NOT NULL,
    revision BIGINT NOT NULL,
    probation TEXT NOT NULL,
    rollout TEXT,
    PRIMARY KEY (node_id, slot)
);
-- Each node's slots as its newest heartbeat reported them.
CREATE TABLE aiot_reports (
    node_id TEXT NOT NULL REFERENCES nodes(id) ON DELETE CASCADE,
    slot TEXT NOT NULL,
    body TEXT NOT NULL,
    reported_ms BIGINT NOT NULL,
    PRIMARY KEY (node_id, slot)
);
-- Fleet rollouts of a model version: the plan is fixed when it is made; the driver
-- writes the progress (and the targets it changes) in one transaction per step, so a
-- restart neither skips nor repeats a group.
CREATE TABLE rollouts (
    id TEXT PRIMARY KEY,
    model TEXT NOT NULL,
    version BIGINT NOT NULL,
    state TEXT NOT NULL,
    plan TEXT NOT NULL,
    progress TEXT NOT NULL,
    previous TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    FOREIGN KEY (model, version) REFERENCES model_versions(model, version)
);
CREATE INDEX rollouts_by_model ON rollouts (model, state);
