-- Node credentials. The operator issues a one-time join token per node; the node
-- exchanges it once for its long-lived credential. Both are stored only as SHA-256
-- hashes. A node has at most one credential; revoking deletes it and the node's unused
-- join tokens. Keep in step with the other backend's 0007_node_credentials.sql.
CREATE TABLE node_join_tokens (
    secret_sha256 TEXT PRIMARY KEY,
    node_id TEXT NOT NULL REFERENCES nodes(id) ON DELETE CASCADE,
    created_at TEXT NOT NULL,
    expires_at_ms BIGINT NOT NULL,
    used_at TEXT
);
CREATE INDEX node_join_tokens_node ON node_join_tokens(node_id);

CREATE TABLE node_credentials (
    node_id TEXT PRIMARY KEY REFERENCES nodes(id) ON DELETE CASCADE,
    secret_sha256 TEXT NOT NULL UNIQUE,
    created_at TEXT NOT NULL
);
