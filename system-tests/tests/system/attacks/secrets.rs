//! Attacks: secrets (see docs/security.md, "Secrets"). Whoever reads the configuration dump, the
//! logs, the store or a management view learns no key, no password and no usable flow token.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::{json, Value};
use system_tests::{
    binary, flow_message, get, post, postgres_store_url, put_http_dataset, sha256, simple_message,
    Content, DataServer, Launcher, PULL, PUSH,
};

const ADMIN_KEY: &str = "admin-key-never-shown-7f3a";
const SELECTOR_KEY: &str = "selector-key-never-shown-52b1";
const STORE_PASSWORD: &str = "pg-password-never-shown-91c2";
const TIMEOUT: Duration = Duration::from_secs(20);
/// The local test servers are on loopback: deny only a network nobody uses here.
const LOOPBACK_ALLOWED: &str = "dpf.transfer.denied-networks=224.0.0.0/4";

/// Runs a launcher binary to completion; returns its exit status and stdout + stderr.
fn run(bin: &str, args: &[&str], dir: &Path) -> (bool, String) {
    let output = Command::new(binary(bin))
        .args(args)
        .env("EDC_DPF_SELECTOR_API_KEY", SELECTOR_KEY)
        .env("RUST_LOG", "info")
        .current_dir(dir)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

fn assert_no_secret(text: &str, secrets: &[&str]) {
    for secret in secrets {
        assert!(!text.contains(secret), "'{secret}' is shown in:\n{text}");
    }
}

/// `--dump-config` of every launcher masks the API keys (flag and environment) and the store
/// password; `migrate` names the store with the password masked, also when it fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dump_config_and_migrate_show_neither_keys_nor_the_store_password() {
    let dir = tempfile::tempdir().unwrap();
    // Nothing listens on port 1: the store cannot be opened, and the error names it.
    let store = format!("dpf.store.url=postgres://dpf:{STORE_PASSWORD}@127.0.0.1:1/dpf");
    let key = format!("dpf.api.auth.key={ADMIN_KEY}");
    for bin in [
        "dataplane-launcher",
        "embedded-launcher",
        "selector-launcher",
    ] {
        let (ok, dump) = run(
            bin,
            &["--dump-config", "-D", &key, "-D", &store],
            dir.path(),
        );
        assert!(ok, "{bin} --dump-config failed: {dump}");
        assert_no_secret(&dump, &[ADMIN_KEY, STORE_PASSWORD, SELECTOR_KEY]);
        assert!(
            dump.contains("dpf.store.url=postgres://dpf:***@127.0.0.1:1/dpf"),
            "{bin}: {dump}"
        );
        assert!(dump.contains("dpf.api.auth.key=***"), "{bin}: {dump}");
        assert!(
            dump.contains("edc.dpf.selector.api.key=***"),
            "{bin}: {dump}"
        );

        let (ok, migrate) = run(bin, &["-D", &store, "migrate"], dir.path());
        assert!(!ok, "{bin} migrate against nothing succeeded: {migrate}");
        assert_no_secret(&migrate, &[STORE_PASSWORD]);
        assert!(
            migrate.contains("postgres://dpf:***@127.0.0.1:1/dpf"),
            "{bin} migrate does not name the store: {migrate}"
        );
    }
}

