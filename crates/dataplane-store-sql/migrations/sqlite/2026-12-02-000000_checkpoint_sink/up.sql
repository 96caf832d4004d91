-- The sink state recorded with a checkpoint (e.g. a multipart upload id and its acknowledged parts).
ALTER TABLE data_flows ADD COLUMN checkpoint_sink TEXT;
