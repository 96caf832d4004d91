//! Member cases of the [`DataFlowStore`] contract: registration and renewal, fencing of expired
//! incarnations, takeover of dead owners' flows, release on shutdown.

use std::collections::BTreeSet;
use std::sync::Arc;

use super::{flow, ids, member, owner, AFTER_SHORT_LEASE, LONG_LEASE_MS, SHORT_LEASE_MS};
use crate::{DataFlowState, DataFlowStore, FlowUpdate, StoreError};

/// Registration, renewal, refusal of a second live incarnation, state, removal.
pub async fn members_register_renew_and_refuse_live_duplicates(store: Arc<dyn DataFlowStore>) {
    let first = store
        .register_member(&member("a", "inc-1", LONG_LEASE_MS))
        .await
        .unwrap();
    assert!(first.lease_expires_at > first.heartbeat_at);
    let refused = store
        .register_member(&member("a", "inc-2", LONG_LEASE_MS))
        .await;
    assert!(
        matches!(refused, Err(StoreError::Conflict(ref m)) if m.contains("'a'")),
        "{refused:?}"
    );
    // Registering the same incarnation again is harmless.
    store
        .register_member(&member("a", "inc-1", LONG_LEASE_MS))
        .await
        .unwrap();

    let renewed = store
        .renew_member("a", "inc-1", LONG_LEASE_MS)
        .await
        .unwrap();
    assert!(renewed.lease_expires_at >= first.lease_expires_at);
    assert!(matches!(
        store.renew_member("a", "inc-2", LONG_LEASE_MS).await,
        Err(StoreError::MembershipLost(_))
    ));
    store
        .set_member_state("a", "inc-1", "STOPPING")
        .await
        .unwrap();
    store
        .register_member(&member("b", "inc-1", LONG_LEASE_MS))
        .await
        .unwrap();
    let members = store.list_members().await.unwrap();
    assert_eq!(
        members
            .iter()
            .map(|m| (m.runtime_id.as_str(), m.state.as_str()))
            .collect::<Vec<_>>(),
        vec![("a", "STOPPING"), ("b", "HEALTHY")]
    );
    assert!(matches!(
        store.remove_member("a", "inc-2").await,
        Err(StoreError::MembershipLost(_))
    ));
    store.remove_member("a", "inc-1").await.unwrap();
    assert!(matches!(
        store.renew_member("a", "inc-1", LONG_LEASE_MS).await,
        Err(StoreError::MembershipLost(_))
    ));
    assert_eq!(store.list_members().await.unwrap().len(), 1);
}

/// An expired lease cannot be renewed; a new incarnation under the same name is accepted and
/// releases (and fences) the old incarnation's flows.
pub async fn expired_member_is_fenced_and_replaced(store: Arc<dyn DataFlowStore>) {
    store
        .register_member(&member("a", "inc-1", SHORT_LEASE_MS))
        .await
        .unwrap();
    let mut owned = flow("f1", DataFlowState::Started);
    owned.runtime_id = Some("a".into());
    store.create(&owned).await.unwrap();
    tokio::time::sleep(AFTER_SHORT_LEASE).await;
    assert!(matches!(
        store.renew_member("a", "inc-1", LONG_LEASE_MS).await,
        Err(StoreError::MembershipLost(_))
    ));
    store
        .register_member(&member("a", "inc-2", LONG_LEASE_MS))
        .await
        .unwrap();
    let released = store.find("f1").await.unwrap().unwrap();
    assert_eq!(released.runtime_id, None);
    assert_eq!(released.epoch, 2);
    let stale = store
        .update_owned(
            &owner("a", 1),
            "f1",
            &FlowUpdate::state(DataFlowState::Completed),
        )
        .await;
    assert!(
        matches!(stale, Err(StoreError::LeaseLost { .. })),
        "{stale:?}"
    );
    let claimed = store
        .claim("a", &[DataFlowState::Started], 10)
        .await
        .unwrap();
    assert_eq!(ids(&claimed), vec!["f1"]);
    assert_eq!(claimed[0].epoch, 3);
}

