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
use diesel::r2d2::{ConnectionManager, CustomizeConnection, Pool, PooledConnection};
use diesel::result::{DatabaseErrorKind, Error as DieselError};
use diesel::sqlite::SqliteConnection;
use diesel::{Connection, RunQueryDsl};
use diesel_migrations::{embed_migrations, EmbeddedMigrations, MigrationHarness};

use crate::StoreUrl;

const SQLITE_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/sqlite");
const POSTGRES_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/postgres");

/// Advisory lock key serialising migrations of replicas starting at once on PostgreSQL.
const MIGRATION_LOCK_KEY: i64 = 0x0064_7066_6d69_6772; // "dpfmigr"

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

/// Failures inside this crate, converted to each SPI's error type at the edge.
#[derive(Debug)]
pub(crate) enum DbError {
    Diesel(DieselError),
    Pool(String),
    Join(String),
    Store(dataplane_spi::StoreError),
    Selector(selector_spi::SelectorError),
    Coordination(dataplane_spi::CoordinationError),
}

impl From<dataplane_spi::CoordinationError> for DbError {
    fn from(error: dataplane_spi::CoordinationError) -> Self {
        Self::Coordination(error)
    }
}

impl From<DbError> for dataplane_spi::CoordinationError {
    fn from(error: DbError) -> Self {
        use dataplane_spi::CoordinationError;
        if let DbError::Coordination(error) = error {
            return error;
        }
        match error.kind() {
            Kind::UniqueViolation(detail) => CoordinationError::Conflict {
                key: String::new(),
                expected: "no concurrent writer".into(),
                actual: detail,
            },
            Kind::NotFound => CoordinationError::Internal("unexpected missing row".into()),
            Kind::Unavailable(message) => CoordinationError::Unavailable(message),
            Kind::Internal(message) => CoordinationError::Internal(message),
        }
    }
}

impl From<DieselError> for DbError {
    fn from(error: DieselError) -> Self {
        Self::Diesel(error)
    }
}

impl From<dataplane_spi::StoreError> for DbError {
    fn from(error: dataplane_spi::StoreError) -> Self {
        Self::Store(error)
    }
}

impl From<selector_spi::SelectorError> for DbError {
    fn from(error: selector_spi::SelectorError) -> Self {
        Self::Selector(error)
    }
}

/// What kind of failure a backend error is, independent of the SPI.
pub(crate) enum Kind {
    UniqueViolation(String),
    NotFound,
    Unavailable(String),
    Internal(String),
}

impl DbError {
    pub(crate) fn kind(&self) -> Kind {
        match self {
            Self::Diesel(DieselError::DatabaseError(DatabaseErrorKind::UniqueViolation, info)) => {
                Kind::UniqueViolation(format!(
                    "{} {}",
                    info.message(),
                    info.constraint_name().unwrap_or_default()
                ))
            }
            Self::Diesel(DieselError::NotFound) => Kind::NotFound,
            Self::Diesel(DieselError::DatabaseError(
                DatabaseErrorKind::ClosedConnection | DatabaseErrorKind::SerializationFailure,
                info,
            )) => Kind::Unavailable(info.message().to_owned()),
            Self::Diesel(DieselError::DatabaseError(_, info))
                if is_transient_message(info.message()) =>
            {
                Kind::Unavailable(info.message().to_owned())
            }
            Self::Diesel(error) => Kind::Internal(error.to_string()),
            Self::Pool(message) => Kind::Unavailable(message.clone()),
            Self::Join(message) => Kind::Internal(message.clone()),
            Self::Store(error) => Kind::Internal(error.to_string()),
            Self::Selector(error) => Kind::Internal(error.to_string()),
            Self::Coordination(error) => Kind::Internal(error.to_string()),
        }
    }
}

fn is_transient_message(message: &str) -> bool {
    let message = message.to_ascii_lowercase();
    [
        "database is locked",
        "busy",
        "connection",
        "terminating",
        "shutdown",
        "timeout",
    ]
    .iter()
    .any(|m| message.contains(m))
}

impl From<DbError> for dataplane_spi::StoreError {
    fn from(error: DbError) -> Self {
        use dataplane_spi::StoreError;
        if let DbError::Store(error) = error {
            return error;
        }
        match error.kind() {
            Kind::UniqueViolation(detail) => StoreError::AlreadyExists {
                entity: "row",
                id: detail,
            },
            Kind::NotFound => StoreError::NotFound {
                entity: "row",
                id: String::new(),
            },
            Kind::Unavailable(message) => StoreError::Unavailable(message),
            Kind::Internal(message) => StoreError::Internal(message),
        }
    }
}

impl From<DbError> for selector_spi::SelectorError {
    fn from(error: DbError) -> Self {
        use selector_spi::SelectorError;
        if let DbError::Selector(error) = error {
            return error;
        }
        match error.kind() {
            Kind::UniqueViolation(detail) => {
                SelectorError::Internal(format!("unexpected duplicate: {detail}"))
            }
            Kind::NotFound => SelectorError::Internal("unexpected missing row".into()),
            Kind::Unavailable(message) => SelectorError::Unavailable(message),
            Kind::Internal(message) => SelectorError::Internal(message),
        }
    }
}

