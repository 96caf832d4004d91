//! Object storage end to end (docs/object-storage.md), against real servers the tests start
//! themselves: moto (S3) and Azurite (Azure Blob), installed by `.ci/run`. No mock of
//! `object_store` stands in for them.
//!
//! Sizes: the issue asks for 1 GiB in items 1 and 2. Measured here (debug build, 2 cores):
//! 256 MiB S3 → S3 across two data planes takes 8 s (32 MiB/s), 1 GiB takes 129 s (moto, a
//! Python server holding every object and part in memory, slows down with size), so CI moves
//! 256 MiB. The memory bound is asserted all the same: each data plane's peak RSS under
//! 200 MiB (measured: 48 and 69 MiB at 256 MiB, 63 and 84 MiB at 1 GiB).

#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use system_tests::object_servers::{
    completed, keys, object_sha256, prepare_pull, pull_between, put_pattern, started, Azurite,
    MotoServer,
};
use system_tests::{
    flow_message, get, post, postgres_store_url, random_bytes, start_replicas, wait_flow, Content,
    DataServer, Launcher, PULL, PUSH,
};

mod bad_addresses;

const MIB: u64 = 1024 * 1024;
const RSS_LIMIT_KIB: u64 = 200 * 1024;

async fn put_dataset(base: &str, id: &str, address: &Value) {
    let response = system_tests::client()
        .put(format!("{base}/datasets/{id}"))
        .json(address)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "{id}");
}

fn plane(dir: &std::path::Path, name: &str, extra: &[&str]) -> Launcher {
    let dir = dir.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    let id = format!("edc.runtime.id={name}");
    let mut args = vec!["-D", id.as_str()];
    args.extend_from_slice(extra);
    Launcher::start("dataplane-launcher", &args, &[], &dir)
}

/// Two data planes and a moto server whose bucket `source` holds `in/big.bin` (256 MiB,
/// served by the provider as dataset `big`), and an empty bucket `destination`.
struct TwoPlanes {
    _dir: tempfile::TempDir,
    moto: MotoServer,
    provider: Launcher,
    consumer: Launcher,
    size: u64,
    expected: String,
}

impl TwoPlanes {
    async fn start(destination: &str, seed: u64) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let moto = MotoServer::start(dir.path());
        moto.create_bucket("source").await;
        moto.create_bucket(destination).await;
        let size = 256 * MIB;
        let expected = put_pattern(&moto.store("source"), "in/big.bin", size, seed).await;
        let provider = plane(dir.path(), "provider", &[]);
        let consumer = plane(dir.path(), "consumer", &[]);
        put_dataset(
            &provider.base_url,
            "big",
            &moto.address("source", "in/big.bin"),
        )
        .await;
        Self {
            _dir: dir,
            moto,
            provider,
            consumer,
            size,
            expected,
        }
    }

    /// The copy `bucket/key` is byte-identical, no upload is left, and each data plane's peak
    /// RSS stayed under the limit.
    async fn check(&self, what: &str, bucket: &str, key: &str, elapsed: Duration) {
        let (actual_size, actual) = object_sha256(&self.moto.store(bucket), key).await;
        assert_eq!(actual_size, self.size);
        assert_eq!(actual, self.expected, "the copy differs from the source");
        assert_eq!(self.moto.incomplete_uploads(bucket).await, 0);
        let (p, c) = (self.provider.peak_rss_kib(), self.consumer.peak_rss_kib());
        println!(
            "{what}, {} MiB: {:.1} s ({:.0} MiB/s); peak RSS provider {} MiB, consumer {} MiB (limit {} MiB)",
            self.size / MIB,
            elapsed.as_secs_f64(),
            (self.size / MIB) as f64 / elapsed.as_secs_f64(),
            p / 1024,
            c / 1024,
            RSS_LIMIT_KIB / 1024
        );
        assert!(p < RSS_LIMIT_KIB, "provider peak RSS {p} KiB");
        assert!(c < RSS_LIMIT_KIB, "consumer peak RSS {c} KiB");
    }
}

