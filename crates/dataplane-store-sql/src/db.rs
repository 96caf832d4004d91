//! Pools, dialects, migrations, error translation and the blocking-call plumbing shared by
//! every store of this crate.

use std::fmt;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use diesel::connection::{Instrumentation, InstrumentationEvent, SimpleConnection};
use diesel::pg::PgConnection;
use diesel::r2d2::{ConnectionManager, CustomizeConnection, Pool};
use diesel::sqlite::SqliteConnection;
use diesel::{Connection, RunQueryDsl};

use crate::StoreUrl;
mod error;
mod migrate;

pub(crate) use error::{pool_error, DbError, Kind};

/// Which SQL dialect a statement is expanded for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// SQLite 3 (bundled).
    Sqlite,
    /// PostgreSQL.
    Postgres,
}

impl Backend {
    /// Expands a statement written once for both backends:
    /// - `{now}`: the database clock in microseconds since the Unix epoch;
    /// - `{skip_locked}`: `FOR UPDATE SKIP LOCKED` on PostgreSQL, nothing on SQLite (which
    ///   serialises writers);
    /// - `{for_update}`: `FOR UPDATE` on PostgreSQL, nothing on SQLite;
    /// - `?` placeholders become `$1, $2, …` on PostgreSQL.
    pub fn sql(self, template: &str) -> String {
        let expanded = match self {
            Self::Sqlite => template
                .replace("{now}", "CAST(unixepoch('subsec') * 1000000 AS INTEGER)")
                .replace("{skip_locked}", "")
                .replace("{for_update}", ""),
            Self::Postgres => template
                .replace(
                    "{now}",
                    "CAST(EXTRACT(EPOCH FROM now()) * 1000000 AS BIGINT)",
                )
                .replace("{skip_locked}", "FOR UPDATE SKIP LOCKED")
                .replace("{for_update}", "FOR UPDATE"),
        };
        if self == Self::Sqlite {
            return expanded;
        }
        let mut out = String::with_capacity(expanded.len() + 16);
        let mut n = 0;
        let mut in_literal = false;
        for c in expanded.chars() {
            match c {
                '\'' => {
                    in_literal = !in_literal;
                    out.push(c);
                }
                '?' if !in_literal => {
                    n += 1;
                    out.push('$');
                    out.push_str(&n.to_string());
                }
                c => out.push(c),
            }
        }
        out
    }
}

/// Tuning of a [`SqlStore`].
#[derive(Debug, Clone)]
pub struct SqlStoreOptions {
    /// Maximum connections in the pool.
    pub pool_size: u32,
    /// How long to wait for a connection (also bounds connecting to PostgreSQL).
    pub connection_timeout: Duration,
    /// SQLite only: how long a writer waits for the database lock.
    pub sqlite_busy_timeout: Duration,
}

impl Default for SqlStoreOptions {
    fn default() -> Self {
        Self {
            pool_size: 10,
            connection_timeout: Duration::from_secs(5),
            sqlite_busy_timeout: Duration::from_secs(5),
        }
    }
}

#[derive(Clone)]
pub(crate) enum Pools {
    Sqlite(Pool<ConnectionManager<SqliteConnection>>),
    Postgres(Pool<ConnectionManager<PgConnection>>),
}

/// Counts statements sent to the database (diesel instrumentation).
#[derive(Debug, Clone)]
struct StatementCounter(Arc<AtomicU64>);

