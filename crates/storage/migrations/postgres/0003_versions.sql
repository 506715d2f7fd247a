-- Bucket versioning. A bucket's state: '' (never versioned), 'Enabled' or 'Suspended'
-- (once enabled, a bucket never goes back to '').
--
-- `objects` keeps one row per key: its latest version, which may be a delete marker
-- (`delete_marker` = 1; listings skip those). Every older version of the key is in
-- `versions`. A version's id is 'null' (written while the bucket was unversioned or
-- suspended; at most one per key) or a 32-hex-digit id; `sort_id` orders a key's
-- versions by when they became the latest (for ids other than 'null', `sort_id` is the
-- id itself), and the latest always has the greatest. A write changes `objects` and
-- `versions` in one transaction that starts by locking the key's `objects` row, so
-- writers to one key are serialized and a new version appears all at once.
ALTER TABLE buckets ADD COLUMN versioning TEXT NOT NULL DEFAULT '';

ALTER TABLE objects ADD COLUMN version_id TEXT NOT NULL DEFAULT 'null';
ALTER TABLE objects ADD COLUMN sort_id TEXT COLLATE "C" NOT NULL DEFAULT '';
ALTER TABLE objects ADD COLUMN delete_marker BIGINT NOT NULL DEFAULT 0;

CREATE TABLE versions (
    bucket TEXT NOT NULL REFERENCES buckets (name),
    key TEXT COLLATE "C" NOT NULL,
    version_id TEXT NOT NULL,
    sort_id TEXT COLLATE "C" NOT NULL,
    delete_marker BIGINT NOT NULL,
    size BIGINT NOT NULL,
    etag TEXT NOT NULL,
    content_type TEXT,
    metadata TEXT NOT NULL,
    last_modified BIGINT NOT NULL,
    blocks TEXT NOT NULL,
    PRIMARY KEY (bucket, key, version_id)
);
CREATE INDEX versions_in_order ON versions (bucket, key, sort_id);
