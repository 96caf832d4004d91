//! Leader-election cases of the [`Coordinator`](crate::Coordinator) contract: one leader per
//! term, stale terms refused, leader duties (reaping, purging, config revisions).

use std::sync::Arc;
use std::time::Duration;

use super::{member, session, ClusterStore, AFTER_SHORT_LEASE, LONG_LEASE_MS, SHORT_LEASE_MS};
use crate::{CoordinationError, DataFlowState};

/// One leader per term; terms only increase; stale terms are refused.
pub async fn leader_election_and_terms(store: Arc<dyn ClusterStore>) {
    for name in ["a", "b"] {
        store
            .register_member(&member(name, "i", LONG_LEASE_MS))
            .await
            .unwrap();
    }
    assert_eq!(store.leader().await.unwrap(), None);
    let first = store
        .campaign(&session("a"), LONG_LEASE_MS)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((first.leader.as_str(), first.term), ("a", 1));
    let other = store
        .campaign(&session("b"), LONG_LEASE_MS)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (other.leader.as_str(), other.term),
        ("a", 1),
        "b cannot take a valid lead"
    );
    let renewed = store
        .campaign(&session("a"), LONG_LEASE_MS)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(renewed.term, 1);
    assert!(renewed.expires_at >= first.expires_at);
    store.resign(&session("a"), 1).await.unwrap();
    assert_eq!(store.leader().await.unwrap(), None);
    let second = store
        .campaign(&session("b"), SHORT_LEASE_MS)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((second.leader.as_str(), second.term), ("b", 2));
    assert!(matches!(
        store.resign(&session("a"), 1).await,
        Err(CoordinationError::StaleTerm { .. })
    ));
    assert!(matches!(
        store.reap_member(&session("a"), 1, "x", "i").await,
        Err(CoordinationError::StaleTerm { .. })
    ));
    assert!(matches!(
        store.purge_finished_flows(&session("a"), 1, 0).await,
        Err(CoordinationError::StaleTerm { .. })
    ));
    tokio::time::sleep(AFTER_SHORT_LEASE).await;
    assert_eq!(
        store.leader().await.unwrap(),
        None,
        "an expired lead is no lead"
    );
    let third = store
        .campaign(&session("a"), LONG_LEASE_MS)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((third.leader.as_str(), third.term), ("a", 3));
    assert!(matches!(
        store.campaign(&session("ghost"), LONG_LEASE_MS).await,
        Err(CoordinationError::SessionGone(_))
    ));
}

/// The leader reaps each dead member once, and purges old finished flows.
pub async fn leader_duties(store: Arc<dyn ClusterStore>) {
    store
        .register_member(&member("leader", "i", LONG_LEASE_MS))
        .await
        .unwrap();
    store
        .register_member(&member("dead", "d1", SHORT_LEASE_MS))
        .await
        .unwrap();
    let lead = store
        .campaign(&session("leader"), LONG_LEASE_MS)
        .await
        .unwrap()
        .unwrap();
    let me = session("leader");
    assert!(
        !store
            .reap_member(&me, lead.term, "dead", "d1")
            .await
            .unwrap(),
        "alive members are not reaped"
    );
    tokio::time::sleep(AFTER_SHORT_LEASE).await;
    assert!(store
        .reap_member(&me, lead.term, "dead", "d1")
        .await
        .unwrap());
    assert!(
        !store
            .reap_member(&me, lead.term, "dead", "d1")
            .await
            .unwrap(),
        "reaped once"
    );
    assert!(store
        .list_members()
        .await
        .unwrap()
        .iter()
        .all(|m| m.runtime_id != "dead"));

    let mut done = crate::NewDataFlow::new(
        "old",
        "p-old",
        crate::FlowKind::ProviderPush,
        DataFlowState::Completed,
    );
    done.runtime_id = None;
    store.create(&done).await.unwrap();
    store
        .create(&crate::NewDataFlow::new(
            "live",
            "p-live",
            crate::FlowKind::ProviderPush,
            DataFlowState::Started,
        ))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert_eq!(
        store
            .purge_finished_flows(&me, lead.term, 60_000)
            .await
            .unwrap(),
        0,
        "too young"
    );
    assert_eq!(
        store.purge_finished_flows(&me, lead.term, 5).await.unwrap(),
        1
    );
    assert!(store.find("old").await.unwrap().is_none());
    assert!(store.find("live").await.unwrap().is_some());

    store.publish_config_revision(&me, 42).await.unwrap();
    assert_eq!(
        store.config_revisions().await.unwrap(),
        vec![("leader".to_owned(), 42)]
    );
    assert!(matches!(
        store.publish_config_revision(&session("dead"), 1).await,
        Err(CoordinationError::SessionGone(_))
    ));
}