impl Instrumentation for StatementCounter {
    fn on_connection_event(&mut self, event: InstrumentationEvent<'_>) {
        if let InstrumentationEvent::StartQuery { .. } = event {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Prepares each new pooled connection: SQLite pragmas, then statement counting.
#[derive(Debug)]
struct Customizer {
    counter: Arc<AtomicU64>,
    sqlite_busy_timeout_ms: u128,
}

impl CustomizeConnection<SqliteConnection, diesel::r2d2::Error> for Customizer {
    fn on_acquire(&self, conn: &mut SqliteConnection) -> Result<(), diesel::r2d2::Error> {
        conn.batch_execute(&format!(
            // busy_timeout first: switching to WAL needs a lock other processes may hold.
            "PRAGMA busy_timeout = {}; PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON;",
            self.sqlite_busy_timeout_ms
        ))
        .map_err(diesel::r2d2::Error::QueryError)?;
        conn.set_instrumentation(StatementCounter(self.counter.clone()));
        Ok(())
    }
}

impl CustomizeConnection<PgConnection, diesel::r2d2::Error> for Customizer {
    fn on_acquire(&self, conn: &mut PgConnection) -> Result<(), diesel::r2d2::Error> {
        conn.set_instrumentation(StatementCounter(self.counter.clone()));
        Ok(())
    }
}

/// Runs `$body` with `$conn` bound to a pooled connection of the right backend and `$backend`
/// to its [`Backend`]. The body is compiled once per backend, so it can use diesel with either
/// connection type while the statement text stays the same.
macro_rules! with_conn {
    ($pools:expr, |$conn:ident, $backend:ident| $body:expr) => {
        match $pools {
            $crate::db::Pools::Sqlite(pool) => {
                let mut pooled = pool.get().map_err($crate::db::pool_error)?;
                let $conn: &mut diesel::sqlite::SqliteConnection = &mut pooled;
                let $backend = $crate::Backend::Sqlite;
                $body
            }
            $crate::db::Pools::Postgres(pool) => {
                let mut pooled = pool.get().map_err($crate::db::pool_error)?;
                let $conn: &mut diesel::pg::PgConnection = &mut pooled;
                let $backend = $crate::Backend::Postgres;
                $body
            }
        }
    };
}

/// Like [`with_conn!`], inside a write transaction: `BEGIN IMMEDIATE` on SQLite (so the busy
/// timeout applies to taking the write lock), a regular transaction on PostgreSQL.
macro_rules! write_tx {
    ($pools:expr, |$conn:ident, $backend:ident| $body:expr) => {
        match $pools {
            $crate::db::Pools::Sqlite(pool) => {
                let mut pooled = pool.get().map_err($crate::db::pool_error)?;
                let $backend = $crate::Backend::Sqlite;
                let connection: &mut diesel::sqlite::SqliteConnection = &mut pooled;
                connection.immediate_transaction(|$conn| $body)
            }
            $crate::db::Pools::Postgres(pool) => {
                let mut pooled = pool.get().map_err($crate::db::pool_error)?;
                let $backend = $crate::Backend::Postgres;
                let connection: &mut diesel::pg::PgConnection = &mut pooled;
                connection.transaction(|$conn| $body)
            }
        }
    };
}

pub(crate) use {with_conn, write_tx};

/// The SQL store: every store trait of dpf on one pool of SQLite or PostgreSQL connections.
#[derive(Clone)]
pub struct SqlStore {
    pub(crate) pools: Pools,
    backend: Backend,
    statements: Arc<AtomicU64>,
    description: String,
    /// PostgreSQL only: where to open the LISTEN connection.
    postgres_url: Option<String>,
    hints: Arc<std::sync::OnceLock<tokio::sync::watch::Receiver<u64>>>,
}

impl fmt::Debug for SqlStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqlStore")
            .field("store", &self.description)
            .finish_non_exhaustive()
    }
}

impl SqlStore {
    /// Opens the store at `url` and applies pending migrations.
    ///
    /// # Errors
    /// [`dataplane_spi::StoreError::InvalidInput`] for `memory:` or an unusable path,
    /// [`dataplane_spi::StoreError::Unavailable`] when the database cannot be reached.
    pub async fn open(
        url: &StoreUrl,
        options: SqlStoreOptions,
    ) -> dataplane_spi::StoreResult<Self> {
        let url = url.clone();
        tokio::task::spawn_blocking(move || Self::open_blocking(&url, &options))
            .await
            .map_err(|e| dataplane_spi::StoreError::Internal(e.to_string()))?
    }

    fn open_blocking(
        url: &StoreUrl,
        options: &SqlStoreOptions,
    ) -> dataplane_spi::StoreResult<Self> {
        use dataplane_spi::StoreError;
        let statements = Arc::new(AtomicU64::new(0));
        let customizer = Customizer {
            counter: statements.clone(),
            sqlite_busy_timeout_ms: options.sqlite_busy_timeout.as_millis(),
        };
        let description = url.to_string();
        let postgres_url = match url {
            StoreUrl::Postgres(location) => Some(location.clone()),
            _ => None,
        };
        let (pools, backend) = match url {
            StoreUrl::Memory => {
                return Err(StoreError::InvalidInput(
                    "memory: is not a SQL store; use the in-memory stores".into(),
                ))
            }
            StoreUrl::Sqlite(path) => {
                create_parent_dir(path)?;
                // Owner-only before SQLite opens it: its -wal and -shm files get the same mode.
                dataplane_spi::secrets::create_private_file(path).map_err(|e| {
                    StoreError::InvalidInput(format!(
                        "cannot create the SQLite database {}: {e}",
                        path.display()
                    ))
                })?;
                let location = path.to_str().ok_or_else(|| {
                    StoreError::InvalidInput(format!("SQLite path {} is not UTF-8", path.display()))
                })?;
                let pool = Pool::builder()
                    .max_size(options.pool_size.max(1))
                    .connection_timeout(options.connection_timeout)
                    .test_on_check_out(false)
                    .connection_customizer(Box::new(customizer))
                    .build(ConnectionManager::<SqliteConnection>::new(location))
                    .map_err(|e| {
                        StoreError::Unavailable(format!(
                            "cannot open SQLite database {}: {e}",
                            path.display()
                        ))
                    })?;
                (Pools::Sqlite(pool), Backend::Sqlite)
            }
            StoreUrl::Postgres(location) => {
                let pool = Pool::builder()
                    .max_size(options.pool_size.max(1))
                    .min_idle(Some(1))
                    .connection_timeout(options.connection_timeout)
                    .test_on_check_out(false)
                    .connection_customizer(Box::new(customizer))
                    .build(ConnectionManager::<PgConnection>::new(location.clone()))
                    .map_err(|e| {
                        StoreError::Unavailable(format!(
                            "cannot connect to PostgreSQL at {description}: {e}"
                        ))
                    })?;
                (Pools::Postgres(pool), Backend::Postgres)
            }
        };
        let store = Self {
            pools,
            backend,
            statements,
            description,
            postgres_url,
            hints: Arc::new(std::sync::OnceLock::new()),
        };
        store.migrate_blocking()?;
        let rewritten = store
            .hash_legacy_tokens_blocking()
            .map_err(StoreError::from)?;
        if rewritten > 0 {
            tracing::info!(store = %store.description, flows = rewritten, "replaced stored flow tokens by their digests");
        }
        Ok(store)
    }

