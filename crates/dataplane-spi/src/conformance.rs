//! The behaviour every [`DataFlowStore`] must have, as one suite run against each
//! implementation (memory here; SQLite and PostgreSQL in `dataplane-store-sql`).
//!
//! Use [`data_flow_store_conformance!`](crate::data_flow_store_conformance) with an async
//! expression yielding a fresh, empty `Arc<dyn DataFlowStore>`.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use crate::{
    Checkpoint, DataFlowState, DataFlowStore, FlowKind, FlowOwner, FlowUpdate, MemberRegistration,
    NewDataFlow, StoreError,
};

const LONG_LEASE_MS: i64 = 60_000;
const SHORT_LEASE_MS: i64 = 50;
/// Long enough for a [`SHORT_LEASE_MS`] lease to have expired on any store clock.
const AFTER_SHORT_LEASE: Duration = Duration::from_millis(150);

fn member(name: &str, incarnation: &str, lease_ms: i64) -> MemberRegistration {
    MemberRegistration {
        runtime_id: name.to_owned(),
        incarnation: incarnation.to_owned(),
        lease_ms,
        state: "HEALTHY".to_owned(),
    }
}

fn flow(id: &str, state: DataFlowState) -> NewDataFlow {
    NewDataFlow::new(id, format!("process-{id}"), FlowKind::ProviderPush, state)
}

fn owner(runtime_id: &str, epoch: i64) -> FlowOwner {
    FlowOwner {
        runtime_id: runtime_id.to_owned(),
        epoch,
    }
}

fn ids(flows: &[crate::DataFlow]) -> Vec<String> {
    flows.iter().map(|f| f.id.clone()).collect()
}

/// Create and find; ids and process ids are unique; every field round-trips.
pub async fn create_find_and_unique_keys(store: Arc<dyn DataFlowStore>) {
    let mut new = flow("f1", DataFlowState::Starting);
    new.source = serde_json::json!({"endpointType": "HttpData", "endpoint": "http://src/x"});
    new.destination = Some(serde_json::json!({"endpoint": "http://dst/y"}));
    new.metadata = serde_json::json!({"agreementId": "a-1", "labels": ["eu"]});
    new.participant_id = Some("participant-1".into());
    new.callback_address = Some("http://cp/callbacks".into());
    new.kind = FlowKind::ConsumerPull;
    let created = store.create(&new).await.unwrap();
    assert_eq!(created.state, DataFlowState::Starting);
    assert_eq!(created.state_count, 1);
    assert_eq!(created.epoch, 0);
    assert_eq!(created.runtime_id, None);
    assert_eq!(created.checkpoint, None);
    assert_eq!(store.find("f1").await.unwrap(), Some(created.clone()));
    assert_eq!(
        store.find_by_process_id("process-f1").await.unwrap(),
        Some(created.clone())
    );
    assert_eq!(store.find("nope").await.unwrap(), None);

    assert!(matches!(
        store.create(&new).await,
        Err(StoreError::AlreadyExists { .. })
    ));
    let mut same_process = flow("f2", DataFlowState::Starting);
    same_process.process_id = "process-f1".into();
    assert!(matches!(
        store.create(&same_process).await,
        Err(StoreError::AlreadyExists { .. })
    ));

    let mut owned = flow("f3", DataFlowState::Started);
    owned.runtime_id = Some("a".into());
    let owned = store.create(&owned).await.unwrap();
    assert_eq!(owned.epoch, 1);
    assert_eq!(owned.runtime_id.as_deref(), Some("a"));
    let all = store.list(&[], 100).await.unwrap();
    assert_eq!(ids(&all), vec!["f1", "f3"]);
    let started = store.list(&[DataFlowState::Started], 100).await.unwrap();
    assert_eq!(ids(&started), vec!["f3"]);
}

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

