//! Coordination primitives shared by the replicas of a cluster: a watchable key-value store
//! with compare-and-set and session-bound (TTL) keys, and leader election with terms that fence
//! leader-only work. Sessions are the members of [`crate::DataFlowStore`]: a session is alive
//! while its member's lease is valid.
//!
//! Implementations: `MemoryStore` (`dataplane-store-memory`, one process) and the SQL store
//! (SQLite on one host, PostgreSQL for a cluster), checked by one conformance suite.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// A replica's session: its member name and incarnation.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Session {
    /// Member name.
    pub runtime_id: String,
    /// Member incarnation.
    pub incarnation: String,
}

/// A key and its current value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KvEntry {
    /// The key.
    pub key: String,
    /// The value.
    pub value: String,
    /// 1 when created, + 1 at every put; the compare-and-set token.
    pub version: i64,
    /// Revision of the put that created the key.
    pub create_revision: i64,
    /// Revision of the last put.
    pub mod_revision: i64,
    /// The session the key lives as long as, if any (its runtime id).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session: Option<String>,
}

/// What happened to a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum KvEventKind {
    /// Created or replaced.
    Put,
    /// Deleted (explicitly, or because its session died).
    Delete,
}

impl KvEventKind {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Put => "PUT",
            Self::Delete => "DELETE",
        }
    }
}

/// One change, at a store-wide revision (strictly increasing, in commit order).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KvEvent {
    /// The revision of this change.
    pub revision: i64,
    /// PUT or DELETE.
    pub kind: KvEventKind,
    /// The key.
    pub key: String,
    /// The new value (PUT) or the last value (DELETE).
    pub value: String,
    /// The key's version after a PUT, before a DELETE.
    pub version: i64,
}

/// The condition of a compare-and-set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expected {
    /// No condition.
    Any,
    /// The key must not exist.
    Absent,
    /// The key must exist at this version.
    Version(i64),
}

/// The leader of the cluster for one term.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Leader {
    /// The leader's member name.
    pub leader: String,
    /// Its incarnation.
    pub incarnation: String,
    /// The term: only increases; fences leader-only work.
    pub term: i64,
    /// Until when it leads unless it renews (store clock).
    pub expires_at: DateTime<Utc>,
}

/// Failures of coordination operations.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CoordinationError {
    /// A compare-and-set failed.
    #[error("version conflict on '{key}': expected {expected}, found {actual}")]
    Conflict {
        /// The key.
        key: String,
        /// What was expected.
        expected: String,
        /// What was found.
        actual: String,
    },
    /// The key does not exist.
    #[error("key '{0}' not found")]
    NotFound(String),
    /// The watcher's revision was compacted away: re-list, then watch from the listing's
    /// revision.
    #[error("revision {requested} was compacted (oldest kept: {compacted}); list again and watch from the listing's revision")]
    Compacted {
        /// The revision asked for.
        requested: i64,
        /// Events at or below this revision are gone.
        compacted: i64,
    },
    /// Leader-only work with a term that is no longer the current leader's.
    #[error("term {term} of '{leader}' is no longer the leading term")]
    StaleTerm {
        /// Who tried.
        leader: String,
        /// The stale term.
        term: i64,
    },
    /// The session is not alive (member gone or lease expired).
    #[error("session of '{0}' is not alive")]
    SessionGone(String),
    /// Bad input.
    #[error("{0}")]
    InvalidInput(String),
    /// Backend unavailable; retrying may help.
    #[error("coordination store unavailable: {0}")]
    Unavailable(String),
    /// Anything else.
    #[error("internal coordination error: {0}")]
    Internal(String),
}

impl From<crate::StoreError> for CoordinationError {
    fn from(error: crate::StoreError) -> Self {
        match error {
            crate::StoreError::Unavailable(m) => Self::Unavailable(m),
            crate::StoreError::InvalidInput(m) => Self::InvalidInput(m),
            other => Self::Internal(other.to_string()),
        }
    }
}

/// Result alias.
pub type CoordinationResult<T> = Result<T, CoordinationError>;

/// Longest key, in bytes.
pub const MAX_KEY_LEN: usize = 512;
/// Largest value, in bytes.
pub const MAX_VALUE_LEN: usize = 64 * 1024;

/// Checks a key: non-empty, at most [`MAX_KEY_LEN`] bytes, printable, no whitespace.
///
/// # Errors
/// [`CoordinationError::InvalidInput`].
pub fn validate_key(key: &str) -> CoordinationResult<()> {
    if key.is_empty()
        || key.len() > MAX_KEY_LEN
        || key.chars().any(|c| c.is_control() || c.is_whitespace())
    {
        return Err(CoordinationError::InvalidInput(format!(
            "a key must be 1 to {MAX_KEY_LEN} bytes without spaces or control characters"
        )));
    }
    Ok(())
}

/// Coordination on the shared store. Every write is atomic; revisions are assigned in commit
/// order, so a watcher that reads events after revision `r` never misses one that commits later
/// with a smaller revision.
#[async_trait]
pub trait Coordinator: Send + Sync + std::fmt::Debug {
    /// The current value of a key.
    ///
    /// # Errors
    /// Backend failures.
    async fn kv_get(&self, key: &str) -> CoordinationResult<Option<KvEntry>>;

