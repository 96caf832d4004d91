//! The behaviour every [`DataPlaneInstanceStore`] must have, as one suite run against each
//! implementation (memory here; SQLite and PostgreSQL in `dataplane-store-sql`).
//!
//! Use [`instance_store_conformance!`](crate::instance_store_conformance) in a test module with
//! an async expression that yields a fresh, empty `Arc<dyn DataPlaneInstanceStore>`.

use std::collections::BTreeSet;
use std::sync::Arc;

use selector_spi::{
    AuthorizationEntry, DataPlaneInstanceStore, DataPlaneRegistration, InstanceState, SelectorError,
};

fn registration(id: &str) -> DataPlaneRegistration {
    DataPlaneRegistration::new(
        id,
        format!("http://{id}.example:8080/api/v1/signaling"),
        vec!["http-push".into()],
    )
}

/// Create, find, duplicate create.
pub async fn create_find_and_duplicate(store: Arc<dyn DataPlaneInstanceStore>) {
    let created = store.create(&registration("a")).await.unwrap();
    assert_eq!(created.turn_count, 0);
    assert_eq!(created.last_active, None);
    assert_eq!(created.state, InstanceState::Registered);
    let found = store
        .find("a")
        .await
        .unwrap()
        .expect("created instance is found");
    assert_eq!(found, created);
    assert!(store.find("missing").await.unwrap().is_none());
    let error = store.create(&registration("a")).await.unwrap_err();
    assert_eq!(error, SelectorError::AlreadyExists { id: "a".into() });
}

/// Every field survives a round trip through the store.
pub async fn round_trips_every_field(store: Arc<dyn DataPlaneInstanceStore>) {
    let mut reg = registration("full")
        .with_labels(["eu", "gpu"])
        .with_source_types(["HttpData", "File"]);
    reg.properties.insert(
        "region".into(),
        serde_json::json!({"name": "eu-west", "zone": 2}),
    );
    reg.authorization = Some(AuthorizationEntry {
        kind: Some("oauth2_client_credentials".into()),
        token_endpoint: Some("https://auth.example/token".into()),
        client_id: Some("cid".into()),
        client_secret: Some("secret".into()),
        extra: [("scope".to_owned(), serde_json::json!("read"))].into(),
    });
    reg.state = Some(InstanceState::Available);
    let created = store.create(&reg).await.unwrap();
    let found = store.find("full").await.unwrap().unwrap();
    assert_eq!(found, created);
    assert_eq!(
        found.labels,
        BTreeSet::from(["eu".to_owned(), "gpu".to_owned()])
    );
    assert_eq!(found.allowed_source_types, vec!["HttpData", "File"]);
    assert_eq!(found.properties, reg.properties);
    assert_eq!(found.authorization, reg.authorization);
    assert_eq!(found.state, InstanceState::Available);
}

/// Upsert creates, then replaces the definition but keeps statistics and creation time.
pub async fn upsert_replaces_definition_keeps_statistics(store: Arc<dyn DataPlaneInstanceStore>) {
    let (first, created) = store.upsert(&registration("u")).await.unwrap();
    assert!(created);
    store.record_selection("u").await.unwrap();
    let replacement =
        DataPlaneRegistration::new("u", "http://other:9/x", vec!["p2".into()]).with_labels(["l"]);
    let (second, created) = store.upsert(&replacement).await.unwrap();
    assert!(!created);
    assert_eq!(second.endpoint, "http://other:9/x");
    assert_eq!(second.profiles, vec!["p2"]);
    assert_eq!(second.turn_count, 1);
    assert!(second.last_active.is_some());
    assert_eq!(second.created_at, first.created_at);
    assert!(second.updated_at >= first.updated_at);
    assert_eq!(store.list().await.unwrap().len(), 1);
}

/// List is sorted by id; delete removes; deleting twice is `NotFound`.
pub async fn list_sorted_and_delete(store: Arc<dyn DataPlaneInstanceStore>) {
    for id in ["c", "a", "b"] {
        store.create(&registration(id)).await.unwrap();
    }
    let ids: Vec<String> = store
        .list()
        .await
        .unwrap()
        .into_iter()
        .map(|i| i.id.to_string())
        .collect();
    assert_eq!(ids, vec!["a", "b", "c"]);
    store.delete("b").await.unwrap();
    assert!(store.find("b").await.unwrap().is_none());
    assert_eq!(
        store.delete("b").await.unwrap_err(),
        SelectorError::NotFound { id: "b".into() }
    );
    assert_eq!(store.list().await.unwrap().len(), 2);
}

/// Selections count turns and move `lastActive` forward; unknown ids are `NotFound`.
pub async fn record_selection_counts_turns(store: Arc<dyn DataPlaneInstanceStore>) {
    store.create(&registration("s")).await.unwrap();
    let first = store.record_selection("s").await.unwrap();
    let second = store.record_selection("s").await.unwrap();
    assert_eq!(first.turn_count, 1);
    assert_eq!(second.turn_count, 2);
    assert!(second.last_active >= first.last_active && first.last_active.is_some());
    assert!(matches!(
        store.record_selection("nope").await,
        Err(SelectorError::NotFound { .. })
    ));
}

