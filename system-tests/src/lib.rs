//! Support for dpf's black-box tests: start the real launcher binaries, serve data and receive
//! uploads over real HTTP, and play a control plane that records (and schema-checks) callbacks.
//!
//! Binaries are taken from the cargo target directory next to the test executable; when one is
//! missing it is built with `cargo build -p <name>` (same profile).

#![allow(clippy::unwrap_used, clippy::missing_panics_doc)] // test support: failures are test failures

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use futures::StreamExt;
use serde_json::{json, Value};

pub use test_utils::dps;

mod control_plane;
mod data_server;
mod digest;
mod launcher;
pub mod object_servers;
mod tcp_gate;

pub use control_plane::{Callback, FakeControlPlane};
pub use data_server::{Content, DataServer, Upload};
pub use digest::{hex, pattern_sha256, random_bytes, sha256, sha256_file, sha256_file_streamed};
pub use launcher::Launcher;
pub use tcp_gate::TcpGate;

/// The DPS HTTP push profile.
pub const PUSH: &str = "https://w3id.org/dspace-sig/profile/http-push";
/// The DPS HTTP pull profile.
pub const PULL: &str = "https://w3id.org/dspace-sig/profile/http-pull";

/// Path of a workspace binary, built on demand.
pub fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    // …/target/<profile>/deps/<test> → …/target/<profile>/<name>
    let profile_dir = exe.parent().and_then(Path::parent).unwrap().to_path_buf();
    let path = profile_dir.join(name);
    if !path.exists() {
        let release = profile_dir.file_name().is_some_and(|p| p == "release");
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut command = Command::new(cargo);
        command
            .args(["build", "-p", name])
            .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."));
        if release {
            command.arg("--release");
        }
        let status = command.status().unwrap();
        assert!(status.success(), "cannot build {name}");
    }
    path
}
/// Serialises the heavy multi-process tests of one test binary: on a 2-core machine, two
/// clusters of replicas at once make timing assertions (failover within a lease) meaningless.
pub async fn serial() -> tokio::sync::MutexGuard<'static, ()> {
    static LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    LOCK.lock().await
}

/// Starts `count` data-plane replicas named `r0`, `r1`, … at once, sharing `store_url`, each
/// in its own directory under `dir`, with `extra` arguments.
pub fn start_replicas(count: usize, store_url: &str, extra: &[&str], dir: &Path) -> Vec<Launcher> {
    let handles: Vec<_> = (0..count)
        .map(|i| {
            let root = dir.to_path_buf();
            let dir = dir.join(format!("r{i}"));
            std::fs::create_dir_all(&dir).unwrap();
            // The replicas share one file root, `dir` (a shared volume in production).
            let mut args: Vec<String> = vec![
                "-D".into(),
                format!("edc.runtime.id=r{i}"),
                "-D".into(),
                format!("dpf.store.url={store_url}"),
                "-D".into(),
                format!("dpf.transfer.file.root={}", root.display()),
            ];
            args.extend(extra.iter().map(|s| (*s).to_owned()));
            std::thread::spawn(move || {
                let args: Vec<&str> = args.iter().map(String::as_str).collect();
                Launcher::start("dataplane-launcher", &args, &[], &dir)
            })
        })
        .collect();
    handles.into_iter().map(|h| h.join().unwrap()).collect()
}

/// The store URLs the cluster tests run on: a throwaway PostgreSQL database, and a SQLite file
/// shared by every replica on this host.
pub fn postgres_store_url() -> String {
    test_utils::postgres_database().url().to_owned()
}

/// Registers `id` on the data plane at `base` as an `HttpData` dataset read from `url`.
pub async fn put_http_dataset(base: &str, id: &str, url: &str) {
    let (status, body) = call(
        reqwest::Method::PUT,
        &format!("{base}/datasets/{id}"),
        Some(&serde_json::json!({"type": "HttpData", "baseUrl": url})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
}

/// A plain HTTP client for tests, built once per process: building a client loads the
/// system's root certificates (tens of milliseconds), which adds up over hundreds of calls.
/// It keeps no idle connections, so it can be used from any test's runtime.
pub fn client() -> reqwest::Client {
    static CLIENT: std::sync::OnceLock<reqwest::Client> = std::sync::OnceLock::new();
    CLIENT
        .get_or_init(|| {
            reqwest::Client::builder()
                .pool_max_idle_per_host(0)
                .build()
                .unwrap_or_else(|e| panic!("test HTTP client: {e}"))
        })
        .clone()
}

/// Sends a request with an optional JSON body; returns the status and the JSON body (Null when
/// empty or not JSON).
pub async fn call(method: reqwest::Method, url: &str, body: Option<&Value>) -> (u16, Value) {
    let client = client();
    let mut request = client.request(method, url).timeout(Duration::from_secs(30));
    if let Some(body) = body {
        request = request.json(body);
    }
    let response = request
        .send()
        .await
        .unwrap_or_else(|e| panic!("{url}: {e}"));
    let status = response.status().as_u16();
    let mut bytes = Vec::new();
    let mut stream = response.bytes_stream();
    while let Some(chunk) = stream.next().await {
        bytes.extend_from_slice(&chunk.unwrap());
    }
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

/// POST with a JSON body.
pub async fn post(url: &str, body: &Value) -> (u16, Value) {
    call(reqwest::Method::POST, url, Some(body)).await
}

/// GET.
pub async fn get(url: &str) -> (u16, Value) {
    call(reqwest::Method::GET, url, None).await
}

/// A DPS prepare/start message with every required field.
pub fn flow_message(process_id: &str, profile: &str, dataset_id: &str, participant: &str) -> Value {
    json!({
        "messageId": uuid::Uuid::new_v4().to_string(),
        "participantId": participant,
        "counterPartyId": "counterparty",
        "dataspaceContext": "test-dataspace",
        "processId": process_id,
        "agreementId": "agreement-1",
        "datasetId": dataset_id,
        "profile": profile,
        "claims": {"membership": "active"}
    })
}

/// A message with only a message id (suspend, terminate, started, resume).
pub fn simple_message() -> Value {
    json!({"messageId": uuid::Uuid::new_v4().to_string()})
}

/// Waits until the flow's management view satisfies `done`, or panics after `timeout`.
pub async fn wait_flow(
    base: &str,
    id: &str,
    timeout: Duration,
    done: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let (status, view) = get(&format!("{base}/dataflows/{id}")).await;
        if status == 200 && done(&view) {
            return view;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "flow {id} did not get there in {timeout:?}: {view}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
/// A CA, and a certificate it signed for `127.0.0.1` and `localhost`, written as `ca.pem`,
/// `cert.pem` and `key.pem` into `dir`, for tests that serve or trust TLS. Returns the CA's PEM.
pub fn write_test_pki(dir: &Path) -> String {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair, SanType};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.subject_alt_names = vec![
        SanType::IpAddress("127.0.0.1".parse().unwrap()),
        SanType::DnsName("localhost".try_into().unwrap()),
    ];
    let cert = params.signed_by(&key, &ca, &ca_key).unwrap();
    std::fs::write(dir.join("ca.pem"), ca.pem()).unwrap();
    std::fs::write(dir.join("cert.pem"), cert.pem()).unwrap();
    std::fs::write(dir.join("key.pem"), key.serialize_pem()).unwrap();
    ca.pem()
}
