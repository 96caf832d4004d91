//! HTTP → HTTP provider-push throughput through a dpf data plane, next to a plain reqwest
//! GET → POST relay between the same source and sink, measured in the same run.
//!
//! ```text
//! cargo bench -p system-tests --bench throughput                  # 2 GiB per measurement
//! BENCH_BYTES=536870912 cargo bench -p system-tests --bench throughput
//! ```
//!
//! Source and sink are in-process actix-web servers on loopback; the data plane is the release
//! `dataplane-launcher` (built on demand). Prints a table and writes
//! `target/bench-throughput.json`.

#![allow(clippy::unwrap_used, clippy::print_stdout)] // a benchmark binary

use std::time::{Duration, Instant};

use futures::StreamExt;
use serde_json::json;
use system_tests::{
    flow_message, post, random_bytes, wait_flow, Content, DataServer, Launcher, PUSH,
};

fn mib_per_s(bytes: u64, elapsed: Duration) -> f64 {
    bytes as f64 / 1_048_576.0 / elapsed.as_secs_f64()
}

async fn relay(source: &str, sink: &str) -> u64 {
    let client = system_tests::client();
    let response = client.get(source).send().await.unwrap();
    let length = response.content_length();
    let stream = response
        .bytes_stream()
        .map(|c| c.map_err(std::io::Error::other));
    let mut request = client.post(sink).body(reqwest::Body::wrap_stream(stream));
    if let Some(length) = length {
        request = request.header("content-length", length);
    }
    let answer = request.send().await.unwrap();
    assert!(answer.status().is_success());
    length.unwrap_or_default()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let size: u64 = std::env::var("BENCH_BYTES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2 << 30);
    let rounds: usize = std::env::var("BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2);
    let dir = tempfile::tempdir().unwrap();
    let data = DataServer::start();
    let block = random_bytes(1024 * 1024 + 7, 1);
    let source = data.put(
        "src",
        Content::Pattern {
            block,
            len: size,
            delay: Duration::ZERO,
        },
    );
    let plane = Launcher::start(
        "dataplane-launcher",
        &["-D", "dpf.store.url=memory:", "-D", "dpf.log.level=warn"],
        &[],
        dir.path(),
    );
    let base = plane.base_url.clone();
    system_tests::client()
        .put(format!("{base}/datasets/src"))
        .json(&json!({"type": "HttpData", "baseUrl": source}))
        .send()
        .await
        .unwrap();

    let mut baseline = Vec::new();
    let mut dpf = Vec::new();
    for round in 0..rounds {
        let began = Instant::now();
        let moved = relay(&source, &data.upload_url(&format!("relay-{round}"))).await;
        assert_eq!(moved, size);
        baseline.push(mib_per_s(size, began.elapsed()));

        let mut start = flow_message(&format!("bench-{round}"), PUSH, "src", "bench");
        start["dataAddress"] =
            json!({"endpointType": PUSH, "endpoint": data.upload_url(&format!("dpf-{round}"))});
        let began = Instant::now();
        let (status, body) = post(&format!("{base}/signaling/dataflows/start"), &start).await;
        assert_eq!(status, 200, "{body}");
        let id = body["dataFlowId"].as_str().unwrap().to_owned();
        let view = wait_flow(&base, &id, Duration::from_secs(900), |v| {
            v["state"] != "STARTED"
        })
        .await;
        assert_eq!(view["state"], "COMPLETED");
        dpf.push(mib_per_s(size, began.elapsed()));
        assert_eq!(data.uploads(&format!("dpf-{round}"))[0].bytes, size);
    }
    let best = |v: &[f64]| v.iter().copied().fold(0.0, f64::max);
    let (b, d) = (best(&baseline), best(&dpf));
    println!();
    println!(
        "HTTP -> HTTP provider push, {} MiB per transfer, best of {rounds}",
        size >> 20
    );
    println!("{:<34} {:>12}", "", "MiB/s");
    println!("{:<34} {:>12.0}", "plain reqwest GET->POST relay", b);
    println!("{:<34} {:>12.0}", "dpf data plane (provider push)", d);
    println!("{:<34} {:>11.2}x", "ratio dpf / relay", d / b);
    println!("data plane peak RSS: {} MiB", plane.peak_rss_kib() / 1024);
    let out =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/bench-throughput.json");
    let report = json!([{
        "scenario": "http-push-throughput", "bytes": size, "rounds": rounds,
        "baselineMiBps": b, "dpfMiBps": d, "ratio": d / b, "peakRssKiB": plane.peak_rss_kib(),
    }]);
    std::fs::write(&out, serde_json::to_string_pretty(&report).unwrap()).unwrap();
    println!("written: {}", out.display());
}
