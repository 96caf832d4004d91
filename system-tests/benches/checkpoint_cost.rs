//! The cost of checkpointing: a large HTTP → file transfer (consumer pull) through a release
//! data plane with the default checkpoint interval, next to the same with checkpoints disabled,
//! in the same run.
//!
//! ```text
//! cargo bench -p system-tests --bench checkpoint_cost                   # 4 GiB, best of 2
//! BENCH_BYTES=1073741824 BENCH_ROUNDS=3 cargo bench -p system-tests --bench checkpoint_cost
//! ```

#![allow(clippy::unwrap_used, clippy::print_stdout)] // a benchmark binary

use std::time::{Duration, Instant};

use serde_json::json;
use system_tests::{
    flow_message, post, random_bytes, simple_message, wait_flow, Content, DataServer, Launcher,
    PULL,
};

async fn transfer(
    plane: &Launcher,
    source: &str,
    destination: &std::path::Path,
    process: &str,
) -> Duration {
    let base = &plane.base_url;
    let mut prepare = flow_message(process, PULL, "d", "c");
    prepare["metadata"] = json!({"destination": {"type": "File", "path": destination}});
    let (status, prepared) = post(&format!("{base}/signaling/dataflows/prepare"), &prepare).await;
    assert_eq!(status, 200, "{prepared}");
    let id = prepared["dataFlowId"].as_str().unwrap().to_owned();
    let mut started = simple_message();
    started["dataAddress"] = json!({"endpointType": PULL, "endpoint": source});
    let began = Instant::now();
    let (status, body) = post(
        &format!("{base}/signaling/dataflows/{id}/started"),
        &started,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let view = wait_flow(base, &id, Duration::from_secs(900), |v| {
        v["state"] != "STARTED"
    })
    .await;
    assert_eq!(view["state"], "COMPLETED");
    let took = began.elapsed();
    std::fs::remove_file(destination).unwrap();
    took
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let size: u64 = std::env::var("BENCH_BYTES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(4 << 30);
    let rounds: usize = std::env::var("BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2);
    let dir = tempfile::tempdir().unwrap();
    let data = DataServer::start();
    let source = data.put(
        "src",
        Content::Pattern {
            block: random_bytes(1024 * 1024 + 7, 2),
            len: size,
            delay: Duration::ZERO,
        },
    );
    let quiet = ["-D", "dpf.store.url=memory:", "-D", "dpf.log.level=warn"];
    let with = Launcher::start("dataplane-launcher", &quiet, &[], dir.path());
    let mut args = quiet.to_vec();
    args.extend(["-D", "dpf.checkpoint.bytes=0"]);
    let without = Launcher::start("dataplane-launcher", &args, &[], dir.path());
    let mut checkpointed = Vec::new();
    let mut plain = Vec::new();
    let mib = |t: Duration| size as f64 / 1_048_576.0 / t.as_secs_f64();
    for round in 0..rounds {
        plain.push(mib(transfer(
            &without,
            &source,
            &dir.path().join("a.bin"),
            &format!("off-{round}"),
        )
        .await));
        checkpointed.push(mib(transfer(
            &with,
            &source,
            &dir.path().join("b.bin"),
            &format!("on-{round}"),
        )
        .await));
    }
    let best = |v: &[f64]| v.iter().copied().fold(0.0, f64::max);
    let (off, on) = (best(&plain), best(&checkpointed));
    println!();
    println!(
        "HTTP -> file (consumer pull), {} MiB per transfer, best of {rounds}",
        size >> 20
    );
    println!("{:<44} {:>10}", "", "MiB/s");
    println!(
        "{:<44} {:>10.0}",
        "checkpoints disabled (dpf.checkpoint.bytes=0)", off
    );
    println!("{:<44} {:>10.0}", "default checkpoints (64 MiB / 5 s)", on);
    println!("{:<44} {:>9.2}x", "ratio with / without", on / off);
    let out = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../target/bench-checkpoint-cost.json");
    let report = json!([{"scenario": "checkpoint-cost", "bytes": size, "withoutMiBps": off, "withMiBps": on, "ratio": on / off}]);
    std::fs::write(&out, serde_json::to_string_pretty(&report).unwrap()).unwrap();
    println!("written: {}", out.display());
}
