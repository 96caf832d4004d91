//! Membership, its lease guard, the renewal loop and the member change stream, over
//! `MemoryStore` with paused tokio time.
#![allow(clippy::unwrap_used)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use cluster::changes::{diff_members, member_changes, member_changes_after, MemberChange};
use cluster::membership::{LostHook, MemberState, Membership, MembershipHandle, HEARTBEAT_PREFIX};
use cluster::{ClusterError, ClusterOptions};
use dataplane_spi::{Coordinator, DataFlowState, DataFlowStore, FlowKind, NewDataFlow};
use dataplane_store_memory::MemoryStore;
use futures::StreamExt;
use tokio::sync::watch;

const LEASE: Duration = Duration::from_millis(2000);
const RENEW: Duration = Duration::from_millis(500);

fn options(name: &str) -> ClusterOptions {
    let mut options = ClusterOptions::new(name, format!("http://{name}"));
    options.lease = LEASE;
    options.renew_interval = RENEW;
    options
}

fn membership(store: &Arc<MemoryStore>, name: &str) -> (Membership, MembershipHandle) {
    Membership::new(store.clone(), store.clone(), &options(name))
}

/// Lets spawned tasks run up to their next timer.
async fn settle() {
    for _ in 0..20 {
        tokio::task::yield_now().await;
    }
}

/// Advances paused time in renewal-sized steps, letting the tasks run after each.
async fn advance(total: Duration) {
    let mut left = total;
    while !left.is_zero() {
        let step = left.min(Duration::from_millis(100));
        tokio::time::advance(step).await;
        settle().await;
        left -= step;
    }
}

