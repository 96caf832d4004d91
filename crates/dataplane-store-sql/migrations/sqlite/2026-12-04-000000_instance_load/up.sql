-- The load a data plane sent with its registration (JSON: running transfers, capacity, bytes/s)
-- and when the selector stored it (store clock, microseconds).
ALTER TABLE dataplane_instances ADD COLUMN load_report TEXT;
ALTER TABLE dataplane_instances ADD COLUMN load_reported_at BIGINT;