    /// The backend in use.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// How many statements this store sent to the database so far (all connections).
    /// Lets tests and benchmarks count the cost of an operation.
    pub fn statements_executed(&self) -> u64 {
        self.statements.load(Ordering::Relaxed)
    }

    /// PostgreSQL: a thread holding one connection that `LISTEN`s on [`CHANGE_CHANNEL`] and
    /// bumps the returned receiver for every notification (checked every 10 ms without a
    /// round trip; reconnects with backoff). `None` on SQLite, which is polled.
    pub(crate) fn change_receiver(&self) -> Option<tokio::sync::watch::Receiver<u64>> {
        let url = self.postgres_url.clone()?;
        Some(
            self.hints
                .get_or_init(|| {
                    let (sender, receiver) = tokio::sync::watch::channel(0u64);
                    let spawned = std::thread::Builder::new()
                        .name("dpf-pg-listen".into())
                        .spawn(move || listen_loop(&url, &sender));
                    if let Err(error) = spawned {
                        tracing::warn!(%error, "cannot start the LISTEN thread; polling only");
                    }
                    receiver
                })
                .clone(),
        )
    }

    /// Runs `f` on the blocking pool, never on a runtime worker.
    pub(crate) async fn run<T, F>(&self, f: F) -> Result<T, DbError>
    where
        T: Send + 'static,
        F: FnOnce(&Pools) -> Result<T, DbError> + Send + 'static,
    {
        let pools = self.pools.clone();
        tokio::task::spawn_blocking(move || f(&pools))
            .await
            .map_err(|e| DbError::Join(e.to_string()))?
    }
}

/// The PostgreSQL notification channel for flow changes.
pub const CHANGE_CHANNEL: &str = "dpf_flow_changes";

fn listen_loop(url: &str, sender: &tokio::sync::watch::Sender<u64>) {
    let mut backoff = Duration::from_millis(100);
    // Ends when every receiver is gone (the store was dropped).
    while !sender.is_closed() {
        let connection = PgConnection::establish(url)
            .map_err(|e| e.to_string())
            .and_then(|mut conn| {
                diesel::sql_query(format!("LISTEN {CHANGE_CHANNEL}"))
                    .execute(&mut conn)
                    .map_err(|e| e.to_string())?;
                Ok(conn)
            });
        let mut conn = match connection {
            Ok(conn) => conn,
            Err(error) => {
                tracing::debug!(%error, "LISTEN connection failed; retrying");
                std::thread::sleep(backoff);
                backoff = (backoff * 2).min(Duration::from_secs(5));
                continue;
            }
        };
        backoff = Duration::from_millis(100);
        'poll: while !sender.is_closed() {
            for notification in conn.notifications_iter() {
                if notification.is_err() {
                    break 'poll;
                }
                sender.send_modify(|n| *n = n.wrapping_add(1));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

fn create_parent_dir(path: &Path) -> dataplane_spi::StoreResult<()> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        dataplane_spi::secrets::create_private_dir(parent).map_err(|e| {
            dataplane_spi::StoreError::InvalidInput(format!(
                "cannot create directory {} for the SQLite store: {e}",
                parent.display()
            ))
        })?;
    }
    Ok(())
}

/// Microseconds since the Unix epoch (as stored) to a UTC timestamp.
pub(crate) fn micros(value: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(value).unwrap_or_default()
}

/// Quotes an internal enum name for inlining into SQL. Only `[A-Z_]` names from dpf's own
/// enums reach this function; anything else is rejected rather than escaped.
pub(crate) fn state_list<'a>(names: impl IntoIterator<Item = &'a str>) -> String {
    let quoted: Vec<String> = names
        .into_iter()
        .filter(|n| n.chars().all(|c| c.is_ascii_uppercase() || c == '_'))
        .map(|n| format!("'{n}'"))
        .collect();
    if quoted.is_empty() {
        "NULL".to_owned()
    } else {
        quoted.join(", ")
    }
}

#[cfg(test)]
mod tests;
