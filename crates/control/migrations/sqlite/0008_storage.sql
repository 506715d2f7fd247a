-- Object storage. Tenants' S3 access keys: the secret is kept as it is, because SigV4
-- needs it on the gateways (they get it in the `s3` snapshot, which only nodes with the
-- `s3` role may read); revoking deletes the row. Storage nodes' disk reports, from
-- their heartbeats. Keep in step with ../postgres/0008_storage.sql.
CREATE TABLE s3_keys (
    access_key TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    secret TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE INDEX s3_keys_tenant ON s3_keys(tenant_id);

CREATE TABLE storage_reports (
    node_id TEXT PRIMARY KEY REFERENCES nodes(id) ON DELETE CASCADE,
    used_bytes BIGINT NOT NULL,
    free_bytes BIGINT NOT NULL,
    blocks BIGINT NOT NULL,
    reported_at TEXT NOT NULL
);
