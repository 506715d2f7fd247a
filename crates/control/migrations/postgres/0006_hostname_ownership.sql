-- Hostname ownership and domain control (issue 9): each hostname row keeps its labels
-- reversed (for "names under this wildcard" as one indexed range query), its domain-control
-- state and the token its tenant publishes as `_lingjing-challenge.<name>` TXT. Rows from
-- before stay verified: names already served keep being served.
ALTER TABLE service_hostnames ADD COLUMN reversed TEXT COLLATE "C" NOT NULL DEFAULT '';
ALTER TABLE service_hostnames ADD COLUMN state TEXT NOT NULL DEFAULT 'verified';
ALTER TABLE service_hostnames ADD COLUMN token TEXT NOT NULL DEFAULT '';
ALTER TABLE service_hostnames ADD COLUMN verified_at TEXT;
-- When a pending name was claimed: an unverified claim holds the name only so long.
ALTER TABLE service_hostnames ADD COLUMN claimed_at TEXT NOT NULL DEFAULT '';
CREATE INDEX service_hostnames_reversed ON service_hostnames (reversed);
CREATE INDEX service_hostnames_service ON service_hostnames (service_id);
