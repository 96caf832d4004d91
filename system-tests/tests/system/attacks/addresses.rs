//! Attacks through addresses: files outside the file root, servers on denied networks,
//! redirects to them, URLs that only look like HTTPS. Each is refused with a 4xx and nothing
//! is written, read or contacted.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use system_tests::{call, flow_message, get, post, Content, DataServer, Launcher, PULL, PUSH};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// `PUT /datasets/{id}` with `address`: the status.
async fn put_dataset(base: &str, id: &str, address: &Value) -> (u16, Value) {
    call(
        reqwest::Method::PUT,
        &format!("{base}/datasets/{id}"),
        Some(address),
    )
    .await
}

/// A consumer-push `prepare` whose `metadata.destination` is `destination`.
async fn prepare_to(base: &str, process_id: &str, destination: &Value) -> (u16, Value) {
    let mut message = flow_message(process_id, PUSH, "ds", "consumer");
    message["metadata"] = json!({ "destination": destination });
    post(&format!("{base}/signaling/dataflows/prepare"), &message).await
}

fn assert_refused(what: &str, (status, body): &(u16, Value)) {
    assert!(
        (400..500).contains(status) && body["error"].is_string(),
        "{what}: expected a 4xx JSON error, got {status} {body}"
    );
}

/// Starts a provider pull of `dataset` and GETs its pull endpoint: the status and the body.
async fn pull(base: &str, process_id: &str, dataset: &str) -> (u16, Vec<u8>) {
    let (status, started) = post(
        &format!("{base}/signaling/dataflows/start"),
        &flow_message(process_id, PULL, dataset, "consumer"),
    )
    .await;
    assert_eq!(status, 200, "{started}");
    let endpoint = started["dataAddress"]["endpoint"]
        .as_str()
        .unwrap()
        .to_owned();
    let token = started["dataAddress"]["endpointProperties"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "authorization")
        .unwrap()["value"]
        .as_str()
        .unwrap()
        .to_owned();
    let response = system_tests::client()
        .get(endpoint)
        .bearer_auth(token)
        .timeout(Duration::from_secs(30))
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.bytes().await.unwrap_or_default().to_vec())
}

fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_outside_the_root_are_never_written_or_read() {
    let dir = tempfile::tempdir().unwrap();
    // The launcher's own defaults: root ./dpf-data/files, store ./dpf-data/dpf.db.
    let plane = Launcher::start_strict(
        "dataplane-launcher",
        &["-D", "dpf.http.insecure=true"],
        &[],
        dir.path(),
    );
    let base = &plane.base_url;
    let root = dir.path().join("dpf-data/files");
    let store = dir.path().join("dpf-data/dpf.db");
    let victim = dir.path().join("victim.txt");
    std::fs::write(&victim, b"original").unwrap();
    // The listening line comes before the data plane is assembled: wait until it is ready.
    for _ in 0..100 {
        if get(&format!("{base}/ready")).await.0 == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(root.is_dir(), "no file root; log: {}", plane.log_text());
    std::os::unix::fs::symlink(dir.path(), root.join("escape")).unwrap();
    let store_before = read(&store);

    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&root).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700, "the file root is owner-only");
    }

    let escapes = [
        json!(victim.to_string_lossy()),
        json!("../../victim.txt"),
        json!("a/../../../victim.txt"),
        json!("escape/victim.txt"),
        json!(store.to_string_lossy()),
        json!("/etc/passwd"),
    ];
    for (i, path) in escapes.iter().enumerate() {
        let address = json!({"type": "File", "path": path});
        assert_refused(
            &format!("destination {path}"),
            &prepare_to(base, &format!("escape-{i}"), &address).await,
        );
        assert_refused(
            &format!("dataset {path}"),
            &put_dataset(base, &format!("escape-{i}"), &address).await,
        );
        let (status, _) = get(&format!("{base}/datasets/escape-{i}")).await;
        assert_eq!(status, 404, "dataset {path} was registered");
    }
    // A file:// data address is refused by default, whatever it names.
    let mut push = flow_message("file-url", PUSH, "ok", "consumer");
    push["dataAddress"] =
        json!({"endpointType": PUSH, "endpoint": format!("file://{}", victim.display())});
    assert_refused(
        "file:// dataAddress",
        &post(&format!("{base}/signaling/dataflows/start"), &push).await,
    );

    // A path beneath the root is fine, absolute or relative.
    std::fs::write(root.join("ok.bin"), b"inside").unwrap();
    let (status, body) = put_dataset(base, "ok", &json!({"type": "File", "path": "ok.bin"})).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = pull(base, "inside", "ok").await;
    assert_eq!((status, body.as_slice()), (200, b"inside".as_slice()));

    // A link planted after registration cannot lead the read out of the root either.
    let (status, body) = put_dataset(
        base,
        "later",
        &json!({"type": "File", "path": "later/victim.txt"}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    std::os::unix::fs::symlink(dir.path(), root.join("later")).unwrap();
    let (status, body) = pull(base, "later", "later").await;
    assert_ne!(status, 200, "read through a planted link");
    assert!(
        !body.windows(8).any(|w| w == b"original"),
        "the victim's bytes were served"
    );

    assert_eq!(read(&victim), b"original");
    assert_eq!(
        read(&store),
        store_before,
        "the store file was touched by a transfer"
    );
    let (status, _) = get(&format!("{base}/dataflows")).await;
    assert_eq!(status, 200, "the data plane keeps serving");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumer_files_are_named_by_flow_id_beneath_the_root() {
    let dir = tempfile::tempdir().unwrap();
    let plane = Launcher::start_strict(
        "dataplane-launcher",
        &[
            "-D",
            "dpf.http.insecure=true",
            "-D",
            "dpf.store.url=memory:",
        ],
        &[],
        dir.path(),
    );
    let base = &plane.base_url;
    let mut paths = Vec::new();
    for process_id in ["a:b", "a_b"] {
        let (status, prepared) = post(
            &format!("{base}/signaling/dataflows/prepare"),
            &flow_message(process_id, PUSH, "ds", "consumer"),
        )
        .await;
        assert_eq!(status, 200, "{prepared}");
        let (status, flow) = get(&format!("{base}/dataflows/{process_id}")).await;
        assert_eq!(status, 200, "{flow}");
        let path = flow["destination"]["path"].as_str().unwrap().to_owned();
        assert!(path.contains(flow["id"].as_str().unwrap()), "{path}");
        assert!(
            !Path::new(&path).is_absolute(),
            "{path} is relative to the root"
        );
        paths.push(path);
    }
    assert_ne!(paths[0], paths[1], "a:b and a_b share a file");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn servers_on_denied_networks_are_never_contacted() {
    let dir = tempfile::tempdir().unwrap();
    // Default denied networks of dataplane-launcher: loopback, link-local, private, ...
    let plane = Launcher::start_strict(
        "dataplane-launcher",
        &[
            "-D",
            "dpf.http.insecure=true",
            "-D",
            "dpf.store.url=memory:",
        ],
        &[],
        dir.path(),
    );
    let base = &plane.base_url;
    let server = DataServer::start();
    let url = server.put("data", Content::Bytes("internal secret".into()));
    let port = url
        .rsplit(':')
        .next()
        .unwrap()
        .split('/')
        .next()
        .unwrap()
        .to_owned();

    for (i, target) in [
        url.clone(),
        "http://169.254.169.254/latest/meta-data/".to_owned(),
        format!("http://[::ffff:127.0.0.1]:{port}/data"),
        format!("http://2130706433:{port}/data"),
        "http://10.0.0.1/x".to_owned(),
        "http://[fd00::1]/x".to_owned(),
    ]
    .iter()
    .enumerate()
    {
        let address = json!({"type": "HttpData", "baseUrl": target, "headers": {"Metadata-Flavor": "Google"}});
        assert_refused(
            &format!("dataset {target}"),
            &put_dataset(base, &format!("net-{i}"), &address).await,
        );
        assert_refused(
            &format!("destination {target}"),
            &prepare_to(base, &format!("net-{i}"), &address).await,
        );
        let mut push = flow_message(&format!("push-{i}"), PUSH, "ds", "consumer");
        push["dataAddress"] = json!({"endpointType": PUSH, "endpoint": target});
        assert_refused(
            &format!("push dataAddress {target}"),
            &post(&format!("{base}/signaling/dataflows/start"), &push).await,
        );
    }
    // A control plane's callback endpoint is an address too.
    assert_refused(
        "callback endpoint",
        &call(
            reqwest::Method::PUT,
            &format!("{base}/signaling/controlplanes"),
            Some(&json!({"controlplaneId": "cp", "endpoint": format!("http://127.0.0.1:{port}/cb"), "authorization": {"type": "none"}})),
        )
        .await,
    );

    // A name is checked on the address it resolves to, at connect time.
    let by_name = format!("http://localhost:{port}/data");
    let (status, body) = put_dataset(
        base,
        "by-name",
        &json!({"type": "HttpData", "baseUrl": by_name}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = pull(base, "by-name", "by-name").await;
    assert_ne!(status, 200);
    assert!(!body.windows(6).any(|w| w == b"secret"));
    assert_eq!(server.served("data"), 0, "the denied server was contacted");
}

/// A server that answers every request with `302 Location: location`.
async fn redirector(location: String) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let location = location.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = socket.read(&mut buf).await;
                let answer = format!(
                    "HTTP/1.1 302 Found\r\nLocation: {location}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                );
                let _ = socket.write_all(answer.as_bytes()).await;
            });
        }
    });
    addr
}

