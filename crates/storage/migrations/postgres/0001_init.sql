-- The S3 gateways' metadata: buckets and the current version of each object. An object
-- row appears (or is replaced) in one statement once all its blocks are durable, so no
-- listing ever shows a half-written object.
CREATE TABLE buckets (
    name TEXT PRIMARY KEY,
    tenant TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    public_read BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX buckets_by_tenant ON buckets (tenant, name);

CREATE TABLE objects (
    bucket TEXT NOT NULL REFERENCES buckets (name),
    key TEXT COLLATE "C" NOT NULL,
    size BIGINT NOT NULL,
    etag TEXT NOT NULL,
    content_type TEXT,
    -- User metadata (x-amz-meta-*) as a JSON object.
    metadata TEXT NOT NULL,
    -- Milliseconds since the Unix epoch.
    last_modified BIGINT NOT NULL,
    -- The block map: JSON [{"id": hex, "len": n, "nodes": [node ids]}], in order.
    blocks TEXT NOT NULL,
    PRIMARY KEY (bucket, key)
);
