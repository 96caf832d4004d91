//! The store conformance suites of the workspace, run on SQLite and on PostgreSQL (a
//! throwaway server from `test-utils`, or `TEST_DATABASE_URL`; never skipped).

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use dataplane_store_sql::{SqlStore, SqlStoreOptions, StoreUrl};

/// A fresh SQLite file per call, in one temporary directory per test binary.
fn sqlite_url() -> StoreUrl {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let dir = DIR.get_or_init(|| tempfile::tempdir().unwrap());
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    StoreUrl::Sqlite(PathBuf::from(dir.path()).join(format!("store-{n}.db")))
}

async fn sqlite_store() -> SqlStore {
    SqlStore::open(&sqlite_url(), SqlStoreOptions::default())
        .await
        .unwrap()
}

async fn postgres_store() -> SqlStore {
    let database = tokio::task::spawn_blocking(test_utils::postgres_database)
        .await
        .unwrap();
    let url = StoreUrl::Postgres(database.url().to_owned());
    SqlStore::open(&url, SqlStoreOptions::default())
        .await
        .unwrap()
}

mod sqlite_instances {
    use super::*;
    async fn fresh() -> Arc<dyn selector_spi::DataPlaneInstanceStore> {
        Arc::new(sqlite_store().await)
    }
    selector_core::instance_store_conformance!(fresh());
}

mod postgres_instances {
    use super::*;
    async fn fresh() -> Arc<dyn selector_spi::DataPlaneInstanceStore> {
        Arc::new(postgres_store().await)
    }
    selector_core::instance_store_conformance!(fresh());
}

mod sqlite_flows {
    use super::*;
    async fn fresh() -> Arc<dyn dataplane_spi::DataFlowStore> {
        Arc::new(sqlite_store().await)
    }
    dataplane_spi::data_flow_store_conformance!(fresh());
}

mod postgres_flows {
    use super::*;
    async fn fresh() -> Arc<dyn dataplane_spi::DataFlowStore> {
        Arc::new(postgres_store().await)
    }
    dataplane_spi::data_flow_store_conformance!(fresh());
}

mod sqlite_coordinator {
    use super::*;
    async fn fresh() -> Arc<SqlStore> {
        Arc::new(sqlite_store().await)
    }
    dataplane_spi::coordinator_conformance!(fresh());
}

mod postgres_coordinator {
    use super::*;
    async fn fresh() -> Arc<SqlStore> {
        Arc::new(postgres_store().await)
    }
    dataplane_spi::coordinator_conformance!(fresh());
}
