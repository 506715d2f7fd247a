-- Access and tagging.
--
-- `buckets.public_read` (already there since 0001) is the bucket's canned ACL: 0 `private`,
-- 1 `public-read`. `buckets.tags` is the bucket's tag set as JSON [[key, value], ...]
-- (NULL: none); `buckets.cors` its CORS configuration as JSON (NULL: none; the gateway
-- owns its shape).
--
-- A version's tags are a column of its row (JSON [[key, value], ...]), so they are
-- written by the same statement as the version itself and move with it from `objects` to
-- `versions`; an upload's tags wait in `uploads` until it is completed.
ALTER TABLE buckets ADD COLUMN tags TEXT;
ALTER TABLE buckets ADD COLUMN cors TEXT;
ALTER TABLE objects ADD COLUMN tags TEXT NOT NULL DEFAULT '[]';
ALTER TABLE versions ADD COLUMN tags TEXT NOT NULL DEFAULT '[]';
ALTER TABLE uploads ADD COLUMN tags TEXT NOT NULL DEFAULT '[]';
