use std::sync::Arc;
use std::time::Duration;

use dataplane_spi::{Coordinator, DataFlowStore, LoadReport, MemberRegistration};
use dataplane_store_memory::MemoryStore;
use selector_core::InMemoryInstanceStore;
use selector_spi::{DataPlaneInstanceStore, DataPlaneRegistration, InstanceState};

use super::{ClusterInstances, ClusterInstancesOptions, MEMBER_PROPERTY};

const LEASE_MS: i64 = 1_000;

fn report(running: u64) -> LoadReport {
    LoadReport {
        running,
        capacity: 4,
        bytes_per_second: 10,
        profiles: vec!["p".into()],
        dataplane_id: None,
        endpoint: Some("http://r1.example/signaling".into()),
        labels: vec!["eu".into()],
        allowed_source_types: Vec::new(),
    }
}

async fn setup() -> (Arc<MemoryStore>, Arc<ClusterInstances>) {
    let cluster = Arc::new(MemoryStore::new());
    let options = ClusterInstancesOptions {
        refresh_interval: Duration::from_secs(3600),
        stale_after: Duration::from_millis(750),
    };
    let store = ClusterInstances::start(
        Arc::new(InMemoryInstanceStore::new()),
        cluster.clone(),
        options,
    )
    .await;
    (cluster, store)
}

#[tokio::test(start_paused = true)]
async fn members_become_instances_and_follow_their_lease() {
    let (cluster, store) = setup().await;
    cluster
        .register_member(&MemberRegistration {
            runtime_id: "r1".into(),
            incarnation: "i1".into(),
            lease_ms: LEASE_MS,
            state: "INITIALIZING".into(),
        })
        .await
        .unwrap();
    // No report yet: nothing to register.
    store.refresh().await;
    assert!(store.list().await.unwrap().is_empty());

    cluster
        .renew_member_reporting("r1", "i1", LEASE_MS, &report(1))
        .await
        .unwrap();
    store.refresh().await;
    let listed = store.list().await.unwrap();
    assert_eq!(listed.len(), 1);
    let instance = &listed[0];
    assert_eq!(instance.id.as_str(), "r1");
    assert_eq!(instance.endpoint, "http://r1.example/signaling");
    assert_eq!(instance.state, InstanceState::Registered);
    assert!(instance.properties.contains_key(MEMBER_PROPERTY));
    let load = instance.load.clone().unwrap();
    assert_eq!((load.running, load.capacity, load.stale), (1, 4, false));

    cluster.set_member_state("r1", "i1", "IDLE").await.unwrap();
    store.refresh().await;
    assert_eq!(
        store.find("r1").await.unwrap().unwrap().state,
        InstanceState::Available
    );

    // The lease expires: UNAVAILABLE, the report stale.
    tokio::time::advance(Duration::from_millis(1_100)).await;
    store.refresh().await;
    let expired = store.find("r1").await.unwrap().unwrap();
    assert_eq!(expired.state, InstanceState::Unavailable);
    assert!(expired.load.unwrap().stale);

    // A new incarnation comes back.
    cluster
        .register_member(&MemberRegistration {
            runtime_id: "r1".into(),
            incarnation: "i2".into(),
            lease_ms: LEASE_MS,
            state: "IDLE".into(),
        })
        .await
        .unwrap();
    cluster
        .renew_member_reporting("r1", "i2", LEASE_MS, &report(0))
        .await
        .unwrap();
    store.refresh().await;
    assert_eq!(
        store.find("r1").await.unwrap().unwrap().state,
        InstanceState::Available
    );

    // STOPPING, then gone: unselectable.
    cluster
        .set_member_state("r1", "i2", "STOPPING")
        .await
        .unwrap();
    store.refresh().await;
    assert_eq!(
        store.find("r1").await.unwrap().unwrap().state,
        InstanceState::Unavailable
    );
    cluster.remove_member("r1", "i2").await.unwrap();
    store.refresh().await;
    assert_eq!(
        store.find("r1").await.unwrap().unwrap().state,
        InstanceState::Unavailable
    );
}

#[tokio::test(start_paused = true)]
async fn registered_instances_keep_their_definition_and_withdrawal() {
    let (cluster, store) = setup().await;
    let mut registration =
        DataPlaneRegistration::new("r1", "http://elsewhere.example/signaling", vec![]);
    registration.authorization = Some(DataPlaneRegistration::no_authorization());
    store.upsert(&registration).await.unwrap();
    cluster
        .register_member(&MemberRegistration {
            runtime_id: "r1".into(),
            incarnation: "i1".into(),
            lease_ms: LEASE_MS,
            state: "HEALTHY".into(),
        })
        .await
        .unwrap();
    cluster
        .renew_member_reporting("r1", "i1", LEASE_MS, &report(2))
        .await
        .unwrap();
    store.refresh().await;
    let instance = store.find("r1").await.unwrap().unwrap();
    assert_eq!(instance.endpoint, "http://elsewhere.example/signaling");
    assert_eq!(instance.state, InstanceState::Available);
    assert_eq!(instance.load.unwrap().running, 2);
    store
        .set_state("r1", InstanceState::Unregistered)
        .await
        .unwrap();
    assert_eq!(
        store.find("r1").await.unwrap().unwrap().state,
        InstanceState::Unregistered
    );
}
