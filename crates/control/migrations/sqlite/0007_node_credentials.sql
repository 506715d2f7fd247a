-- Node credentials. The operator issues a one-time join token per node; the node
-- exchanges it once for a long-lived credential. Both are stored only as SHA-256
-- hashes. Each join token gives one credential (a node reinstalled, or replaced by a new
-- host, joins again); revoking deletes all of a node's credentials and its unused join
-- tokens. Keep in step with the other backend's 0007_node_credentials.sql.
CREATE TABLE node_join_tokens (
    secret_sha256 TEXT PRIMARY KEY,
    node_id TEXT NOT NULL REFERENCES nodes(id) ON DELETE CASCADE,
    created_at TEXT NOT NULL,
    expires_at_ms INTEGER NOT NULL,
    used_at TEXT
);
CREATE INDEX node_join_tokens_node ON node_join_tokens(node_id);

CREATE TABLE node_credentials (
    secret_sha256 TEXT PRIMARY KEY,
    node_id TEXT NOT NULL REFERENCES nodes(id) ON DELETE CASCADE,
    created_at TEXT NOT NULL
);
CREATE INDEX node_credentials_node ON node_credentials(node_id);
