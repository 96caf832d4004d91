//! Issue 18: a selector that knows the cluster. Replicas report their load with their
//! heartbeat; a selector on the cluster's PostgreSQL follows the members (no registration call)
//! and `least-loaded` uses the reports; registrations on a selector of its own may carry a TTL.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use system_tests::{
    flow_message, get, post, postgres_store_url, random_bytes, Content, DataServer, Launcher, PUSH,
};

/// 1 s lease renewed every 250 ms, claims every 100 ms; a selector refreshing every 100 ms.
const LEASE: Duration = Duration::from_millis(1000);
const HEARTBEAT: Duration = Duration::from_millis(250);

fn replica(dir: &std::path::Path, store: &str, name: &str, extra: &[&str]) -> Launcher {
    let dir = dir.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    let mut args: Vec<String> = [
        format!("edc.runtime.id={name}"),
        format!("dpf.store.url={store}"),
        "edc.dataplane.state-machine.flow.lease.time=1000".into(),
        "edc.dataplane.state-machine.flow.lease.renew-interval=250".into(),
        "edc.dataplane.state-machine.claim.interval=100".into(),
    ]
    .into_iter()
    .flat_map(|setting| ["-D".to_owned(), setting])
    .collect();
    args.extend(extra.iter().map(|s| (*s).to_owned()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Launcher::start("dataplane-launcher", &args, &[], &dir)
}

fn selector(dir: &std::path::Path, store: &str) -> Launcher {
    let dir = dir.join("selector");
    std::fs::create_dir_all(&dir).unwrap();
    let args = [
        "-D".to_owned(),
        format!("dpf.store.url={store}"),
        "-D".to_owned(),
        "dpf.selector.load.refresh-interval=100".to_owned(),
        "-D".to_owned(),
        "edc.dataplane.state-machine.flow.lease.renew-interval=250".to_owned(),
    ];
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Launcher::start("selector-launcher", &args, &[], &dir)
}

/// The selector's instances by id.
async fn instances(selector: &str) -> BTreeMap<String, Value> {
    let (status, listed) = get(&format!("{selector}/dataplanes")).await;
    assert_eq!(status, 200, "{listed}");
    listed
        .as_array()
        .unwrap()
        .iter()
        .map(|i| (i["id"].as_str().unwrap().to_owned(), i.clone()))
        .collect()
}

/// Polls the instance listing until `done` holds (panics after `timeout` with the listing).
async fn wait_instances(
    selector: &str,
    timeout: Duration,
    done: impl Fn(&BTreeMap<String, Value>) -> bool,
) -> BTreeMap<String, Value> {
    let deadline = Instant::now() + timeout;
    loop {
        let listed = instances(selector).await;
        if done(&listed) {
            return listed;
        }
        assert!(
            Instant::now() < deadline,
            "timed out; instances: {listed:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn select_full(selector: &str, strategy: &str) -> (u16, Value) {
    post(
        &format!("{selector}/dataplanes/select"),
        &json!({"profile": PUSH, "strategy": strategy}),
    )
    .await
}

async fn select(selector: &str, strategy: &str) -> String {
    let (status, chosen) = select_full(selector, strategy).await;
    assert_eq!(status, 200, "{chosen}");
    chosen["id"].as_str().unwrap().to_owned()
}

fn running(instance: &Value) -> Option<u64> {
    let load = &instance["load"];
    (load["stale"] == false)
        .then(|| load["running"].as_u64())
        .flatten()
}

async fn put_dataset(base: &str, id: &str, url: &str) {
    let (status, body) = system_tests::call(
        reqwest::Method::PUT,
        &format!("{base}/datasets/{id}"),
        Some(&json!({"type": "HttpData", "baseUrl": url})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
}

/// Starts `count` push transfers on `base` from a source that dribbles for about `seconds`.
async fn start_slow_flows(base: &str, data: &DataServer, tag: &str, count: usize, seconds: u64) {
    let url = data.put(
        tag,
        Content::Pattern {
            block: random_bytes(16 * 1024, 3),
            len: 16 * 1024 * seconds * 4,
            delay: Duration::from_millis(250),
        },
    );
    put_dataset(base, tag, &url).await;
    for i in 0..count {
        let mut start = flow_message(&format!("{tag}-{i}"), PUSH, tag, "p");
        start["dataAddress"] =
            json!({"endpointType": PUSH, "endpoint": data.upload_url(&format!("{tag}-{i}"))});
        let (status, body) = post(&format!("{base}/signaling/dataflows/start"), &start).await;
        assert_eq!(status, 200, "{body}");
    }
}

/// Acceptance 1: with r0 running 20 throttled flows and r1, r2 idle, 20 `least-loaded`
/// selections avoid r0 and split between r1 and r2 within ±3; once r0's flows finished, r0 is
/// chosen again. Every instance appeared without a registration call.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn least_loaded_avoids_the_busy_replica() {
    let _serial = system_tests::serial().await;
    let dir = tempfile::tempdir().unwrap();
    let store = tokio::task::spawn_blocking(postgres_store_url)
        .await
        .unwrap();
    let data = DataServer::start();
    let capacity = ["-D", "dpf.dataplane.max-concurrent-flows=40"];
    let replicas: Vec<Launcher> = ["r0", "r1", "r2"]
        .iter()
        .map(|name| replica(dir.path(), &store, name, &capacity))
        .collect();
    let selector = selector(dir.path(), &store);
    let url = selector.base_url.clone();
    let listed = wait_instances(&url, Duration::from_secs(15), |listed| {
        ["r0", "r1", "r2"].iter().all(|id| {
            listed
                .get(*id)
                .is_some_and(|i| i["state"] == "AVAILABLE" && running(i) == Some(0))
        })
    })
    .await;
    assert_eq!(listed["r1"]["load"]["capacity"], 40, "{:?}", listed["r1"]);
    assert_eq!(
        listed["r1"]["endpoint"],
        format!("{}/signaling", replicas[1].base_url)
    );

    start_slow_flows(&replicas[0].base_url, &data, "busy", 20, 8).await;
    wait_instances(&url, Duration::from_secs(10), |listed| {
        running(&listed["r0"]) == Some(20)
    })
    .await;
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for _ in 0..20 {
        *counts
            .entry(select(&url, "least-loaded").await)
            .or_default() += 1;
    }
    println!("least-loaded with r0 busy: {counts:?}");
    assert_eq!(counts.get("r0"), None, "{counts:?}");
    let (b, c) = (counts["r1"], counts["r2"]);
    assert!(b.abs_diff(10) <= 3 && c.abs_diff(10) <= 3, "{counts:?}");

    // r0's transfers finish; its next reports show it idle and it is chosen again.
    wait_instances(&url, Duration::from_secs(30), |listed| {
        running(&listed["r0"]) == Some(0) && listed["r0"]["load"]["bytesPerSecond"] == 0
    })
    .await;
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if select(&url, "least-loaded").await == "r0" {
            break;
        }
        assert!(Instant::now() < deadline, "r0 is never chosen again");
    }
}

/// Acceptance 2: a SIGKILLed replica is never selected, by any strategy, from lease + 1 s after
/// the kill; restarted, it is selected again within one heartbeat of being IDLE. No
/// registration call is made.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn killed_replica_is_not_selected_and_returns() {
    let _serial = system_tests::serial().await;
    let dir = tempfile::tempdir().unwrap();
    let store = tokio::task::spawn_blocking(postgres_store_url)
        .await
        .unwrap();
    let mut replicas: Vec<Launcher> = ["r0", "r1", "r2"]
        .iter()
        .map(|name| replica(dir.path(), &store, name, &[]))
        .collect();
    let selector = selector(dir.path(), &store);
    let url = selector.base_url.clone();
    wait_instances(&url, Duration::from_secs(15), |listed| {
        ["r0", "r1", "r2"]
            .iter()
            .all(|id| listed.get(*id).is_some_and(|i| i["state"] == "AVAILABLE"))
    })
    .await;

    replicas[1].kill();
    let killed = Instant::now();
    tokio::time::sleep(LEASE + Duration::from_secs(1)).await;
    let listed = instances(&url).await;
    assert_eq!(listed["r1"]["state"], "UNAVAILABLE", "{:?}", listed["r1"]);
    for strategy in ["random", "round-robin", "oldest-next", "least-loaded"] {
        for _ in 0..200 {
            let chosen = select(&url, strategy).await;
            assert_ne!(chosen, "r1", "{strategy} chose the killed replica");
        }
    }
    println!(
        "800 selections without the killed replica, from {} ms after the kill",
        (LEASE + Duration::from_secs(1)).as_millis()
    );
    assert!(killed.elapsed() > LEASE);

    replicas[1] = replica(dir.path(), &store, "r1", &[]);
    // When the new incarnation publishes IDLE (seen through a peer's member listing) …
    let peer = replicas[0].base_url.clone();
    let deadline = Instant::now() + Duration::from_secs(15);
    let idle_at = loop {
        let (_, members) = get(&format!("{peer}/cluster/members")).await;
        let idle = members.as_array().into_iter().flatten().any(|m| {
            (m["name"] == "r1" || m["runtimeId"] == "r1")
                && matches!(m["state"].as_str(), Some("IDLE" | "HEALTHY"))
        });
        if idle {
            break Instant::now();
        }
        assert!(Instant::now() < deadline, "r1 never became IDLE: {members}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    // … the selector offers it again within about one heartbeat.
    loop {
        if select(&url, "round-robin").await == "r1" {
            break;
        }
        assert!(
            idle_at.elapsed() < HEARTBEAT * 2 + Duration::from_millis(500),
            "r1 not selected {} ms after it was IDLE",
            idle_at.elapsed().as_millis()
        );
    }
    println!(
        "restarted replica selected {} ms after it was IDLE",
        idle_at.elapsed().as_millis()
    );
}

/// Acceptance 3: a registration with `ttlSeconds: 2` that is not renewed is UNAVAILABLE after
/// 2 s, and selectable again after a renewal.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn registration_ttl_expires_until_renewed() {
    let dir = tempfile::tempdir().unwrap();
    let selector = selector(dir.path(), "memory:");
    let url = selector.base_url.clone();
    let registration = json!({
        "dataplaneId": "dp-ttl",
        "endpoint": "http://dp-ttl.example/api/v1/signaling",
        "profiles": [PUSH],
        "authorization": {"type": "none"},
        "ttlSeconds": 2
    });
    let put = || async {
        let (status, body) = system_tests::call(
            reqwest::Method::PUT,
            &format!("{url}/dataplanes"),
            Some(&registration),
        )
        .await;
        assert!(status == 200 || status == 201, "{status} {body}");
    };
    put().await;
    let registered = Instant::now();
    assert_eq!(select(&url, "random").await, "dp-ttl");
    let (_, instance) = get(&format!("{url}/dataplanes/dp-ttl")).await;
    assert_eq!(instance["ttlSeconds"], 2, "{instance}");
    tokio::time::sleep(Duration::from_millis(2_100).saturating_sub(registered.elapsed())).await;
    let (_, instance) = get(&format!("{url}/dataplanes/dp-ttl")).await;
    assert_eq!(instance["state"], "UNAVAILABLE", "{instance}");
    let (status, body) = select_full(&url, "random").await;
    assert_eq!(status, 404, "{body}");
    put().await;
    assert_eq!(select(&url, "random").await, "dp-ttl");
}

/// Acceptance 4: a replica at max-concurrent-flows is not offered by `least-loaded` while
/// another has room; when every replica is at capacity one is offered (not a 404) and the
/// answer says so (`load.atCapacity`).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn least_loaded_at_capacity() {
    let _serial = system_tests::serial().await;
    let dir = tempfile::tempdir().unwrap();
    let store = tokio::task::spawn_blocking(postgres_store_url)
        .await
        .unwrap();
    let data = DataServer::start();
    let capacity = ["-D", "dpf.dataplane.max-concurrent-flows=2"];
    let replicas: Vec<Launcher> = ["r0", "r1"]
        .iter()
        .map(|name| replica(dir.path(), &store, name, &capacity))
        .collect();
    let selector = selector(dir.path(), &store);
    let url = selector.base_url.clone();
    wait_instances(&url, Duration::from_secs(15), |listed| {
        ["r0", "r1"]
            .iter()
            .all(|id| listed.get(*id).is_some_and(|i| running(i) == Some(0)))
    })
    .await;

    start_slow_flows(&replicas[0].base_url, &data, "full-r0", 2, 10).await;
    wait_instances(&url, Duration::from_secs(10), |listed| {
        listed["r0"]["load"]["atCapacity"] == true
    })
    .await;
    for _ in 0..20 {
        assert_eq!(select(&url, "least-loaded").await, "r1");
    }

    start_slow_flows(&replicas[1].base_url, &data, "full-r1", 2, 10).await;
    wait_instances(&url, Duration::from_secs(10), |listed| {
        ["r0", "r1"]
            .iter()
            .all(|id| listed[*id]["load"]["atCapacity"] == true)
    })
    .await;
    let (status, chosen) = select_full(&url, "least-loaded").await;
    assert_eq!(status, 200, "{chosen}");
    assert_eq!(chosen["load"]["atCapacity"], true, "{chosen}");
    println!("all at capacity: offered {} saying so", chosen["id"]);
}

/// A data plane registering with a remote selector on a store of the selector's own renews its
/// registration every 2 s (4 × the 250 ms renewal, at least 2 s) with `ttlSeconds: 6`, state
/// AVAILABLE and its load: both replicas show a `load`, `least-loaded` avoids the one running throttled flows,
/// and a SIGKILLed one is UNAVAILABLE within its TTL + 1 s and never selected after.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn remote_registrations_carry_load_and_expire() {
    let dir = tempfile::tempdir().unwrap();
    let own_store = format!("sqlite:{}", dir.path().join("selector.db").display());
    let selector = selector(dir.path(), &own_store);
    let url = selector.base_url.clone();
    let data = DataServer::start();
    let remote = format!("edc.dpf.selector.url={url}");
    let extra = [
        "-D",
        remote.as_str(),
        "-D",
        "dpf.dataplane.max-concurrent-flows=40",
    ];
    let mut replicas: Vec<Launcher> = ["ra", "rb"]
        .iter()
        .map(|name| replica(dir.path(), "memory:", name, &extra))
        .collect();
    let listed = wait_instances(&url, Duration::from_secs(15), |listed| {
        ["ra", "rb"].iter().all(|id| {
            listed
                .get(*id)
                .is_some_and(|i| i["state"] == "AVAILABLE" && running(i) == Some(0))
        })
    })
    .await;
    for id in ["ra", "rb"] {
        assert_eq!(listed[id]["ttlSeconds"], 6, "{:?}", listed[id]);
        assert_eq!(listed[id]["load"]["capacity"], 40, "{:?}", listed[id]);
        assert!(
            listed[id]["load"]["reportedAt"].is_string(),
            "{:?}",
            listed[id]
        );
        assert!(listed[id]["load"]["ageMs"].is_u64(), "{:?}", listed[id]);
    }

    start_slow_flows(&replicas[0].base_url, &data, "remote-busy", 6, 8).await;
    wait_instances(&url, Duration::from_secs(10), |listed| {
        running(&listed["ra"]) == Some(6)
    })
    .await;
    for _ in 0..20 {
        assert_eq!(select(&url, "least-loaded").await, "rb");
    }

    replicas[1].kill();
    let killed = Instant::now();
    wait_instances(&url, Duration::from_secs(7), |listed| {
        listed["rb"]["state"] == "UNAVAILABLE"
    })
    .await;
    println!(
        "remote registration UNAVAILABLE {} ms after the kill (ttl 6 s)",
        killed.elapsed().as_millis()
    );
    assert!(killed.elapsed() <= Duration::from_secs(7));
    for strategy in ["random", "round-robin", "oldest-next", "least-loaded"] {
        for _ in 0..50 {
            assert_eq!(select(&url, strategy).await, "ra", "{strategy}");
        }
    }
}
