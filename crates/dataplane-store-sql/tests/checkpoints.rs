//! Property: checkpoints only move forward. Random interleavings of fenced checkpoint writes by
//! the current owner and by stale owners (after takeovers) never move a flow's checkpoint back,
//! and only the current owner's writes are accepted — on memory, SQLite and PostgreSQL.

#![allow(clippy::unwrap_used)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use dataplane_spi::{
    Checkpoint, DataFlowState, DataFlowStore, FlowKind, FlowOwner, FlowUpdate, MemberRegistration,
    NewDataFlow, StoreError,
};
use dataplane_store_memory::MemoryStore;
use dataplane_store_sql::{SqlStore, SqlStoreOptions, StoreUrl};
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Op {
    /// A checkpoint write with the token issued `age` owners ago (0 = the current owner).
    Write { age: usize, bytes: i64 },
    /// Another replica takes the flow over (epoch + 1).
    TakeOver,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0usize..3, 0i64..1_000_000).prop_map(|(age, bytes)| Op::Write { age, bytes }),
        1 => Just(Op::TakeOver),
    ]
}

fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap()
    })
}

static NEXT_FLOW: AtomicUsize = AtomicUsize::new(0);

async fn check(store: Arc<dyn DataFlowStore>, ops: Vec<Op>) {
    let n = NEXT_FLOW.fetch_add(1, Ordering::Relaxed);
    let flow_id = format!("prop-{n}");
    for name in ["a", "b", "c"] {
        store
            .register_member(&MemberRegistration {
                runtime_id: name.into(),
                incarnation: "i".into(),
                lease_ms: 600_000,
                state: "HEALTHY".into(),
            })
            .await
            .unwrap();
    }
    let mut new = NewDataFlow::new(
        &flow_id,
        format!("pp-{n}"),
        FlowKind::ProviderPush,
        DataFlowState::Started,
    );
    new.runtime_id = Some("a".into());
    store.create(&new).await.unwrap();
    let mut tokens = vec![FlowOwner {
        runtime_id: "a".into(),
        epoch: 1,
    }];
    let mut model: Option<i64> = None;
    for (step, op) in ops.into_iter().enumerate() {
        match op {
            Op::Write { age, bytes } => {
                let index = tokens.len().saturating_sub(1 + age);
                let token = tokens[index].clone();
                let current = index == tokens.len() - 1;
                let result = store
                    .update_owned(
                        &token,
                        &flow_id,
                        &FlowUpdate::checkpoint(Checkpoint {
                            bytes,
                            cursor: Some(format!("c{bytes}")),
                            sink: None,
                        }),
                    )
                    .await;
                if current {
                    let flow = result.unwrap();
                    model = Some(model.map_or(bytes, |m| m.max(bytes)));
                    assert_eq!(
                        flow.checkpoint.as_ref().map(|c| c.bytes),
                        model,
                        "step {step}"
                    );
                } else {
                    assert!(
                        matches!(result, Err(StoreError::LeaseLost { .. })),
                        "step {step}: a stale owner wrote: {result:?}"
                    );
                }
            }
            Op::TakeOver => {
                let next = ["a", "b", "c"][tokens.len() % 3];
                let flow = store
                    .transition(
                        &flow_id,
                        &[DataFlowState::Started],
                        DataFlowState::Started,
                        Some(next),
                        &FlowUpdate::default(),
                    )
                    .await
                    .unwrap();
                tokens.push(FlowOwner {
                    runtime_id: next.into(),
                    epoch: flow.epoch,
                });
            }
        }
        let stored = store.find(&flow_id).await.unwrap().unwrap().checkpoint;
        assert_eq!(
            stored.as_ref().map(|c| c.bytes),
            model,
            "step {step}: checkpoint moved"
        );
        if let (Some(stored), Some(m)) = (stored, model) {
            assert_eq!(
                stored.cursor,
                Some(format!("c{m}")),
                "the cursor travels with its position"
            );
        }
    }
}

fn sqlite() -> Arc<dyn DataFlowStore> {
    static STORE: OnceLock<(tempfile::TempDir, SqlStore)> = OnceLock::new();
    let (_, store) = STORE.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let url = StoreUrl::Sqlite(dir.path().join("prop.db"));
        let store = runtime()
            .block_on(SqlStore::open(&url, SqlStoreOptions::default()))
            .unwrap();
        (dir, store)
    });
    Arc::new(store.clone())
}

fn postgres() -> Arc<dyn DataFlowStore> {
    static STORE: OnceLock<SqlStore> = OnceLock::new();
    let store = STORE.get_or_init(|| {
        let database = test_utils::postgres_database();
        let url = StoreUrl::Postgres(database.url().to_owned());
        runtime()
            .block_on(SqlStore::open(&url, SqlStoreOptions::default()))
            .unwrap()
    });
    Arc::new(store.clone())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn checkpoints_only_move_forward_in_memory(ops in proptest::collection::vec(op(), 1..40)) {
        runtime().block_on(check(Arc::new(MemoryStore::new()), ops));
    }

    #[test]
    fn checkpoints_only_move_forward_on_sqlite(ops in proptest::collection::vec(op(), 1..40)) {
        runtime().block_on(check(sqlite(), ops));
    }

    #[test]
    fn checkpoints_only_move_forward_on_postgres(ops in proptest::collection::vec(op(), 1..40)) {
        runtime().block_on(check(postgres(), ops));
    }
}