/// A listener on `ip` counting the connections it accepts.
async fn counting_listener(ip: &str) -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind((ip, 0)).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let count = Arc::new(AtomicUsize::new(0));
    let seen = count.clone();
    tokio::spawn(async move {
        while let Ok((_socket, _)) = listener.accept().await {
            seen.fetch_add(1, Ordering::SeqCst);
        }
    });
    (addr, count)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirects_to_denied_networks_are_not_followed() {
    let dir = tempfile::tempdir().unwrap();
    // 127.0.0.1 stands for an allowed host, 127.0.0.2 for the internal network.
    let plane = Launcher::start_strict(
        "dataplane-launcher",
        &[
            "-D",
            "dpf.http.insecure=true",
            "-D",
            "dpf.store.url=memory:",
            "-D",
            "dpf.transfer.denied-networks=127.0.0.2/32",
        ],
        &[],
        dir.path(),
    );
    let base = &plane.base_url;
    let (internal, contacted) = counting_listener("127.0.0.2").await;
    let allowed = redirector(format!("http://{internal}/secret")).await;
    let (status, body) = put_dataset(
        base,
        "bouncing",
        &json!({"type": "HttpData", "baseUrl": format!("http://{allowed}/data")}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (status, _) = pull(base, "bounce", "bouncing").await;
    assert_ne!(status, 200);

    // And as a push destination.
    let source = DataServer::start();
    let data = source.put("d", Content::Bytes("payload".into()));
    let (status, body) =
        put_dataset(base, "d", &json!({"type": "HttpData", "baseUrl": data})).await;
    assert_eq!(status, 200, "{body}");
    let mut push = flow_message("bounce-push", PUSH, "d", "consumer");
    push["dataAddress"] =
        json!({"endpointType": PUSH, "endpoint": format!("http://{allowed}/upload")});
    let (status, body) = post(&format!("{base}/signaling/dataflows/start"), &push).await;
    assert_eq!(status, 200, "{body}");
    let flow = system_tests::wait_flow(base, "bounce-push", Duration::from_secs(60), |f| {
        f["state"] == "TERMINATED"
    })
    .await;
    assert!(
        flow["error"].is_string() || flow["errorDetail"].is_string(),
        "{flow}"
    );

    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        contacted.load(Ordering::SeqCst),
        0,
        "the redirect was followed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn urls_that_only_look_like_https_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    // HTTPS required (no dpf.http.insecure); served behind a (pretend) TLS-terminating proxy.
    let plane = Launcher::start_strict(
        "dataplane-launcher",
        &[
            "-D",
            "dpf.store.url=memory:",
            "-D",
            "dpf.public.url=https://dataplane.example/api/v1",
            "-D",
            "dpf.transfer.denied-networks=",
        ],
        &[],
        dir.path(),
    );
    let base = &plane.base_url;
    for (i, target) in [
        " http://example.com/x",
        "http:/example.com/x",
        "http:example.com/x",
        "ht\ttp://example.com/x",
        "HTTP://example.com/x",
        "\thttps://example.com/x",
    ]
    .iter()
    .enumerate()
    {
        let address = json!({"type": "HttpData", "baseUrl": target});
        assert_refused(
            &format!("dataset {target:?}"),
            &put_dataset(base, &format!("s-{i}"), &address).await,
        );
        let mut push = flow_message(&format!("s-{i}"), PUSH, "ds", "consumer");
        push["dataAddress"] = json!({"endpointType": PUSH, "endpoint": target});
        assert_refused(
            &format!("dataAddress {target:?}"),
            &post(&format!("{base}/signaling/dataflows/start"), &push).await,
        );
        assert_refused(
            &format!("callback endpoint {target:?}"),
            &call(
                reqwest::Method::PUT,
                &format!("{base}/signaling/controlplanes"),
                Some(&json!({"controlplaneId": format!("cp{i}"), "endpoint": target, "authorization": {"type": "none"}})),
            )
            .await,
        );
    }
    let (status, body) = put_dataset(
        base,
        "fine",
        &json!({"type": "HttpData", "baseUrl": "https://example.com/x"}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
}
