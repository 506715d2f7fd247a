-- ListMultipartUploads lists a bucket's uploads by key, then by upload id (ids start with
-- their creation time, so that is the order they were started in).
CREATE INDEX uploads_by_key ON uploads (bucket, key, upload_id);
