#![allow(clippy::unwrap_used)]
//! Behaviour of the `HttpData` source and sink against a local actix-web server.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use bytes::Bytes;
use dataplane_spi::{
    DataSink, DataSinkFactory, DataSource, DataSourceFactory, ResourceAddress, SourceStream,
    TransferError, TransferRegistry, HTTP_DATA_TYPE,
};
use futures::StreamExt;
use transfer_http::{default_client, HttpSinkFactory, HttpSourceFactory};

/// One upload as the server saw it.
#[derive(Debug, Clone, Default)]
struct Upload {
    method: String,
    headers: HashMap<String, String>,
    body: Vec<u8>,
}

impl Upload {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }
}

#[derive(Default)]
struct ServerState {
    files: Mutex<HashMap<String, Bytes>>,
    uploads: Mutex<HashMap<String, Upload>>,
    /// Bytes received by `/count`, as they arrive.
    counted: Arc<AtomicU64>,
}

struct Server {
    base: String,
    state: web::Data<ServerState>,
}

impl Server {
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn add_file(&self, name: &str, data: Vec<u8>) {
        self.state
            .files
            .lock()
            .unwrap()
            .insert(name.to_owned(), Bytes::from(data));
    }

    fn upload(&self, name: &str) -> Upload {
        self.state
            .uploads
            .lock()
            .unwrap()
            .get(name)
            .cloned()
            .unwrap_or_else(|| panic!("no upload '{name}'"))
    }
}

fn file_of(state: &ServerState, name: &str) -> Option<Bytes> {
    state.files.lock().unwrap().get(name).cloned()
}

/// `GET /files/{name}`, honouring `Range: bytes=<start>-`.
async fn get_file(
    request: HttpRequest,
    name: web::Path<String>,
    state: web::Data<ServerState>,
) -> HttpResponse {
    let Some(data) = file_of(&state, &name) else {
        return HttpResponse::NotFound().body("no such file");
    };
    let len = data.len() as u64;
    let range = request
        .headers()
        .get("range")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("bytes="))
        .and_then(|v| v.strip_suffix('-'))
        .and_then(|v| v.parse::<u64>().ok());
    match range {
        None => HttpResponse::Ok()
            .content_type("text/plain")
            .append_header(("accept-ranges", "bytes"))
            .body(data),
        Some(start) if start >= len => HttpResponse::RangeNotSatisfiable()
            .append_header(("content-range", format!("bytes */{len}")))
            .finish(),
        Some(start) => HttpResponse::PartialContent()
            .content_type("text/plain")
            .append_header(("content-range", format!("bytes {start}-{}/{len}", len - 1)))
            .body(data.slice(start as usize..)),
    }
}

/// `GET /norange/{name}`: ignores `Range`.
async fn get_file_ignoring_range(
    name: web::Path<String>,
    state: web::Data<ServerState>,
) -> HttpResponse {
    match file_of(&state, &name) {
        Some(data) => HttpResponse::Ok().body(data),
        None => HttpResponse::NotFound().finish(),
    }
}

/// `GET /badrange/{name}`: answers a `Range` with a 206 of the wrong range.
async fn get_file_with_wrong_range(
    request: HttpRequest,
    name: web::Path<String>,
    state: web::Data<ServerState>,
) -> HttpResponse {
    let data = file_of(&state, &name).unwrap();
    let len = data.len();
    if request.headers().contains_key("range") {
        HttpResponse::PartialContent()
            .append_header(("content-range", format!("bytes 0-9/{len}")))
            .body(data.slice(..10))
    } else {
        HttpResponse::Ok().body(data)
    }
}

/// Any method on `/status/{code}`: that status, body unread.
async fn status(code: web::Path<u16>) -> HttpResponse {
    let status = actix_web::http::StatusCode::from_u16(*code).unwrap();
    HttpResponse::build(status).body(format!("status {code} as asked"))
}

/// `POST`/`PUT`/`PATCH /upload/{name}`: records method, headers and body.
async fn upload(
    request: HttpRequest,
    name: web::Path<String>,
    mut payload: web::Payload,
    state: web::Data<ServerState>,
) -> HttpResponse {
    let mut body = Vec::new();
    while let Some(chunk) = payload.next().await {
        body.extend_from_slice(&chunk.unwrap());
    }
    let headers = request
        .headers()
        .iter()
        .map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap_or("?").to_owned()))
        .collect();
    let upload = Upload {
        method: request.method().to_string(),
        headers,
        body,
    };
    state
        .uploads
        .lock()
        .unwrap()
        .insert(name.into_inner(), upload);
    HttpResponse::Created().body("stored")
}

