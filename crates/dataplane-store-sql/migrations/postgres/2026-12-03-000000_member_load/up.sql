-- The load report a replica writes with its lease renewal (JSON: running transfers, capacity,
-- bytes/s, profiles, endpoint, labels) and when it was written (store clock, microseconds).
ALTER TABLE members ADD COLUMN load_report TEXT;
ALTER TABLE members ADD COLUMN load_reported_at BIGINT;
-- A registration's time to live: without a renewal (re-registration) within it, the instance
-- is shown and treated as UNAVAILABLE.
ALTER TABLE dataplane_instances ADD COLUMN ttl_seconds BIGINT;
