//! The rows, columns, shared statements and helpers of the key-value and leader queries.

use dataplane_spi::{CoordinationError, Expected, KvEntry, KvEvent, KvEventKind, Leader};
use diesel::sql_types::{BigInt, Nullable, Text};
use diesel::QueryableByName;

use crate::db::{micros, DbError};

/// Advisory lock serialising KV writes on PostgreSQL ("dpfkv").
pub(super) const KV_LOCK: i64 = 0x0064_7066_6b76;

pub(super) const KV_COLUMNS: &str = "key, value, version, create_revision, mod_revision, session";

#[derive(QueryableByName)]
pub(super) struct KvRow {
    #[diesel(sql_type = Text)]
    pub(super) key: String,
    #[diesel(sql_type = Text)]
    pub(super) value: String,
    #[diesel(sql_type = BigInt)]
    pub(super) version: i64,
    #[diesel(sql_type = BigInt)]
    pub(super) create_revision: i64,
    #[diesel(sql_type = BigInt)]
    pub(super) mod_revision: i64,
    #[diesel(sql_type = Nullable<Text>)]
    pub(super) session: Option<String>,
}

impl From<KvRow> for KvEntry {
    fn from(r: KvRow) -> Self {
        Self {
            key: r.key,
            value: r.value,
            version: r.version,
            create_revision: r.create_revision,
            mod_revision: r.mod_revision,
            session: r.session,
        }
    }
}

#[derive(QueryableByName)]
pub(super) struct EventRow {
    #[diesel(sql_type = BigInt)]
    pub(super) revision: i64,
    #[diesel(sql_type = Text)]
    pub(super) kind: String,
    #[diesel(sql_type = Text)]
    pub(super) key: String,
    #[diesel(sql_type = Text)]
    pub(super) value: String,
    #[diesel(sql_type = BigInt)]
    pub(super) version: i64,
}

impl From<EventRow> for KvEvent {
    fn from(r: EventRow) -> Self {
        Self {
            revision: r.revision,
            kind: if r.kind == "DELETE" {
                KvEventKind::Delete
            } else {
                KvEventKind::Put
            },
            key: r.key,
            value: r.value,
            version: r.version,
        }
    }
}

#[derive(QueryableByName)]
pub(super) struct Number {
    #[diesel(sql_type = BigInt)]
    pub(super) n: i64,
}

#[derive(QueryableByName)]
pub(super) struct LeaderRow {
    #[diesel(sql_type = Text)]
    pub(super) holder: String,
    #[diesel(sql_type = Text)]
    pub(super) incarnation: String,
    #[diesel(sql_type = BigInt)]
    pub(super) term: i64,
    #[diesel(sql_type = BigInt)]
    pub(super) expires_at: i64,
}

impl From<LeaderRow> for Leader {
    fn from(r: LeaderRow) -> Self {
        Self {
            leader: r.holder,
            incarnation: r.incarnation,
            term: r.term,
            expires_at: micros(r.expires_at),
        }
    }
}

#[derive(QueryableByName)]
pub(super) struct RevisionRow {
    #[diesel(sql_type = Text)]
    pub(super) runtime_id: String,
    #[diesel(sql_type = BigInt)]
    pub(super) config_revision: i64,
}

pub(super) fn check_expected(
    key: &str,
    expected: Expected,
    current: Option<&KvEntry>,
) -> Result<(), DbError> {
    let ok = match (expected, current) {
        (Expected::Any, _) | (Expected::Absent, None) => true,
        (Expected::Version(v), Some(entry)) => entry.version == v,
        _ => false,
    };
    if ok {
        return Ok(());
    }
    Err(DbError::Coordination(CoordinationError::Conflict {
        key: key.to_owned(),
        expected: match expected {
            Expected::Any => "anything".into(),
            Expected::Absent => "no key".into(),
            Expected::Version(v) => format!("version {v}"),
        },
        actual: current.map_or_else(|| "no key".to_owned(), |e| format!("version {}", e.version)),
    }))
}

/// Statements shared by several operations, as macros so that they run on either connection.
macro_rules! kv_lock {
    ($conn:expr, $backend:expr) => {
        if $backend == Backend::Postgres {
            diesel::sql_query(format!("SELECT pg_advisory_xact_lock({KV_LOCK})")).execute($conn)?;
        }
    };
}

macro_rules! current_entry {
    ($conn:expr, $backend:expr, $key:expr) => {
        diesel::sql_query($backend.sql(&format!("SELECT {KV_COLUMNS} FROM kv WHERE key = ?")))
            .bind::<Text, _>($key)
            .load::<KvRow>($conn)?
            .into_iter()
            .next()
            .map(KvEntry::from)
    };
}

macro_rules! record_event {
    ($conn:expr, $backend:expr, $kind:expr, $key:expr, $value:expr, $version:expr) => {
        diesel::sql_query($backend.sql("INSERT INTO kv_events (kind, key, value, version) VALUES (?, ?, ?, ?) RETURNING revision AS n"))
            .bind::<Text, _>($kind)
            .bind::<Text, _>($key)
            .bind::<Text, _>($value)
            .bind::<BigInt, _>($version)
            .load::<Number>($conn)?
            .into_iter()
            .next()
            .map(|n| n.n)
            .ok_or_else(|| DbError::Coordination(CoordinationError::Internal("no revision returned".into())))?
    };
}

macro_rules! session_alive {
    ($conn:expr, $backend:expr, $session:expr) => {
        !diesel::sql_query($backend.sql(
            "SELECT CAST(1 AS BIGINT) AS n FROM members WHERE runtime_id = ? AND incarnation = ? AND lease_expires_at > {now}",
        ))
        .bind::<Text, _>(&$session.runtime_id)
        .bind::<Text, _>(&$session.incarnation)
        .load::<Number>($conn)?
        .is_empty()
    };
}

macro_rules! require_leader {
    ($conn:expr, $backend:expr, $leader:expr, $term:expr) => {
        let leads = !diesel::sql_query($backend.sql(
            "SELECT CAST(1 AS BIGINT) AS n FROM leader WHERE id = 1 AND holder = ? AND incarnation = ? AND term = ? AND expires_at > {now}",
        ))
        .bind::<Text, _>(&$leader.runtime_id)
        .bind::<Text, _>(&$leader.incarnation)
        .bind::<BigInt, _>($term)
        .load::<Number>($conn)?
        .is_empty();
        if !leads {
            return Err(DbError::Coordination(CoordinationError::StaleTerm {
                leader: $leader.runtime_id.clone(),
                term: $term,
            }));
        }
    };
}

/// Keys starting with `?` (bound twice: the prefix and its length), without `LIKE` escaping.
pub(super) const PREFIX_MATCH: &str = "substr(key, 1, ?) = ?";

pub(super) fn prefix_len(prefix: &str) -> i32 {
    i32::try_from(prefix.chars().count()).unwrap_or(i32::MAX)
}

pub(super) use {current_entry, kv_lock, record_event, require_leader, session_alive};
