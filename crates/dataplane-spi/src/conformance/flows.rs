//! Flow cases of the [`DataFlowStore`] contract: create/find/list, claims, fenced owner writes,
//! checkpoints, conditional transitions.

use std::collections::BTreeSet;
use std::sync::Arc;

use super::{flow, ids, member, owner, LONG_LEASE_MS};
use crate::{
    Checkpoint, DataFlowState, DataFlowStore, FlowKind, FlowOwner, FlowUpdate, StoreError,
};

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
        sink: cursor.map(|c| format!("sink-{c}")),
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
                    cursor: None,
                    sink: None,
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
