//! Configuration by environment alone, as Kubernetes operators write it: a data-plane replica
//! whose datasets come from `DPF_DATASET_<ID>_<PROPERTY>` variables serves them (the property
//! names match `baseUrl` without regard to case and `_`), and a misspelt property is warned
//! about at start, by name and without its value.

#![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed test

use std::time::Duration;

use futures::StreamExt;

use system_tests::{flow_message, post, random_bytes, Content, DataServer, Launcher, PULL};

/// Starts a provider flow for `dataset` and pulls its `/public` endpoint with the token.
async fn pull(base: &str, process_id: &str, dataset: &str) -> (u16, Vec<u8>) {
    let start = flow_message(process_id, PULL, dataset, "provider-participant");
    let (status, started) = post(&format!("{base}/signaling/dataflows/start"), &start).await;
    assert!(status == 200 || status == 201, "{status}: {started}");
    let address = &started["dataAddress"];
    assert_eq!(address["endpointType"], PULL, "{started}");
    let token = address["endpointProperties"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "authorization")
        .and_then(|p| p["value"].as_str())
        .unwrap()
        .to_owned();
    let endpoint = address["endpoint"].as_str().unwrap();
    let response = system_tests::client()
        .get(endpoint)
        .bearer_auth(token)
        .timeout(Duration::from_secs(30))
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let mut body = Vec::new();
    let mut stream = response.bytes_stream();
    while let Some(chunk) = stream.next().await {
        body.extend_from_slice(&chunk.unwrap());
    }
    (status, body)
}

#[tokio::test]
async fn a_replica_configured_only_by_environment_serves_its_datasets() {
    let dir = tempfile::tempdir().unwrap();
    let data = DataServer::start();
    let payload = random_bytes(256 * 1024 + 7, 21);
    let url = data.put("env-source", Content::Bytes(payload.clone()));
    let root = dir.path().display().to_string();
    let data_dir = dir.path().join("data").display().to_string();
    // No `-D` relaxations: everything, the test's plain-HTTP allowances included, is an
    // environment variable.
    let mut launcher = Launcher::start_strict(
        "dataplane-launcher",
        &[],
        &[
            ("DPF_STORE_URL", "memory:"),
            ("DPF_DATA_DIR", &data_dir),
            ("DPF_HTTP_INSECURE", "true"),
            ("DPF_TRANSFER_DENIED_NETWORKS", ""),
            ("DPF_TRANSFER_FILE_ROOT", &root),
            ("DPF_DATASET_DS1_TYPE", "HttpData"),
            ("DPF_DATASET_DS1_BASEURL", &url),
            // An id with `_`: the property is the longest known name at the end (`BASE_URL`).
            ("DPF_DATASET_MY_DS_TYPE", "HttpData"),
            ("DPF_DATASET_MY_DS_BASE_URL", &url),
            // A misspelt property: warned about, by name only.
            ("DPF_DATASET_DS1_CONTENTTYP", "misspelt-value-4711"),
            // A misspelt setting outside the groups (`dpf.transfer.file.root`): warned about too.
            ("DPF_TRANSFER_FILEROOT", "misspelt-root-4712"),
        ],
        dir.path(),
    );
    let base = launcher.base_url.clone();

    let (status, body) = pull(&base, "env-pull-1", "ds1").await;
    assert_eq!(status, 200);
    assert!(body == payload.as_ref(), "ds1 served other bytes");
    let (status, body) = pull(&base, "env-pull-2", "my_ds").await;
    assert_eq!(status, 200);
    assert!(body == payload.as_ref(), "my_ds served other bytes");

    let log = launcher.log_text();
    let warning = log
        .lines()
        .find(|line| line.contains("dpf.dataset.ds1.contenttyp"))
        .unwrap_or_else(|| panic!("no warning names the misspelt key; log:\n{log}"));
    assert!(warning.contains("WARN"), "{warning}");
    assert!(warning.contains("unknown configuration key"), "{warning}");
    assert!(!warning.contains("misspelt-value-4711"), "{warning}");
    let warning = log
        .lines()
        .find(|line| line.contains("dpf.transfer.fileroot"))
        .unwrap_or_else(|| panic!("no warning names dpf.transfer.fileroot; log:\n{log}"));
    assert!(warning.contains("unknown configuration key"), "{warning}");
    assert!(!warning.contains("misspelt-root-4712"), "{warning}");
    // The well-spelt keys draw no warning.
    assert!(
        !log.lines()
            .any(|l| l.contains("unknown configuration key") && l.contains(".baseurl")),
        "{log}"
    );
    launcher.kill();
}
