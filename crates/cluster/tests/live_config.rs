//! Live configuration over `MemoryStore`, on paused tokio time.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use cluster::live_config::{
    validate_setting, ConfigWatcher, LiveDefaults, LiveSettings, BATCH_SIZE, CHECKPOINT_BYTES,
    CHECKPOINT_INTERVAL, MAX_CONCURRENT_FLOWS, SELECTOR_STRATEGY, SETTINGS,
};
use cluster::ClusterError;
use dataplane_spi::{Coordinator, DataFlowStore, Expected, MemberRegistration, Session};
use dataplane_store_memory::MemoryStore;
use tokio::sync::watch;
use tokio::time::sleep;

const INTERVAL: Duration = Duration::from_secs(1);

async fn join(store: &MemoryStore, name: &str) -> Session {
    store
        .register_member(&MemberRegistration {
            runtime_id: name.into(),
            incarnation: format!("{name}-1"),
            lease_ms: 3_600_000,
            state: "HEALTHY".into(),
        })
        .await
        .unwrap();
    Session {
        runtime_id: name.into(),
        incarnation: format!("{name}-1"),
    }
}

fn defaults() -> LiveDefaults {
    LiveDefaults {
        max_concurrent_flows: 0,
        checkpoint_bytes: 1024,
        checkpoint_interval: Duration::from_millis(5000),
        batch_size: 20,
    }
}

async fn put(store: &MemoryStore, key: &str, value: &str) -> i64 {
    store
        .kv_put(key, value, Expected::Any, None)
        .await
        .unwrap()
        .mod_revision
}

#[test]
fn validate_setting_refuses_bad_values_and_unknown_keys() {
    for (key, value) in [
        (MAX_CONCURRENT_FLOWS, "0"),
        (CHECKPOINT_BYTES, " 42 "),
        (CHECKPOINT_INTERVAL, "1"),
        (BATCH_SIZE, "1000"),
        (SELECTOR_STRATEGY, "round-robin"),
    ] {
        assert_eq!(validate_setting(key, value), Ok(()), "{key}={value}");
    }
    let refused = |key: &str, value: &str| match validate_setting(key, value) {
        Err(ClusterError::InvalidInput(message)) => message,
        other => panic!("{key}={value}: {other:?}"),
    };
    assert_eq!(
        refused(MAX_CONCURRENT_FLOWS, "-1"),
        format!("{MAX_CONCURRENT_FLOWS} takes a non-negative integer, got '-1'")
    );
    assert_eq!(
        refused(CHECKPOINT_INTERVAL, "0"),
        format!("{CHECKPOINT_INTERVAL} must be at least 1 millisecond")
    );
    assert_eq!(
        refused(BATCH_SIZE, "1001"),
        format!("{BATCH_SIZE} must be between 1 and 1000")
    );
    assert!(refused(SELECTOR_STRATEGY, "fastest").contains("random, round-robin, oldest-next"));
    assert!(refused("dpf/config/nope", "1").contains(&SETTINGS.join(", ")));
}

#[test]
fn settings_apply_and_return_to_their_defaults() {
    let live = LiveSettings::new(defaults());
    assert_eq!(live.checkpoint_bytes(), 1024);
    assert_eq!(live.strategy(), None);
    assert!(live.apply(CHECKPOINT_BYTES, Some("7")));
    assert!(live.apply(CHECKPOINT_INTERVAL, Some("250")));
    assert!(live.apply(BATCH_SIZE, Some("5")));
    assert!(live.apply(SELECTOR_STRATEGY, Some("least-loaded")));
    assert_eq!(live.strategy().as_deref(), Some("least-loaded"));
    assert!(live.apply(SELECTOR_STRATEGY, Some("oldest-next")));
    assert_eq!(live.checkpoint_bytes(), 7);
    assert_eq!(live.checkpoint_interval(), Duration::from_millis(250));
    assert_eq!(live.batch_size(), 5);
    assert_eq!(live.strategy().as_deref(), Some("oldest-next"));
    assert!(live.apply(BATCH_SIZE, Some("0")), "invalid: the default");
    assert_eq!(live.batch_size(), 20);
    assert!(live.apply(CHECKPOINT_INTERVAL, None));
    assert_eq!(live.checkpoint_interval(), Duration::from_millis(5000));
    assert!(!live.apply("dpf/config/nope", Some("1")));
    assert_eq!(live.defaults(), &defaults());
}

