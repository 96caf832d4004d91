//! The leader campaign and the leader duties over `MemoryStore`, on paused tokio time.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use cluster::leadership::{
    Housekeeping, LeaderDuty, LeaderTerm, Leadership, LeadershipHandle, Reaper,
};
use cluster::{ClusterError, ClusterOptions};
use dataplane_spi::{
    CoordinationError, Coordinator, DataFlowState, DataFlowStore, Expected, FlowKind,
    MemberRegistration, NewDataFlow, Session,
};
use dataplane_store_memory::MemoryStore;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::{sleep, sleep_until, Instant};

const DUTY_INTERVAL: Duration = Duration::from_secs(1);

/// A duty that records the term and instant of each run; fails when asked to.
#[derive(Debug, Default)]
struct Counting {
    runs: Mutex<Vec<(i64, Instant)>>,
    fail: bool,
}

impl Counting {
    fn runs(&self) -> Vec<(i64, Instant)> {
        self.runs.lock().unwrap().clone()
    }
}

#[async_trait::async_trait]
impl LeaderDuty for Counting {
    fn name(&self) -> &'static str {
        "counting"
    }

    fn interval(&self) -> Duration {
        DUTY_INTERVAL
    }

    async fn run(&self, term: &LeaderTerm) -> cluster::Result<()> {
        self.runs.lock().unwrap().push((term.term, Instant::now()));
        if self.fail {
            return Err(ClusterError::Unavailable("asked to fail".into()));
        }
        Ok(())
    }
}

fn options(name: &str) -> ClusterOptions {
    let mut options = ClusterOptions::new(name, format!("http://{name}"));
    options.lease = Duration::from_secs(2);
    options
}

fn session(name: &str) -> Session {
    Session {
        runtime_id: name.into(),
        incarnation: format!("{name}-1"),
    }
}

async fn join(store: &MemoryStore, name: &str, lease: Duration) -> Session {
    store
        .register_member(&MemberRegistration {
            runtime_id: name.into(),
            incarnation: format!("{name}-1"),
            lease_ms: i64::try_from(lease.as_millis()).unwrap(),
            state: "HEALTHY".into(),
        })
        .await
        .unwrap();
    session(name)
}

/// One replica's leadership task.
struct Replica {
    handle: LeadershipHandle,
    duty: Arc<Counting>,
    sessions: watch::Sender<Option<Session>>,
    shutdown: watch::Sender<bool>,
    task: JoinHandle<()>,
}

fn start(store: &Arc<MemoryStore>, session: Option<Session>, duty: Counting) -> Replica {
    let (sessions, receiver) = watch::channel(session);
    let (shutdown, stop) = watch::channel(false);
    let name = receiver
        .borrow()
        .as_ref()
        .map_or_else(|| "nobody".to_owned(), |s| s.runtime_id.clone());
    let options = options(&name);
    let duty = Arc::new(duty);
    let (leadership, handle) = Leadership::new(store.clone(), receiver, &options);
    let leadership = leadership
        .with_duty(duty.clone())
        .with_duty(Arc::new(Reaper::new(
            store.clone(),
            store.clone(),
            &options,
        )));
    let task = tokio::spawn(leadership.run(stop));
    Replica {
        handle,
        duty,
        sessions,
        shutdown,
        task,
    }
}

/// Within one term, runs are exactly one interval apart.
fn assert_once_per_interval(runs: &[(i64, Instant)]) {
    for pair in runs.windows(2) {
        if pair[0].0 == pair[1].0 {
            assert_eq!(pair[1].1 - pair[0].1, DUTY_INTERVAL, "runs {runs:?}");
        }
    }
}

