DROP TABLE data_flows;
DROP TABLE members;
DROP TABLE selector_sequences;
DROP TABLE dataplane_instances;
