//! The baseline service over `MemoryStore` with paused tokio time.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use cluster::baseline::{
    inactive_message, record_path, AutoAdjust, AutoAdjustDuty, BaselineHandle, BaselineService,
    ClusterState,
};
use cluster::leadership::{LeaderDuty, LeaderTerm};
use cluster::{ClusterError, ClusterOptions};
use dataplane_spi::{Coordinator, DataFlowStore, MemberRegistration, Session};
use dataplane_store_memory::MemoryStore;
use tokio::sync::watch;

const LEASE_MS: i64 = 60_000;

fn names(list: &[&str]) -> BTreeSet<String> {
    list.iter().map(|n| (*n).to_owned()).collect()
}

fn options(name: &str, dir: &Path, initial: Option<&[&str]>) -> ClusterOptions {
    let mut options = ClusterOptions::new(name, format!("http://{name}"));
    options.data_dir = dir.to_path_buf();
    options.initial_baseline = initial.map(names);
    options
}

async fn join(store: &MemoryStore, name: &str) -> Session {
    let registration = MemberRegistration {
        runtime_id: name.to_owned(),
        incarnation: format!("{name}-1"),
        lease_ms: LEASE_MS,
        state: "HEALTHY".to_owned(),
    };
    store.register_member(&registration).await.unwrap();
    Session {
        runtime_id: name.to_owned(),
        incarnation: format!("{name}-1"),
    }
}

async fn lead(store: &MemoryStore, session: &Session) -> LeaderTerm {
    let leader = store.campaign(session, LEASE_MS).await.unwrap().unwrap();
    assert_eq!(leader.leader, session.runtime_id);
    LeaderTerm {
        session: session.clone(),
        term: leader.term,
    }
}

fn service(
    store: &MemoryStore,
    options: &ClusterOptions,
) -> (
    BaselineService,
    BaselineHandle,
    watch::Sender<Option<Session>>,
) {
    let (sessions, receiver) = watch::channel(None);
    let (service, handle) = BaselineService::new(
        Arc::new(store.clone()) as Arc<dyn DataFlowStore>,
        Arc::new(store.clone()) as Arc<dyn Coordinator>,
        receiver,
        options,
    );
    (service, handle, sessions)
}

fn duty(store: &MemoryStore, options: &ClusterOptions) -> AutoAdjustDuty {
    AutoAdjustDuty::new(Arc::new(store.clone()), Arc::new(store.clone()), options)
}

fn members(handle: &BaselineHandle) -> BTreeSet<String> {
    handle
        .topology()
        .baseline
        .map(|(b, _)| b.members)
        .unwrap_or_default()
}

#[tokio::test(start_paused = true)]
async fn the_leader_sets_the_initial_baseline_and_activates_when_all_are_online() {
    let store = MemoryStore::new();
    let dir = tempfile::tempdir().unwrap();
    let initial: &[&str] = &["r1", "r2"];
    let r1 = options("r1", dir.path(), Some(initial));
    let (_, handle, _) = service(&store, &r1);
    let leader = join(&store, "r1").await;
    let term = lead(&store, &leader).await;
    let duty = duty(&store, &r1);
    assert_eq!(duty.interval(), r1.campaign_interval());

    duty.run(&term).await.unwrap();
    let topology = handle.refresh().await.unwrap();
    assert_eq!(members(&handle), names(initial));
    assert_eq!(topology.state, ClusterState::Inactive);
    assert!(!handle.may_own(), "an INACTIVE cluster owns nothing");
    let refused = handle.require_active().await.unwrap_err();
    assert_eq!(
        refused,
        ClusterError::Inactive {
            missing: vec!["r2".to_owned()]
        }
    );

    join(&store, "r2").await;
    duty.run(&term).await.unwrap();
    handle.require_active().await.unwrap();
    assert_eq!(handle.topology().state, ClusterState::Active);
    assert!(handle.may_own());
    let view = handle.view().await.unwrap();
    assert_eq!(view.state, "ACTIVE");
    assert_eq!(view.version, 1);
}