#[tokio::test(start_paused = true)]
async fn one_leader_runs_the_duties_and_a_peer_takes_over_with_a_higher_term() {
    let store = Arc::new(MemoryStore::new());
    let t0 = Instant::now();
    // a's membership is not renewed: it dies at t0 + 10 s.
    let a = start(
        &store,
        Some(join(&store, "a", Duration::from_secs(10)).await),
        Counting::default(),
    );
    sleep(Duration::from_millis(100)).await;
    let b = start(
        &store,
        Some(join(&store, "b", Duration::from_secs(3600)).await),
        Counting::default(),
    );

    sleep_until(t0 + Duration::from_millis(5500)).await;
    assert!(a.handle.is_leader());
    assert!(!b.handle.is_leader());
    assert_eq!(b.handle.term(), None);
    let first = a.handle.term().unwrap();
    assert_eq!(first.session, session("a"));
    assert_eq!(b.handle.known_leader().unwrap().leader, "a");
    assert_eq!(b.handle.known_leader().unwrap().term, first.term);
    let runs = a.duty.runs();
    assert_eq!(runs.len(), 6, "at 0, 1, … 5 s: {runs:?}");
    assert!(runs.iter().all(|(term, _)| *term == first.term));
    assert_eq!(runs[0].1, t0, "a new term runs the duty at once");
    assert_once_per_interval(&runs);
    assert!(b.duty.runs().is_empty(), "only the leader runs duties");

    // a's lease expires at 10 s; its lead at most 2 s later; b takes over and reaps a.
    sleep_until(t0 + Duration::from_secs(20)).await;
    assert!(!a.handle.is_leader());
    let second = b.handle.term().unwrap();
    assert!(second.term > first.term);
    assert_eq!(
        a.handle.known_leader().unwrap().term,
        first.term,
        "a cannot campaign any more"
    );
    let a_runs = a.duty.runs();
    assert!(a_runs.iter().all(|(term, _)| *term == first.term));
    assert_eq!(a_runs.len(), 11, "at 0, 1, … 10 s: {a_runs:?}");
    let b_runs = b.duty.runs();
    assert!(b_runs.iter().all(|(term, _)| *term == second.term));
    assert!(b_runs[0].1 > t0 + Duration::from_secs(10));
    assert!(b_runs[0].1 <= t0 + Duration::from_secs(13));
    let expected = (Instant::now() - b_runs[0].1).as_secs() + 1;
    assert_eq!(b_runs.len() as u64, expected, "{b_runs:?}");
    assert_once_per_interval(&b_runs);
    let members = store.list_members().await.unwrap();
    assert!(
        members.iter().all(|m| m.runtime_id != "a"),
        "the dead leader was reaped"
    );

    // The deposed term is refused by the store.
    assert!(matches!(
        store
            .reap_member(&first.session, first.term, "b", "b-1")
            .await,
        Err(CoordinationError::StaleTerm { .. })
    ));
    assert!(matches!(
        store
            .purge_finished_flows(&first.session, first.term, 0)
            .await,
        Err(CoordinationError::StaleTerm { .. })
    ));
    a.task.abort();
    b.task.abort();
}

#[tokio::test(start_paused = true)]
async fn shutdown_resigns_so_a_peer_leads_at_once() {
    let store = Arc::new(MemoryStore::new());
    let a = start(
        &store,
        Some(join(&store, "a", Duration::from_secs(3600)).await),
        Counting::default(),
    );
    sleep(Duration::from_millis(10)).await;
    let term = a.handle.term().unwrap();
    a.shutdown.send(true).unwrap();
    a.task.await.unwrap();
    assert_eq!(a.handle.term(), None);
    assert_eq!(store.leader().await.unwrap(), None, "resigned");

    let b = start(
        &store,
        Some(join(&store, "b", Duration::from_secs(3600)).await),
        Counting::default(),
    );
    sleep(Duration::from_millis(10)).await;
    assert_eq!(b.handle.term().unwrap().term, term.term + 1);
    b.task.abort();
}

#[tokio::test(start_paused = true)]
async fn campaigns_only_with_a_session_and_at_once_when_one_appears() {
    let store = Arc::new(MemoryStore::new());
    let a = start(&store, None, Counting::default());
    sleep(Duration::from_secs(5)).await;
    assert!(!a.handle.is_leader());
    assert_eq!(store.leader().await.unwrap(), None);
    assert!(a.duty.runs().is_empty());

    let joined = Instant::now();
    a.sessions
        .send(Some(join(&store, "a", Duration::from_secs(3600)).await))
        .unwrap();
    sleep(Duration::from_millis(1)).await;
    assert!(a.handle.is_leader());
    assert_eq!(
        a.duty.runs()[0].1,
        joined,
        "no wait for the campaign interval"
    );

    a.sessions.send(None).unwrap();
    sleep(Duration::from_millis(1)).await;
    assert!(!a.handle.is_leader(), "no term without a session");
    a.task.abort();
}