/// Claims take unowned flows in the given states, oldest first, bump the epoch, respect the
/// limit, and need a live membership.
pub async fn claim_takes_unowned_flows_with_epoch_bump(store: Arc<dyn DataFlowStore>) {
    store
        .register_member(&member("a", "inc-1", LONG_LEASE_MS))
        .await
        .unwrap();
    for id in ["f1", "f2", "f3"] {
        store
            .create(&flow(id, DataFlowState::Starting))
            .await
            .unwrap();
    }
    store
        .create(&flow("f4", DataFlowState::Completed))
        .await
        .unwrap();
    assert!(store
        .claim("stranger", &[DataFlowState::Starting], 10)
        .await
        .unwrap()
        .is_empty());

    let first = store
        .claim("a", &[DataFlowState::Starting], 2)
        .await
        .unwrap();
    assert_eq!(ids(&first), vec!["f1", "f2"]);
    for f in &first {
        assert_eq!(f.runtime_id.as_deref(), Some("a"));
        assert_eq!(f.epoch, 1);
    }
    let second = store
        .claim(
            "a",
            &[DataFlowState::Starting, DataFlowState::Completed],
            10,
        )
        .await
        .unwrap();
    assert_eq!(ids(&second), vec!["f3", "f4"]);
    assert!(store
        .claim("a", &[DataFlowState::Starting], 10)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(store.find("f2").await.unwrap().unwrap().epoch, 1);
}

/// Owner writes are fenced by runtime id and epoch; a refused write changes nothing.
pub async fn fenced_updates_report_lease_lost(store: Arc<dyn DataFlowStore>) {
    store
        .register_member(&member("a", "inc-1", LONG_LEASE_MS))
        .await
        .unwrap();
    store
        .create(&flow("f1", DataFlowState::Starting))
        .await
        .unwrap();
    let claimed = store
        .claim("a", &[DataFlowState::Starting], 1)
        .await
        .unwrap();
    let token = FlowOwner::of(&claimed[0]).unwrap();
    assert_eq!(token, owner("a", 1));

    let started = store
        .update_owned(&token, "f1", &FlowUpdate::state(DataFlowState::Started))
        .await
        .unwrap();
    assert_eq!(
        (started.state, started.state_count),
        (DataFlowState::Started, 1)
    );
    let again = store
        .update_owned(
            &token,
            "f1",
            &FlowUpdate {
                state: Some(DataFlowState::Started),
                error_detail: Some("retrying".into()),
                ..FlowUpdate::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(again.state_count, 2);
    assert_eq!(again.error_detail.as_deref(), Some("retrying"));
    assert!(again.state_timestamp >= started.state_timestamp);

    for stale in [owner("a", 0), owner("a", 2), owner("b", 1)] {
        let result = store
            .update_owned(&stale, "f1", &FlowUpdate::state(DataFlowState::Completed))
            .await;
        assert_eq!(
            result,
            Err(StoreError::LeaseLost {
                flow_id: "f1".into(),
                runtime_id: stale.runtime_id.clone(),
                epoch: stale.epoch
            })
        );
        assert!(matches!(
            store.release(&stale, "f1").await,
            Err(StoreError::LeaseLost { .. })
        ));
    }
    assert_eq!(store.find("f1").await.unwrap().unwrap(), again);
    assert!(matches!(
        store
            .update_owned(
                &token,
                "missing",
                &FlowUpdate::state(DataFlowState::Started)
            )
            .await,
        Err(StoreError::NotFound { .. })
    ));
}

/// Checkpoints are recorded by the owner and never move backwards.
pub async fn checkpoints_only_move_forward(store: Arc<dyn DataFlowStore>) {
    store
        .register_member(&member("a", "inc-1", LONG_LEASE_MS))
        .await
        .unwrap();
    let mut new = flow("f1", DataFlowState::Started);
    new.runtime_id = Some("a".into());
    store.create(&new).await.unwrap();
    let token = owner("a", 1);
    let at = |bytes: i64, cursor: Option<&str>| Checkpoint {
        bytes,
        cursor: cursor.map(str::to_owned),
    };
    let first = store
        .update_owned(
            &token,
            "f1",
            &FlowUpdate::checkpoint(at(1000, Some("e-10"))),
        )
        .await
        .unwrap();
    assert_eq!(first.checkpoint, Some(at(1000, Some("e-10"))));
    let behind = store
        .update_owned(&token, "f1", &FlowUpdate::checkpoint(at(500, Some("e-5"))))
        .await
        .unwrap();
    assert_eq!(behind.checkpoint, Some(at(1000, Some("e-10"))));
    let ahead = store
        .update_owned(&token, "f1", &FlowUpdate::checkpoint(at(4096, None)))
        .await
        .unwrap();
    assert_eq!(ahead.checkpoint, Some(at(4096, None)));
    assert_eq!(
        store.find("f1").await.unwrap().unwrap().checkpoint,
        Some(at(4096, None))
    );
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

/// Eight concurrent claimers over 1 000 claimable flows: every flow is claimed exactly once.
pub async fn concurrent_claims_never_overlap(store: Arc<dyn DataFlowStore>) {
    const FLOWS: usize = 1000;
    const CLAIMERS: usize = 8;
    for claimer in 0..CLAIMERS {
        store
            .register_member(&member(&format!("c{claimer}"), "i", LONG_LEASE_MS))
            .await
            .unwrap();
    }
    for i in 0..FLOWS {
        store
            .create(&flow(&format!("f{i:04}"), DataFlowState::Starting))
            .await
            .unwrap();
    }
    let barrier = Arc::new(tokio::sync::Barrier::new(CLAIMERS));
    let mut tasks = Vec::new();
    for claimer in 0..CLAIMERS {
        let store = store.clone();
        let barrier = barrier.clone();
        tasks.push(tokio::spawn(async move {
            let name = format!("c{claimer}");
            barrier.wait().await;
            let mut mine = Vec::new();
            loop {
                let batch = store
                    .claim(&name, &[DataFlowState::Starting], 20)
                    .await
                    .unwrap();
                if batch.is_empty() {
                    break;
                }
                for f in batch {
                    assert_eq!(f.runtime_id.as_deref(), Some(name.as_str()));
                    assert_eq!(f.epoch, 1);
                    mine.push(f.id);
                }
            }
            mine
        }));
    }
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await.unwrap());
    }
    let unique: BTreeSet<&String> = all.iter().collect();
    assert_eq!(all.len(), FLOWS, "claims: {} for {FLOWS} flows", all.len());
    assert_eq!(unique.len(), FLOWS, "some flow was claimed twice");
    let stored = store.list(&[], FLOWS + 1).await.unwrap();
    assert!(stored
        .iter()
        .all(|f| f.epoch == 1 && f.runtime_id.is_some()));
}

/// Conditional transitions: apply only from the given states, optionally taking ownership
/// (epoch + 1) and replacing addresses; otherwise `WrongState`/`NotFound` and nothing changes.
pub async fn transitions_are_conditional(store: Arc<dyn DataFlowStore>) {
    store
        .register_member(&member("a", "i", LONG_LEASE_MS))
        .await
        .unwrap();
    let mut new = flow("f1", DataFlowState::Started);
    new.runtime_id = Some("a".into());
    store.create(&new).await.unwrap();

    let suspending = store
        .transition(
            "f1",
            &[DataFlowState::Started],
            DataFlowState::Suspending,
            None,
            &FlowUpdate::default(),
        )
        .await
        .unwrap();
    assert_eq!(
        (
            suspending.state,
            suspending.runtime_id.as_deref(),
            suspending.epoch
        ),
        (DataFlowState::Suspending, Some("a"), 1)
    );
    let refused = store
        .transition(
            "f1",
            &[DataFlowState::Started],
            DataFlowState::Suspending,
            None,
            &FlowUpdate::default(),
        )
        .await;
    assert_eq!(
        refused,
        Err(StoreError::WrongState {
            flow_id: "f1".into(),
            state: "SUSPENDING".into()
        })
    );
    assert_eq!(store.find("f1").await.unwrap().unwrap(), suspending);

    let taken = store
        .transition(
            "f1",
            &[DataFlowState::Suspending, DataFlowState::Suspended],
            DataFlowState::Started,
            Some("b"),
            &FlowUpdate {
                destination: Some(serde_json::json!({"type": "File", "path": "/new"})),
                error_detail: Some("resumed".into()),
                ..FlowUpdate::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(
        (taken.state, taken.runtime_id.as_deref(), taken.epoch),
        (DataFlowState::Started, Some("b"), 2)
    );
    assert_eq!(
        taken.destination,
        Some(serde_json::json!({"type": "File", "path": "/new"}))
    );
    assert_eq!(taken.error_detail.as_deref(), Some("resumed"));
    // The previous owner is fenced by the epoch bump.
    assert!(matches!(
        store
            .update_owned(
                &owner("a", 1),
                "f1",
                &FlowUpdate::state(DataFlowState::Completed)
            )
            .await,
        Err(StoreError::LeaseLost { .. })
    ));
    assert!(matches!(
        store
            .transition(
                "nope",
                &[DataFlowState::Started],
                DataFlowState::Completed,
                None,
                &FlowUpdate::default()
            )
            .await,
        Err(StoreError::NotFound { .. })
    ));

    let owned = store
        .list_owned("b", &[DataFlowState::Started], 10)
        .await
        .unwrap();
    assert_eq!(ids(&owned), vec!["f1"]);
    assert!(store
        .list_owned("a", &[DataFlowState::Started], 10)
        .await
        .unwrap()
        .is_empty());
    assert!(store
        .list_owned("b", &[DataFlowState::Suspending], 10)
        .await
        .unwrap()
        .is_empty());
}

/// Owner writes respect `only_from` and never touch terminal flows.
pub async fn owner_writes_respect_states(store: Arc<dyn DataFlowStore>) {
    store
        .register_member(&member("a", "i", LONG_LEASE_MS))
        .await
        .unwrap();
    let mut new = flow("f1", DataFlowState::Started);
    new.runtime_id = Some("a".into());
    store.create(&new).await.unwrap();
    let token = owner("a", 1);
    store
        .transition(
            "f1",
            &[DataFlowState::Started],
            DataFlowState::Suspending,
            None,
            &FlowUpdate::default(),
        )
        .await
        .unwrap();
    // A retry write (STARTED from STARTED) must not undo a suspend request.
    let retry = FlowUpdate {
        only_from: vec![DataFlowState::Started],
        ..FlowUpdate::state(DataFlowState::Started)
    };
    assert_eq!(
        store.update_owned(&token, "f1", &retry).await,
        Err(StoreError::WrongState {
            flow_id: "f1".into(),
            state: "SUSPENDING".into()
        })
    );
    let suspended = store
        .update_owned(&token, "f1", &FlowUpdate::move_to(DataFlowState::Suspended))
        .await
        .unwrap();
    assert_eq!(suspended.state, DataFlowState::Suspended);
    store
        .transition(
            "f1",
            &[DataFlowState::Suspended],
            DataFlowState::Terminated,
            None,
            &FlowUpdate::default(),
        )
        .await
        .unwrap();
    assert!(matches!(
        store
            .update_owned(
                &token,
                "f1",
                &FlowUpdate::checkpoint(Checkpoint {
                    bytes: 1,
                    cursor: None
                })
            )
            .await,
        Err(StoreError::WrongState { .. })
    ));
    assert_eq!(
        store.find("f1").await.unwrap().unwrap().state,
        DataFlowState::Terminated
    );
}

/// Generates one `#[tokio::test]` per conformance case. `$factory` is an async expression
/// evaluating to a fresh, empty `Arc<dyn DataFlowStore>`.
#[macro_export]
macro_rules! data_flow_store_conformance {
    ($factory:expr) => {
        $crate::data_flow_store_conformance!(@cases $factory;
            create_find_and_unique_keys,
            members_register_renew_and_refuse_live_duplicates,
            expired_member_is_fenced_and_replaced,
            claim_takes_unowned_flows_with_epoch_bump,
            fenced_updates_report_lease_lost,
            checkpoints_only_move_forward,
            take_over_only_flows_of_dead_owners,
            remove_member_and_release_free_flows,
            concurrent_claims_never_overlap,
            transitions_are_conditional,
            owner_writes_respect_states,
        );
    };
    (@cases $factory:expr; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $case() {
                let store = $factory.await;
                $crate::conformance::$case(store).await;
            }
        )*
    };
}

/// A store that is both a [`DataFlowStore`] and a [`crate::Coordinator`] (sessions are its
/// members), as every backend is.
pub trait ClusterStore: DataFlowStore + crate::Coordinator {}

impl<T: DataFlowStore + crate::Coordinator> ClusterStore for T {}

/// Coordinator conformance cases.
pub mod coordinator {
    use std::sync::Arc;
    use std::time::Duration;

    use super::{member, ClusterStore, AFTER_SHORT_LEASE, LONG_LEASE_MS, SHORT_LEASE_MS};
    use crate::{CoordinationError, DataFlowState, Expected, KvEventKind, Session};

    fn session(name: &str) -> Session {
        Session {
            runtime_id: name.into(),
            incarnation: "i".into(),
        }
    }

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
        let seen: Vec<(KvEventKind, &str)> =
            events.iter().map(|e| (e.kind, e.key.as_str())).collect();
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
        store
            .kv_put("counter", "0", Expected::Absent, None)
            .await
            .unwrap();
        let mut tasks = Vec::new();
        for _ in 0..WRITERS {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                let mut done = 0;
                while done < EACH {
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
                        Err(CoordinationError::Conflict { .. }) => {}
                        Err(other) => panic!("{other}"),
                    }
                }
            }));
        }
        for task in tasks {
            task.await.unwrap();
        }
        let final_value = store.kv_get("counter").await.unwrap().unwrap();
        assert_eq!(final_value.value, (WRITERS * EACH).to_string());
        assert_eq!(final_value.version, (WRITERS * EACH + 1) as i64);
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
}

/// Generates one `#[tokio::test]` per coordinator conformance case. `$factory` is an async
/// expression evaluating to a fresh, empty `Arc<impl ClusterStore>`.
#[macro_export]
macro_rules! coordinator_conformance {
    ($factory:expr) => {
        $crate::coordinator_conformance!(@cases $factory;
            kv_compare_and_set,
            kv_list_and_watch,
            kv_cas_counter,
            ttl_keys_die_with_their_session,
            leader_election_and_terms,
            leader_duties,
        );
    };
    (@cases $factory:expr; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $case() {
                let store = $factory.await;
                $crate::conformance::coordinator::$case(store).await;
            }
        )*
    };
}