/// A provider-pull flow (token T1) and a consumer-push flow (token T2) on `base`; both tokens
/// are used once so that they provably work. Returns (pull id, T1, ingest id, T2).
async fn two_flows_with_tokens(base: &str, data: &DataServer, dir: &Path) -> [String; 4] {
    let payload = b"public data, pulled with a token".to_vec();
    let url = data.put("secret-pull", Content::Bytes(payload.clone().into()));
    put_http_dataset(base, "secret-pull", &url).await;
    let (status, started) = post(
        &format!("{base}/signaling/dataflows/start"),
        &flow_message("sec-pull", PULL, "secret-pull", "participant"),
    )
    .await;
    assert_eq!(status, 200, "{started}");
    let (pull_id, pull_token) = id_and_token(&started);
    let (status, body) = pull(&started, &pull_token).await;
    assert_eq!((status, body), (200, payload));

    let mut prepare = flow_message("sec-ingest", PUSH, "any", "participant");
    prepare["metadata"] =
        json!({"destination": {"type": "File", "path": dir.join("ingested.bin")}});
    let (status, prepared) = post(&format!("{base}/signaling/dataflows/prepare"), &prepare).await;
    assert_eq!(status, 200, "{prepared}");
    let (ingest_id, ingest_token) = id_and_token(&prepared);
    let status = ingest(&prepared, &ingest_token, b"pushed".to_vec()).await;
    assert!(
        (200..300).contains(&status),
        "ingest with its token: {status}"
    );
    [pull_id, pull_token, ingest_id, ingest_token]
}

fn id_and_token(answer: &Value) -> (String, String) {
    let id = answer["dataFlowId"].as_str().unwrap().to_owned();
    let token = answer["dataAddress"]["endpointProperties"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "authorization")
        .and_then(|p| p["value"].as_str())
        .unwrap_or_else(|| panic!("no token in {answer}"))
        .to_owned();
    (id, token)
}

/// GET the pull endpoint of `answer`'s data address with `token`.
async fn pull(answer: &Value, token: &str) -> (u16, Vec<u8>) {
    let endpoint = answer["dataAddress"]["endpoint"].as_str().unwrap();
    let response = system_tests::client()
        .get(endpoint)
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.bytes().await.unwrap().to_vec())
}

/// PUT `body` to the ingest endpoint of `answer`'s data address with `token`.
async fn ingest(answer: &Value, token: &str, body: Vec<u8>) -> u16 {
    let endpoint = answer["dataAddress"]["endpoint"].as_str().unwrap();
    system_tests::client()
        .put(endpoint)
        .bearer_auth(token)
        .body(body)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// Every file under `dir`, with its bytes.
fn files_under(dir: &Path) -> Vec<(std::path::PathBuf, Vec<u8>)> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            found.extend(files_under(&path));
        } else {
            found.push((path.clone(), std::fs::read(&path).unwrap()));
        }
    }
    found
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle.as_bytes())
}

#[cfg(unix)]
fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// The default SQLite store: its directory is the owner's only (0700), its files too (0600),
/// and after flows ran their bytes hold no raw flow token — only digests.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_sqlite_store_is_private_and_holds_no_raw_token() {
    let dir = tempfile::tempdir().unwrap();
    let data = DataServer::start();
    let mut plane = Launcher::start(
        "dataplane-launcher",
        &["-D", LOOPBACK_ALLOWED],
        &[],
        dir.path(),
    );
    let [_, pull_token, _, ingest_token] =
        two_flows_with_tokens(&plane.base_url, &data, dir.path()).await;
    plane.signal("TERM");
    plane.wait_exit(TIMEOUT);

    let data_dir = dir.path().join("dpf-data");
    #[cfg(unix)]
    {
        assert_eq!(mode(&data_dir), 0o700, "dpf.data.dir");
        assert_eq!(mode(&data_dir.join("dpf.db")), 0o600, "the SQLite file");
    }
    let files = files_under(&data_dir);
    assert!(
        files
            .iter()
            .any(|(_, bytes)| contains(bytes, &sha256(pull_token.as_bytes()))),
        "the pull token's digest is not in the store: was the flow stored there?"
    );
    for (path, bytes) in &files {
        #[cfg(unix)]
        assert_eq!(
            mode(path) & 0o077,
            0,
            "{} is readable by others",
            path.display()
        );
        for token in [&pull_token, &ingest_token] {
            assert!(
                !contains(bytes, token),
                "a raw flow token is in {}",
                path.display()
            );
        }
    }
}

