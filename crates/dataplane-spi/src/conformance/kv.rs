//! Key-value cases of the [`Coordinator`](crate::Coordinator) contract: compare-and-set, list and
//! watch with compaction, concurrent counters, session-bound keys.

use std::sync::Arc;

use super::{member, session, ClusterStore, AFTER_SHORT_LEASE, LONG_LEASE_MS, SHORT_LEASE_MS};
use crate::{CoordinationError, Coordinator, Expected, KvEventKind};

/// Compare-and-set on versions; deletes are conditional too.
pub async fn kv_compare_and_set(store: Arc<dyn ClusterStore>) {
    let created = store
        .kv_put("k", "v1", Expected::Absent, None)
        .await
        .unwrap();
    assert_eq!((created.version, created.value.as_str()), (1, "v1"));
    assert!(matches!(
        store.kv_put("k", "x", Expected::Absent, None).await,
        Err(CoordinationError::Conflict { .. })
    ));
    let second = store
        .kv_put("k", "v2", Expected::Version(1), None)
        .await
        .unwrap();
    assert_eq!(second.version, 2);
    assert_eq!(second.create_revision, created.create_revision);
    assert!(second.mod_revision > created.mod_revision);
    assert!(matches!(
        store.kv_put("k", "x", Expected::Version(1), None).await,
        Err(CoordinationError::Conflict { .. })
    ));
    assert_eq!(store.kv_get("k").await.unwrap().unwrap().value, "v2");
    assert!(matches!(
        store.kv_delete("k", Expected::Version(1)).await,
        Err(CoordinationError::Conflict { .. })
    ));
    let deleted = store.kv_delete("k", Expected::Version(2)).await.unwrap();
    assert_eq!(
        (deleted.kind, deleted.value.as_str()),
        (KvEventKind::Delete, "v2")
    );
    assert_eq!(store.kv_get("k").await.unwrap(), None);
    assert!(matches!(
        store.kv_delete("k", Expected::Any).await,
        Err(CoordinationError::NotFound(_))
    ));
    assert!(matches!(
        store.kv_put("bad key", "x", Expected::Any, None).await,
        Err(CoordinationError::InvalidInput(_))
    ));
    assert!(matches!(
        store.kv_put("x", "", Expected::Version(1), None).await,
        Err(CoordinationError::Conflict { .. })
    ));
}

/// Listing by prefix reflects a revision; events after it are delivered in order, resumable
/// from any revision, and compaction is reported.
pub async fn kv_list_and_watch(store: Arc<dyn ClusterStore>) {
    for key in ["a/2", "a/1", "b/1", "a0"] {
        store.kv_put(key, key, Expected::Any, None).await.unwrap();
    }
    let (listed, revision) = store.kv_list("a/").await.unwrap();
    assert_eq!(
        listed.iter().map(|e| e.key.as_str()).collect::<Vec<_>>(),
        vec!["a/1", "a/2"]
    );
    assert!(revision >= listed.iter().map(|e| e.mod_revision).max().unwrap());
    store
        .kv_put("a/1", "again", Expected::Any, None)
        .await
        .unwrap();
    store
        .kv_put("b/2", "other prefix", Expected::Any, None)
        .await
        .unwrap();
    store.kv_delete("a/2", Expected::Any).await.unwrap();
    store
        .kv_put("a/3", "new", Expected::Any, None)
        .await
        .unwrap();
    let events = store.kv_events("a/", revision, 100).await.unwrap();
    let seen: Vec<(KvEventKind, &str)> = events.iter().map(|e| (e.kind, e.key.as_str())).collect();
    assert_eq!(
        seen,
        vec![
            (KvEventKind::Put, "a/1"),
            (KvEventKind::Delete, "a/2"),
            (KvEventKind::Put, "a/3")
        ]
    );
    assert!(events.windows(2).all(|w| w[0].revision < w[1].revision));
    // Resuming from the middle gives exactly the rest.
    let rest = store
        .kv_events("a/", events[0].revision, 100)
        .await
        .unwrap();
    assert_eq!(rest, events[1..].to_vec());
    assert_eq!(
        store.kv_events("a/", revision, 1).await.unwrap(),
        events[..1].to_vec()
    );
    // Compaction.
    let compacted = store.kv_compact(2).await.unwrap();
    assert!(compacted > revision);
    assert!(matches!(
        store.kv_events("a/", revision, 100).await,
        Err(CoordinationError::Compacted { .. })
    ));
    assert!(store.kv_events("", compacted, 100).await.unwrap().len() <= 2);
}

