ALTER TABLE members DROP COLUMN config_revision;
DROP TABLE leader;
DROP TABLE kv_meta;
DROP TABLE kv_events;
DROP TABLE kv;