/// Takeover moves only flows whose owner's lease expired, bumps their epoch and fences the
/// old owner; flows of live owners (and the taker's own) stay.
pub async fn take_over_only_flows_of_dead_owners(store: Arc<dyn DataFlowStore>) {
    store
        .register_member(&member("alive", "i", LONG_LEASE_MS))
        .await
        .unwrap();
    store
        .register_member(&member("dying", "i", SHORT_LEASE_MS))
        .await
        .unwrap();
    store
        .register_member(&member("taker", "i", LONG_LEASE_MS))
        .await
        .unwrap();
    for (id, runtime) in [
        ("f-alive", "alive"),
        ("f-dying-1", "dying"),
        ("f-dying-2", "dying"),
        ("f-taker", "taker"),
        ("f-ghost", "never-registered"),
    ] {
        let mut new = flow(id, DataFlowState::Started);
        new.runtime_id = Some(runtime.into());
        store.create(&new).await.unwrap();
    }
    let mut suspended = flow("f-dying-suspended", DataFlowState::Suspended);
    suspended.runtime_id = Some("dying".into());
    store.create(&suspended).await.unwrap();
    tokio::time::sleep(AFTER_SHORT_LEASE).await;

    let taken = store
        .take_over("taker", &[DataFlowState::Started], 100)
        .await
        .unwrap();
    let taken_ids: BTreeSet<String> = ids(&taken).into_iter().collect();
    assert_eq!(
        taken_ids,
        BTreeSet::from([
            "f-dying-1".to_owned(),
            "f-dying-2".to_owned(),
            "f-ghost".to_owned()
        ])
    );
    for f in &taken {
        assert_eq!(f.runtime_id.as_deref(), Some("taker"));
        assert_eq!(f.epoch, 2);
    }
    assert!(store
        .take_over("taker", &[DataFlowState::Started], 100)
        .await
        .unwrap()
        .is_empty());
    let old = store
        .update_owned(
            &owner("dying", 1),
            "f-dying-1",
            &FlowUpdate::state(DataFlowState::Completed),
        )
        .await;
    assert!(matches!(old, Err(StoreError::LeaseLost { .. })));
    let alive = store.find("f-alive").await.unwrap().unwrap();
    assert_eq!(
        (alive.runtime_id.as_deref(), alive.epoch),
        (Some("alive"), 1)
    );
    let own = store.find("f-taker").await.unwrap().unwrap();
    assert_eq!((own.runtime_id.as_deref(), own.epoch), (Some("taker"), 1));
    let other_state = store.find("f-dying-suspended").await.unwrap().unwrap();
    assert_eq!(other_state.runtime_id.as_deref(), Some("dying"));
    // A replica whose own lease expired cannot take anything over.
    assert!(store
        .take_over(
            "dying",
            &[DataFlowState::Started, DataFlowState::Suspended],
            100
        )
        .await
        .unwrap()
        .is_empty());
}

/// Graceful shutdown and release hand flows back for anyone to claim.
pub async fn remove_member_and_release_free_flows(store: Arc<dyn DataFlowStore>) {
    store
        .register_member(&member("a", "i", LONG_LEASE_MS))
        .await
        .unwrap();
    store
        .register_member(&member("b", "i", LONG_LEASE_MS))
        .await
        .unwrap();
    for id in ["f1", "f2", "f3"] {
        store
            .create(&flow(id, DataFlowState::Started))
            .await
            .unwrap();
    }
    let claimed = store
        .claim("a", &[DataFlowState::Started], 10)
        .await
        .unwrap();
    assert_eq!(claimed.len(), 3);
    store.release(&owner("a", 1), "f1").await.unwrap();
    let f1 = store.find("f1").await.unwrap().unwrap();
    assert_eq!((f1.runtime_id.clone(), f1.epoch), (None, 1));
    assert_eq!(store.remove_member("a", "i").await.unwrap(), 2);
    let by_b = store
        .claim("b", &[DataFlowState::Started], 10)
        .await
        .unwrap();
    assert_eq!(ids(&by_b), vec!["f1", "f2", "f3"]);
    assert_eq!(
        by_b.iter().map(|f| f.epoch).collect::<Vec<_>>(),
        vec![2, 3, 3]
    );
}

/// A load report written with the renewal comes back with the member, stamped with the store's
/// time; a renewal without one keeps it; a fenced incarnation cannot write one.
pub async fn member_load_reports_round_trip(store: Arc<dyn super::ClusterStore>) {
    store
        .register_member(&member("a", "inc-1", LONG_LEASE_MS))
        .await
        .unwrap();
    store
        .register_member(&member("b", "inc-1", LONG_LEASE_MS))
        .await
        .unwrap();
    let report = crate::LoadReport {
        running: 3,
        capacity: 8,
        bytes_per_second: 1_000_000,
        profiles: vec!["p1".into(), "p2".into()],
        dataplane_id: Some("dp-a".into()),
        endpoint: Some("http://a.example/signaling".into()),
        labels: vec!["eu".into()],
        allowed_source_types: vec!["HttpData".into()],
    };
    let before = store.member_loads().await.unwrap();
    if before.members.is_empty() {
        // A coordinator without load reports: renewing with one says so.
        assert!(store
            .renew_member_reporting("a", "inc-1", LONG_LEASE_MS, &report)
            .await
            .unwrap()
            .is_none());
        return;
    }
    assert!(before.members.iter().all(|m| m.report.is_none()));
    let renewed = store
        .renew_member_reporting("a", "inc-1", LONG_LEASE_MS, &report)
        .await
        .unwrap()
        .expect("this coordinator keeps load reports");
    assert_eq!(renewed.runtime_id, "a");
    store
        .renew_member("a", "inc-1", LONG_LEASE_MS)
        .await
        .unwrap();
    let loads = store.member_loads().await.unwrap();
    let ids: Vec<&str> = loads
        .members
        .iter()
        .map(|m| m.member.runtime_id.as_str())
        .collect();
    assert_eq!(ids, vec!["a", "b"]);
    let a = &loads.members[0];
    assert_eq!(a.report.as_ref(), Some(&report));
    let at = a.reported_at.expect("reported_at");
    assert!(at <= loads.now, "{at} after {}", loads.now);
    assert!(at >= before.now, "{at} before {}", before.now);
    assert!(loads.members[1].report.is_none());
    assert!(matches!(
        store
            .renew_member_reporting("a", "inc-2", LONG_LEASE_MS, &report)
            .await,
        Err(StoreError::MembershipLost(_))
    ));
}