/// Concurrent compare-and-set increments lose no update.
pub async fn kv_cas_counter(store: Arc<dyn ClusterStore>) {
    const WRITERS: usize = 4;
    const EACH: usize = 100;
    cas_increments(store, WRITERS, EACH).await;
}

/// `writers` concurrent tasks each increment the key `counter` `each` times by compare-and-set
/// (retrying on conflicts); asserts that no update was lost and answers the number of conflicts.
/// Also used by the stores' load tests.
pub async fn cas_increments<S: Coordinator + ?Sized + 'static>(
    store: Arc<S>,
    writers: usize,
    each: usize,
) -> u64 {
    store
        .kv_put("counter", "0", Expected::Absent, None)
        .await
        .unwrap();
    let mut tasks = Vec::new();
    for _ in 0..writers {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let (mut done, mut conflicts) = (0, 0u64);
            while done < each {
                let current = store.kv_get("counter").await.unwrap().unwrap();
                let next = current.value.parse::<u64>().unwrap() + 1;
                match store
                    .kv_put(
                        "counter",
                        &next.to_string(),
                        Expected::Version(current.version),
                        None,
                    )
                    .await
                {
                    Ok(_) => done += 1,
                    Err(CoordinationError::Conflict { .. }) => conflicts += 1,
                    Err(other) => panic!("{other}"),
                }
            }
            conflicts
        }));
    }
    let mut conflicts = 0;
    for task in tasks {
        conflicts += task.await.unwrap();
    }
    let counter = store.kv_get("counter").await.unwrap().unwrap();
    assert_eq!(
        counter.value,
        (writers * each).to_string(),
        "an update was lost"
    );
    assert_eq!(counter.version, (writers * each + 1) as i64);
    conflicts
}

/// Keys bound to a session are deleted (with a DELETE event) once the session dies.
pub async fn ttl_keys_die_with_their_session(store: Arc<dyn ClusterStore>) {
    store
        .register_member(&member("short", "i", SHORT_LEASE_MS))
        .await
        .unwrap();
    store
        .register_member(&member("long", "i", LONG_LEASE_MS))
        .await
        .unwrap();
    let (_, revision) = store.kv_list("").await.unwrap();
    store
        .kv_put("hb/short", "alive", Expected::Any, Some(&session("short")))
        .await
        .unwrap();
    store
        .kv_put("hb/long", "alive", Expected::Any, Some(&session("long")))
        .await
        .unwrap();
    store
        .kv_put("plain", "kept", Expected::Any, None)
        .await
        .unwrap();
    tokio::time::sleep(AFTER_SHORT_LEASE).await;
    assert_eq!(store.kv_expire_sessions().await.unwrap(), 1);
    assert_eq!(store.kv_get("hb/short").await.unwrap(), None);
    assert!(store.kv_get("hb/long").await.unwrap().is_some());
    assert!(store.kv_get("plain").await.unwrap().is_some());
    let events = store.kv_events("hb/", revision, 100).await.unwrap();
    assert_eq!(
        events.last().map(|e| (e.kind, e.key.as_str())),
        Some((KvEventKind::Delete, "hb/short"))
    );
    assert!(matches!(
        store
            .kv_put("hb/short", "x", Expected::Any, Some(&session("short")))
            .await,
        Err(CoordinationError::SessionGone(_))
    ));
    assert_eq!(store.kv_expire_sessions().await.unwrap(), 0);
}
