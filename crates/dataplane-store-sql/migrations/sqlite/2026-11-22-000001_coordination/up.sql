-- Watchable key-value store: current values, and the event log watchers read from.
CREATE TABLE kv (
    key             TEXT PRIMARY KEY NOT NULL,
    value           TEXT NOT NULL,
    version         BIGINT NOT NULL,
    create_revision BIGINT NOT NULL,
    mod_revision    BIGINT NOT NULL,
    session         TEXT,
    incarnation     TEXT
);
CREATE INDEX kv_session ON kv (session) WHERE session IS NOT NULL;

CREATE TABLE kv_events (
    revision INTEGER PRIMARY KEY AUTOINCREMENT,
    kind     TEXT NOT NULL,
    key      TEXT NOT NULL,
    value    TEXT NOT NULL,
    version  BIGINT NOT NULL
);

-- One row: the highest revision whose events were compacted away.
CREATE TABLE kv_meta (
    id        INTEGER PRIMARY KEY NOT NULL,
    compacted BIGINT NOT NULL
);
INSERT INTO kv_meta (id, compacted) VALUES (1, 0);

-- One row: the leader and its term (terms only increase).
CREATE TABLE leader (
    id          INTEGER PRIMARY KEY NOT NULL,
    holder      TEXT,
    incarnation TEXT,
    term        BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL
);
INSERT INTO leader (id, holder, incarnation, term, expires_at) VALUES (1, NULL, NULL, 0, 0);

ALTER TABLE members ADD COLUMN config_revision BIGINT;