    /// Creates or replaces a key if `expected` holds; with a session, the key is deleted when
    /// the session dies (see [`Coordinator::kv_expire_sessions`]).
    ///
    /// # Errors
    /// [`CoordinationError::Conflict`] (nothing changed), [`CoordinationError::SessionGone`],
    /// [`CoordinationError::InvalidInput`] for a bad key or a value over [`MAX_VALUE_LEN`].
    async fn kv_put(
        &self,
        key: &str,
        value: &str,
        expected: Expected,
        session: Option<&Session>,
    ) -> CoordinationResult<KvEntry>;

    /// Deletes a key if `expected` holds; returns the DELETE event.
    ///
    /// # Errors
    /// [`CoordinationError::NotFound`], [`CoordinationError::Conflict`].
    async fn kv_delete(&self, key: &str, expected: Expected) -> CoordinationResult<KvEvent>;

    /// Every key starting with `prefix`, sorted, and the revision the listing reflects: watch
    /// from there to miss nothing.
    ///
    /// # Errors
    /// Backend failures.
    async fn kv_list(&self, prefix: &str) -> CoordinationResult<(Vec<KvEntry>, i64)>;

    /// Events on keys starting with `prefix` with a revision above `after`, in revision order,
    /// at most `limit`.
    ///
    /// # Errors
    /// [`CoordinationError::Compacted`] when events after `after` were already discarded.
    async fn kv_events(
        &self,
        prefix: &str,
        after: i64,
        limit: usize,
    ) -> CoordinationResult<Vec<KvEvent>>;

    /// Deletes the keys of dead sessions, emitting DELETE events; returns how many.
    ///
    /// # Errors
    /// Backend failures.
    async fn kv_expire_sessions(&self) -> CoordinationResult<u64>;

    /// Discards events, keeping the newest `keep`; returns the compacted revision.
    ///
    /// # Errors
    /// Backend failures.
    async fn kv_compact(&self, keep: i64) -> CoordinationResult<i64>;

    /// Campaigns for leadership, or renews it: becomes leader with a new, higher term when
    /// there is none or the leader's lease expired; renews when `session` already leads.
    /// Returns the leader after the call (this session or another).
    ///
    /// # Errors
    /// [`CoordinationError::SessionGone`] when `session` is not an alive member.
    async fn campaign(
        &self,
        session: &Session,
        lease_ms: i64,
    ) -> CoordinationResult<Option<Leader>>;

    /// The current leader, if its lease is valid.
    ///
    /// # Errors
    /// Backend failures.
    async fn leader(&self) -> CoordinationResult<Option<Leader>>;

    /// Gives up leadership (the next campaign starts a new term at once).
    ///
    /// # Errors
    /// [`CoordinationError::StaleTerm`] when `term` is not the current one.
    async fn resign(&self, session: &Session, term: i64) -> CoordinationResult<()>;

    /// Leader-only: removes a member whose lease expired (its flows are then taken over by
    /// anyone, its session keys expire). Fenced by `term`; returns whether this call reaped it
    /// (so each dead member is reaped once).
    ///
    /// # Errors
    /// [`CoordinationError::StaleTerm`] when `term` no longer leads.
    async fn reap_member(
        &self,
        leader: &Session,
        term: i64,
        runtime_id: &str,
        incarnation: &str,
    ) -> CoordinationResult<bool>;

    /// Leader-only: deletes COMPLETED/TERMINATED flows whose last change is older than
    /// `age_ms`; returns how many. Fenced by `term`.
    ///
    /// # Errors
    /// [`CoordinationError::StaleTerm`].
    async fn purge_finished_flows(
        &self,
        leader: &Session,
        term: i64,
        age_ms: i64,
    ) -> CoordinationResult<u64>;

    /// Publishes the configuration revision a member applied (shown in the members listing).
    ///
    /// # Errors
    /// [`CoordinationError::SessionGone`].
    async fn publish_config_revision(
        &self,
        session: &Session,
        revision: i64,
    ) -> CoordinationResult<()>;

    /// The configuration revision each member published.
    ///
    /// # Errors
    /// Backend failures.
    async fn config_revisions(&self) -> CoordinationResult<Vec<(String, i64)>>;

    /// Renews a member's lease exactly as [`crate::DataFlowStore::renew_member`] does and, in
    /// the same statement, records `report` with the store's time. `Ok(None)` when this
    /// coordinator keeps no load reports (the caller then renews without one).
    ///
    /// # Errors
    /// [`crate::StoreError::MembershipLost`] as for `renew_member`; backend failures.
    async fn renew_member_reporting(
        &self,
        _runtime_id: &str,
        _incarnation: &str,
        _lease_ms: i64,
        _report: &crate::LoadReport,
    ) -> crate::StoreResult<Option<crate::Member>> {
        Ok(None)
    }

    /// Every member with its last load report, and the store's time; empty when this
    /// coordinator keeps no load reports.
    ///
    /// # Errors
    /// Backend failures.
    async fn member_loads(&self) -> crate::StoreResult<crate::MemberLoads> {
        Ok(crate::MemberLoads {
            now: Utc::now(),
            members: Vec::new(),
        })
    }
}
