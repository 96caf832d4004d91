//! SQL stores of dpf, on diesel 2 + r2d2: one schema with embedded migrations per backend,
//! SQLite (bundled libsqlite3; the embedded default) and PostgreSQL (libpq; clusters).
//!
//! [`SqlStore`] implements every store trait of the workspace:
//! [`selector_spi::DataPlaneInstanceStore`] and [`dataplane_spi::DataFlowStore`].
//!
//! Design rules, kept by every statement here:
//! - **one code path** for both backends: each statement is written once, with `?`
//!   placeholders and a few dialect tokens (`{now}`, `{skip_locked}`, `{for_update}`) that
//!   [`Backend::sql`] expands;
//! - **the database clock**: every timestamp is computed by the database (microseconds since the
//!   Unix epoch in `BIGINT` columns), never by a replica;
//! - **off the async runtime**: every diesel call runs in `tokio::task::spawn_blocking`;
//! - **single conditional statements** for claims, takeovers, renewals and fenced writes,
//!   decided by the rows they touch (`FOR UPDATE SKIP LOCKED` on PostgreSQL; SQLite serialises
//!   writers, and writes there run in `BEGIN IMMEDIATE` transactions so the busy timeout
//!   applies instead of failing on a lock upgrade);
//! - **typed errors**: unique violations become `AlreadyExists`, connection failures and lock
//!   timeouts become the retryable `Unavailable`.

mod coordination;
mod db;
mod flows;
mod instances;
mod member_loads;
mod url;

pub use db::{Backend, SqlStore, SqlStoreOptions};
pub use url::{StoreUrl, DEFAULT_STORE_URL};