#[tokio::test(start_paused = true)]
async fn join_makes_the_member_live_and_the_guard_valid() {
    let store = Arc::new(MemoryStore::new());
    let (_membership, handle) = membership(&store, "r1");
    assert!(!handle.lease_valid());
    assert!(handle.current_session().is_none());
    assert!(handle.session_watch().borrow().is_none());
    assert_eq!(handle.runtime_id(), "r1");

    handle.join().await.unwrap();
    assert!(handle.lease_valid());
    assert!(handle.guard().is_valid());
    let session = handle.current_session().unwrap();
    assert_eq!(session.runtime_id, "r1");
    assert_eq!(session.incarnation, handle.incarnation());
    assert_eq!(*handle.session_watch().borrow(), Some(session));
    assert_eq!(handle.reported_state(), Some(MemberState::Initializing));

    let live = handle.live_members().await.unwrap();
    assert_eq!(live.len(), 1);
    assert_eq!(live[0].runtime_id, "r1");
    assert_eq!(live[0].state, "INITIALIZING");
    let heartbeat = store
        .kv_get(&format!("{HEARTBEAT_PREFIX}r1"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(heartbeat.session.as_deref(), Some("r1"));
    let value: serde_json::Value = serde_json::from_str(&heartbeat.value).unwrap();
    assert_eq!(value["incarnation"], handle.incarnation());
    assert_eq!(value["api"], "http://r1");
}

#[tokio::test(start_paused = true)]
async fn a_second_live_incarnation_of_a_name_is_refused() {
    let store = Arc::new(MemoryStore::new());
    let (_a, first) = membership(&store, "r1");
    let (_b, second) = membership(&store, "r1");
    first.join().await.unwrap();
    let error = second.join().await.unwrap_err();
    assert!(matches!(error, ClusterError::NameInUse(_)), "{error:?}");
    assert!(!second.lease_valid());
}

#[tokio::test(start_paused = true)]
async fn the_guard_expires_without_renewal() {
    let store = Arc::new(MemoryStore::new());
    let (_membership, handle) = membership(&store, "r1");
    handle.join().await.unwrap();
    let guard = handle.guard();
    tokio::time::advance(LEASE.mul_f64(0.9) - Duration::from_millis(1)).await;
    assert!(guard.is_valid());
    tokio::time::advance(Duration::from_millis(2)).await;
    assert!(!guard.is_valid());
    assert!(!handle.lease_valid());
    assert!(handle.current_session().is_none());
    // The store still counts the lease: the guard errs on the safe side.
    assert_eq!(handle.live_members().await.unwrap().len(), 1);
}

#[tokio::test(start_paused = true)]
async fn run_renews_the_lease() {
    let store = Arc::new(MemoryStore::new());
    let (membership, handle) = membership(&store, "r1");
    handle.join().await.unwrap();
    let incarnation = handle.incarnation();
    let (stop, stopped) = watch::channel(false);
    let task = tokio::spawn(membership.run(stopped));
    settle().await;
    for _ in 0..4 * (LEASE.as_millis() / 100) {
        advance(Duration::from_millis(100)).await;
        assert!(handle.lease_valid());
    }
    assert!(handle.renewals() >= 14, "{}", handle.renewals());
    assert_eq!(handle.incarnation(), incarnation);
    assert_eq!(*handle.lost().borrow(), 0);
    let live = handle.live_members().await.unwrap();
    assert_eq!(live.len(), 1);
    stop.send(true).unwrap();
    task.await.unwrap();
    // Stopping the loop does not leave.
    assert_eq!(handle.live_members().await.unwrap().len(), 1);
}

/// A hook that counts its calls and checks what it must see: the lease already invalid and no
/// session published.
fn counting_hook(handle: &MembershipHandle, calls: &Arc<AtomicUsize>) -> LostHook {
    let handle = handle.clone();
    let calls = calls.clone();
    Arc::new(move || {
        let handle = handle.clone();
        let calls = calls.clone();
        Box::pin(async move {
            assert!(!handle.lease_valid());
            assert!(handle.session_watch().borrow().is_none());
            calls.fetch_add(1, Ordering::SeqCst);
        })
    })
}

#[tokio::test(start_paused = true)]
async fn a_lost_membership_stops_then_rejoins_as_a_new_incarnation() {
    let store = Arc::new(MemoryStore::new());
    let (membership, handle) = membership(&store, "r1");
    handle.join().await.unwrap();
    let old = handle.incarnation();
    let calls = Arc::new(AtomicUsize::new(0));
    let membership = membership.on_lost(counting_hook(&handle, &calls));
    let mut lost = handle.lost();
    let mut sessions = handle.session_watch();
    sessions.borrow_and_update();
    let (_stop, stopped) = watch::channel(false);
    tokio::spawn(membership.run(stopped));
    settle().await;

    // A peer removes the row (as a leader reaping it would).
    store.remove_member("r1", &old).await.unwrap();
    advance(RENEW).await;

    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert!(lost.has_changed().unwrap());
    assert_eq!(*lost.borrow_and_update(), 1);
    assert!(sessions.has_changed().unwrap());
    let new = handle.incarnation();
    assert_ne!(new, old);
    assert!(handle.lease_valid());
    assert_eq!(handle.current_session().unwrap().incarnation, new);
    let live = handle.live_members().await.unwrap();
    assert_eq!(live[0].incarnation, new);
    advance(LEASE * 2).await;
    assert!(handle.lease_valid());
    assert_eq!(*lost.borrow(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_replica_paused_past_its_lease_rejoins() {
    let store = Arc::new(MemoryStore::new());
    let (membership, handle) = membership(&store, "r1");
    handle.join().await.unwrap();
    let old = handle.incarnation();
    let calls = Arc::new(AtomicUsize::new(0));
    let membership = membership.on_lost(counting_hook(&handle, &calls));
    let (_stop, stopped) = watch::channel(false);
    tokio::spawn(membership.run(stopped));
    settle().await;
    // One jump: the renewal timer fires only after the lease is over.
    tokio::time::advance(LEASE * 2).await;
    assert!(!handle.lease_valid());
    settle().await;
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!(*handle.lost().borrow(), 1);
    assert_ne!(handle.incarnation(), old);
    assert!(handle.lease_valid());
}

#[tokio::test(start_paused = true)]
async fn run_joins_when_not_joined_yet() {
    let store = Arc::new(MemoryStore::new());
    let (membership, handle) = membership(&store, "r1");
    let (_stop, stopped) = watch::channel(false);
    tokio::spawn(membership.run(stopped));
    settle().await;
    assert!(!handle.lease_valid());
    advance(RENEW).await;
    assert!(handle.lease_valid());
    assert_eq!(*handle.lost().borrow(), 0);
}

#[tokio::test(start_paused = true)]
async fn report_state_writes_only_on_change() {
    let store = Arc::new(MemoryStore::new());
    let (_membership, handle) = membership(&store, "r1");
    handle.join().await.unwrap();
    let state = || async { store.list_members().await.unwrap()[0].state.clone() };
    handle.report_state(MemberState::Idle).await;
    assert_eq!(state().await, "IDLE");
    // Changed behind its back: an unchanged report writes nothing, so the marker stays.
    store
        .set_member_state("r1", &handle.incarnation(), "MARKER")
        .await
        .unwrap();
    handle.report_state(MemberState::Idle).await;
    assert_eq!(state().await, "MARKER");
    handle.report_state(MemberState::Healthy).await;
    assert_eq!(state().await, "HEALTHY");
    assert_eq!(handle.reported_state(), Some(MemberState::Healthy));
}

#[tokio::test(start_paused = true)]
async fn leave_releases_owned_flows() {
    let store = Arc::new(MemoryStore::new());
    let (membership, handle) = membership(&store, "r1");
    handle.join().await.unwrap();
    let (_stop, stopped) = watch::channel(false);
    tokio::spawn(membership.run(stopped));
    settle().await;
    for id in ["f1", "f2"] {
        let flow = NewDataFlow::new(
            id,
            format!("p-{id}"),
            FlowKind::ProviderPush,
            DataFlowState::Started,
        );
        store.create(&flow).await.unwrap();
    }
    let claimed = store
        .claim("r1", &[DataFlowState::Started], 10)
        .await
        .unwrap();
    assert_eq!(claimed.len(), 2);

    assert_eq!(handle.leave().await.unwrap(), 2);
    assert!(!handle.lease_valid());
    assert!(handle.session_watch().borrow().is_none());
    assert!(handle.live_members().await.unwrap().is_empty());
    let flow = store.find("f1").await.unwrap().unwrap();
    assert_eq!(flow.runtime_id, None);
    // The loop neither renews nor re-joins after leaving.
    advance(LEASE).await;
    assert!(handle.live_members().await.unwrap().is_empty());
    assert_eq!(*handle.lost().borrow(), 0);
    // Leaving twice: the membership is gone.
    assert!(matches!(
        handle.leave().await,
        Err(ClusterError::Conflict(_))
    ));
}

#[tokio::test(start_paused = true)]
async fn member_changes_yield_joins_updates_and_leaves() {
    let store = Arc::new(MemoryStore::new());
    let (_m1, r1) = membership(&store, "r1");
    let (_m2, r2) = membership(&store, "r2");
    r1.join().await.unwrap();
    let interval = Duration::from_millis(200);
    let mut changes = Box::pin(member_changes(store.clone(), interval));
    let first = changes.next().await.unwrap().unwrap();
    assert_eq!(first.event(), "join");
    assert_eq!(first.member().runtime_id, "r1");

    r2.join().await.unwrap();
    let joined = changes.next().await.unwrap().unwrap();
    assert!(matches!(&joined, MemberChange::Joined(m) if m.runtime_id == "r2"));

    r1.report_state(MemberState::Healthy).await;
    let updated = changes.next().await.unwrap().unwrap();
    assert!(matches!(&updated, MemberChange::Updated(m) if m.state == "HEALTHY"));

    r2.leave().await.unwrap();
    let left = changes.next().await.unwrap().unwrap();
    assert_eq!(left.event(), "leave");
    assert_eq!(left.member().runtime_id, "r2");

    // Heartbeats alone are no change: the next one is the expiry of r1's lease.
    let expired = changes.next().await.unwrap().unwrap();
    assert!(matches!(&expired, MemberChange::Left(m) if m.runtime_id == "r1"));
}

#[tokio::test(start_paused = true)]
async fn changes_after_a_listing_and_new_incarnations() {
    let store = Arc::new(MemoryStore::new());
    let (_m1, r1) = membership(&store, "r1");
    r1.join().await.unwrap();
    let listing = r1.live_members().await.unwrap();
    let store_dyn: Arc<dyn DataFlowStore> = store.clone();
    let mut changes = Box::pin(member_changes_after(
        store_dyn,
        Duration::from_millis(200),
        listing.clone(),
    ));
    // A new incarnation of r1 (the old one's row replaced once its lease is over).
    tokio::time::advance(LEASE).await;
    let (_again, again) = membership(&store, "r1");
    again.join().await.unwrap();
    let fresh = again.live_members().await.unwrap();
    let expected = diff_members(&listing, &fresh);
    assert_eq!(expected.len(), 2);
    assert_eq!(changes.next().await.unwrap().unwrap(), expected[0]);
    assert_eq!(changes.next().await.unwrap().unwrap(), expected[1]);
    assert!(matches!(&expected[0], MemberChange::Left(m) if m.incarnation == r1.incarnation()));
    assert!(
        matches!(&expected[1], MemberChange::Joined(m) if m.incarnation == again.incarnation())
    );
}

/// The load set on the handle is written by the next renewals (no other statement), and read
/// back with the store's time; without a load, renewals write none.
#[tokio::test(start_paused = true)]
async fn renewals_carry_the_load_report() {
    let store = Arc::new(MemoryStore::new());
    let (membership, handle) = membership(&store, "r1");
    handle.join().await.unwrap();
    let (stop, stopped) = watch::channel(false);
    let task = tokio::spawn(membership.run(stopped));
    advance(RENEW * 2).await;
    let loads = store.member_loads().await.unwrap();
    assert_eq!(loads.members.len(), 1);
    assert!(loads.members[0].report.is_none());

    handle.update_load(|report| {
        report.endpoint = Some("http://r1/signaling".into());
        report.profiles = vec!["p".into()];
    });
    handle.update_load(|report| {
        report.running = 4;
        report.capacity = 10;
        report.bytes_per_second = 99;
    });
    let renewals = handle.renewals();
    advance(RENEW * 2).await;
    assert!(handle.renewals() > renewals);
    let loads = store.member_loads().await.unwrap();
    let report = loads.members[0].report.clone().unwrap();
    assert_eq!(report, handle.load().unwrap());
    assert_eq!(
        (report.running, report.capacity, report.bytes_per_second),
        (4, 10, 99)
    );
    assert_eq!(report.endpoint.as_deref(), Some("http://r1/signaling"));
    let age = loads.now - loads.members[0].reported_at.unwrap();
    assert!(age <= chrono::Duration::milliseconds(500), "{age}");
    stop.send_replace(true);
    task.await.unwrap();
}
