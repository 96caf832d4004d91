//! The store's clock follows tokio time: with time paused, leases expire when time is advanced
//! past them, without sleeping.

#![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed test

use std::time::Duration;

use dataplane_spi::{
    Coordinator, DataFlowState, DataFlowStore, FlowKind, MemberRegistration, NewDataFlow, Session,
    StoreError,
};
use dataplane_store_memory::MemoryStore;

fn member(name: &str, lease_ms: i64) -> MemberRegistration {
    MemberRegistration {
        runtime_id: name.into(),
        incarnation: "i".into(),
        lease_ms,
        state: "HEALTHY".into(),
    }
}

#[tokio::test(start_paused = true)]
async fn leases_expire_when_paused_time_is_advanced() {
    let store = MemoryStore::new();
    let before = DataFlowStore::now(&store).await.unwrap();
    store
        .register_member(&member("owner", 30_000))
        .await
        .unwrap();
    store
        .register_member(&member("taker", 600_000))
        .await
        .unwrap();
    let mut flow = NewDataFlow::new("f1", "p1", FlowKind::ProviderPush, DataFlowState::Started);
    flow.runtime_id = Some("owner".into());
    store.create(&flow).await.unwrap();
    let lead = store
        .campaign(
            &Session {
                runtime_id: "owner".into(),
                incarnation: "i".into(),
            },
            30_000,
        )
        .await
        .unwrap();
    assert!(lead.is_some());

    tokio::time::advance(Duration::from_secs(29)).await;
    store.renew_member("taker", "i", 600_000).await.unwrap();
    assert!(store
        .take_over("taker", &[DataFlowState::Started], 10)
        .await
        .unwrap()
        .is_empty());

    tokio::time::advance(Duration::from_secs(2)).await;
    let now = DataFlowStore::now(&store).await.unwrap();
    assert!(
        now - before >= chrono::Duration::seconds(31),
        "{before} → {now}"
    );
    assert!(matches!(
        store.renew_member("owner", "i", 30_000).await,
        Err(StoreError::MembershipLost(_))
    ));
    assert_eq!(store.leader().await.unwrap(), None);
    let taken = store
        .take_over("taker", &[DataFlowState::Started], 10)
        .await
        .unwrap();
    assert_eq!(taken.len(), 1);
    assert_eq!(taken[0].epoch, 2);
}

#[test]
fn clones_share_state_and_clock() {
    let store = MemoryStore::new();
    let clone = store.clone();
    assert!(clone.now() >= store.now() - chrono::Duration::seconds(1));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        store
            .create(&NewDataFlow::new(
                "f1",
                "p1",
                FlowKind::ProviderPush,
                DataFlowState::Started,
            ))
            .await
            .unwrap();
        assert!(clone.find("f1").await.unwrap().is_some());
    });
}