/// The same on PostgreSQL: no column of the flows table holds a raw token.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_postgres_flows_table_holds_no_raw_token() {
    use diesel::{Connection, QueryableByName, RunQueryDsl};
    #[derive(QueryableByName)]
    struct Row {
        #[diesel(sql_type = diesel::sql_types::Text)]
        row: String,
    }
    let dir = tempfile::tempdir().unwrap();
    let url = postgres_store_url();
    let data = DataServer::start();
    let store = format!("dpf.store.url={url}");
    let plane = Launcher::start(
        "dataplane-launcher",
        &["-D", &store, "-D", LOOPBACK_ALLOWED],
        &[],
        dir.path(),
    );
    let [pull_id, pull_token, ingest_id, ingest_token] =
        two_flows_with_tokens(&plane.base_url, &data, dir.path()).await;

    let mut connection = diesel::PgConnection::establish(&url).unwrap();
    let rows: Vec<Row> =
        diesel::sql_query("SELECT CAST(row_to_json(f) AS TEXT) AS row FROM data_flows f")
            .load(&mut connection)
            .unwrap();
    let table: String = rows.into_iter().map(|r| r.row + "\n").collect();
    assert!(
        table.contains(&pull_id) && table.contains(&ingest_id),
        "{table}"
    );
    assert!(table.contains(&sha256(pull_token.as_bytes())), "{table}");
    assert_no_secret(&table, &[&pull_token, &ingest_token]);
}

async fn signal(url: &str, message: &Value) -> Value {
    let (status, body) = post(url, message).await;
    assert_eq!(status, 200, "{url}: {body}");
    body
}

/// `resume` hands out a new token and the old one stops working, on the public (pull) and the
/// ingest (push) endpoints.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn resume_rotates_the_flow_token() {
    let dir = tempfile::tempdir().unwrap();
    let data = DataServer::start();
    let plane = Launcher::start(
        "dataplane-launcher",
        &["-D", LOOPBACK_ALLOWED],
        &[],
        dir.path(),
    );
    let base = plane.base_url.clone();
    let flows = format!("{base}/signaling/dataflows");

    // Provider pull.
    let url = data.put("rotate", Content::Bytes(b"rotating".to_vec().into()));
    put_http_dataset(&base, "rotate", &url).await;
    let started = signal(
        &format!("{flows}/start"),
        &flow_message("rot-pull", PULL, "rotate", "participant"),
    )
    .await;
    let (id, old) = id_and_token(&started);
    assert_eq!(pull(&started, &old).await.0, 200);
    signal(&format!("{flows}/{id}/suspend"), &simple_message()).await;
    let resumed = signal(&format!("{flows}/{id}/resume"), &simple_message()).await;
    let (_, new) = id_and_token(&resumed);
    assert_ne!(old, new, "resume did not rotate the pull token");
    assert_eq!(
        pull(&resumed, &old).await.0,
        401,
        "the old pull token still works"
    );
    assert_eq!(pull(&resumed, &new).await, (200, b"rotating".to_vec()));

    // Consumer push.
    let mut prepare = flow_message("rot-ingest", PUSH, "any", "participant");
    prepare["metadata"] =
        json!({"destination": {"type": "File", "path": dir.path().join("rot.bin")}});
    let prepared = signal(&format!("{flows}/prepare"), &prepare).await;
    let (id, old) = id_and_token(&prepared);
    signal(&format!("{flows}/{id}/started"), &simple_message()).await;
    signal(&format!("{flows}/{id}/suspend"), &simple_message()).await;
    let resumed = signal(&format!("{flows}/{id}/resume"), &simple_message()).await;
    let (_, new) = id_and_token(&resumed);
    assert_ne!(old, new, "resume did not rotate the ingest token");
    assert_eq!(ingest(&resumed, &old, b"old".to_vec()).await, 401);
    let status = ingest(&resumed, &new, b"new".to_vec()).await;
    assert!(
        (200..300).contains(&status),
        "the new ingest token: {status}"
    );
    assert_eq!(std::fs::read(dir.path().join("rot.bin")).unwrap(), b"new");
}

