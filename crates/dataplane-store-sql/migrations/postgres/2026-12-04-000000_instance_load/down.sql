ALTER TABLE dataplane_instances DROP COLUMN load_reported_at;
ALTER TABLE dataplane_instances DROP COLUMN load_report;