pub(crate) fn pool_error(error: impl fmt::Display) -> DbError {
    DbError::Pool(format!("cannot get a database connection: {error}"))
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

    /// Replaces the raw per-flow tokens that versions before token digests kept in flow
    /// metadata (`"token"`) by their SHA-256 digests (`dataplane_spi::secrets`), so that no
    /// store holds a usable token; the tokens keep working. Runs at every open; a store without
    /// such flows costs one full scan of `metadata LIKE '%"token"%'`. On SQLite the
    /// rewrite runs with `secure_delete` and is followed by a truncating checkpoint, so the old
    /// bytes stay neither in free pages nor in the write-ahead log.
    fn hash_legacy_tokens_blocking(&self) -> Result<usize, DbError> {
        use diesel::sql_types::Text;
        #[derive(diesel::QueryableByName)]
        struct Row {
            #[diesel(sql_type = Text)]
            id: String,
            #[diesel(sql_type = Text)]
            metadata: String,
        }
        with_conn!(&self.pools, |conn, backend| {
            let rows: Vec<Row> = diesel::sql_query(
                backend.sql("SELECT id, metadata FROM data_flows WHERE metadata LIKE ?"),
            )
            .bind::<Text, _>("%\"token\"%")
            .load(conn)?;
            let mut rewritten = 0;
            for row in rows {
                let Ok(mut metadata) = serde_json::from_str::<serde_json::Value>(&row.metadata)
                else {
                    continue;
                };
                if !dataplane_spi::secrets::hash_legacy_token(&mut metadata) {
                    continue;
                }
                if backend == Backend::Sqlite && rewritten == 0 {
                    diesel::sql_query("PRAGMA secure_delete = ON").execute(conn)?;
                }
                rewritten += diesel::sql_query(
                    backend.sql("UPDATE data_flows SET metadata = ? WHERE id = ? AND metadata = ?"),
                )
                .bind::<Text, _>(metadata.to_string())
                .bind::<Text, _>(&row.id)
                .bind::<Text, _>(&row.metadata)
                .execute(conn)?;
            }
            if backend == Backend::Sqlite && rewritten > 0 {
                // The old pages may still be frames of the write-ahead log: move everything
                // into the database (overwritten there, secure_delete) and empty the log.
                // Best effort: another process reading at this moment keeps its frames.
                conn.batch_execute("PRAGMA wal_checkpoint(TRUNCATE)")?;
            }
            Ok(rewritten)
        })
    }

    fn migrate_blocking(&self) -> dataplane_spi::StoreResult<Vec<String>> {
        use dataplane_spi::StoreError;
        let applied: Result<Vec<String>, DbError> = match &self.pools {
            Pools::Sqlite(pool) => {
                let mut pooled = pool.get().map_err(pool_error)?;
                let conn: &mut SqliteConnection = &mut pooled;
                // One process migrates at a time (several replicas may share the file): the
                // write lock is taken first, so a latecomer waits and then finds nothing to do.
                conn.immediate_transaction(|conn| {
                    conn.run_pending_migrations(SQLITE_MIGRATIONS)
                        .map(|v| v.iter().map(ToString::to_string).collect())
                        .map_err(|e| DbError::Pool(format!("SQLite migration failed: {e}")))
                })
            }
            Pools::Postgres(pool) => {
                let mut conn: PooledConnection<ConnectionManager<PgConnection>> =
                    pool.get().map_err(pool_error)?;
                diesel::sql_query(format!("SELECT pg_advisory_lock({MIGRATION_LOCK_KEY})"))
                    .execute(&mut conn)
                    .map_err(DbError::from)?;
                let result = conn
                    .run_pending_migrations(POSTGRES_MIGRATIONS)
                    .map(|v| v.iter().map(ToString::to_string).collect())
                    .map_err(|e| DbError::Pool(format!("PostgreSQL migration failed: {e}")));
                diesel::sql_query(format!("SELECT pg_advisory_unlock({MIGRATION_LOCK_KEY})"))
                    .execute(&mut conn)
                    .map_err(DbError::from)?;
                result
            }
        };
        let applied = applied.map_err(StoreError::from)?;
        if !applied.is_empty() {
            tracing::info!(store = %self.description, migrations = ?applied, "applied migrations");
        }
        Ok(applied)
    }

    /// Applies pending migrations (also done by [`SqlStore::open`]); returns their versions.
    ///
    /// # Errors
    /// When a migration fails or the database is unreachable.
    pub async fn migrate(&self) -> dataplane_spi::StoreResult<Vec<String>> {
        let store = self.clone();
        tokio::task::spawn_blocking(move || store.migrate_blocking())
            .await
            .map_err(|e| dataplane_spi::StoreError::Internal(e.to_string()))?
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
mod tests {
    use super::Backend;

    #[test]
    fn expands_placeholders_and_tokens_per_backend() {
        let template = "UPDATE t SET a = ?, b = {now} WHERE c = '?' AND d = ? {skip_locked}";
        assert_eq!(
            Backend::Postgres.sql(template),
            "UPDATE t SET a = $1, b = CAST(EXTRACT(EPOCH FROM now()) * 1000000 AS BIGINT) WHERE c = '?' AND d = $2 FOR UPDATE SKIP LOCKED"
        );
        assert_eq!(
            Backend::Sqlite.sql(template),
            "UPDATE t SET a = ?, b = CAST(unixepoch('subsec') * 1000000 AS INTEGER) WHERE c = '?' AND d = ? "
        );
    }
}
