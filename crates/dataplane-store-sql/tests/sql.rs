//! Behaviour specific to the SQL stores: statement counts, sharing between processes,
//! persistence, and failures of the database.

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use dataplane_spi::{
    DataFlowState, DataFlowStore, FlowKind, MemberRegistration, NewDataFlow, StoreError,
};
use dataplane_store_sql::{SqlStore, SqlStoreOptions, StoreUrl};
use selector_core::{default_registry_builder, DefaultDataPlaneSelector};
use selector_spi::{DataPlaneRegistration, DataPlaneSelector, SelectionRequest, SelectorError};

async fn open(url: &StoreUrl) -> SqlStore {
    SqlStore::open(url, SqlStoreOptions::default())
        .await
        .unwrap()
}

async fn postgres_url() -> StoreUrl {
    let database = tokio::task::spawn_blocking(test_utils::postgres_database)
        .await
        .unwrap();
    StoreUrl::Postgres(database.url().to_owned())
}

fn sqlite_url(dir: &tempfile::TempDir) -> StoreUrl {
    StoreUrl::Sqlite(dir.path().join("nested/dir/dpf.db"))
}

/// Renewing a replica's lease costs one statement touching one row, with 0 or 1 000 owned
/// flows alike.
async fn renewal_is_one_statement(store: SqlStore) {
    let member = MemberRegistration {
        runtime_id: "replica-a".into(),
        incarnation: "i1".into(),
        lease_ms: 60_000,
        state: "HEALTHY".into(),
    };
    store.register_member(&member).await.unwrap();
    let mut costs = Vec::new();
    let mut created = 0;
    for owned in [0usize, 1000] {
        for i in created..owned {
            let mut flow = NewDataFlow::new(
                format!("f{i}"),
                format!("p{i}"),
                FlowKind::ProviderPush,
                DataFlowState::Started,
            );
            flow.runtime_id = Some("replica-a".into());
            store.create(&flow).await.unwrap();
        }
        created = owned;
        let before = store.statements_executed();
        let renewed = store.renew_member("replica-a", "i1", 60_000).await.unwrap();
        costs.push(store.statements_executed() - before);
        assert_eq!(renewed.runtime_id, "replica-a");
    }
    assert_eq!(
        costs,
        vec![1, 1],
        "statements per renewal with 0 and 1000 owned flows"
    );
    let owned = store.list(&[DataFlowState::Started], 2000).await.unwrap();
    assert_eq!(owned.len(), 1000);
    // The renewal touched no flow row: their updated_at is unchanged since creation.
    assert!(owned.iter().all(|f| f.updated_at == f.created_at));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renewal_is_one_statement_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    renewal_is_one_statement(open(&sqlite_url(&dir)).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renewal_is_one_statement_on_postgres() {
    renewal_is_one_statement(open(&postgres_url().await).await).await;
}

fn selector_on(store: SqlStore) -> DefaultDataPlaneSelector {
    DefaultDataPlaneSelector::new(Arc::new(store), default_registry_builder().build().unwrap())
}

/// Two selectors with their own pools on one database (as two processes would be) continue
/// one round-robin rotation: 300 alternating selections over 3 instances give 100 each.
async fn two_selectors_share_round_robin(url: StoreUrl) {
    let first = selector_on(open(&url).await);
    let second = selector_on(open(&url).await);
    for id in ["dp-1", "dp-2", "dp-3"] {
        let mut reg =
            DataPlaneRegistration::new(id, format!("http://{id}:8080/"), vec!["push".into()]);
        reg.authorization = Some(DataPlaneRegistration::no_authorization());
        first.register(&reg).await.unwrap();
    }
    let request = SelectionRequest::for_profile("push").with_strategy("round-robin");
    let mut counts: BTreeMap<String, u32> = BTreeMap::new();
    for i in 0..300 {
        let selector = if i % 2 == 0 { &first } else { &second };
        let chosen = selector.select(&request).await.unwrap();
        *counts.entry(chosen.id.to_string()).or_default() += 1;
    }
    assert_eq!(
        counts.values().copied().collect::<Vec<_>>(),
        vec![100, 100, 100],
        "{counts:?}"
    );
    let turns: Vec<u64> = second
        .list()
        .await
        .unwrap()
        .iter()
        .map(|i| i.turn_count)
        .collect();
    assert_eq!(turns, vec![100, 100, 100]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_selectors_share_round_robin_on_postgres() {
    two_selectors_share_round_robin(postgres_url().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_selectors_share_round_robin_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    two_selectors_share_round_robin(sqlite_url(&dir)).await;
}

#[tokio::test]
async fn sqlite_data_survives_reopening_and_migrations_are_idempotent() {
    let dir = tempfile::tempdir().unwrap();
    let url = sqlite_url(&dir);
    {
        let selector = selector_on(open(&url).await);
        let mut reg = DataPlaneRegistration::new("kept", "http://kept:1/", vec![]);
        reg.authorization = Some(DataPlaneRegistration::no_authorization());
        selector.register(&reg).await.unwrap();
    }
    let store = open(&url).await;
    assert!(
        store.migrate().await.unwrap().is_empty(),
        "nothing left to migrate"
    );
    let selector = selector_on(store);
    assert_eq!(
        selector.get("kept").await.unwrap().endpoint,
        "http://kept:1/"
    );
}

#[tokio::test]
async fn unreachable_postgres_is_a_retryable_error() {
    let port = test_utils::free_port();
    let url = StoreUrl::Postgres(format!("postgres://postgres@127.0.0.1:{port}/nothing"));
    let options = SqlStoreOptions {
        connection_timeout: Duration::from_secs(1),
        ..SqlStoreOptions::default()
    };
    let error = SqlStore::open(&url, options).await.unwrap_err();
    assert!(matches!(error, StoreError::Unavailable(_)), "{error:?}");
    assert!(error.is_retryable());
    assert!(
        error.to_string().contains(&format!("127.0.0.1:{port}")),
        "{error}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_that_goes_away_yields_retryable_errors() {
    use diesel::{Connection, RunQueryDsl};

    let database = tokio::task::spawn_blocking(test_utils::postgres_database)
        .await
        .unwrap();
    let url = StoreUrl::Postgres(database.url().to_owned());
    let options = SqlStoreOptions {
        connection_timeout: Duration::from_secs(1),
        ..SqlStoreOptions::default()
    };
    let store = SqlStore::open(&url, options).await.unwrap();
    store.now().await.unwrap();
    // Drop the database under the open pool, closing its connections.
    let maintenance = database.url().rsplit_once('/').unwrap().0.to_owned() + "/postgres";
    let name = database.name().to_owned();
    tokio::task::spawn_blocking(move || {
        let mut conn = diesel::pg::PgConnection::establish(&maintenance).unwrap();
        diesel::sql_query(format!("DROP DATABASE \"{name}\" WITH (FORCE)"))
            .execute(&mut conn)
            .unwrap();
    })
    .await
    .unwrap();
    for _ in 0..3 {
        let error = store.list(&[], 10).await.unwrap_err();
        assert!(error.is_retryable(), "{error:?}");
    }
    let error = DataPlaneSelector::list(&selector_on(store))
        .await
        .unwrap_err();
    assert!(error.is_retryable(), "{error:?}");
}

#[tokio::test]
async fn unusable_sqlite_path_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let blocker = dir.path().join("file");
    std::fs::write(&blocker, b"not a directory").unwrap();
    let url = StoreUrl::Sqlite(blocker.join("dpf.db"));
    let error = SqlStore::open(&url, SqlStoreOptions::default())
        .await
        .unwrap_err();
    assert!(matches!(error, StoreError::InvalidInput(_)), "{error:?}");
}

#[tokio::test]
async fn selector_errors_keep_their_kind_on_sql() {
    let dir = tempfile::tempdir().unwrap();
    let selector = selector_on(open(&sqlite_url(&dir)).await);
    let mut reg = DataPlaneRegistration::new("a", "http://a:1/", vec![]);
    reg.authorization = Some(DataPlaneRegistration::no_authorization());
    selector.add(&reg).await.unwrap();
    assert_eq!(
        selector.add(&reg).await.unwrap_err(),
        SelectorError::AlreadyExists { id: "a".into() }
    );
    assert_eq!(
        selector.remove("b").await.unwrap_err(),
        SelectorError::NotFound { id: "b".into() }
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_change_hints_reach_other_processes() {
    let url = postgres_url().await;
    let listener = open(&url).await;
    let sender = open(&url).await;
    let mut hints = listener.change_hints().expect("PostgreSQL stores listen");
    let before = *hints.borrow_and_update();
    // The LISTEN connection comes up asynchronously: notify until one arrives.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        sender.notify_change("flow-1").await.unwrap();
        if tokio::time::timeout(Duration::from_millis(200), hints.changed())
            .await
            .is_ok()
        {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "no hint arrived");
    }
    assert_ne!(*hints.borrow(), before);
    let dir = tempfile::tempdir().unwrap();
    assert!(
        open(&sqlite_url(&dir)).await.change_hints().is_none(),
        "SQLite is polled"
    );
}

/// 10 000 compare-and-set increments of one counter by 4 concurrent writers on PostgreSQL: no
/// update is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ten_thousand_cas_increments_lose_nothing_on_postgres() {
    const WRITERS: usize = 4;
    const EACH: usize = 2500;
    let store = Arc::new(open(&postgres_url().await).await);
    let began = std::time::Instant::now();
    let conflicts = dataplane_spi::conformance::kv::cas_increments(store, WRITERS, EACH).await;
    println!(
        "{} puts, {conflicts} refused by compare-and-set, in {:?}",
        WRITERS * EACH,
        began.elapsed()
    );
}

/// A flow written by a version that kept its raw token in the metadata (`"token"`): opening the
/// store replaces it by the digest, the token still matches, and the raw value is gone.
async fn legacy_raw_tokens_become_digests(url: StoreUrl) {
    use dataplane_spi::secrets::{token_digest, token_matches, TOKEN_DIGEST_KEY};
    let raw = "legacy-raw-token-0123456789abcdef";
    {
        let store = open(&url).await;
        let mut flow = NewDataFlow::new(
            "legacy-1",
            "legacy-p1",
            FlowKind::ProviderPull,
            DataFlowState::Started,
        );
        flow.metadata = serde_json::json!({"token": raw, "datasetId": "d"});
        store.create(&flow).await.unwrap();
    }
    let store = open(&url).await;
    let flow = store.find("legacy-1").await.unwrap().unwrap();
    assert!(flow.metadata.get("token").is_none(), "{}", flow.metadata);
    assert_eq!(flow.metadata["datasetId"], "d");
    let digest = flow.metadata[TOKEN_DIGEST_KEY].as_str().unwrap();
    assert_eq!(digest, token_digest(raw));
    assert!(token_matches(digest, raw));
    // Idempotent: a second open changes nothing.
    drop(store);
    let again = open(&url).await.find("legacy-1").await.unwrap().unwrap();
    assert_eq!(again.metadata, flow.metadata);
}

#[tokio::test]
async fn legacy_raw_tokens_become_digests_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let url = sqlite_url(&dir);
    legacy_raw_tokens_become_digests(url.clone()).await;
    // Nothing of the raw token is left in the database's files.
    let db = dir.path().join("nested/dir");
    for entry in std::fs::read_dir(&db).unwrap() {
        // The -wal and -shm files vanish when the last pooled connection closes.
        let Ok(bytes) = std::fs::read(entry.unwrap().path()) else {
            continue;
        };
        assert!(!bytes.windows(16).any(|w| w == b"legacy-raw-token"));
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&db), 0o700);
        assert_eq!(mode(&db.join("dpf.db")), 0o600);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn legacy_raw_tokens_become_digests_on_postgres() {
    legacy_raw_tokens_become_digests(postgres_url().await).await;
}
