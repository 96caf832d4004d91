#![allow(clippy::unwrap_used)]
//! The `HttpData` sink as a tus 1.0 (core) client: `HEAD` for the offset, `PATCH` to append.

use std::collections::HashMap;
use std::sync::Mutex;

use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use bytes::Bytes;
use dataplane_spi::{DataSink, DataSinkFactory, ResourceAddress, SourceStream, TransferError};
use futures::StreamExt;
use transfer_http::{default_client, HttpSinkFactory};

/// One request as the server saw it.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    name: String,
    headers: HashMap<String, String>,
}

impl Seen {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }
}

#[derive(Default)]
struct TusState {
    uploads: Mutex<HashMap<String, Vec<u8>>>,
    seen: Mutex<Vec<Seen>>,
}

struct Server {
    base: String,
    state: web::Data<TusState>,
}

impl Server {
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn stored(&self, name: &str) -> Option<Vec<u8>> {
        self.state.uploads.lock().unwrap().get(name).cloned()
    }

    fn seen(&self) -> Vec<Seen> {
        self.state.seen.lock().unwrap().clone()
    }
}

fn header<'a>(request: &'a HttpRequest, name: &str) -> Option<&'a str> {
    request.headers().get(name).and_then(|v| v.to_str().ok())
}

fn record(state: &TusState, request: &HttpRequest, name: &str) {
    let headers = request
        .headers()
        .iter()
        .map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap_or("?").to_owned()))
        .collect();
    state.seen.lock().unwrap().push(Seen {
        method: request.method().to_string(),
        name: name.to_owned(),
        headers,
    });
}

async fn read_body(mut payload: web::Payload) -> Vec<u8> {
    let mut body = Vec::new();
    while let Some(chunk) = payload.next().await {
        body.extend_from_slice(&chunk.unwrap());
    }
    body
}

/// `HEAD /tus/{name}`: the stored length as `Upload-Offset`.
async fn tus_head(
    request: HttpRequest,
    name: web::Path<String>,
    state: web::Data<TusState>,
) -> HttpResponse {
    record(&state, &request, &name);
    if header(&request, "tus-resumable") != Some("1.0.0") {
        return HttpResponse::PreconditionFailed().finish();
    }
    match state.uploads.lock().unwrap().get(name.as_str()) {
        Some(data) => HttpResponse::Ok()
            .append_header(("tus-resumable", "1.0.0"))
            .append_header(("upload-offset", data.len().to_string()))
            .append_header(("cache-control", "no-store"))
            .finish(),
        None => HttpResponse::NotFound().finish(),
    }
}

/// `PATCH /tus/{name}`: appends at `Upload-Offset`, 409 (body unread) when it is not the end.
async fn tus_patch(
    request: HttpRequest,
    name: web::Path<String>,
    payload: web::Payload,
    state: web::Data<TusState>,
) -> HttpResponse {
    record(&state, &request, &name);
    if header(&request, "tus-resumable") != Some("1.0.0") {
        return HttpResponse::PreconditionFailed().finish();
    }
    if header(&request, "content-type") != Some("application/offset+octet-stream") {
        return HttpResponse::UnsupportedMediaType().finish();
    }
    let Some(stored) = state
        .uploads
        .lock()
        .unwrap()
        .get(name.as_str())
        .map(Vec::len)
    else {
        return HttpResponse::NotFound().finish();
    };
    let offset = header(&request, "upload-offset").and_then(|v| v.parse::<usize>().ok());
    if offset != Some(stored) {
        return HttpResponse::Conflict()
            .append_header(("upload-offset", stored.to_string()))
            .body("wrong offset");
    }
    let body = read_body(payload).await;
    let mut uploads = state.uploads.lock().unwrap();
    let data = uploads.get_mut(name.as_str()).unwrap();
    data.extend_from_slice(&body);
    HttpResponse::NoContent()
        .append_header(("tus-resumable", "1.0.0"))
        .append_header(("upload-offset", data.len().to_string()))
        .finish()
}

/// `POST`/`PUT /tus/{name}` and `/plain/{name}`: replaces the object.
async fn replace(
    request: HttpRequest,
    name: web::Path<String>,
    payload: web::Payload,
    state: web::Data<TusState>,
) -> HttpResponse {
    record(&state, &request, &name);
    let body = read_body(payload).await;
    state
        .uploads
        .lock()
        .unwrap()
        .insert(name.into_inner(), body);
    HttpResponse::Created().finish()
}

/// Any method on `/status/{code}`: that status.
async fn status(code: web::Path<u16>) -> HttpResponse {
    HttpResponse::build(actix_web::http::StatusCode::from_u16(*code).unwrap()).finish()
}