/// State changes persist; unknown ids are `NotFound`.
pub async fn set_state_persists(store: Arc<dyn DataPlaneInstanceStore>) {
    store.create(&registration("st")).await.unwrap();
    let changed = store
        .set_state("st", InstanceState::Unavailable)
        .await
        .unwrap();
    assert_eq!(changed.state, InstanceState::Unavailable);
    assert_eq!(
        store.find("st").await.unwrap().unwrap().state,
        InstanceState::Unavailable
    );
    assert!(matches!(
        store.set_state("nope", InstanceState::Available).await,
        Err(SelectorError::NotFound { .. })
    ));
}

/// Sequences start at 0, advance by one, are independent by name, and hand out every value
/// exactly once under concurrency.
pub async fn sequences_are_atomic(store: Arc<dyn DataPlaneInstanceStore>) {
    assert_eq!(store.next_sequence("x").await.unwrap(), 0);
    assert_eq!(store.next_sequence("x").await.unwrap(), 1);
    assert_eq!(store.next_sequence("y").await.unwrap(), 0);
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let mut values = Vec::new();
            for _ in 0..25 {
                values.push(store.next_sequence("z").await.unwrap());
            }
            values
        }));
    }
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await.unwrap());
    }
    all.sort_unstable();
    assert_eq!(all, (0..100).collect::<Vec<u64>>());
}

/// A registration with `ttlSeconds` that is not renewed reads as UNAVAILABLE once the TTL
/// passed, and as before after a renewal (a registration again); the TTL round-trips.
pub async fn ttl_expires_until_renewed(store: Arc<dyn DataPlaneInstanceStore>) {
    let mut registration = registration("ttl");
    registration.ttl_seconds = Some(1);
    let (created, _) = store.upsert(&registration).await.unwrap();
    assert_eq!(created.ttl_seconds, Some(1));
    assert_eq!(created.state, InstanceState::Registered);
    tokio::time::sleep(std::time::Duration::from_millis(1_200)).await;
    let expired = store.find("ttl").await.unwrap().unwrap();
    assert_eq!(expired.state, InstanceState::Unavailable);
    let listed = store.list().await.unwrap();
    assert_eq!(listed[0].state, InstanceState::Unavailable);
    let (renewed, created) = store.upsert(&registration).await.unwrap();
    assert!(!created);
    assert_eq!(renewed.state, InstanceState::Registered);
    assert_eq!(
        store.find("ttl").await.unwrap().unwrap().state,
        InstanceState::Registered
    );
}

/// The load a registration carries is stored with the instance, shown aged from the
/// registration, stale once older than its `ttlSeconds`, replaced by a renewal and dropped by a
/// registration without one.
pub async fn registered_load_is_kept_and_aged(store: Arc<dyn DataPlaneInstanceStore>) {
    let mut registration = registration("loaded");
    registration.ttl_seconds = Some(1);
    registration.load = Some(selector_spi::RegisteredLoad {
        running: 2,
        capacity: 2,
        bytes_per_second: 7,
    });
    let (created, _) = store.upsert(&registration).await.unwrap();
    let load = created.load.expect("the registered load is shown");
    assert_eq!(
        (load.running, load.capacity, load.bytes_per_second),
        (2, 2, 7)
    );
    assert!(!load.stale && load.at_capacity, "{load:?}");
    tokio::time::sleep(std::time::Duration::from_millis(1_200)).await;
    let aged = store.find("loaded").await.unwrap().unwrap().load.unwrap();
    assert_eq!(aged.reported_at, load.reported_at);
    assert!(
        aged.age_ms >= 1_000 && aged.stale && !aged.at_capacity,
        "{aged:?}"
    );
    registration.load = Some(selector_spi::RegisteredLoad::default());
    let (renewed, _) = store.upsert(&registration).await.unwrap();
    let fresh = renewed.load.unwrap();
    assert!(
        fresh.reported_at > load.reported_at && !fresh.stale,
        "{fresh:?}"
    );
    assert_eq!(
        store.list().await.unwrap()[0]
            .load
            .as_ref()
            .unwrap()
            .running,
        0
    );
    registration.load = None;
    let (plain, _) = store.upsert(&registration).await.unwrap();
    assert_eq!(plain.load, None);
    assert_eq!(store.find("loaded").await.unwrap().unwrap().load, None);
}

/// Generates one `#[tokio::test]` per conformance case. `$factory` is an async expression
/// evaluating to a fresh, empty `Arc<dyn DataPlaneInstanceStore>`.
#[macro_export]
macro_rules! instance_store_conformance {
    ($factory:expr) => {
        $crate::instance_store_conformance!(@cases $factory;
            create_find_and_duplicate,
            round_trips_every_field,
            upsert_replaces_definition_keeps_statistics,
            list_sorted_and_delete,
            record_selection_counts_turns,
            set_state_persists,
            sequences_are_atomic,
            ttl_expires_until_renewed,
            registered_load_is_kept_and_aged,
        );
    };
    (@cases $factory:expr; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let store = $factory.await;
                $crate::conformance::$case(store).await;
            }
        )*
    };
}