/// Item 1: S3 → provider dpf → HTTP → consumer dpf → S3 (another bucket), byte-identical, each
/// data plane's peak RSS under 200 MiB. 256 MiB instead of 1 GiB (see the module docs). The
/// HTTP hop is the pull profile: the consumer's pipeline owns the multipart upload and
/// checkpoints it (the push profile: the next test).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn s3_to_s3_across_two_data_planes_with_bounded_memory() {
    let _serial = system_tests::serial().await;
    let w = TwoPlanes::start("destination", 1).await;
    let began = Instant::now();
    let id = pull_between(
        &w.provider.base_url,
        &w.consumer.base_url,
        "s3s3",
        "big",
        &w.moto.address("destination", "out/copy.bin"),
    )
    .await;
    let view = completed(&w.consumer.base_url, &id, Duration::from_secs(600)).await;
    let elapsed = began.elapsed();
    assert_eq!(view["bytesTransferred"], w.size);
    w.check(
        "S3 → S3 across two data planes",
        "destination",
        "out/copy.bin",
        elapsed,
    )
    .await;
}

/// Item 1 over the push profile: S3 → provider dpf → HTTP push into the consumer's tus ingest
/// endpoint → consumer dpf → S3 (another bucket), byte-identical, each data plane's peak RSS
/// under 200 MiB. 256 MiB instead of 1 GiB, for CI time (see the module docs). The provider
/// pushes in checkpointed segments (a POST, then tus PATCHes); the consumer carries one
/// multipart upload across them (its state in the flow's checkpoint after each part) and
/// commits it at `completed`.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn s3_to_s3_pushed_across_two_data_planes_with_bounded_memory() {
    let _serial = system_tests::serial().await;
    let w = TwoPlanes::start("pushed", 2).await;
    let (provider, consumer) = (&w.provider.base_url, &w.consumer.base_url);
    let began = Instant::now();
    let mut prepare = flow_message("s3push", PUSH, "d", "c");
    prepare["metadata"] = json!({"destination": w.moto.address("pushed", "out/pushed.bin")});
    let (status, prepared) =
        post(&format!("{consumer}/signaling/dataflows/prepare"), &prepare).await;
    assert_eq!(status, 200, "{prepared}");
    let consumer_id = prepared["dataFlowId"].as_str().unwrap().to_owned();
    let mut start = flow_message("s3push-p", PUSH, "big", "p");
    start["dataAddress"] = prepared["dataAddress"].clone();
    let (status, body) = post(&format!("{provider}/signaling/dataflows/start"), &start).await;
    assert_eq!(status, 200, "{body}");
    let provider_id = body["dataFlowId"].as_str().unwrap().to_owned();
    started(consumer, &consumer_id, Value::Null).await;
    let pushed = completed(provider, &provider_id, Duration::from_secs(600)).await;
    assert_eq!(pushed["bytesTransferred"], w.size);
    // Nothing is visible before the control plane says the upload is complete.
    assert_eq!(
        keys(&w.moto.store("pushed"), "out/").await,
        Vec::<String>::new()
    );
    let (status, body) = post(
        &format!("{consumer}/signaling/dataflows/{consumer_id}/completed"),
        &json!({}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let elapsed = began.elapsed();
    let view = completed(consumer, &consumer_id, Duration::from_secs(10)).await;
    assert!(view["checkpoint"]["sink"].is_null(), "{view}");
    w.check("S3 → push → S3", "pushed", "out/pushed.bin", elapsed)
        .await;
}

fn index_of(name: &Value) -> usize {
    name.as_str()
        .unwrap()
        .trim_start_matches('r')
        .parse()
        .unwrap()
}

/// Item 2: the consumer's owner is SIGKILLed twice during a multipart upload (3 replicas, one
/// PostgreSQL store); the object completes byte-identical, the same upload is continued, no
/// part number is uploaded twice (moto's request log), and the view shows the resumes.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_multipart_upload_survives_two_owner_kills() {
    let _serial = system_tests::serial().await;
    let dir = tempfile::tempdir().unwrap();
    let url = tokio::task::spawn_blocking(postgres_store_url)
        .await
        .unwrap();
    let moto = MotoServer::start(dir.path());
    moto.create_bucket("landing").await;
    let data = DataServer::start();
    let size = 256 * MIB;
    let block = random_bytes(1024 * 1024 + 13, 5);
    let source = data.put(
        "big",
        Content::Pattern {
            block: block.clone(),
            len: size,
            // Paced (64 KiB per 3 ms: about 20 MiB/s), so that the kills land inside the upload.
            delay: Duration::from_millis(3),
        },
    );
    let expected = tokio::task::spawn_blocking(move || system_tests::pattern_sha256(&block, size));
    let args = [
        "-D",
        // A lease long enough that a busy machine never lets a live owner's flow be taken
        // over: only the kills below move it.
        "edc.dataplane.state-machine.flow.lease.time=3000",
        "-D",
        "edc.dataplane.state-machine.flow.lease.renew-interval=300",
        "-D",
        "edc.dataplane.state-machine.claim.interval=100",
        "-D",
        "dpf.object.part-size=8388608",
        "-D",
        "dpf.object.parts-in-flight=1",
    ];
    let mut replicas = start_replicas(3, &url, &args, dir.path());
    let destination = moto.address("landing", "resumed.bin");
    let id = prepare_pull(&replicas[0].base_url, "kills", &destination).await;
    started(
        &replicas[0].base_url,
        &id,
        json!({"endpointType": PULL, "endpoint": source}),
    )
    .await;

    let mut killed = Vec::new();
    for round in 1..=2u64 {
        let threshold = size * round / 3;
        let deadline = Instant::now() + Duration::from_secs(300);
        let watcher = replicas
            .iter()
            .enumerate()
            .find(|(i, _)| !killed.contains(i))
            .map(|(_, r)| r.base_url.clone())
            .unwrap();
        let owner = loop {
            let v = get(&format!("{watcher}/dataflows/{id}")).await.1;
            assert_ne!(v["state"], "COMPLETED", "completed before kill {round}");
            let checkpointed = v["bytesCheckpointed"].as_u64().unwrap_or(0);
            if checkpointed >= threshold && v["state"] == "STARTED" && v["runtimeId"].is_string() {
                let owner = index_of(&v["runtimeId"]);
                if !killed.contains(&owner) {
                    break owner;
                }
            }
            assert!(Instant::now() < deadline, "no progress: {v}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        let peer = (0..replicas.len())
            .find(|i| *i != owner && !killed.contains(i))
            .unwrap();
        let epoch = get(&format!("{}/dataflows/{id}", replicas[peer].base_url))
            .await
            .1["epoch"]
            .as_i64()
            .unwrap();
        replicas[owner].kill();
        killed.push(owner);
        let taken = wait_flow(
            &replicas[peer].base_url,
            &id,
            Duration::from_secs(15),
            |v| v["epoch"].as_i64().unwrap_or(0) > epoch,
        )
        .await;
        let state: Value =
            serde_json::from_str(taken["checkpoint"]["sink"].as_str().unwrap()).unwrap();
        println!(
            "kill {round}: r{owner} killed at {} MiB checkpointed ({} parts of upload {} recorded); {} took over",
            taken["bytesCheckpointed"].as_u64().unwrap_or(0) / MIB,
            state["parts"].as_array().unwrap().len(),
            state["uploadId"],
            taken["runtimeId"]
        );
    }
    let survivor = (0..replicas.len()).find(|i| !killed.contains(i)).unwrap();
    let done = completed(&replicas[survivor].base_url, &id, Duration::from_secs(600)).await;
    assert_eq!(done["bytesTransferred"], size);
    assert_eq!(done["resumes"], 2, "{done}");
    assert_eq!(done["restarts"], 0, "{done}");
    let (actual_size, actual) = object_sha256(&moto.store("landing"), "resumed.bin").await;
    assert_eq!(actual_size, size);
    assert_eq!(
        actual,
        expected.await.unwrap(),
        "the object differs from the source"
    );

    let parts = moto.uploaded_parts();
    let uploads: std::collections::BTreeSet<_> = parts.keys().map(|(u, _)| u.clone()).collect();
    println!(
        "{} parts uploaded in {} multipart upload(s); counts per part: {:?}",
        parts.len(),
        uploads.len(),
        parts.values().collect::<Vec<_>>()
    );
    assert_eq!(uploads.len(), 1, "the takeovers started new uploads");
    assert_eq!(parts.len() as u64, size.div_ceil(8 * MIB));
    for ((_, part), count) in &parts {
        assert_eq!(*count, 1, "part {part} was uploaded {count} times");
    }
    assert_eq!(moto.incomplete_uploads("landing").await, 0);
}

/// Item 3: Azure Blob (Azurite) as source and as destination, byte-identical; a `keyPrefix`
/// source of 20 objects (S3) lands as 20 objects under a `blobPrefix`.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn azure_blob_both_ways_and_a_prefix_of_twenty_objects() {
    let _serial = system_tests::serial().await;
    let dir = tempfile::tempdir().unwrap();
    let azurite = Azurite::start(dir.path());
    azurite.create_container("inbox").await;
    azurite.create_container("outbox").await;
    let size = 256 * MIB;
    let expected = put_pattern(&azurite.store("inbox"), "data/blob.bin", size, 2).await;
    let provider = plane(dir.path(), "provider", &[]);
    let consumer = plane(dir.path(), "consumer", &[]);
    put_dataset(
        &provider.base_url,
        "blob",
        &azurite.address("inbox", "data/blob.bin"),
    )
    .await;
    let began = Instant::now();
    let id = pull_between(
        &provider.base_url,
        &consumer.base_url,
        "az",
        "blob",
        &azurite.address("outbox", "copy/blob.bin"),
    )
    .await;
    completed(&consumer.base_url, &id, Duration::from_secs(600)).await;
    println!(
        "Azure → Azure, {} MiB: {:.1} s",
        size / MIB,
        began.elapsed().as_secs_f64()
    );
    let (actual_size, actual) = object_sha256(&azurite.store("outbox"), "copy/blob.bin").await;
    assert_eq!(actual_size, size);
    assert_eq!(actual, expected);

    // 20 objects under an S3 prefix (one larger than a part), to 20 blobs under a prefix.
    let moto = MotoServer::start(dir.path());
    moto.create_bucket("many").await;
    let store = moto.store("many");
    let mut digests = Vec::new();
    for i in 0..20u64 {
        let len = if i == 7 { 20 * MIB + 5 } else { 1000 * i + 1 };
        let key = format!("batch/part-{i:02}.bin");
        digests.push((
            format!("landed/part-{i:02}.bin"),
            len,
            put_pattern(&store, &key, len, i).await,
        ));
    }
    put_pattern(&store, "other/not-me.bin", 10, 99).await;
    let mut prefix = moto.address("many", "");
    prefix.as_object_mut().unwrap().remove("keyName");
    prefix["keyPrefix"] = json!("batch/");
    put_dataset(&provider.base_url, "batch", &prefix).await;
    let mut destination = azurite.address("outbox", "");
    destination.as_object_mut().unwrap().remove("blobName");
    destination["blobPrefix"] = json!("landed/");
    let id = pull_between(
        &provider.base_url,
        &consumer.base_url,
        "prefix",
        "batch",
        &destination,
    )
    .await;
    completed(&consumer.base_url, &id, Duration::from_secs(300)).await;
    let out = azurite.store("outbox");
    let landed = keys(&out, "landed").await;
    assert_eq!(landed.len(), 20, "{landed:?}");
    for (key, len, digest) in digests {
        assert_eq!(object_sha256(&out, &key).await, (len, digest), "{key}");
    }
}

/// Item 4: terminating a flow during its multipart upload leaves no incomplete upload.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn terminate_aborts_the_multipart_upload() {
    let _serial = system_tests::serial().await;
    let dir = tempfile::tempdir().unwrap();
    let moto = MotoServer::start(dir.path());
    moto.create_bucket("half").await;
    let data = DataServer::start();
    let source = data.put(
        "slow",
        Content::Pattern {
            block: random_bytes(1024 * 1024, 8),
            len: 512 * MIB,
            delay: Duration::from_millis(20),
        },
    );
    let consumer = plane(
        dir.path(),
        "consumer",
        &["-D", "dpf.object.part-size=5242880"],
    );
    let base = consumer.base_url.clone();
    let id = prepare_pull(&base, "term", &moto.address("half", "never.bin")).await;
    started(
        &base,
        &id,
        json!({"endpointType": PULL, "endpoint": source}),
    )
    .await;
    wait_flow(&base, &id, Duration::from_secs(120), |v| {
        v["bytesCheckpointed"].as_u64().unwrap_or(0) >= 10 * MIB
    })
    .await;
    assert_eq!(
        moto.incomplete_uploads("half").await,
        1,
        "an upload is under way"
    );
    let (status, body) = post(
        &format!("{base}/signaling/dataflows/{id}/terminate"),
        &json!({"messageId": "t-1", "reason": "stop"}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let deadline = Instant::now() + Duration::from_secs(20);
    while moto.incomplete_uploads("half").await > 0 {
        assert!(Instant::now() < deadline, "the upload was not aborted");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let view = get(&format!("{base}/dataflows/{id}")).await.1;
    assert_eq!(view["state"], "TERMINATED", "{view}");
}
