//! Baseline topology with real replicas on PostgreSQL: activation, IDLE outsiders, no
//! rebalancing on leave/return, auto-adjust, min-live, identity checks, refused changes.

#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use system_tests::{
    call, flow_message, get, post, postgres_store_url, Content, DataServer, Launcher, PUSH,
};

fn args(store: &str, name: &str, extra: &[&str]) -> Vec<String> {
    let mut all: Vec<String> = [
        "-D",
        &format!("edc.runtime.id={name}"),
        "-D",
        &format!("dpf.store.url={store}"),
        "-D",
        "edc.dataplane.state-machine.flow.lease.time=1000",
        "-D",
        "edc.dataplane.state-machine.flow.lease.renew-interval=250",
        "-D",
        "edc.dataplane.state-machine.claim.interval=100",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    all.extend(extra.iter().map(|s| (*s).to_owned()));
    all
}

fn replica(dir: &std::path::Path, store: &str, name: &str, extra: &[&str]) -> Launcher {
    let dir = dir.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    let args = args(store, name, extra);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Launcher::start("dataplane-launcher", &args, &[], &dir)
}

async fn baseline(base: &str) -> Value {
    let (status, body) = get(&format!("{base}/cluster/baseline")).await;
    assert_eq!(status, 200, "{body}");
    body
}

fn members(view: &Value) -> Vec<String> {
    view["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["name"].as_str().unwrap().to_owned())
        .collect()
}

async fn wait_baseline(base: &str, timeout: Duration, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + timeout;
    loop {
        let view = baseline(base).await;
        if done(&view) {
            return view;
        }
        assert!(
            Instant::now() < deadline,
            "baseline never got there: {view}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn start_slow(base: &str, process: &str, data: &DataServer) -> (u16, Value) {
    let mut start = flow_message(process, PUSH, "slow", "p");
    start["dataAddress"] = json!({"endpointType": PUSH, "endpoint": data.upload_url(process)});
    post(&format!("{base}/signaling/dataflows/start"), &start).await
}

async fn put_dataset(base: &str, url: &str) {
    let (status, _) = call(
        reqwest::Method::PUT,
        &format!("{base}/datasets/slow"),
        Some(&json!({"type": "HttpData", "baseUrl": url})),
    )
    .await;
    assert_eq!(status, 200);
}

async fn owners(base: &str) -> Vec<(String, String)> {
    let (_, flows) = get(&format!("{base}/dataflows?limit=1000")).await;
    flows
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["processId"].as_str().unwrap().to_owned(),
                f["runtimeId"].as_str().unwrap_or("-").to_owned(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn activation_idle_outsiders_maintenance_and_add() {
    let _serial = system_tests::serial().await;
    let dir = tempfile::tempdir().unwrap();
    let store = tokio::task::spawn_blocking(postgres_store_url)
        .await
        .unwrap();
    let data = DataServer::start();
    let block = system_tests::random_bytes(64 * 1024, 4);
    let source = data.put(
        "slow",
        Content::Pattern {
            block,
            len: 64 * 1024 * 200,
            delay: Duration::from_millis(100),
        },
    );
    let configured = ["-D", "dpf.cluster.baseline=r0,r1,r2"];

    // 1. INACTIVE until the third member joins, then ACTIVE without a command.
    let r0 = replica(dir.path(), &store, "r0", &configured);
    let mut r1 = replica(dir.path(), &store, "r1", &configured);
    let view = baseline(&r0.base_url).await;
    assert_eq!(view["state"], "INACTIVE");
    assert_eq!(view["version"], 1);
    put_dataset(&r0.base_url, &source).await;
    let (status, body) = start_slow(&r0.base_url, "early", &data).await;
    assert_eq!(status, 503, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("missing: r2"),
        "{body}"
    );
    let r2 = replica(dir.path(), &store, "r2", &configured);
    let began = Instant::now();
    wait_baseline(&r0.base_url, Duration::from_secs(5), |v| {
        v["state"] == "ACTIVE"
    })
    .await;
    println!(
        "activated {} ms after the last baseline member started",
        began.elapsed().as_millis()
    );

    // 2. A fourth replica outside the baseline is IDLE and runs nothing.
    let r3 = replica(dir.path(), &store, "r3", &[]);
    for r in [&r1, &r2, &r3] {
        put_dataset(&r.base_url, &source).await;
    }
    let view = wait_baseline(&r0.base_url, Duration::from_secs(5), |v| {
        v["others"] == json!(["r3"])
    })
    .await;
    assert_eq!(members(&view), vec!["r0", "r1", "r2"]);
    for i in 0..6 {
        // Even flows started through r3 run on baseline members.
        let base = if i % 2 == 0 {
            &r3.base_url
        } else {
            &r1.base_url
        };
        let (status, body) = start_slow(base, &format!("f{i}"), &data).await;
        assert_eq!(status, 200, "{body}");
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let now = owners(&r0.base_url).await;
        if now.iter().all(|(_, o)| o != "-") {
            assert!(now.iter().all(|(_, o)| o != "r3"), "r3 runs work: {now:?}");
            break;
        }
        assert!(Instant::now() < deadline, "flows not running: {now:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let (_, listing) = get(&format!("{}/cluster/members", r0.base_url)).await;
        let r3_state = listing
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["name"] == "r3")
            .unwrap()["state"]
            .clone();
        if r3_state == "IDLE" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "r3 is {r3_state}:\n{}",
            r3.log_text()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // 3. Maintenance: stop r1; the version stays, its flows go to r0/r2 (never r3); when r1
    //    comes back, nothing moves back.
    let before = owners(&r0.base_url).await;
    r1.signal("TERM");
    assert_eq!(r1.wait_exit(Duration::from_secs(10)), Some(0));
    let deadline = Instant::now() + Duration::from_secs(5);
    let after = loop {
        let now = owners(&r0.base_url).await;
        if now.iter().all(|(_, o)| o == "r0" || o == "r2") {
            break now;
        }
        assert!(
            Instant::now() < deadline,
            "r1's flows did not fail over: {now:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(
        before.iter().any(|(_, o)| o == "r1"),
        "r1 ran nothing to fail over: {before:?}"
    );
    assert_eq!(
        baseline(&r0.base_url).await["version"],
        1,
        "a leaving member does not change the baseline"
    );
    let _r1 = replica(dir.path(), &store, "r1", &configured);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        owners(&r0.base_url).await,
        after,
        "flows moved when r1 returned"
    );

    // 4. Adding r3 (version + 1) makes it take new work.
    let (status, view) = post(
        &format!("{}/cluster/baseline/add", r0.base_url),
        &json!({"members": ["r3"], "expectedVersion": 1}),
    )
    .await;
    assert_eq!(status, 200, "{view}");
    assert_eq!(view["version"], 2);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (status, body) = start_slow(&r3.base_url, "on-r3", &data).await;
    assert_eq!(status, 200, "{body}");
    let id = body["dataFlowId"].as_str().unwrap();
    let (_, flow) = get(&format!("{}/dataflows/{id}", r0.base_url)).await;
    assert_eq!(flow["runtimeId"], "r3");

    // 6. Refused changes: removing an online member; a concurrent set on the same version.
    let (status, body) = post(
        &format!("{}/cluster/baseline/remove", r0.base_url),
        &json!({"members": ["r2"]}),
    )
    .await;
    assert_eq!(status, 409, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("online members cannot be removed"),
        "{body}"
    );
    let set = json!({"members": ["r0", "r1", "r2", "r3", "r9"], "expectedVersion": 2});
    let (url_a, url_b) = (
        format!("{}/cluster/baseline", r0.base_url),
        format!("{}/cluster/baseline", r2.base_url),
    );
    let (a, b) = tokio::join!(
        call(reqwest::Method::PUT, &url_a, Some(&set)),
        call(reqwest::Method::PUT, &url_b, Some(&set)),
    );
    let mut statuses = [a.0, b.0];
    statuses.sort_unstable();
    assert_eq!(statuses, [200, 409], "{a:?} {b:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn inactive_changes_refused_and_identity_checked() {
    let _serial = system_tests::serial().await;
    let dir = tempfile::tempdir().unwrap();
    let store = tokio::task::spawn_blocking(postgres_store_url)
        .await
        .unwrap();
    let configured = ["-D", "dpf.cluster.baseline=r0,r1"];
    let r0 = replica(dir.path(), &store, "r0", &configured);
    let (status, body) = post(
        &format!("{}/cluster/baseline/add", r0.base_url),
        &json!({"members": ["x"]}),
    )
    .await;
    assert_eq!(status, 409, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("INACTIVE cluster is not allowed"),
        "{body}"
    );
    let cluster_id = baseline(&r0.base_url).await["clusterId"]
        .as_str()
        .unwrap()
        .to_owned();

    // A data directory from another cluster.
    let foreign = dir.path().join("r5");
    std::fs::create_dir_all(foreign.join("dpf-data")).unwrap();
    std::fs::write(
        foreign.join("dpf-data/cluster.json"),
        r#"{"clusterId": "another-cluster", "baselineVersion": 1, "history": "x"}"#,
    )
    .unwrap();
    // A data directory that saw a later baseline than the cluster has.
    let ahead = dir.path().join("r6");
    std::fs::create_dir_all(ahead.join("dpf-data")).unwrap();
    std::fs::write(
        ahead.join("dpf-data/cluster.json"),
        format!(r#"{{"clusterId": "{cluster_id}", "baselineVersion": 9, "history": "x"}}"#),
    )
    .unwrap();
    for (name, dir, expected) in [
        ("r5", foreign, "belongs to cluster another-cluster"),
        ("r6", ahead, "ahead of the cluster's"),
    ] {
        let args = args(
            &store,
            name,
            &["-D", "web.http.port=0", "-D", "dpf.http.insecure=true"],
        );
        let output = std::process::Command::new(system_tests::binary("dataplane-launcher"))
            .args(&args)
            .current_dir(&dir)
            .output()
            .unwrap();
        assert!(!output.status.success(), "{name} was accepted");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.contains(expected) && stderr.contains("Consider cleaning persistent storage"),
            "{name}: {stderr}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn auto_adjust_and_min_live() {
    let _serial = system_tests::serial().await;
    let dir = tempfile::tempdir().unwrap();
    let store = tokio::task::spawn_blocking(postgres_store_url)
        .await
        .unwrap();
    let configured = ["-D", "dpf.cluster.baseline=r0,r1,r2"];
    let r0 = replica(dir.path(), &store, "r0", &configured);
    let _r1 = replica(dir.path(), &store, "r1", &configured);
    let mut r2 = replica(dir.path(), &store, "r2", &configured);
    wait_baseline(&r0.base_url, Duration::from_secs(5), |v| {
        v["state"] == "ACTIVE"
    })
    .await;
    let (status, body) = call(
        reqwest::Method::PUT,
        &format!("{}/cluster/baseline/auto-adjust", r0.base_url),
        Some(&json!({"enabled": true, "timeoutMs": 2000})),
    )
    .await;
    assert_eq!(status, 200, "{body}");

    // Kill r2, and let r3 join within the countdown: the countdown restarts.
    r2.kill();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let _r3 = replica(dir.path(), &store, "r3", &[]);
    let joined = Instant::now();
    let view = wait_baseline(&r0.base_url, Duration::from_secs(10), |v| v["version"] == 2).await;
    let after_join = joined.elapsed();
    assert_eq!(members(&view), vec!["r0", "r1", "r3"], "{view}");
    println!(
        "auto-adjust: baseline {:?} {} ms after the last membership change",
        members(&view),
        after_join.as_millis()
    );
    assert!(
        after_join >= Duration::from_millis(1900),
        "the join did not restart the countdown: {after_join:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn min_live_adjusts_at_once() {
    let _serial = system_tests::serial().await;
    let dir = tempfile::tempdir().unwrap();
    let store = tokio::task::spawn_blocking(postgres_store_url)
        .await
        .unwrap();
    let configured = [
        "-D",
        "dpf.cluster.baseline=r0,r1,r2",
        "-D",
        "dpf.cluster.baseline.min-live=2",
    ];
    let r0 = replica(dir.path(), &store, "r0", &configured);
    let mut r1 = replica(dir.path(), &store, "r1", &configured);
    let mut r2 = replica(dir.path(), &store, "r2", &configured);
    wait_baseline(&r0.base_url, Duration::from_secs(5), |v| {
        v["state"] == "ACTIVE"
    })
    .await;
    // r2 first: 2 live baseline members remain, not fewer than 2: nothing changes.
    let (leader_status, leader) = get(&format!("{}/cluster/leader", r0.base_url)).await;
    assert_eq!(leader_status, 200);
    let (first, second) = if leader["leader"] == "r1" {
        (&mut r2, &mut r1)
    } else {
        (&mut r1, &mut r2)
    };
    first.kill();
    tokio::time::sleep(Duration::from_millis(2000)).await;
    assert_eq!(baseline(&r0.base_url).await["version"], 1);
    second.kill();
    let killed = Instant::now();
    let view = wait_baseline(&r0.base_url, Duration::from_secs(10), |v| v["version"] == 2).await;
    assert_eq!(members(&view), vec!["r0"]);
    println!(
        "min-live: baseline {:?} {} ms after the second kill (no auto-adjust timeout)",
        members(&view),
        killed.elapsed().as_millis()
    );
    assert!(killed.elapsed() < Duration::from_millis(2500));
}

/// A selector on the cluster's store never offers a data plane outside the baseline, and
/// offers it as soon as it is added.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn selector_offers_only_baseline_members() {
    let _serial = system_tests::serial().await;
    let dir = tempfile::tempdir().unwrap();
    let store = tokio::task::spawn_blocking(postgres_store_url)
        .await
        .unwrap();
    let configured = ["-D", "dpf.cluster.baseline=r0,r1,r2"];
    let r0 = replica(dir.path(), &store, "r0", &configured);
    let r1 = replica(dir.path(), &store, "r1", &configured);
    let r2 = replica(dir.path(), &store, "r2", &configured);
    let r3 = replica(dir.path(), &store, "r3", &[]);
    wait_baseline(&r0.base_url, Duration::from_secs(5), |v| {
        v["state"] == "ACTIVE" && v["others"] == json!(["r3"])
    })
    .await;

    // The selector shares the store and knows all four replicas.
    let mut selector_args = vec!["-D".to_owned(), format!("dpf.store.url={store}")];
    for (name, plane) in [("r0", &r0), ("r1", &r1), ("r2", &r2), ("r3", &r3)] {
        selector_args.push("-D".to_owned());
        selector_args.push(format!(
            "edc.dpf.selector.{name}.url={}/signaling",
            plane.base_url
        ));
    }
    let selector_args: Vec<&str> = selector_args.iter().map(String::as_str).collect();
    let selector_dir = dir.path().join("selector");
    std::fs::create_dir_all(&selector_dir).unwrap();
    let selector = Launcher::start("selector-launcher", &selector_args, &[], &selector_dir);
    let (status, listed) = get(&format!("{}/dataplanes", selector.base_url)).await;
    assert_eq!(status, 200, "{listed}");
    assert_eq!(listed.as_array().unwrap().len(), 4, "{listed}");

    let select = |selector: String| async move {
        let (status, chosen) = post(
            &format!("{selector}/dataplanes/select"),
            &json!({"profile": PUSH, "strategy": "round-robin"}),
        )
        .await;
        assert_eq!(status, 200, "{chosen}");
        chosen["id"].as_str().unwrap().to_owned()
    };
    let mut chosen = std::collections::BTreeSet::new();
    for _ in 0..30 {
        chosen.insert(select(selector.base_url.clone()).await);
    }
    assert_eq!(
        chosen.into_iter().collect::<Vec<_>>(),
        vec!["r0", "r1", "r2"],
        "the selector offered a replica outside the baseline"
    );

    let (status, view) = post(
        &format!("{}/cluster/baseline/add", r0.base_url),
        &json!({"members": ["r3"], "expectedVersion": 1}),
    )
    .await;
    assert_eq!(status, 200, "{view}");
    let mut chosen = std::collections::BTreeSet::new();
    for _ in 0..8 {
        chosen.insert(select(selector.base_url.clone()).await);
    }
    assert!(
        chosen.contains("r3"),
        "r3 not offered after joining the baseline: {chosen:?}"
    );
}
