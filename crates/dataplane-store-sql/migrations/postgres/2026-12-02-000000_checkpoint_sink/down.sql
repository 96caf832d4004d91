ALTER TABLE data_flows DROP COLUMN checkpoint_sink;
