-- Content-addressed artefacts (models for edge nodes): kept in the database, in 1 MiB
-- chunks, so every control-plane replica serves them and an upload is all or nothing.
-- An upload writes its chunks under its own id (owner = the upload id); once the body's
-- SHA-256 matches the digest it was sent to, one transaction records the artefact and
-- hands the chunks to it (owner = the digest). An artefact is never overwritten.
-- Keep in step with the other backend's 0015_artifacts.sql.
CREATE TABLE artifacts (
    digest TEXT PRIMARY KEY,
    size INTEGER NOT NULL,
    chunks INTEGER NOT NULL,
    created_at TEXT NOT NULL
);

CREATE TABLE artifact_uploads (
    id TEXT PRIMARY KEY,
    digest TEXT NOT NULL,
    started_ms INTEGER NOT NULL
);

CREATE TABLE artifact_chunks (
    owner TEXT NOT NULL,
    seq INTEGER NOT NULL,
    data BLOB NOT NULL,
    PRIMARY KEY (owner, seq)
);
