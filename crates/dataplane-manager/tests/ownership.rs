//! What a replica runs, in process over a `MemoryStore` on paused tokio time: giving transfers
//! back when the cluster's max-concurrent-flows is lowered below what runs.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test suite

mod common;

use std::time::Duration;

use dataplane_manager::live::MAX_CONCURRENT_FLOWS;
use dataplane_spi::{Coordinator, DataFlowState, DataFlowStore, Expected};

use common::{push, replica, stalling, until};

/// Four stalling transfers run; two of them were resumed, so they are the newest (highest
/// epoch). The live setting `dpf/config/dataplane.max-concurrent-flows` is lowered to 2: the
/// replica gives the two newest back (STARTED, unowned) and keeps running the two oldest, and
/// does not claim the released ones again while it has no room.
#[tokio::test(start_paused = true)]
async fn lowering_max_concurrent_flows_releases_the_newest_transfers() {
    let r = replica(stalling(), |_| {}).await;
    let handle = r.run().await.unwrap();
    let mut ids = Vec::new();
    for i in 0..4 {
        let outcome = r.plane.start(push(&format!("p{i}"))).await.unwrap();
        ids.push(outcome.message.data_flow_id);
    }
    for id in &ids[2..] {
        r.plane.suspend(id, None).await.unwrap();
        r.plane.resume(id, None).await.unwrap();
    }
    assert_eq!(r.plane.running_transfers(), 4);
    let epochs =
        |flows: &[dataplane_spi::DataFlow]| flows.iter().map(|f| f.epoch).collect::<Vec<_>>();
    let mut flows = Vec::new();
    for id in &ids {
        flows.push(r.store.find(id).await.unwrap().unwrap());
    }
    assert_eq!(
        epochs(&flows),
        vec![1, 1, 2, 2],
        "the resumed flows are the newest"
    );

    r.store
        .kv_put(MAX_CONCURRENT_FLOWS, "2", Expected::Any, None)
        .await
        .unwrap();
    assert!(
        until(5000, || r.plane.running_transfers() == 2).await,
        "still running {} transfers",
        r.plane.running_transfers()
    );
    assert_eq!(r.plane.live().max_concurrent(), 2);

    // Several ticks later, it holds exactly the two oldest.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(r.plane.running_transfers(), 2);
    assert_eq!(r.plane.runner_len(), 2);
    for (i, id) in ids.iter().enumerate() {
        let flow = r.store.find(id).await.unwrap().unwrap();
        assert_eq!(flow.state, DataFlowState::Started, "flow {i}");
        let owner = (i < 2).then_some("r1");
        assert_eq!(flow.runtime_id.as_deref(), owner, "flow {i}");
    }

    // Room again: the released flows are claimed back and run.
    r.store
        .kv_put(MAX_CONCURRENT_FLOWS, "0", Expected::Any, None)
        .await
        .unwrap();
    assert!(until(5000, || r.plane.running_transfers() == 4).await);
    handle.shutdown().await;
}
