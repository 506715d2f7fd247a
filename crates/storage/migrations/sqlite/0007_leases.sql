-- Leases: background work that one gateway of many should do at a time (garbage
-- collection). A gateway takes the lease `name` when it is free or expired (or already
-- its own) and does the work while it holds it; `expires` is ms since the Unix epoch.
CREATE TABLE leases (
    name TEXT PRIMARY KEY,
    holder TEXT NOT NULL,
    expires BIGINT NOT NULL
);
