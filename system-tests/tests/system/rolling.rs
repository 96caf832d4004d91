//! A rolling restart exactly as `deploy/kubernetes/` configures it, with processes instead of
//! pods: three `dataplane-launcher` replicas on one PostgreSQL get the ConfigMap's variables,
//! the Secret's keys and the StatefulSet's `env` (runtime id = pod name, `$(VAR)` expanded),
//! serve HTTPS, register with a selector started from its own ConfigMap, and are probed as the
//! kubelet probes them. They are then rolled one by one as a StatefulSet update does (highest
//! ordinal first): out of the Service, the preStop pause, SIGTERM, exit within the grace period,
//! a new process with the same name, address and volume, ready before the next one — while
//! push flows run. Every flow completes byte-identical, every liveness probe of a running
//! replica answers 200, no ready replica drops out of readiness, and never more than one
//! replica is unavailable (the PodDisruptionBudget).
//!
//! What differs from pods, and only that: loopback addresses and a free port per replica
//! instead of a pod IP with port 8282; the volume and the TLS Secret are directories of the
//! test; the test's data source and sink are plain-HTTP servers on loopback, so
//! `DPF_HTTP_INSECURE=true` and an empty `DPF_TRANSFER_DENIED_NETWORKS` (the replicas still
//! serve HTTPS only).

#![allow(clippy::unwrap_used)]

mod manifest;
mod pods;
mod probes;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::json;
use system_tests::{flow_message, postgres_store_url, random_bytes, Content, DataServer, PUSH};

use pods::{Cluster, Pod};

const ADMIN_KEY: &str = "rolling-administrator-key";
const SELECTOR_KEY: &str = "rolling-selector-key";

/// A source of `chunks` × 64 KiB, one chunk every `every`, and its SHA-256.
fn slow_source(data: &DataServer, name: &str, chunks: u64, every: Duration) -> (String, String) {
    let block = random_bytes(64 * 1024, 11);
    let len = chunks * 64 * 1024;
    let url = data.put(
        name,
        Content::Pattern {
            block: block.clone(),
            len,
            delay: every,
        },
    );
    let mut whole = Vec::new();
    while (whole.len() as u64) < len {
        whole.extend_from_slice(&block);
    }
    whole.truncate(usize::try_from(len).unwrap());
    (url, system_tests::sha256(&whole))
}

async fn start_flow(cluster: &Cluster, data: &DataServer, name: &str) {
    let mut start = flow_message(name, PUSH, "rolling-source", "rolling-participant");
    start["dataAddress"] = json!({"endpointType": PUSH, "endpoint": data.upload_url(name)});
    let (status, body) = cluster
        .call(
            reqwest::Method::POST,
            "/signaling/dataflows/start",
            Some(&start),
        )
        .await;
    assert_eq!(status, 200, "start {name}: {body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rolling_restart_as_the_manifests_configure_it() {
    let _serial = system_tests::serial().await;
    let dir = tempfile::tempdir().unwrap();
    let ca = system_tests::write_test_pki(dir.path());
    let store_url = tokio::task::spawn_blocking(postgres_store_url)
        .await
        .unwrap();
    let set = manifest::statefulset();
    assert!(
        set.replicas >= 3,
        "the StatefulSet runs {} replicas",
        set.replicas
    );

    // The Secret: the test's own values for every key the manifest names.
    let secret_keys = manifest::map_block("dataplane-secret.yaml", "stringData");
    let secrets: BTreeMap<String, String> = secret_keys
        .keys()
        .map(|key| {
            let value = match key.as_str() {
                "DPF_STORE_URL" => store_url.clone(),
                "DPF_API_AUTH_KEY" => ADMIN_KEY.to_owned(),
                "EDC_DPF_SELECTOR_API_KEY" => SELECTOR_KEY.to_owned(),
                other => panic!("the Secret has {other}, which this test does not provide"),
            };
            (key.clone(), value)
        })
        .collect();

    let selector = pods::start_selector(dir.path(), &secrets);
    let mut cluster = Cluster::new(dir.path(), &ca, ADMIN_KEY, set.clone());
    let pods: Vec<Pod> = (0..set.replicas)
        .map(|i| Pod::new(&set, i, dir.path(), &secrets, &selector.base_url))
        .collect();
    cluster.start_all(pods);
    cluster.wait_all_ready(Duration::from_secs(60)).await;
    let monitor = cluster.monitor();

    // Flows that outlast the roll, started through the client Service.
    let data = DataServer::start();
    let (url, sha) = slow_source(&data, "rolling-source", 48, Duration::from_millis(500));
    let (status, body) = cluster
        .call(
            reqwest::Method::PUT,
            "/datasets/rolling-source",
            Some(&json!({"type": "HttpData", "baseUrl": url})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let mut names: Vec<String> = (0..12).map(|i| format!("before-{i}")).collect();
    for name in &names {
        start_flow(&cluster, &data, name).await;
    }

    // The roll: highest ordinal first, each one ready before the next.
    let rolled = Instant::now();
    for index in (0..set.replicas).rev() {
        cluster.roll(index).await;
        for i in 0..2 {
            let name = format!("after-{index}-{i}");
            start_flow(&cluster, &data, &name).await;
            names.push(name);
        }
    }
    println!(
        "rolled {} replicas in {:.1} s",
        set.replicas,
        rolled.elapsed().as_secs_f64()
    );

    // Every flow completes, byte-identical.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let (status, flows) = cluster
            .call(reqwest::Method::GET, "/dataflows?limit=1000", None)
            .await;
        assert_eq!(status, 200, "{flows}");
        let flows = flows.as_array().unwrap().clone();
        let done = flows.iter().filter(|f| f["state"] == "COMPLETED").count();
        assert!(
            flows.iter().all(|f| f["state"] != "TERMINATED"),
            "a flow was terminated: {flows:?}"
        );
        if flows.len() == names.len() && done == names.len() {
            // The roll hit running flows: some changed owner (epoch 2 or more).
            let moved = flows
                .iter()
                .filter(|f| f["epoch"].as_i64().unwrap_or(0) >= 2)
                .count();
            println!(
                "{moved} of {} flows changed owner during the roll",
                flows.len()
            );
            assert!(
                moved > 0,
                "no flow was running on a rolled replica: {flows:?}"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{done} of {} flows completed: {flows:?}",
            names.len()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    for name in &names {
        let uploads = data.uploads(name);
        let last = uploads.iter().rfind(|u| u.complete);
        assert_eq!(
            last.and_then(|u| u.sha256.as_deref()),
            Some(sha.as_str()),
            "{name}: {uploads:?}"
        );
    }

    let report = monitor.stop().await;
    println!("{report}");
    assert!(report.violations.is_empty(), "{report}");
    assert!(report.samples > 20, "{report}");

    // Each replica registered itself with the selector under its pod name.
    let registered = selector_ids(&selector.base_url, &ca).await;
    for i in 0..set.replicas {
        let id = format!("{}-{i}", set.name);
        assert!(registered.contains(&id), "{id} not in {registered:?}");
    }
    cluster.stop_all();
}

async fn selector_ids(base: &str, ca: &str) -> Vec<String> {
    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(ca.as_bytes()).unwrap())
        .build()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        let answer: serde_json::Value = client
            .get(format!("{base}/dataplanes"))
            .bearer_auth(SELECTOR_KEY)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let ids: Vec<String> = answer
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|i| i["id"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        if ids.len() >= 3 || Instant::now() > deadline {
            return ids;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
