//! Real object-storage servers for the object-storage tests, started on free ports: an S3
//! server (moto, `python3 -m moto.server`, from PyPI `moto[server]`) and Azure Blob (Azurite,
//! npm `azurite`). Both are installed by `.ci/run`; a missing one fails the test with the
//! install command, never skips it.
//!
//! Test data is written and read back with Apache Arrow's `object_store`, the client dpf uses,
//! straight against the server (no dpf in between).

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, WriteMultipart};
use sha2::Digest;

/// Azurite's well-known development account and key.
pub const AZURITE_ACCOUNT: &str = "devstoreaccount1";
/// Azurite's well-known development account key (public, documented by Microsoft).
pub const AZURITE_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";
/// Where `.ci/run` installs Azurite (`npm install --prefix`).
pub const AZURITE_PREFIX: &str = ".cache/dpf-test-servers";

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn wait_listening(port: u16, what: &str, child: &mut Child, log: &Path) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!(
                "{what} exited ({status}) before listening; log:\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        assert!(
            Instant::now() < deadline,
            "{what} did not listen on port {port} within 60 s"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A moto S3 server.
#[derive(Debug)]
pub struct MotoServer {
    child: Child,
    /// `http://127.0.0.1:<port>`.
    pub endpoint: String,
    log: PathBuf,
}

impl Drop for MotoServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl MotoServer {
    /// Starts moto on a free port, logging every request to `dir/moto.log`.
    pub fn start(dir: &Path) -> Self {
        let port = free_port();
        let log = dir.join(format!("moto-{port}.log"));
        let mut child = Command::new("python3")
            .args(["-m", "moto.server", "-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run python3 for moto ({e}); install it: python3 -m pip install 'moto[server]'"));
        std::thread::sleep(Duration::from_millis(300));
        if let Ok(Some(_)) = child.try_wait() {
            panic!(
                "moto is not installed (python3 -m pip install 'moto[server]', as .ci/run does): {}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
        wait_listening(port, "moto", &mut child, &log);
        Self {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
            log,
        }
    }

    /// Creates a bucket.
    pub async fn create_bucket(&self, bucket: &str) {
        let response = crate::client()
            .put(format!("{}/{bucket}", self.endpoint))
            .send()
            .await
            .unwrap();
        assert!(response.status().is_success(), "{}", response.status());
    }

    /// An `AmazonS3` address of `key` in `bucket` on this server (test credentials).
    pub fn address(&self, bucket: &str, key: &str) -> serde_json::Value {
        serde_json::json!({
            "type": "AmazonS3",
            "region": "us-east-1",
            "bucketName": bucket,
            "keyName": key,
            "endpointOverride": self.endpoint,
            "accessKeyId": "testing",
            "secretAccessKey": "testing",
        })
    }

    /// A client of `bucket`.
    pub fn store(&self, bucket: &str) -> Arc<dyn ObjectStore> {
        Arc::new(
            object_store::aws::AmazonS3Builder::new()
                .with_endpoint(&self.endpoint)
                .with_allow_http(true)
                .with_bucket_name(bucket)
                .with_region("us-east-1")
                .with_access_key_id("testing")
                .with_secret_access_key("testing")
                .build()
                .unwrap(),
        )
    }

    /// Successful `UploadPart` requests so far, per upload id and part number (from moto's
    /// request log).
    pub fn uploaded_parts(&self) -> BTreeMap<(String, u32), usize> {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let mut counts = BTreeMap::new();
        for line in text.lines() {
            if !line.contains("\"PUT ") || !line.contains("partNumber=") {
                continue;
            }
            let ok = line
                .rsplit('"')
                .next()
                .is_some_and(|rest| rest.trim_start().starts_with("200"));
            if !ok {
                continue;
            }
            let query = line.split('?').nth(1).unwrap_or_default();
            let query = query.split(' ').next().unwrap_or_default();
            let mut part = None;
            let mut upload = None;
            for pair in query.split('&') {
                match pair.split_once('=') {
                    Some(("partNumber", n)) => part = n.parse::<u32>().ok(),
                    Some(("uploadId", id)) => upload = Some(id.to_owned()),
                    _ => {}
                }
            }
            if let (Some(part), Some(upload)) = (part, upload) {
                *counts.entry((upload, part)).or_insert(0) += 1;
            }
        }
        counts
    }

    /// Incomplete multipart uploads in `bucket` (`ListMultipartUploads`).
    pub async fn incomplete_uploads(&self, bucket: &str) -> usize {
        let response = crate::client()
            .get(format!("{}/{bucket}?uploads", self.endpoint))
            .send()
            .await
            .unwrap();
        assert!(response.status().is_success());
        let mut body = Vec::new();
        let mut stream = response.bytes_stream();
        while let Some(chunk) = stream.next().await {
            body.extend_from_slice(&chunk.unwrap());
        }
        String::from_utf8_lossy(&body).matches("<Upload>").count()
    }
}

/// An Azurite blob server.
#[derive(Debug)]
pub struct Azurite {
    child: Child,
    /// `http://127.0.0.1:<port>/devstoreaccount1`.
    pub endpoint: String,
}

impl Drop for Azurite {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn azurite_binary() -> PathBuf {
    let home = std::env::var("HOME").unwrap_or_else(|_| "/root".into());
    let installed = Path::new(&home)
        .join(AZURITE_PREFIX)
        .join("node_modules/.bin/azurite-blob");
    if installed.exists() {
        return installed;
    }
    let in_path = std::env::var("PATH")
        .unwrap_or_default()
        .split(':')
        .map(|dir| Path::new(dir).join("azurite-blob"))
        .find(|p| p.exists());
    in_path.unwrap_or_else(|| {
        panic!(
            "Azurite is not installed: npm install --prefix ~/{AZURITE_PREFIX} azurite (as .ci/run does)"
        )
    })
}

impl Azurite {
    /// Starts Azurite's blob service on a free port with its data in `dir`.
    pub fn start(dir: &Path) -> Self {
        let port = free_port();
        let location = dir.join(format!("azurite-{port}"));
        std::fs::create_dir_all(&location).unwrap();
        let log = dir.join(format!("azurite-{port}.log"));
        let mut child = Command::new(azurite_binary())
            .args(["--blobHost", "127.0.0.1", "--blobPort", &port.to_string()])
            .arg("--location")
            .arg(&location)
            .args(["--skipApiVersionCheck", "--loose", "--silent"])
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        wait_listening(port, "azurite", &mut child, &log);
        Self {
            child,
            endpoint: format!("http://127.0.0.1:{port}/{AZURITE_ACCOUNT}"),
        }
    }

    /// Creates a container (Shared Key authorization with the development key).
    pub async fn create_container(&self, container: &str) {
        use base64::Engine;
        let engine = base64::engine::general_purpose::STANDARD;
        let date = chrono::Utc::now()
            .format("%a, %d %b %Y %H:%M:%S GMT")
            .to_string();
        let version = "2021-08-06";
        let to_sign = format!(
            "PUT\n\n\n\n\n\n\n\n\n\n\n\nx-ms-date:{date}\nx-ms-version:{version}\n/{AZURITE_ACCOUNT}/{AZURITE_ACCOUNT}/{container}\nrestype:container"
        );
        let key = ring::hmac::Key::new(
            ring::hmac::HMAC_SHA256,
            &engine.decode(AZURITE_KEY).unwrap(),
        );
        let signature = engine.encode(ring::hmac::sign(&key, to_sign.as_bytes()).as_ref());
        let response = crate::client()
            .put(format!("{}/{container}?restype=container", self.endpoint))
            .header("x-ms-date", date)
            .header("x-ms-version", version)
            .header("content-length", "0")
            .header(
                "authorization",
                format!("SharedKey {AZURITE_ACCOUNT}:{signature}"),
            )
            .send()
            .await
            .unwrap();
        assert!(
            response.status().is_success(),
            "create container {container}: {}",
            response.status()
        );
    }

    /// An `AzureStorage` address of `blob` in `container` on this server.
    pub fn address(&self, container: &str, blob: &str) -> serde_json::Value {
        serde_json::json!({
            "type": "AzureStorage",
            "account": AZURITE_ACCOUNT,
            "container": container,
            "blobName": blob,
            "accountKey": AZURITE_KEY,
            "endpointOverride": self.endpoint,
        })
    }

    /// A client of `container`.
    pub fn store(&self, container: &str) -> Arc<dyn ObjectStore> {
        Arc::new(
            object_store::azure::MicrosoftAzureBuilder::new()
                .with_account(AZURITE_ACCOUNT)
                .with_access_key(AZURITE_KEY)
                .with_container_name(container)
                .with_endpoint(self.endpoint.clone())
                .with_allow_http(true)
                .build()
                .unwrap(),
        )
    }
}

/// Writes `size` bytes of a repeated pseudo-random block (`seed`) to `key`, streamed as a
/// multipart upload; returns the SHA-256.
pub async fn put_pattern(store: &Arc<dyn ObjectStore>, key: &str, size: u64, seed: u64) -> String {
    let block = crate::random_bytes(1024 * 1024 + 7, seed);
    let path = ObjectPath::from(key);
    let mut hasher = sha2::Sha256::new();
    if size <= 5 * 1024 * 1024 {
        let mut data = Vec::with_capacity(usize::try_from(size).unwrap());
        while (data.len() as u64) < size {
            let take = usize::try_from(size - data.len() as u64)
                .unwrap()
                .min(block.len());
            data.extend_from_slice(&block[..take]);
        }
        hasher.update(&data);
        store.put(&path, Bytes::from(data).into()).await.unwrap();
        return crate::hex(&hasher.finalize());
    }
    let upload = store.put_multipart(&path).await.unwrap();
    let mut writer = WriteMultipart::new_with_chunk_size(upload, 8 * 1024 * 1024);
    let mut written = 0u64;
    while written < size {
        let take = usize::try_from(size - written).unwrap().min(block.len());
        let chunk = block.slice(..take);
        hasher.update(&chunk);
        writer.wait_for_capacity(4).await.unwrap();
        writer.put(chunk);
        written += take as u64;
    }
    writer.finish().await.unwrap();
    crate::hex(&hasher.finalize())
}

/// The size and SHA-256 of `key`, streamed.
pub async fn object_sha256(store: &Arc<dyn ObjectStore>, key: &str) -> (u64, String) {
    let result = store.get(&ObjectPath::from(key)).await.unwrap();
    let mut stream = result.into_stream();
    let mut hasher = sha2::Sha256::new();
    let mut size = 0u64;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.unwrap();
        size += chunk.len() as u64;
        hasher.update(&chunk);
    }
    (size, crate::hex(&hasher.finalize()))
}

/// The keys under `prefix`, sorted.
pub async fn keys(store: &Arc<dyn ObjectStore>, prefix: &str) -> Vec<String> {
    let mut keys: Vec<String> = store
        .list(Some(&ObjectPath::from(prefix)))
        .map(|meta| meta.unwrap().location.to_string())
        .collect()
        .await;
    keys.sort();
    keys
}

// Flow helpers of the object-storage tests.

/// The consumer prepares a pull into `destination` and returns its flow id.
pub async fn prepare_pull(
    consumer: &str,
    process: &str,
    destination: &serde_json::Value,
) -> String {
    let mut prepare = crate::flow_message(process, crate::PULL, "d", "c");
    prepare["metadata"] = serde_json::json!({ "destination": destination });
    let (status, prepared) =
        crate::post(&format!("{consumer}/signaling/dataflows/prepare"), &prepare).await;
    assert_eq!(status, 200, "{prepared}");
    prepared["dataFlowId"].as_str().unwrap().to_owned()
}

/// Tells the consumer's flow where to pull from.
pub async fn started(consumer: &str, id: &str, address: serde_json::Value) {
    let mut notification = crate::simple_message();
    if !address.is_null() {
        notification["dataAddress"] = address;
    }
    let (status, body) = crate::post(
        &format!("{consumer}/signaling/dataflows/{id}/started"),
        &notification,
    )
    .await;
    assert_eq!(status, 200, "{body}");
}

/// Dataset `dataset` of the provider, pulled by the consumer into `destination` (two data
/// planes, the DPS HTTP pull profile between them). Returns the consumer's flow id.
pub async fn pull_between(
    provider: &str,
    consumer: &str,
    process: &str,
    dataset: &str,
    destination: &serde_json::Value,
) -> String {
    let id = prepare_pull(consumer, process, destination).await;
    let start = crate::flow_message(&format!("{process}-p"), crate::PULL, dataset, "p");
    let (status, body) =
        crate::post(&format!("{provider}/signaling/dataflows/start"), &start).await;
    assert_eq!(status, 200, "{body}");
    started(consumer, &id, body["dataAddress"].clone()).await;
    id
}

pub async fn completed(base: &str, id: &str, timeout: Duration) -> serde_json::Value {
    let view = crate::wait_flow(base, id, timeout, |v| {
        matches!(v["state"].as_str(), Some("COMPLETED" | "TERMINATED"))
    })
    .await;
    assert_eq!(view["state"], "COMPLETED", "{view}");
    view
}