/// `POST /count`: counts the body as it arrives, keeps nothing.
async fn count(mut payload: web::Payload, state: web::Data<ServerState>) -> HttpResponse {
    while let Some(chunk) = payload.next().await {
        state
            .counted
            .fetch_add(chunk.unwrap().len() as u64, Ordering::SeqCst);
    }
    HttpResponse::Ok().finish()
}

fn start_server() -> Server {
    let state = web::Data::new(ServerState::default());
    let app_state = state.clone();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = HttpServer::new(move || {
        App::new()
            .app_data(app_state.clone())
            .route("/files/{name}", web::get().to(get_file))
            .route("/norange/{name}", web::get().to(get_file_ignoring_range))
            .route("/badrange/{name}", web::get().to(get_file_with_wrong_range))
            .route("/status/{code}", web::route().to(status))
            .service(
                web::resource("/upload/{name}")
                    .route(web::post().to(upload))
                    .route(web::put().to(upload))
                    .route(web::patch().to(upload)),
            )
            .route("/count", web::post().to(count))
    })
    .workers(2)
    .disable_signals()
    .listen(listener)
    .unwrap()
    .run();
    tokio::spawn(server);
    Server {
        base: format!("http://127.0.0.1:{port}"),
        state,
    }
}

/// Deterministic pseudo-random bytes (splitmix64).
fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        out.extend_from_slice(&(z ^ (z >> 31)).to_le_bytes());
    }
    out.truncate(len);
    out
}

fn sources() -> HttpSourceFactory {
    HttpSourceFactory::new(default_client().unwrap())
}

fn sinks() -> HttpSinkFactory {
    HttpSinkFactory::new(default_client().unwrap())
}

fn source(url: &str) -> Box<dyn DataSource> {
    sources().create(&ResourceAddress::http(url)).unwrap()
}

fn sink(address: &ResourceAddress) -> Box<dyn DataSink> {
    sinks().create(address).unwrap()
}

async fn collect(stream: SourceStream) -> Vec<u8> {
    let mut out = Vec::new();
    let mut chunks = stream.stream;
    while let Some(chunk) = chunks.next().await {
        out.extend_from_slice(&chunk.unwrap());
    }
    out
}

