//! In-process tests of one replica over the in-memory store: the runner holds no entry for
//! flows that ran, a refused request changes nothing, a full replica leaves new flows unowned,
//! retries are spaced as configured, and an owner whose lease runs out fences itself (on paused
//! tokio time: advanced, not slept).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)] // a test suite

mod common;

use std::time::Duration;

use dataplane_manager::{DataPlaneError, DataPlaneHandle};
use dataplane_spi::{Coordinator, DataFlowState, DataFlowStore, Session};
use test_utils::fakes::FakeSource;

use common::{all_flows, push, replica, stalling, until};

/// Acceptance: a replica that ran 100 000 tiny provider pushes holds no per-flow entry for any
/// of them afterwards. `RUNNER_FLOWS` overrides the count.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_that_ran_many_flows_holds_no_entry_for_them() {
    let flows: usize = std::env::var("RUNNER_FLOWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    const WAVE: usize = 500;
    let r = replica(FakeSource::new(b"tiny".to_vec()), |_| {}).await;
    let handle: DataPlaneHandle = r.run().await.unwrap();
    // Finished flows are purged as the leader does it, so that the in-memory store (which scans
    // its flows on every create) stays small; the runner is what is measured.
    let session = Session {
        runtime_id: "r1".into(),
        incarnation: r.config.incarnation.clone(),
    };
    assert!(
        until(5000, || r.plane.known_leader().is_some()).await,
        "the replica did not become the leader"
    );
    let term = r.plane.known_leader().unwrap().term;
    let began = std::time::Instant::now();
    let mut peak = 0;
    for wave in 0..flows.div_ceil(WAVE) {
        let starts = (wave * WAVE..flows.min((wave + 1) * WAVE)).map(|i| {
            let plane = r.plane.clone();
            async move { plane.start(push(&format!("p{i}"))).await }
        });
        for outcome in futures::future::join_all(starts).await {
            assert_eq!(outcome.unwrap().message.state, "STARTED");
        }
        peak = peak.max(r.plane.runner_len());
        r.store
            .purge_finished_flows(&session, term, 0)
            .await
            .unwrap();
    }
    let completed = || r.plane.metrics.completed.get() as usize == flows;
    assert!(until(60_000, completed).await, "not every flow completed");
    assert!(until(5000, || r.plane.runner_len() == 0).await);
    println!(
        "{flows} flows in {:.1} s; runner peak {peak}, after {}",
        began.elapsed().as_secs_f64(),
        r.plane.runner_len()
    );
    assert_eq!(r.plane.runner_len(), 0, "entries left for finished flows");
    assert_eq!(r.plane.metrics.completed.get() as usize, flows);
    assert_eq!(r.plane.running_transfers(), 0);
    handle.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_refused_request_changes_nothing() {
    let r = replica(stalling(), |_| {}).await;
    r.plane.start(push("first")).await.unwrap();
    let before = all_flows(&r.store).await;
    assert_eq!(r.plane.runner_len(), 1);

    let mut unknown = push("second");
    unknown.dataset_id = "nope".into();
    let mut profile = push("third");
    profile.profile = "https://example.com/unknown".into();
    let mut blank = push("fourth");
    blank.message_id = " ".into();
    let mut no_address = push("fifth");
    no_address.data_address = None;
    for (message, what) in [
        (unknown, "unknown dataset"),
        (profile, "unknown profile"),
        (blank, "blank message id"),
        (no_address, "push without an address"),
        (push("first"), "duplicate process id"),
    ] {
        let error = r.plane.start(message).await.expect_err(what);
        assert!(
            matches!(
                error,
                DataPlaneError::NotFound(..)
                    | DataPlaneError::InvalidInput(..)
                    | DataPlaneError::Conflict(..)
            ),
            "{what}: {error:?}"
        );
    }
    let after = all_flows(&r.store).await;
    assert_eq!(
        serde_json::to_value(&after).unwrap(),
        serde_json::to_value(&before).unwrap(),
        "a refused request changed the store"
    );
    assert_eq!(
        r.plane.runner_len(),
        1,
        "a refused request started something"
    );
}

#[tokio::test(start_paused = true)]
async fn a_full_replica_leaves_new_flows_unowned() {
    let r = replica(stalling(), |c| c.max_concurrent_flows = 2).await;
    let mut ids = Vec::new();
    for i in 0..4 {
        let outcome = r.plane.start(push(&format!("p{i}"))).await.unwrap();
        ids.push(outcome.message.data_flow_id);
    }
    assert_eq!(r.plane.running_transfers(), 2);
    assert_eq!(r.plane.runner_len(), 2);
    for (i, id) in ids.iter().enumerate() {
        let flow = r.store.find(id).await.unwrap().unwrap();
        assert_eq!(flow.state, DataFlowState::Started);
        let expected = (i < 2).then_some("r1");
        assert_eq!(flow.runtime_id.as_deref(), expected, "flow {i}");
    }
    // Stopping one frees its entry and its slot.
    r.plane.terminate(&ids[0], None).await.unwrap();
    assert_eq!(r.plane.runner_len(), 1);
    assert_eq!(r.plane.running_transfers(), 1);
}

#[tokio::test(start_paused = true)]
async fn retries_are_spaced_by_the_configured_backoff() {
    let r = replica(FakeSource::new(b"never".to_vec()).flaky(u32::MAX), |c| {
        c.retry_limit = 5;
        c.retry_backoff = Duration::from_secs(10);
        // Long enough that the paused clock, advanced by the backoff, never outruns it.
        c.lease = Duration::from_secs(600);
        c.renew_interval = Duration::from_secs(60);
    })
    .await;
    let handle = r.run().await.unwrap();
    let id = r
        .plane
        .start(push("flaky"))
        .await
        .unwrap()
        .message
        .data_flow_id;
    let began = tokio::time::Instant::now();
    let terminated = loop {
        let flow = r.store.find(&id).await.unwrap().unwrap();
        if flow.state == DataFlowState::Terminated {
            break flow;
        }
        assert!(began.elapsed() < Duration::from_secs(600), "never gave up");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(terminated
        .error_detail
        .as_deref()
        .is_some_and(|e| e.contains("injected: open failed")));
    let opened = r.source.opened.lock().unwrap().clone();
    assert_eq!(opened.len(), 5, "retry.limit attempts");
    for (i, pair) in opened.windows(2).enumerate() {
        let gap = pair[1] - pair[0];
        // 10 s, doubling, capped at 30 s.
        let nominal = (Duration::from_secs(10) * 2u32.pow(u32::try_from(i).unwrap()))
            .min(Duration::from_secs(30));
        // ±10 % jitter, plus the few milliseconds of store writes between attempts.
        assert!(
            gap >= nominal.mul_f64(0.9) && gap <= nominal.mul_f64(1.1) + Duration::from_millis(50),
            "attempt {} came {gap:?} after the previous one (nominal {nominal:?})",
            i + 2
        );
    }
    assert!(until(100, || r.plane.runner_len() == 0).await);
    assert_eq!(r.plane.metrics.failed.get(), 1);
    handle.shutdown().await;
}

/// The runner keeps an entry only while a flow runs: one per pipeline, gone when it is
/// suspended, back on resume, gone when it completes.
#[tokio::test(start_paused = true)]
async fn suspend_and_resume_free_and_take_the_entry() {
    let r = replica(stalling(), |_| {}).await;
    let id = r.plane.start(push("p")).await.unwrap().message.data_flow_id;
    assert_eq!(r.plane.runner_len(), 1);
    r.plane.suspend(&id, None).await.unwrap();
    assert_eq!(r.plane.runner_len(), 0);
    r.plane.resume(&id, None).await.unwrap();
    assert_eq!(r.plane.runner_len(), 1);
    r.plane.terminate(&id, None).await.unwrap();
    assert_eq!(r.plane.runner_len(), 0);
}

#[tokio::test(start_paused = true)]
async fn an_owner_whose_lease_expires_fences_itself() {
    let r = replica(
        // One byte every 100 ms, for longer than any test runs.
        FakeSource::new(vec![b'x'; 1 << 20])
            .chunk_size(1)
            .delay_per_chunk(Duration::from_millis(100)),
        |c| {
            c.lease = Duration::from_secs(2);
            // The renewal never comes in time: as if the replica had been paused past its lease.
            c.renew_interval = Duration::from_secs(3600);
        },
    )
    .await;
    let handle = r.run().await.unwrap();
    let id = r.plane.start(push("p")).await.unwrap().message.data_flow_id;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert!(r.plane.lease_valid());
    assert_eq!(r.plane.runner_len(), 1);
    let flowing = r.sink.received().len();
    assert!(
        flowing > 0,
        "no byte reached the sink while the lease was valid"
    );

    // 90 % of the lease after joining, the replica stops writing and drops the transfer.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert!(!r.plane.lease_valid());
    let fenced = r.sink.received().len();
    assert!(
        fenced <= 18,
        "{fenced} bytes: written past 90 % of the lease"
    );
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(
        r.sink.received().len(),
        fenced,
        "bytes written after the lease ran out"
    );
    assert_eq!(r.plane.runner_len(), 0);
    let flow = r.store.find(&id).await.unwrap().unwrap();
    assert_eq!(
        flow.state,
        DataFlowState::Started,
        "a fenced owner records nothing (the flow is left for a replica with a valid lease)"
    );
    handle.shutdown().await;
}
