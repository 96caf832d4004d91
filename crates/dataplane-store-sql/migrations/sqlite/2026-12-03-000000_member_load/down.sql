ALTER TABLE dataplane_instances DROP COLUMN ttl_seconds;
ALTER TABLE members DROP COLUMN load_reported_at;
ALTER TABLE members DROP COLUMN load_report;