/// A consumer's sink credentials in `metadata.destination` (authorization, headers, URL
/// userinfo and query) and any credential-named property elsewhere in the metadata never show
/// in a management view, however deep.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn views_redact_credentials_at_any_depth() {
    let dir = tempfile::tempdir().unwrap();
    let plane = Launcher::start(
        "dataplane-launcher",
        &["-D", LOOPBACK_ALLOWED],
        &[],
        dir.path(),
    );
    let base = plane.base_url.clone();
    let secrets = [
        "SINK-CREDENTIAL-1",
        "SINK-PASSWORD-2",
        "SINK-SIGNATURE-3",
        "HEADER-KEY-4",
        "CLIENT-SECRET-5",
        "NESTED-TOKEN-6",
    ];
    let mut prepare = flow_message("redact-1", PUSH, "any", "participant");
    prepare["metadata"] = json!({
        "destination": {
            "type": "HttpData",
            "baseUrl": "http://sink:SINK-PASSWORD-2@127.0.0.1:9/upload?sig=SINK-SIGNATURE-3",
            "authorization": "SINK-CREDENTIAL-1",
            "authType": "bearer",
            "headers": {"X-Api-Key": "HEADER-KEY-4"}
        },
        "extra": {"providers": [{"clientSecret": "CLIENT-SECRET-5"}], "deeper": {"refreshToken": "NESTED-TOKEN-6"}}
    });
    let prepared = signal(&format!("{base}/signaling/dataflows/prepare"), &prepare).await;
    let id = prepared["dataFlowId"].as_str().unwrap();
    let (token_id, token) = id_and_token(&prepared);
    assert_eq!(token_id, id);

    let (status, view) = get(&format!("{base}/dataflows/{id}")).await;
    assert_eq!(status, 200, "{view}");
    let (status, list) = get(&format!("{base}/dataflows")).await;
    assert_eq!(status, 200, "{list}");
    for text in [view.to_string(), list.to_string()] {
        assert_no_secret(&text, &secrets);
        assert_no_secret(&text, &[&token]);
    }
    assert_eq!(view["destination"]["authorization"], "***", "{view}");
    assert_eq!(
        view["destination"]["baseUrl"], "http://***@127.0.0.1:9/upload?***",
        "{view}"
    );
    // The destination lives in the flow's destination, not copied into its metadata.
    assert!(
        view["metadata"]["metadata"].get("destination").is_none(),
        "{view}"
    );
    assert_eq!(
        view["metadata"]["metadata"]["extra"]["providers"][0]["clientSecret"],
        "***"
    );
}

/// Whatever a log line would carry — a URL with a password, a value equal to a configured key —
/// the key and the password are masked in it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_log_line_shows_a_key_or_a_password() {
    let dir = tempfile::tempdir().unwrap();
    let key = format!("dpf.api.auth.key={ADMIN_KEY}");
    let public = format!("dpf.public.url=http://dp:{STORE_PASSWORD}@127.0.0.1:1/api/v1");
    let plane = Launcher::start(
        "dataplane-launcher",
        &[
            "-D",
            &key,
            "-D",
            &public,
            "-D",
            "edc.dpf.selector.api-key=sel-KEY-in-logs-77",
        ],
        &[],
        dir.path(),
    );
    // A process id equal to the admin key is logged when the flow is prepared.
    let prepare = flow_message(ADMIN_KEY, PUSH, "any", "participant");
    let response = system_tests::client()
        .post(format!("{}/signaling/dataflows/prepare", plane.base_url))
        .header("x-api-key", ADMIN_KEY)
        .json(&prepare)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    // Let the log lines reach the file.
    let deadline = std::time::Instant::now() + TIMEOUT;
    while !plane.log_text().contains("data flow prepared") {
        assert!(std::time::Instant::now() < deadline, "{}", plane.log_text());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let log = plane.log_text();
    assert_no_secret(&log, &[ADMIN_KEY, STORE_PASSWORD, "sel-KEY-in-logs-77"]);
    // The lines were written, masked: the public URL at start, the process id of the flow.
    assert!(log.contains("http://dp:***@127.0.0.1:1/api/v1"), "{log}");
    assert!(log.contains("process_id=***"), "{log}");
}