fn stream_of(chunks: Vec<Result<Bytes, TransferError>>, size: Option<u64>) -> SourceStream {
    SourceStream {
        stream: futures::stream::iter(chunks).boxed(),
        size,
        content_type: None,
        offset: 0,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_streams_the_whole_resource() {
    let server = start_server();
    let data = random_bytes(3 * 1024 * 1024 + 17, 1);
    server.add_file("a.bin", data.clone());

    let opened = source(&server.url("/files/a.bin")).open(0).await.unwrap();

    assert_eq!(opened.offset, 0);
    assert_eq!(opened.size, Some(data.len() as u64));
    assert_eq!(opened.content_type.as_deref(), Some("text/plain"));
    assert!(collect(opened).await == data, "body differs");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn base_url_and_path_are_joined() {
    let server = start_server();
    server.add_file("joined.txt", b"joined".to_vec());
    let mut address = ResourceAddress::http(&server.url("/files/"));
    address.set("path", "/joined.txt");

    let opened = sources().create(&address).unwrap().open(0).await.unwrap();

    assert_eq!(collect(opened).await, b"joined");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_with_an_offset_resumes_with_a_range() {
    let server = start_server();
    let data = random_bytes(1024 * 1024, 2);
    server.add_file("r.bin", data.clone());

    let opened = source(&server.url("/files/r.bin"))
        .open(1000)
        .await
        .unwrap();

    assert_eq!(opened.offset, 1000);
    assert_eq!(
        opened.size,
        Some(data.len() as u64),
        "the total, from Content-Range"
    );
    assert!(collect(opened).await == data[1000..], "rest differs");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_at_the_end_yields_nothing() {
    let server = start_server();
    server.add_file("e.bin", vec![1; 100]);

    let opened = source(&server.url("/files/e.bin")).open(100).await.unwrap();

    assert_eq!((opened.offset, opened.size), (100, Some(100)));
    assert!(collect(opened).await.is_empty());
    let err = source(&server.url("/files/e.bin"))
        .open(101)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, TransferError::Rejected(m) if m.contains("416")),
        "{err:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_ignoring_the_range_restarts_from_zero() {
    let server = start_server();
    let data = random_bytes(200_000, 3);
    server.add_file("n.bin", data.clone());

    let opened = source(&server.url("/norange/n.bin"))
        .open(5000)
        .await
        .unwrap();

    assert_eq!(opened.offset, 0, "the caller must learn that it restarted");
    assert_eq!(opened.size, Some(data.len() as u64));
    assert!(collect(opened).await == data, "whole body expected");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_partial_answer_restarts_from_zero() {
    let server = start_server();
    let data = random_bytes(50_000, 4);
    server.add_file("w.bin", data.clone());

    let opened = source(&server.url("/badrange/w.bin"))
        .open(700)
        .await
        .unwrap();

    assert_eq!(opened.offset, 0);
    assert!(collect(opened).await == data, "whole body expected");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_errors_are_rejected_and_server_errors_transient() {
    let server = start_server();

    let err = source(&server.url("/files/missing.bin"))
        .open(0)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, TransferError::Rejected(m) if m.contains("404") && m.contains("/files/missing.bin") && m.contains("no such file")),
        "{err:?}"
    );
    assert!(!err.is_retryable());

    for code in [503, 500, 429, 408] {
        let err = source(&server.url(&format!("/status/{code}")))
            .open(0)
            .await
            .unwrap_err();
        assert!(
            matches!(&err, TransferError::Transient(m) if m.contains(&code.to_string())),
            "{err:?}"
        );
    }
    for code in [400, 401, 403, 410] {
        let err = source(&server.url(&format!("/status/{code}")))
            .open(0)
            .await
            .unwrap_err();
        assert!(matches!(err, TransferError::Rejected(_)), "{code}: {err:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_refused_is_transient() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let err = source(&format!("http://127.0.0.1:{port}/x"))
        .open(0)
        .await
        .unwrap_err();
    assert!(err.is_retryable(), "{err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_server_hits_the_idle_timeout() {
    // Accepts connections but never answers.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    let source = sources()
        .with_idle_timeout(Duration::from_millis(300))
        .create(&ResourceAddress::http(&format!(
            "http://127.0.0.1:{port}/x"
        )))
        .unwrap();

    let err = source.open(0).await.unwrap_err();

    assert!(
        matches!(&err, TransferError::Transient(m) if m.contains("no response")),
        "{err:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_with_a_bearer_token_arrives_intact() {
    let server = start_server();
    let data = random_bytes(2 * 1024 * 1024 + 3, 5);
    let mut address = ResourceAddress::http(&server.url("/upload/u1"));
    address.set("authorization", "secret-token");

    let sent = sink(&address)
        .write(stream_of(
            data.chunks(100_000)
                .map(|c| Ok(Bytes::copy_from_slice(c)))
                .collect(),
            Some(data.len() as u64),
        ))
        .await
        .unwrap();

    assert_eq!(sent, data.len() as u64);
    let upload = server.upload("u1");
    assert_eq!(upload.method, "POST");
    assert_eq!(upload.header("authorization"), Some("Bearer secret-token"));
    assert_eq!(
        upload.header("content-type"),
        Some("application/octet-stream")
    );
    assert_eq!(
        upload.header("content-length"),
        Some(data.len().to_string().as_str())
    );
    assert_eq!(upload.header("transfer-encoding"), None);
    assert!(upload.body == data, "body differs");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn put_raw_authorization_headers_and_content_type_are_honoured() {
    let server = start_server();
    let address = ResourceAddress::from_json(serde_json::json!({
        "type": HTTP_DATA_TYPE,
        "baseUrl": server.url("/upload"),
        "path": "u2",
        "method": "put",
        "authorization": "Basic dXNlcjpwYXNz",
        "authType": "raw",
        "contentType": "application/x-ndjson",
        "headers": {"X-Trace-Id": "abc-123", "X-Count": 7},
    }))
    .unwrap();

    let sent = sink(&address)
        .write(stream_of(
            vec![Ok(Bytes::from_static(b"{\"a\":1}\n"))],
            None,
        ))
        .await
        .unwrap();

    assert_eq!(sent, 8);
    let upload = server.upload("u2");
    assert_eq!(upload.method, "PUT");
    assert_eq!(upload.header("authorization"), Some("Basic dXNlcjpwYXNz"));
    assert_eq!(upload.header("content-type"), Some("application/x-ndjson"));
    assert_eq!(upload.header("x-trace-id"), Some("abc-123"));
    assert_eq!(upload.header("x-count"), Some("7"));
    assert_eq!(
        upload.header("transfer-encoding"),
        Some("chunked"),
        "size unknown"
    );
    assert_eq!(upload.body, b"{\"a\":1}\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_source_content_type_is_used_when_the_address_has_none() {
    let server = start_server();
    let mut input = stream_of(vec![Ok(Bytes::from_static(b"a,b\n"))], Some(4));
    input.content_type = Some("text/csv".into());

    sink(&ResourceAddress::http(&server.url("/upload/u3")))
        .write(input)
        .await
        .unwrap();

    assert_eq!(server.upload("u3").header("content-type"), Some("text/csv"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_to_http_round_trip_resumed_at_an_offset_is_a_tus_patch() {
    let server = start_server();
    let data = random_bytes(1_500_000, 6);
    server.add_file("rt.bin", data.clone());

    let opened = source(&server.url("/files/rt.bin"))
        .open(500_000)
        .await
        .unwrap();
    let sent = sink(&ResourceAddress::http(&server.url("/upload/rt")))
        .write(opened)
        .await
        .unwrap();

    assert_eq!(sent, 1_000_000);
    let upload = server.upload("rt");
    assert_eq!(upload.method, "PATCH");
    assert_eq!(
        upload.header("content-length"),
        Some("1000000"),
        "size - offset"
    );
    assert_eq!(
        upload.header("content-type"),
        Some("application/offset+octet-stream")
    );
    assert_eq!(upload.header("upload-offset"), Some("500000"));
    assert_eq!(upload.header("tus-resumable"), Some("1.0.0"));
    assert!(upload.body == data[500_000..], "body differs");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_status_errors_are_mapped() {
    let server = start_server();
    let write = |code: u16| {
        let address = ResourceAddress::http(&server.url(&format!("/status/{code}")));
        async move {
            sink(&address)
                .write(stream_of(vec![Ok(Bytes::from_static(b"x"))], Some(1)))
                .await
                .unwrap_err()
        }
    };
    let err = write(401).await;
    assert!(
        matches!(&err, TransferError::Rejected(m) if m.contains("401")),
        "{err:?}"
    );
    let err = write(503).await;
    assert!(
        matches!(&err, TransferError::Transient(m) if m.contains("503")),
        "{err:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_input_error_is_returned_as_is() {
    let server = start_server();
    let input = stream_of(
        vec![
            Ok(Bytes::from_static(b"first")),
            Err(TransferError::Rejected("source gone".into())),
        ],
        None,
    );

    let err = sink(&ResourceAddress::http(&server.url("/upload/broken")))
        .write(input)
        .await
        .unwrap_err();

    assert_eq!(err, TransferError::Rejected("source gone".into()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_input_shorter_or_longer_than_announced_fails() {
    let server = start_server();
    let short = stream_of(vec![Ok(Bytes::from_static(b"abc"))], Some(10));
    let err = sink(&ResourceAddress::http(&server.url("/upload/short")))
        .write(short)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, TransferError::Transient(m) if m.contains("3 of the 10")),
        "{err:?}"
    );

    let long = stream_of(vec![Ok(Bytes::from_static(b"abcdef"))], Some(4));
    let err = sink(&ResourceAddress::http(&server.url("/upload/long")))
        .write(long)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, TransferError::Transient(m) if m.contains("more than")),
        "{err:?}"
    );
}

/// 64 MiB produced lazily; the producer refuses to run more than 16 MiB ahead of what the server
/// received, so a sink that buffered the input would never finish.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_64_mib_upload_streams_without_being_held() {
    const TOTAL: u64 = 64 * 1024 * 1024;
    const CHUNK: usize = 64 * 1024;
    const MAX_AHEAD: u64 = 16 * 1024 * 1024;
    let server = start_server();
    let counted = Arc::clone(&server.state.counted);
    let chunk = Bytes::from(random_bytes(CHUNK, 7));

    let produced = futures::stream::unfold(0_u64, move |produced| {
        let counted = Arc::clone(&counted);
        let chunk = chunk.clone();
        async move {
            if produced >= TOTAL {
                return None;
            }
            let deadline = Instant::now() + Duration::from_secs(20);
            while produced - counted.load(Ordering::SeqCst) > MAX_AHEAD {
                if Instant::now() > deadline {
                    let error = TransferError::Transient(format!(
                        "the server got only {} of {produced} produced bytes: the sink holds data",
                        counted.load(Ordering::SeqCst)
                    ));
                    return Some((Err(error), TOTAL));
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            Some((Ok(chunk), produced + CHUNK as u64))
        }
    });
    let input = SourceStream {
        stream: produced.boxed(),
        size: Some(TOTAL),
        content_type: None,
        offset: 0,
    };

    let sent = sink(&ResourceAddress::http(&server.url("/count")))
        .write(input)
        .await
        .unwrap();

    assert_eq!(sent, TOTAL);
    assert_eq!(server.state.counted.load(Ordering::SeqCst), TOTAL);
}

#[test]
fn invalid_addresses_are_refused() {
    let cases = [
        serde_json::json!({"type": HTTP_DATA_TYPE}),
        serde_json::json!({"type": HTTP_DATA_TYPE, "baseUrl": "  "}),
        serde_json::json!({"type": HTTP_DATA_TYPE, "baseUrl": "not a url"}),
        serde_json::json!({"type": HTTP_DATA_TYPE, "baseUrl": "ftp://host/file"}),
        serde_json::json!({"type": HTTP_DATA_TYPE, "baseUrl": "http://h/", "authorization": "t", "authType": "digest"}),
        serde_json::json!({"type": HTTP_DATA_TYPE, "baseUrl": "http://h/", "headers": ["a"]}),
        serde_json::json!({"type": HTTP_DATA_TYPE, "baseUrl": "http://h/", "headers": {"bad name": "v"}}),
        serde_json::json!({"type": HTTP_DATA_TYPE, "baseUrl": "http://h/", "headers": {"Content-Length": "3"}}),
    ];
    for case in cases {
        let address = ResourceAddress::from_json(case.clone()).unwrap();
        let err = sources().create(&address).unwrap_err();
        assert!(
            matches!(err, TransferError::InvalidAddress(_)),
            "{case}: {err:?}"
        );
        let err = sinks().create(&address).unwrap_err();
        assert!(
            matches!(err, TransferError::InvalidAddress(_)),
            "{case}: {err:?}"
        );
    }

    let mut delete = ResourceAddress::http("http://h/");
    delete.set("method", "DELETE");
    let err = sinks().create(&delete).unwrap_err();
    assert!(
        matches!(&err, TransferError::InvalidAddress(m) if m.contains("DELETE")),
        "{err:?}"
    );
    assert!(
        sources().create(&delete).is_ok(),
        "sources ignore the method"
    );

    let headers_as_text = ResourceAddress::from_json(serde_json::json!({
        "type": HTTP_DATA_TYPE, "baseUrl": "https://h/", "headers": "{\"X-A\": \"b\"}",
    }))
    .unwrap();
    assert!(sinks().create(&headers_as_text).is_ok());
}

#[test]
fn debug_output_hides_credentials() {
    let mut address = ResourceAddress::http("https://user:pa55w0rd@h.example/data?sig=s3cr3t");
    address.set("authorization", "tok3n");
    let source = sources().create(&address).unwrap();
    let sink = sinks().create(&address).unwrap();
    for shown in [format!("{source:?}"), format!("{sink:?}")] {
        assert!(
            !shown.contains("tok3n") && !shown.contains("s3cr3t") && !shown.contains("pa55w0rd"),
            "{shown}"
        );
    }
}

#[test]
fn factories_register_under_http_data() {
    let client = default_client().unwrap();
    let registry = TransferRegistry::builder()
        .source(Arc::new(HttpSourceFactory::new(client.clone())))
        .unwrap()
        .sink(Arc::new(HttpSinkFactory::new(client)))
        .unwrap()
        .build();
    assert_eq!(registry.source_types(), vec![HTTP_DATA_TYPE.to_owned()]);
    assert!(registry.sink(&ResourceAddress::http("http://h/")).is_ok());
    let _ = HttpSourceFactory::default();
    let _ = HttpSinkFactory::default();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_upload_works_with_and_without_a_size() {
    let server = start_server();
    for (name, size) in [("empty-sized", Some(0)), ("empty-chunked", None)] {
        let sent = sink(&ResourceAddress::http(
            &server.url(&format!("/upload/{name}")),
        ))
        .write(stream_of(vec![], size))
        .await
        .unwrap();
        assert_eq!(sent, 0);
        assert!(server.upload(name).body.is_empty());
    }
}