#[tokio::test(start_paused = true)]
async fn only_baseline_members_may_own_work() {
    let store = MemoryStore::new();
    let dir = tempfile::tempdir().unwrap();
    let (_, r1, _) = service(&store, &options("r1", dir.path(), None));
    let (_, r3, _) = service(&store, &options("r3", dir.path(), None));
    assert!(
        r3.may_own(),
        "without a baseline every replica may own work"
    );
    join(&store, "r1").await;
    join(&store, "r3").await;

    let view = r1.change("set", &["r1".into()], Some(0)).await.unwrap();
    assert_eq!(view.others, vec!["r3".to_owned()]);
    r3.refresh().await.unwrap();
    assert!(r1.may_own());
    assert!(!r3.may_own(), "r3 is outside the baseline");
    r3.require_active().await.unwrap();

    let json = serde_json::to_value(&view).unwrap();
    assert_eq!(json["state"], "ACTIVE");
    assert_eq!(json["members"][0]["name"], "r1");
    assert_eq!(json["members"][0]["online"], true);
    assert_eq!(json["autoAdjust"]["timeoutMs"], 0);
    assert!(json["clusterId"].is_string() && json["history"].is_string());
}

#[tokio::test(start_paused = true)]
async fn an_operator_deactivation_names_no_missing_member_and_sticks() {
    let store = MemoryStore::new();
    let dir = tempfile::tempdir().unwrap();
    let r1 = options("r1", dir.path(), None);
    let (_, handle, _) = service(&store, &r1);
    let leader = join(&store, "r1").await;
    let term = lead(&store, &leader).await;
    handle.change("set", &["r1".into()], None).await.unwrap();

    let view = handle.set_state(false).await.unwrap();
    assert_eq!(view.state, "INACTIVE");
    let refused = handle.require_active().await.unwrap_err();
    assert_eq!(refused, ClusterError::Inactive { missing: vec![] });
    assert!(inactive_message(&[]).contains("deactivated by an operator"));
    assert!(inactive_message(&["r2".into()]).ends_with("missing: r2"));

    duty(&store, &r1).run(&term).await.unwrap();
    handle.refresh().await.unwrap();
    assert_eq!(handle.topology().state, ClusterState::Inactive);
    let refused = handle.change("add", &["r2".into()], None).await;
    assert!(matches!(refused, Err(ClusterError::Conflict(m)) if m.contains("INACTIVE")));
    handle.set_state(true).await.unwrap();
    handle.require_active().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn baseline_commands_refuse_what_they_refused_before() {
    let store = MemoryStore::new();
    let dir = tempfile::tempdir().unwrap();
    let (_, handle, _) = service(&store, &options("r1", dir.path(), None));
    join(&store, "r1").await;
    let blank = handle.change("set", &[" ".into()], None).await;
    assert_eq!(
        blank.unwrap_err(),
        ClusterError::InvalidInput("replica names must not be blank".into())
    );
    let unknown = handle.change("swap", &["r1".into()], None).await;
    assert!(matches!(unknown, Err(ClusterError::InvalidInput(m)) if m.contains("'swap'")));
    handle
        .change("set", &["r1".into(), "r2".into()], None)
        .await
        .unwrap();
    let online = handle.change("remove", &["r1".into()], None).await;
    assert!(
        matches!(online, Err(ClusterError::Conflict(m)) if m.starts_with("Failed to remove r1"))
    );
    let stale = handle.change("remove", &["r2".into()], Some(7)).await;
    assert_eq!(
        stale.unwrap_err(),
        ClusterError::Conflict("baseline version conflict: expected 7, the cluster is at 1".into())
    );
    let empty = handle
        .change("remove", &["r2".into(), "r1".into()], None)
        .await;
    assert_eq!(
        empty.unwrap_err(),
        ClusterError::InvalidInput("a baseline needs at least one member".into())
    );
    let zero = AutoAdjust {
        enabled: true,
        timeout_ms: 0,
    };
    assert!(matches!(
        handle.set_auto_adjust(zero).await,
        Err(ClusterError::InvalidInput(_))
    ));
    let view = handle
        .change("remove", &["r2".into()], Some(1))
        .await
        .unwrap();
    assert_eq!(view.version, 2);
}

#[tokio::test(start_paused = true)]
async fn auto_adjust_waits_for_its_timeout() {
    let store = MemoryStore::new();
    let dir = tempfile::tempdir().unwrap();
    let r1 = options("r1", dir.path(), None);
    let (_, handle, _) = service(&store, &r1);
    let leader = join(&store, "r1").await;
    join(&store, "r2").await;
    let term = lead(&store, &leader).await;
    handle
        .change("set", &["r1".into(), "r2".into()], None)
        .await
        .unwrap();
    let settings = AutoAdjust {
        enabled: true,
        timeout_ms: 5_000,
    };
    assert_eq!(
        handle.set_auto_adjust(settings).await.unwrap().auto_adjust,
        settings
    );
    let duty = duty(&store, &r1);

    store.remove_member("r2", "r2-1").await.unwrap();
    duty.run(&term).await.unwrap(); // the countdown starts
    tokio::time::advance(Duration::from_millis(4_900)).await;
    duty.run(&term).await.unwrap();
    handle.refresh().await.unwrap();
    assert_eq!(
        members(&handle),
        names(&["r1", "r2"]),
        "not before the timeout"
    );

    tokio::time::advance(Duration::from_millis(200)).await;
    let term = lead(&store, &leader).await; // renews the leadership
    duty.run(&term).await.unwrap();
    handle.refresh().await.unwrap();
    assert_eq!(members(&handle), names(&["r1"]));
    assert_eq!(handle.view().await.unwrap().version, 2);
}

#[tokio::test(start_paused = true)]
async fn min_live_adjusts_at_once_but_not_under_a_stale_term() {
    let store = MemoryStore::new();
    let dir = tempfile::tempdir().unwrap();
    let mut r1 = options("r1", dir.path(), None);
    r1.min_live = Some(3);
    let (_, handle, _) = service(&store, &r1);
    let first = join(&store, "r1").await;
    let second = join(&store, "r2").await;
    join(&store, "r3").await;
    handle
        .change("set", &["r1".into(), "r2".into(), "r3".into()], None)
        .await
        .unwrap();
    let stale = lead(&store, &first).await;
    store.resign(&first, stale.term).await.unwrap();
    let current = lead(&store, &second).await;
    assert!(current.term > stale.term);

    store.remove_member("r3", "r3-1").await.unwrap();
    let duty = duty(&store, &r1);
    let refused = duty.run(&stale).await.unwrap_err();
    assert!(
        matches!(refused, ClusterError::Conflict(ref m) if m.contains("no longer the leading term"))
    );
    handle.refresh().await.unwrap();
    assert_eq!(members(&handle), names(&["r1", "r2", "r3"]));

    duty.run(&current).await.unwrap();
    handle.refresh().await.unwrap();
    assert_eq!(members(&handle), names(&["r1", "r2"]));
}

#[tokio::test(start_paused = true)]
async fn check_identity_refuses_a_data_dir_of_another_cluster() {
    let dir = tempfile::tempdir().unwrap();
    let first = MemoryStore::new();
    let (_, handle, _) = service(&first, &options("r1", dir.path(), Some(&["r1"])));
    join(&first, "r1").await;
    handle.check_identity().await.unwrap();
    assert!(record_path(dir.path()).exists(), "the record is written");
    handle.check_identity().await.unwrap();

    let other = MemoryStore::new();
    let (_, stranger, _) = service(&other, &options("r1", dir.path(), None));
    let refused = stranger.check_identity().await.unwrap_err();
    assert!(
        matches!(refused, ClusterError::IdentityMismatch(ref m) if m.contains("Consider cleaning persistent storage")),
        "{refused:?}"
    );

    std::fs::write(record_path(dir.path()), "not json").unwrap();
    let corrupt = stranger.check_identity().await.unwrap_err();
    assert!(matches!(corrupt, ClusterError::InvalidInput(_)));
}

#[tokio::test(start_paused = true)]
async fn the_service_refreshes_while_joined_until_shut_down() {
    let store = MemoryStore::new();
    let dir = tempfile::tempdir().unwrap();
    let r3 = options("r3", dir.path(), None);
    let (service, handle, sessions) = service(&store, &r3);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = service.run(async move {
        let _ = stopped.await;
    });
    let (_, admin, _) = self::service(&store, &options("r1", dir.path(), None));
    admin.change("set", &["r1".into()], None).await.unwrap();
    tokio::time::advance(r3.topology_interval * 2).await;
    tokio::task::yield_now().await;
    assert!(handle.may_own(), "not joined: no refresh");

    sessions.send_replace(Some(join(&store, "r3").await));
    let mut changes = handle.watch();
    tokio::time::timeout(r3.topology_interval * 2, changes.changed())
        .await
        .unwrap()
        .unwrap();
    assert!(!handle.may_own(), "refreshed once joined");
    stop.send(()).unwrap();
    task.await.unwrap();
}
