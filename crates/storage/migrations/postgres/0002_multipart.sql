-- Multipart uploads in progress and their parts. Completing an upload writes the object
-- row and removes the upload (its parts go with it) in one transaction.
CREATE TABLE uploads (
    upload_id TEXT PRIMARY KEY,
    bucket TEXT NOT NULL REFERENCES buckets (name),
    key TEXT COLLATE "C" NOT NULL,
    content_type TEXT,
    metadata TEXT NOT NULL,
    initiated BIGINT NOT NULL
);

CREATE TABLE parts (
    upload_id TEXT NOT NULL REFERENCES uploads (upload_id) ON DELETE CASCADE,
    part_number BIGINT NOT NULL,
    size BIGINT NOT NULL,
    -- The part's MD5 in hex (its ETag without quotes).
    etag TEXT NOT NULL,
    blocks TEXT NOT NULL,
    last_modified BIGINT NOT NULL,
    PRIMARY KEY (upload_id, part_number)
);
