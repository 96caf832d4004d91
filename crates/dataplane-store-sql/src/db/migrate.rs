//! Migrations and the one-off rewrites that run when a store opens.

use diesel::connection::SimpleConnection;
use diesel::pg::PgConnection;
use diesel::r2d2::{ConnectionManager, PooledConnection};
use diesel::sqlite::SqliteConnection;
use diesel::RunQueryDsl;
use diesel_migrations::{embed_migrations, EmbeddedMigrations, MigrationHarness};

use super::{pool_error, with_conn, Backend, DbError, Pools, SqlStore};

const SQLITE_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/sqlite");
const POSTGRES_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/postgres");

/// Advisory lock key serialising migrations of replicas starting at once on PostgreSQL.
const MIGRATION_LOCK_KEY: i64 = 0x0064_7066_6d69_6772; // "dpfmigr"
impl SqlStore {
    /// Replaces the raw per-flow tokens that versions before token digests kept in flow
    /// metadata (`"token"`) by their SHA-256 digests (`dataplane_spi::secrets`), so that no
    /// store holds a usable token; the tokens keep working. Runs at every open; a store without
    /// such flows costs one full scan of `metadata LIKE '%"token"%'`. On SQLite the
    /// rewrite runs with `secure_delete` and is followed by a truncating checkpoint, so the old
    /// bytes stay neither in free pages nor in the write-ahead log.
    pub(super) fn hash_legacy_tokens_blocking(&self) -> Result<usize, DbError> {
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

    pub(super) fn migrate_blocking(&self) -> dataplane_spi::StoreResult<Vec<String>> {
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
}
