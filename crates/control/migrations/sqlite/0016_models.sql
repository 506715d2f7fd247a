-- Edge AI model versions (EdgeAIoT): each names its artefact (kept in `artifacts`) and is
-- never changed once registered. Keep in step with the other backend's 0016_models.sql.
CREATE TABLE model_versions (
    model TEXT NOT NULL,
    version INTEGER NOT NULL,
    artifact TEXT NOT NULL REFERENCES artifacts(digest),
    body TEXT NOT NULL,
    created_at TEXT NOT NULL,
    PRIMARY KEY (model, version)
);
