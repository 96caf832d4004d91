//! Cluster coordination with real replicas on PostgreSQL: leader election and terms, reaping
//! once per dead member, the watchable key-value store over HTTP, heartbeat keys, and live
//! configuration.

#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use futures::StreamExt;
use serde_json::{json, Value};
use system_tests::{call, get, postgres_store_url, start_replicas, Content, DataServer, Launcher};

const FAST: &[&str] = &[
    "-D",
    "edc.dataplane.state-machine.flow.lease.time=1000",
    "-D",
    "edc.dataplane.state-machine.flow.lease.renew-interval=250",
    "-D",
    "edc.dataplane.state-machine.claim.interval=100",
];

async fn leader_of(base: &str) -> Option<(String, i64)> {
    let (status, body) = get(&format!("{base}/cluster/leader")).await;
    (status == 200).then(|| {
        (
            body["leader"].as_str().unwrap().to_owned(),
            body["term"].as_i64().unwrap(),
        )
    })
}

/// Waits until every live replica names the same leader, other than `not`; returns it.
async fn agreed_leader(replicas: &[&Launcher], timeout: Duration) -> (String, i64) {
    agreed_leader_except(replicas, "", timeout).await
}

async fn agreed_leader_except(
    replicas: &[&Launcher],
    not: &str,
    timeout: Duration,
) -> (String, i64) {
    let deadline = Instant::now() + timeout;
    loop {
        let mut seen = Vec::new();
        for r in replicas {
            seen.push(leader_of(&r.base_url).await);
        }
        if let Some(Some(first)) = seen.first() {
            if first.0 != not && seen.iter().all(|s| s.as_ref() == Some(first)) {
                return first.clone();
            }
        }
        assert!(Instant::now() < deadline, "no agreed leader: {seen:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn reaped_lines(replicas: &[Launcher], member: &str) -> usize {
    replicas
        .iter()
        .map(|r| {
            r.log_text()
                .lines()
                .filter(|l| {
                    l.contains("reaped dead member") && l.contains(&format!("member={member} "))
                })
                .count()
        })
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_leader_failover_with_higher_term_and_fenced_zombie_leader() {
    let _serial = system_tests::serial().await;
    let dir = tempfile::tempdir().unwrap();
    let url = tokio::task::spawn_blocking(postgres_store_url)
        .await
        .unwrap();
    let mut replicas = start_replicas(3, &url, FAST, dir.path());
    let all: Vec<&Launcher> = replicas.iter().collect();
    let (first, term1) = agreed_leader(&all, Duration::from_secs(5)).await;
    println!("leader {first} term {term1}");

    // SIGKILL the leader: a survivor leads with a higher term within lease + a tick.
    let index: usize = first.trim_start_matches('r').parse().unwrap();
    replicas[index].kill();
    let killed = Instant::now();
    let survivors: Vec<&Launcher> = replicas
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != index)
        .map(|(_, r)| r)
        .collect();
    let (second, term2) = agreed_leader_except(&survivors, &first, Duration::from_secs(5)).await;
    let took = killed.elapsed();
    println!(
        "after SIGKILL of {first}: leader {second} term {term2} in {} ms (lease 1000 ms)",
        took.as_millis()
    );
    assert_ne!(second, first);
    assert!(term2 > term1);
    assert!(
        took < Duration::from_millis(1000 + 100 + 500),
        "election took {took:?}"
    );
    // The dead member is reaped once, by the leader.
    let deadline = Instant::now() + Duration::from_secs(5);
    while reaped_lines(&replicas, &first) == 0 {
        assert!(
            Instant::now() < deadline,
            "dead member never reaped; logs:\n{}",
            replicas
                .iter()
                .map(|r| r
                    .log_text()
                    .lines()
                    .filter(|l| l.contains("reap") || l.contains("leader") || l.contains("member"))
                    .collect::<Vec<_>>()
                    .join("\n"))
                .collect::<Vec<_>>()
                .join("\n---\n")
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(reaped_lines(&replicas, &first), 1, "reaped more than once");

    // SIGSTOP the new leader past its lease; after SIGCONT it must not lead (nor act) any more.
    let index2: usize = second.trim_start_matches('r').parse().unwrap();
    replicas[index2].signal("STOP");
    let others: Vec<&Launcher> = replicas
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != index && *i != index2)
        .map(|(_, r)| r)
        .collect();
    let (third, term3) = agreed_leader_except(&others, &second, Duration::from_secs(5)).await;
    assert!(term3 > term2);
    replicas[index2].signal("CONT");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let living: Vec<&Launcher> = replicas
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != index)
        .map(|(_, r)| r)
        .collect();
    let (now, term_now) = agreed_leader(&living, Duration::from_secs(5)).await;
    assert_eq!(
        (now.as_str(), term_now),
        (third.as_str(), term3),
        "the resumed old leader took the lead back"
    );
    assert_eq!(
        reaped_lines(&replicas, &first),
        1,
        "a deposed leader reaped again"
    );
    let zombie = replicas[index2].log_text();
    assert!(
        zombie.contains("membership lost")
            || zombie.contains("self-fencing")
            || zombie.contains("stale"),
        "{zombie}"
    );
}

/// Reads server-sent events until `done` says enough; returns (id, event, data) triples.
async fn read_events(url: &str, count: usize, timeout: Duration) -> Vec<(i64, String, Value)> {
    let response = system_tests::client().get(url).send().await.unwrap();
    assert_eq!(response.status(), 200, "{url}");
    let mut stream = response.bytes_stream();
    let mut buffer = String::new();
    let mut events = Vec::new();
    let deadline = tokio::time::Instant::now() + timeout;
    while events.len() < count {
        let chunk = tokio::time::timeout_at(deadline, stream.next())
            .await
            .expect("events stopped")
            .unwrap()
            .unwrap();
        buffer.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = buffer.find("\n\n") {
            let block: String = buffer.drain(..end + 2).collect();
            let (mut id, mut event, mut data) = (0, String::new(), Value::Null);
            for line in block.lines() {
                if let Some(v) = line.strip_prefix("id: ") {
                    id = v.parse().unwrap();
                } else if let Some(v) = line.strip_prefix("event: ") {
                    event = v.to_owned();
                } else if let Some(v) = line.strip_prefix("data: ") {
                    data = serde_json::from_str(v).unwrap();
                }
            }
            if !event.is_empty() && events.len() < count {
                // Anything after `count` is dropped with the connection, as a watcher that
                // dies mid-stream would.
                events.push((id, event, data));
            }
        }
    }
    events
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kv_api_watch_resume_heartbeats_and_bad_input() {
    let _serial = system_tests::serial().await;
    let dir = tempfile::tempdir().unwrap();
    let url = tokio::task::spawn_blocking(postgres_store_url)
        .await
        .unwrap();
    let mut replicas = start_replicas(2, &url, FAST, dir.path());
    let a = replicas[0].base_url.clone();
    let b = replicas[1].base_url.clone();

    // Heartbeat keys of both replicas are there.
    let (_, listing) = get(&format!("{b}/cluster/kv?prefix=dpf/heartbeat/")).await;
    let keys: Vec<&str> = listing["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["key"].as_str().unwrap())
        .collect();
    assert_eq!(keys, vec!["dpf/heartbeat/r0", "dpf/heartbeat/r1"]);
    let start_revision = listing["revision"].as_i64().unwrap();

    // 20 puts through one replica; a watcher on the other reads some, disconnects, resumes.
    for i in 0..20 {
        let (status, body) = call(
            reqwest::Method::PUT,
            &format!("{a}/cluster/kv/app/item-{i:02}"),
            Some(&json!({"value": format!("v{i}")})),
        )
        .await;
        assert_eq!(status, 200, "{body}");
    }
    let watch = |from: i64| format!("{b}/cluster/kv?watch=true&prefix=app/&fromRevision={from}");
    let first = read_events(&watch(start_revision), 7, Duration::from_secs(5)).await;
    let last = first.last().unwrap().0;
    let rest = read_events(&watch(last), 13, Duration::from_secs(5)).await;
    let all: Vec<String> = first
        .iter()
        .chain(rest.iter())
        .map(|(_, _, d)| d["key"].as_str().unwrap().to_owned())
        .collect();
    let expected: Vec<String> = (0..20).map(|i| format!("app/item-{i:02}")).collect();
    assert_eq!(all, expected, "every event exactly once, in order");
    assert!(first
        .iter()
        .chain(rest.iter())
        .all(|(_, kind, _)| kind == "PUT"));

    // Compare-and-set over HTTP, and bad input.
    let (_, entry) = get(&format!("{a}/cluster/kv/app/item-00")).await;
    assert_eq!(entry["version"], 1);
    let (status, body) = call(
        reqwest::Method::PUT,
        &format!("{a}/cluster/kv/app/item-00"),
        Some(&json!({"value": "x", "expectedVersion": 7})),
    )
    .await;
    assert_eq!(status, 409, "{body}");
    assert!(body["error"].as_str().unwrap().contains("version conflict"));
    let (status, _) = call(
        reqwest::Method::PUT,
        &format!("{a}/cluster/kv/app/item-00"),
        Some(&json!({"value": "x", "expectedVersion": 1})),
    )
    .await;
    assert_eq!(status, 200);
    let cases = [
        (
            call(
                reqwest::Method::GET,
                &format!("{a}/cluster/kv/app/none"),
                None,
            )
            .await,
            404,
        ),
        (
            call(
                reqwest::Method::DELETE,
                &format!("{a}/cluster/kv/app/none"),
                None,
            )
            .await,
            404,
        ),
        (
            call(
                reqwest::Method::DELETE,
                &format!("{a}/cluster/kv/app/item-01?expectedVersion=9"),
                None,
            )
            .await,
            409,
        ),
        (
            call(
                reqwest::Method::GET,
                &format!("{a}/cluster/kv?watch=true&fromRevision=abc"),
                None,
            )
            .await,
            400,
        ),
        (
            call(
                reqwest::Method::GET,
                &format!("{a}/cluster/kv?watch=true&fromRevision=-5"),
                None,
            )
            .await,
            400,
        ),
        (
            call(
                reqwest::Method::PUT,
                &format!("{a}/cluster/kv/app/x"),
                Some(&json!({"nope": 1})),
            )
            .await,
            400,
        ),
        (
            call(
                reqwest::Method::PUT,
                &format!("{a}/cluster/kv/dpf/config/dataplane.max-concurrent-flows"),
                Some(&json!({"value": "many"})),
            )
            .await,
            400,
        ),
        (
            call(
                reqwest::Method::PUT,
                &format!("{a}/cluster/kv/dpf/config/no.such.setting"),
                Some(&json!({"value": "1"})),
            )
            .await,
            400,
        ),
        (
            call(
                reqwest::Method::PUT,
                &format!("{a}/cluster/kv/dpf/config/selector.strategy"),
                Some(&json!({"value": "fastest"})),
            )
            .await,
            400,
        ),
    ];
    for (index, ((status, body), expected)) in cases.into_iter().enumerate() {
        assert_eq!(status, expected, "case {index}: {body}");
        assert!(body["error"].is_string(), "case {index}: {body}");
    }

    // A heartbeat key goes with its replica: the watcher gets the DELETE.
    let (_, listing) = get(&format!("{b}/cluster/kv?prefix=dpf/heartbeat/")).await;
    let revision = listing["revision"].as_i64().unwrap();
    replicas[0].kill();
    let events = read_events(
        &format!("{b}/cluster/kv?watch=true&prefix=dpf/heartbeat/&fromRevision={revision}"),
        1,
        Duration::from_secs(10),
    )
    .await;
    assert_eq!(events[0].1, "DELETE");
    assert_eq!(events[0].2["key"], "dpf/heartbeat/r0");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn live_max_concurrent_flows_applies_on_every_replica() {
    let _serial = system_tests::serial().await;
    use dataplane_spi::{Coordinator, DataFlowStore, Expected, FlowKind, NewDataFlow};
    let dir = tempfile::tempdir().unwrap();
    let url = tokio::task::spawn_blocking(postgres_store_url)
        .await
        .unwrap();
    let store = dataplane_store_sql::SqlStore::open(
        &dataplane_store_sql::StoreUrl::parse(&url).unwrap(),
        dataplane_store_sql::SqlStoreOptions::default(),
    )
    .await
    .unwrap();
    store
        .kv_put(
            "dpf/config/dataplane.max-concurrent-flows",
            "2",
            Expected::Any,
            None,
        )
        .await
        .unwrap();
    let data = DataServer::start();
    let block = system_tests::random_bytes(64 * 1024, 8);
    let source = data.put(
        "slow",
        Content::Pattern {
            block,
            len: 64 * 1024 * 600,
            delay: Duration::from_millis(100),
        },
    );
    for i in 0..100 {
        let mut flow = NewDataFlow::new(
            format!("q-{i}"),
            format!("qp-{i}"),
            FlowKind::ProviderPush,
            dataplane_spi::DataFlowState::Started,
        );
        flow.source = json!({"type": "HttpData", "baseUrl": source});
        flow.destination =
            Some(json!({"type": "HttpData", "baseUrl": data.upload_url(&format!("q-{i}"))}));
        store.create(&flow).await.unwrap();
    }
    let replicas = start_replicas(3, &url, FAST, dir.path());
    let base = replicas[0].base_url.clone();
    let running = |base: String| async move {
        let (_, flows) = get(&format!("{base}/dataflows?state=STARTED&limit=1000")).await;
        flows
            .as_array()
            .unwrap()
            .iter()
            .filter(|f| !f["runtimeId"].is_null())
            .count()
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while running(base.clone()).await != 6 {
        assert!(
            Instant::now() < deadline,
            "expected 2 running per replica, got {}",
            running(base.clone()).await
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(running(base.clone()).await, 6, "the limit holds");

    let (status, entry) = call(
        reqwest::Method::PUT,
        &format!("{base}/cluster/kv/dpf/config/dataplane.max-concurrent-flows"),
        Some(&json!({"value": "5"})),
    )
    .await;
    assert_eq!(status, 200, "{entry}");
    let revision = entry["modRevision"].as_i64().unwrap();
    let changed = Instant::now();
    while running(base.clone()).await != 15 {
        assert!(
            changed.elapsed() < Duration::from_secs(3),
            "expected 5 per replica, got {}",
            running(base.clone()).await
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let took = changed.elapsed();
    println!(
        "max-concurrent-flows 2 -> 5 applied on 3 replicas in {} ms",
        took.as_millis()
    );
    assert!(took < Duration::from_secs(1), "{took:?}");
    let (_, members) = get(&format!("{base}/cluster/members")).await;
    for member in members.as_array().unwrap() {
        assert_eq!(
            member["configRevision"].as_i64(),
            Some(revision),
            "{member}"
        );
    }
    // Lowering it gives transfers back: they wait again.
    call(
        reqwest::Method::PUT,
        &format!("{base}/cluster/kv/dpf/config/dataplane.max-concurrent-flows"),
        Some(&json!({"value": "1"})),
    )
    .await;
    let deadline = Instant::now() + Duration::from_secs(3);
    while running(base.clone()).await != 3 {
        assert!(
            Instant::now() < deadline,
            "expected 1 per replica, got {}",
            running(base.clone()).await
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}