#[tokio::test(start_paused = true)]
async fn the_watcher_applies_puts_and_deletes_within_an_interval_and_publishes() {
    let store = Arc::new(MemoryStore::new());
    let session = join(&store, "a").await;
    put(&store, BATCH_SIZE, "50").await;
    let live = Arc::new(LiveSettings::new(defaults()));
    let (_sessions, receiver) = watch::channel(Some(session));
    let watcher = ConfigWatcher::new(store.clone(), live.clone(), receiver, INTERVAL);
    watcher.sync_once().await.unwrap();
    assert_eq!(live.batch_size(), 50, "the first sync lists everything");
    let listed = live.applied_revision();
    assert!(listed > 0);
    let (shutdown, stop) = watch::channel(false);
    let task = tokio::spawn(watcher.run(stop));

    sleep(Duration::from_millis(100)).await;
    let revision = put(&store, MAX_CONCURRENT_FLOWS, "3").await;
    put(&store, "dpf/other/key", "ignored").await;
    sleep(INTERVAL).await;
    assert_eq!(live.max_concurrent(), 3);
    assert_eq!(live.applied_revision(), u64::try_from(revision).unwrap());
    assert_eq!(
        store.config_revisions().await.unwrap(),
        vec![("a".to_owned(), revision)]
    );

    let deleted = store
        .kv_delete(BATCH_SIZE, Expected::Any)
        .await
        .unwrap()
        .revision;
    sleep(INTERVAL).await;
    assert_eq!(live.batch_size(), 20, "a delete restores the default");
    assert_eq!(live.max_concurrent(), 3);
    assert_eq!(
        store.config_revisions().await.unwrap(),
        vec![("a".to_owned(), deleted)]
    );
    shutdown.send(true).unwrap();
    task.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn compaction_makes_the_watcher_list_again() {
    let store = Arc::new(MemoryStore::new());
    put(&store, CHECKPOINT_BYTES, "1").await;
    put(&store, SELECTOR_STRATEGY, "random").await;
    let live = Arc::new(LiveSettings::new(defaults()));
    let (sessions, receiver) = watch::channel(None);
    let watcher = ConfigWatcher::new(store.clone(), live.clone(), receiver, INTERVAL);
    watcher.sync_once().await.unwrap();
    assert_eq!(live.checkpoint_bytes(), 1);
    assert_eq!(live.strategy().as_deref(), Some("random"));

    // Missed while compacted away: a change and a delete.
    put(&store, CHECKPOINT_BYTES, "2").await;
    store
        .kv_delete(SELECTOR_STRATEGY, Expected::Any)
        .await
        .unwrap();
    let last = put(&store, "dpf/other/key", "x").await;
    store.kv_compact(0).await.unwrap();
    watcher.sync_once().await.unwrap();
    assert_eq!(live.checkpoint_bytes(), 2);
    assert_eq!(
        live.strategy(),
        None,
        "deleted while compacted: the default"
    );
    assert_eq!(live.applied_revision(), u64::try_from(last).unwrap());
    assert!(
        store.config_revisions().await.unwrap().is_empty(),
        "nothing published without a session"
    );

    // Then events again, and the revision is published once a session exists.
    let revision = put(&store, CHECKPOINT_BYTES, "3").await;
    sessions.send(Some(join(&store, "a").await)).unwrap();
    watcher.sync_once().await.unwrap();
    assert_eq!(live.checkpoint_bytes(), 3);
    assert_eq!(
        store.config_revisions().await.unwrap(),
        vec![("a".to_owned(), revision)]
    );
}

#[tokio::test(start_paused = true)]
async fn a_session_that_is_gone_fails_the_publication_only() {
    let store = Arc::new(MemoryStore::new());
    let ghost = Session {
        runtime_id: "ghost".into(),
        incarnation: "g".into(),
    };
    put(&store, MAX_CONCURRENT_FLOWS, "9").await;
    let live = Arc::new(LiveSettings::new(defaults()));
    let (_sessions, receiver) = watch::channel(Some(ghost));
    let watcher = ConfigWatcher::new(store.clone(), live.clone(), receiver, INTERVAL);
    assert!(matches!(
        watcher.sync_once().await,
        Err(ClusterError::Conflict(_))
    ));
    assert_eq!(live.max_concurrent(), 9, "applied nevertheless");
}
