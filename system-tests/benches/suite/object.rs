//! Scenario 9: S3 → S3 through dpf (a provider pull and a consumer pull on one data plane, the
//! HTTP pull profile between them) against a plain `object_store` get → put copy on the same
//! moto server in the same run.

use std::time::{Duration, Instant};

use futures::StreamExt;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStoreExt, WriteMultipart};
use serde_json::json;
use system_tests::object_servers::{object_sha256, put_pattern, MotoServer};
use system_tests::{flow_message, post, simple_message, wait_flow, PULL};

use crate::{launch, mib_s, put_dataset, Mode, Report};

pub(crate) async fn s3_to_s3(mode: Mode, report: &mut Report) {
    let dir = tempfile::tempdir().unwrap();
    let moto = MotoServer::start(dir.path());
    moto.create_bucket("bench").await;
    let size = mode.pick(256u64 << 20, 1 << 30);
    let store = moto.store("bench");
    let expected = put_pattern(&store, "source.bin", size, 9).await;

    // Baseline: get → put with object_store, 16 MiB parts, 2 in flight (dpf's defaults).
    let began = Instant::now();
    let mut body = store
        .get(&ObjectPath::from("source.bin"))
        .await
        .unwrap()
        .into_stream();
    let upload = store
        .put_multipart(&ObjectPath::from("plain.bin"))
        .await
        .unwrap();
    let mut writer = WriteMultipart::new_with_chunk_size(upload, 16 << 20);
    while let Some(chunk) = body.next().await {
        writer.wait_for_capacity(2).await.unwrap();
        writer.put(chunk.unwrap());
    }
    writer.finish().await.unwrap();
    let plain = mib_s(size, began.elapsed());
    assert_eq!(object_sha256(&store, "plain.bin").await.1, expected);

    let plane = launch("memory:", &[], dir.path());
    let base = plane.base_url.clone();
    put_dataset(&base, "obj", moto.address("bench", "source.bin")).await;
    let mut prepare = flow_message("s3-c", PULL, "obj", "c");
    prepare["metadata"] = json!({"destination": moto.address("bench", "dpf.bin")});
    let (_, prepared) = post(&format!("{base}/signaling/dataflows/prepare"), &prepare).await;
    let id = prepared["dataFlowId"].as_str().unwrap().to_owned();
    let began = Instant::now();
    let (_, provider) = post(
        &format!("{base}/signaling/dataflows/start"),
        &flow_message("s3-p", PULL, "obj", "p"),
    )
    .await;
    let mut started = simple_message();
    started["dataAddress"] = provider["dataAddress"].clone();
    let (status, body) = post(
        &format!("{base}/signaling/dataflows/{id}/started"),
        &started,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let view = wait_flow(&base, &id, Duration::from_secs(600), |v| {
        v["state"] == "COMPLETED" || v["state"] == "TERMINATED"
    })
    .await;
    assert_eq!(view["state"], "COMPLETED", "{view}");
    let dpf = mib_s(size, began.elapsed());
    assert_eq!(object_sha256(&store, "dpf.bin").await.1, expected);
    let ratio = dpf / plain;
    report.add(
        "9 S3 -> S3 (moto)",
        format!(
            "{dpf:.0} MiB/s, peak RSS {} MiB",
            plane.peak_rss_kib() >> 10
        ),
        format!("object_store get->put {plain:.0} MiB/s"),
        Some(ratio),
        ">= 0.5x plain copy",
        Some(ratio >= 0.5),
        json!({"dpfMiBps": dpf, "plainMiBps": plain, "bytes": size}),
    );
}