fn start_server() -> Server {
    let state = web::Data::new(TusState::default());
    let app_state = state.clone();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = HttpServer::new(move || {
        App::new()
            .app_data(app_state.clone())
            .service(
                web::resource("/tus/{name}")
                    .route(web::head().to(tus_head))
                    .route(web::patch().to(tus_patch))
                    .route(web::post().to(replace))
                    .route(web::put().to(replace)),
            )
            // No HEAD, no PATCH: 405.
            .service(web::resource("/plain/{name}").route(web::post().to(replace)))
            .route("/status/{code}", web::route().to(status))
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

fn sink(url: &str) -> Box<dyn DataSink> {
    HttpSinkFactory::new(default_client().unwrap())
        .create(&ResourceAddress::http(url))
        .unwrap()
}

/// `data` in chunks of 1000 bytes, written at `offset`.
fn input(data: &[u8], offset: u64, size: Option<u64>) -> SourceStream {
    let chunks: Vec<Result<Bytes, TransferError>> = data
        .chunks(1000)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    SourceStream {
        stream: futures::stream::iter(chunks).boxed(),
        size,
        content_type: Some("text/plain".into()),
        offset,
    }
}

fn payload(len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| u8::try_from((i * 7 + i / 251) % 256).unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_point_is_the_receivers_upload_offset() {
    let server = start_server();
    let mut address = ResourceAddress::http(&server.url("/tus/r1"));
    address.set("authorization", "tok");
    address.set("headers", "{\"X-Tenant\": \"t1\"}");
    let sink = HttpSinkFactory::new(default_client().unwrap())
        .create(&address)
        .unwrap();

    assert_eq!(
        sink.resume_point(0).await.unwrap(),
        None,
        "404: nothing yet"
    );
    sink.write(input(&payload(12_345), 0, None)).await.unwrap();

    assert_eq!(sink.resume_point(12_345).await.unwrap(), Some(12_345));
    assert_eq!(
        sink.resume_point(20_000).await.unwrap(),
        Some(12_345),
        "the receiver's offset, even behind the checkpoint"
    );
    assert_eq!(
        sink.resume_point(0).await.unwrap(),
        Some(12_345),
        "and ahead of it"
    );
    let head = server
        .seen()
        .into_iter()
        .rfind(|s| s.method == "HEAD")
        .unwrap();
    assert_eq!(head.header("tus-resumable"), Some("1.0.0"));
    assert_eq!(head.header("authorization"), Some("Bearer tok"));
    assert_eq!(head.header("x-tenant"), Some("t1"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn segments_written_at_the_resume_point_rebuild_the_payload() {
    let server = start_server();
    let data = payload(300_000);
    let sink = sink(&server.url("/tus/seg"));

    // The first segment replaces the object, the others are appended where the receiver is.
    let sent = sink.write(input(&data[..100_000], 0, None)).await.unwrap();
    assert_eq!(sent, 100_000);
    let at = sink.resume_point(100_000).await.unwrap().unwrap();
    assert_eq!(at, 100_000);
    let sent = sink
        .write(input(&data[100_000..250_000], at, None))
        .await
        .unwrap();
    assert_eq!(sent, 150_000);
    let at = sink.resume_point(250_000).await.unwrap().unwrap();
    // The last segment knows the total size: Content-Length is what is left.
    let sent = sink
        .write(input(&data[250_000..], at, Some(300_000)))
        .await
        .unwrap();
    assert_eq!(sent, 50_000);

    assert!(server.stored("seg").unwrap() == data, "payload differs");
    let writes: Vec<Seen> = server
        .seen()
        .into_iter()
        .filter(|s| s.method != "HEAD" && s.name == "seg")
        .collect();
    let methods: Vec<&str> = writes.iter().map(|s| s.method.as_str()).collect();
    assert_eq!(methods, ["POST", "PATCH", "PATCH"]);
    assert_eq!(writes[0].header("content-type"), Some("text/plain"));
    assert_eq!(writes[1].header("upload-offset"), Some("100000"));
    assert_eq!(writes[1].header("tus-resumable"), Some("1.0.0"));
    assert_eq!(
        writes[1].header("content-type"),
        Some("application/offset+octet-stream")
    );
    assert_eq!(writes[1].header("transfer-encoding"), Some("chunked"));
    assert_eq!(writes[2].header("upload-offset"), Some("250000"));
    assert_eq!(writes[2].header("content-length"), Some("50000"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_patch_at_the_wrong_offset_is_rejected() {
    let server = start_server();
    let sink = sink(&server.url("/tus/w"));
    sink.write(input(&payload(5000), 0, None)).await.unwrap();

    for wrong in [4000, 6000] {
        let err = sink
            .write(input(&payload(20_000), wrong, None))
            .await
            .unwrap_err();
        assert!(
            matches!(&err, TransferError::Rejected(m) if m.starts_with("offset mismatch: receiver is at 5000")),
            "{err:?}"
        );
    }
    assert_eq!(server.stored("w").unwrap(), payload(5000), "unchanged");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_without_tus_is_not_resumable() {
    let server = start_server();

    // HEAD not allowed, 2xx without Upload-Offset, client errors: restart from zero.
    for path in [
        "/plain/p",
        "/status/200",
        "/status/204",
        "/status/404",
        "/status/403",
    ] {
        assert_eq!(
            sink(&server.url(path)).resume_point(10).await.unwrap(),
            None,
            "{path}"
        );
    }
    for path in ["/status/503", "/status/500", "/status/429"] {
        let err = sink(&server.url(path)).resume_point(10).await.unwrap_err();
        assert!(err.is_retryable(), "{path}: {err:?}");
    }
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let err = sink(&format!("http://127.0.0.1:{port}/x"))
        .resume_point(0)
        .await
        .unwrap_err();
    assert!(matches!(err, TransferError::Transient(_)), "{err:?}");

    // A PATCH to a receiver that does not take it is refused for good.
    let err = sink(&server.url("/plain/p"))
        .write(input(b"abc", 3, None))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, TransferError::Rejected(m) if m.contains("405")),
        "{err:?}"
    );
}
