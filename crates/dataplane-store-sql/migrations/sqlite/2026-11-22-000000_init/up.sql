-- Timestamps are microseconds since the Unix epoch, taken from the database clock.
-- JSON values are stored as text.
CREATE TABLE dataplane_instances (
    id                   TEXT PRIMARY KEY NOT NULL,
    endpoint             TEXT NOT NULL,
    profiles             TEXT NOT NULL,
    allowed_source_types TEXT NOT NULL,
    labels               TEXT NOT NULL,
    properties           TEXT NOT NULL,
    auth_entry           TEXT,
    turn_count           BIGINT NOT NULL DEFAULT 0,
    last_active          BIGINT,
    state                TEXT NOT NULL,
    created_at           BIGINT NOT NULL,
    updated_at           BIGINT NOT NULL
);

CREATE TABLE selector_sequences (
    name  TEXT PRIMARY KEY NOT NULL,
    value BIGINT NOT NULL
);

CREATE TABLE members (
    runtime_id       TEXT PRIMARY KEY NOT NULL,
    incarnation      TEXT NOT NULL,
    heartbeat_at     BIGINT NOT NULL,
    lease_expires_at BIGINT NOT NULL,
    started_at       BIGINT NOT NULL,
    state            TEXT NOT NULL
);

CREATE TABLE data_flows (
    id                TEXT PRIMARY KEY NOT NULL,
    process_id        TEXT NOT NULL UNIQUE,
    kind              TEXT NOT NULL,
    profile           TEXT NOT NULL,
    state             TEXT NOT NULL,
    state_count       INTEGER NOT NULL,
    state_timestamp   BIGINT NOT NULL,
    created_at        BIGINT NOT NULL,
    updated_at        BIGINT NOT NULL,
    runtime_id        TEXT,
    epoch             BIGINT NOT NULL,
    source            TEXT NOT NULL,
    destination       TEXT,
    metadata          TEXT NOT NULL,
    participant_id    TEXT,
    callback_address  TEXT,
    checkpoint_bytes  BIGINT,
    checkpoint_cursor TEXT,
    error_detail      TEXT
);

-- Claims scan unowned flows by state, oldest first.
CREATE INDEX data_flows_claimable ON data_flows (state, state_timestamp) WHERE runtime_id IS NULL;
-- Takeover and release look flows up by owner.
CREATE INDEX data_flows_owner ON data_flows (runtime_id, state);
