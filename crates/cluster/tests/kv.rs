//! The key-value store and its watch streams over `MemoryStore` with paused tokio time.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use cluster::kv::{Kv, KvWatchItem};
use cluster::ClusterError;
use dataplane_spi::{CoordinationError, Expected, KvEvent, KvEventKind};
use dataplane_store_memory::MemoryStore;
use futures::{Stream, StreamExt};

const POLL: Duration = Duration::from_millis(100);

fn kv() -> Kv {
    Kv::new(Arc::new(MemoryStore::new()))
}

async fn next_event<S>(stream: &mut S) -> KvEvent
where
    S: Stream<Item = cluster::Result<KvWatchItem>> + Unpin,
{
    match stream.next().await.unwrap().unwrap() {
        KvWatchItem::Event(event) => event,
        other => panic!("expected an event, got {other:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn get_put_delete_and_list() {
    let kv = kv();
    assert_eq!(kv.get("app/a").await.unwrap(), None);
    let entry = kv.put("app/a", "1", Expected::Absent).await.unwrap();
    assert_eq!(entry.version, 1);
    let conflict = kv.put("app/a", "2", Expected::Absent).await.unwrap_err();
    assert!(
        matches!(conflict, ClusterError::Conflict(_)),
        "{conflict:?}"
    );
    kv.put("app/a", "2", Expected::Version(1)).await.unwrap();
    kv.put("app/b", "x", Expected::Any).await.unwrap();
    kv.put("other", "y", Expected::Any).await.unwrap();
    assert_eq!(kv.get("app/a").await.unwrap().unwrap().value, "2");

    let (entries, revision) = kv.list("app/").await.unwrap();
    let keys: Vec<_> = entries.iter().map(|e| e.key.as_str()).collect();
    assert_eq!(keys, ["app/a", "app/b"]);
    assert_eq!(revision, 4);

    let event = kv.delete("app/a", Expected::Any).await.unwrap();
    assert_eq!(event.kind, KvEventKind::Delete);
    let missing = kv.delete("app/a", Expected::Any).await.unwrap_err();
    assert!(matches!(missing, ClusterError::NotFound(_)), "{missing:?}");
    let bad = kv.put("has space", "v", Expected::Any).await.unwrap_err();
    assert!(matches!(bad, ClusterError::InvalidInput(_)), "{bad:?}");
    // The coordinator stays reachable for leader-only work.
    assert!(kv.coordinator().leader().await.unwrap().is_none());
}

#[tokio::test(start_paused = true)]
async fn watch_yields_puts_and_deletes_in_order_from_a_revision() {
    let kv = kv();
    kv.put("app/old", "before", Expected::Any).await.unwrap();
    let (_, from) = kv.list("app/").await.unwrap();
    kv.put("app/a", "1", Expected::Any).await.unwrap();
    kv.put("elsewhere", "x", Expected::Any).await.unwrap();
    kv.put("app/a", "2", Expected::Any).await.unwrap();
    kv.delete("app/old", Expected::Any).await.unwrap();

    let mut watch = Box::pin(kv.watch("app/", from, POLL));
    let seen: Vec<(KvEventKind, String, String)> = {
        let mut seen = Vec::new();
        for _ in 0..3 {
            let e = next_event(&mut watch).await;
            seen.push((e.kind, e.key, e.value));
        }
        seen
    };
    assert_eq!(
        seen,
        [
            (KvEventKind::Put, "app/a".into(), "1".into()),
            (KvEventKind::Put, "app/a".into(), "2".into()),
            (KvEventKind::Delete, "app/old".into(), "before".into()),
        ]
    );

    // Later writes arrive as they happen, with increasing revisions.
    let writer = kv.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(1)).await;
        writer.put("app/b", "3", Expected::Any).await.unwrap();
        writer.delete("app/a", Expected::Any).await.unwrap();
    });
    let put = next_event(&mut watch).await;
    let delete = next_event(&mut watch).await;
    assert_eq!((put.kind, put.key.as_str()), (KvEventKind::Put, "app/b"));
    assert_eq!(
        (delete.kind, delete.key.as_str()),
        (KvEventKind::Delete, "app/a")
    );
    assert!(delete.revision > put.revision);

    // A pending read may be given up (a keep-alive timeout) without losing anything.
    let idle = tokio::time::timeout(Duration::from_millis(350), watch.next()).await;
    assert!(idle.is_err());
    kv.put("app/c", "4", Expected::Any).await.unwrap();
    assert_eq!(next_event(&mut watch).await.key, "app/c");
}

#[tokio::test(start_paused = true)]
async fn watch_reports_compaction_and_ends() {
    let kv = kv();
    for i in 0..5 {
        kv.put("app/k", &i.to_string(), Expected::Any)
            .await
            .unwrap();
    }
    let compacted = kv.coordinator().kv_compact(2).await.unwrap();
    assert!(compacted > 0);

    let refused = kv.check_watch_start("app/", 0).await.unwrap_err();
    assert!(
        matches!(refused, CoordinationError::Compacted { .. }),
        "{refused:?}"
    );
    assert!(kv.check_watch_start("app/", compacted).await.is_ok());
    assert!(matches!(
        kv.check_watch_start("app/", -1).await,
        Err(CoordinationError::InvalidInput(_))
    ));

    let mut watch = Box::pin(kv.watch("app/", 0, POLL));
    assert_eq!(
        watch.next().await.unwrap().unwrap(),
        KvWatchItem::Compacted {
            requested: 0,
            compacted
        }
    );
    assert!(watch.next().await.is_none());

    // From the compacted revision on, the kept events come.
    let mut watch = Box::pin(kv.watch("app/", compacted, POLL));
    assert_eq!(next_event(&mut watch).await.value, "3");
    assert_eq!(next_event(&mut watch).await.value, "4");
}

#[tokio::test(start_paused = true)]
async fn a_watch_that_falls_behind_compaction_is_told() {
    let kv = kv();
    let mut watch = Box::pin(kv.watch("app/", 0, POLL));
    kv.put("app/k", "0", Expected::Any).await.unwrap();
    assert_eq!(next_event(&mut watch).await.value, "0");
    for i in 1..5 {
        kv.put("app/k", &i.to_string(), Expected::Any)
            .await
            .unwrap();
    }
    // Compacted before the watch read past revision 1.
    kv.coordinator().kv_compact(1).await.unwrap();
    let item = watch.next().await.unwrap().unwrap();
    assert!(
        matches!(item, KvWatchItem::Compacted { requested: 1, .. }),
        "{item:?}"
    );
    assert!(watch.next().await.is_none());
}

#[tokio::test(start_paused = true)]
async fn a_negative_start_is_refused() {
    let kv = kv();
    let mut watch = Box::pin(kv.watch("app/", -3, POLL));
    let error = watch.next().await.unwrap().unwrap_err();
    assert!(matches!(error, ClusterError::InvalidInput(_)), "{error:?}");
    assert!(watch.next().await.is_none());
}