#[tokio::test(start_paused = true)]
async fn a_failing_duty_is_retried_every_interval() {
    let store = Arc::new(MemoryStore::new());
    let a = start(
        &store,
        Some(join(&store, "a", Duration::from_secs(3600)).await),
        Counting {
            fail: true,
            ..Counting::default()
        },
    );
    sleep(Duration::from_millis(3500)).await;
    assert!(a.handle.is_leader());
    assert_eq!(a.duty.runs().len(), 4);
    a.task.abort();
}

#[tokio::test(start_paused = true)]
async fn the_reaper_reaps_dead_members_and_their_keys() {
    let store = Arc::new(MemoryStore::new());
    let leader = join(&store, "leader", Duration::from_secs(3600)).await;
    let dead = join(&store, "dead", Duration::from_secs(1)).await;
    store
        .kv_put("dpf/heartbeat/dead", "x", Expected::Any, Some(&dead))
        .await
        .unwrap();
    let term = LeaderTerm {
        term: store.campaign(&leader, 2000).await.unwrap().unwrap().term,
        session: leader,
    };
    let reaper = Reaper::new(store.clone(), store.clone(), &options("leader"));
    assert_eq!(reaper.interval(), options("leader").campaign_interval());
    reaper.run(&term).await.unwrap();
    assert_eq!(store.list_members().await.unwrap().len(), 2, "still alive");

    sleep(Duration::from_millis(1500)).await;
    reaper.run(&term).await.unwrap();
    let members = store.list_members().await.unwrap();
    assert_eq!(members.len(), 1);
    assert_eq!(members[0].runtime_id, "leader");
    assert_eq!(store.kv_get("dpf/heartbeat/dead").await.unwrap(), None);
}

#[tokio::test(start_paused = true)]
async fn housekeeping_purges_finished_flows_past_retention() {
    let store = Arc::new(MemoryStore::new());
    let session = join(&store, "a", Duration::from_secs(7200)).await;
    let mut old = NewDataFlow::new(
        "old",
        "p-old",
        FlowKind::ProviderPush,
        DataFlowState::Completed,
    );
    old.runtime_id = None;
    store.create(&old).await.unwrap();
    store
        .create(&NewDataFlow::new(
            "live",
            "p-live",
            FlowKind::ProviderPush,
            DataFlowState::Started,
        ))
        .await
        .unwrap();
    let mut options = options("a");
    options.retention = Duration::from_secs(3600);
    options.housekeeping_interval = Duration::from_secs(60);
    let (shutdown, stop) = watch::channel(false);
    let (_sessions, receiver) = watch::channel(Some(session));
    let (leadership, handle) = Leadership::new(store.clone(), receiver, &options);
    let task = tokio::spawn(
        leadership
            .with_duty(Arc::new(Housekeeping::new(store.clone(), &options)))
            .run(stop),
    );
    sleep(Duration::from_secs(3000)).await;
    assert!(handle.is_leader());
    assert!(store.find("old").await.unwrap().is_some(), "too young");
    sleep(Duration::from_secs(700)).await;
    assert!(store.find("old").await.unwrap().is_none(), "purged");
    assert!(
        store.find("live").await.unwrap().is_some(),
        "unfinished flows stay"
    );
    shutdown.send(true).unwrap();
    task.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn housekeeping_compacts_and_keeps_flows_without_retention() {
    let store = Arc::new(MemoryStore::new());
    let session = join(&store, "a", Duration::from_secs(3600)).await;
    let mut old = NewDataFlow::new(
        "old",
        "p-old",
        FlowKind::ProviderPush,
        DataFlowState::Completed,
    );
    old.runtime_id = None;
    store.create(&old).await.unwrap();
    for key in ["dpf/x/1", "dpf/x/2", "dpf/x/3"] {
        store.kv_put(key, "v", Expected::Any, None).await.unwrap();
    }
    let term = LeaderTerm {
        term: store.campaign(&session, 2000).await.unwrap().unwrap().term,
        session,
    };
    let mut options = options("a");
    options.retention = Duration::ZERO;
    sleep(Duration::from_secs(10)).await;
    Housekeeping::new(store.clone(), &options)
        .with_events_kept(1)
        .run(&term)
        .await
        .unwrap();
    assert!(
        store.find("old").await.unwrap().is_some(),
        "retention 0 keeps everything"
    );
    assert!(matches!(
        store.kv_events("dpf/x/", 0, 10).await,
        Err(CoordinationError::Compacted { .. })
    ));
}
