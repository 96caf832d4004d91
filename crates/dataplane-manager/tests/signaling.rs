//! DPS control operations across replicas, in process over one `MemoryStore` on paused tokio
//! time: a request may reach any replica, whoever owns the flow.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test suite

mod common;

use std::time::Duration;

use dataplane_spi::{DataFlowState, DataFlowStore};
use dataplane_store_memory::MemoryStore;

use common::{push, replica_on, stalling_after, until};

/// `suspend` sent to a replica that does not own the flow: it records the request, the owner
/// (woken by its next tick) stops its transfer and records SUSPENDED, and the call answers
/// SUSPENDED once that happened.
#[tokio::test(start_paused = true)]
async fn suspend_through_a_non_owner_stops_the_owners_transfer() {
    let store = MemoryStore::new();
    let a = replica_on(&store, "a", stalling_after(64), |_| {}).await;
    let b = replica_on(&store, "b", stalling_after(64), |_| {}).await;
    let handle_a = a.run().await.unwrap();
    let handle_b = b.run().await.unwrap();

    let id = a
        .plane
        .start(push("long"))
        .await
        .unwrap()
        .message
        .data_flow_id;
    assert!(
        until(1000, || a.sink.received().len() == 64).await,
        "the transfer did not reach its stall"
    );
    let flow = store.find(&id).await.unwrap().unwrap();
    assert_eq!(flow.runtime_id.as_deref(), Some("a"));
    assert_eq!(a.plane.runner_len(), 1);
    assert_eq!(b.plane.runner_len(), 0);

    let outcome = b.plane.suspend(&id, Some("pause".into())).await.unwrap();
    assert_eq!(outcome.message.state, "SUSPENDED");
    let flow = store.find(&id).await.unwrap().unwrap();
    assert_eq!(flow.state, DataFlowState::Suspended);
    assert_eq!(
        a.plane.runner_len(),
        0,
        "the owner still holds the transfer"
    );
    assert_eq!(a.plane.running_transfers(), 0);
    assert_eq!(b.plane.runner_len(), 0, "the non-owner started something");

    // Nobody picks a SUSPENDED flow up again.
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(a.plane.runner_len() + b.plane.runner_len(), 0);
    let flow = store.find(&id).await.unwrap().unwrap();
    assert_eq!(flow.state, DataFlowState::Suspended);
    assert_eq!(a.source.opened.lock().unwrap().len(), 1);
    assert_eq!(b.source.opened.lock().unwrap().len(), 0);

    handle_b.shutdown().await;
    handle_a.shutdown().await;
}
