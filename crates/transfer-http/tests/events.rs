#![allow(clippy::unwrap_used)]
//! Event-stream sources (server-sent events, NDJSON) against a local actix-web server that
//! sends its bodies in odd little pieces.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use bytes::Bytes;
use dataplane_spi::{DataSource, DataSourceFactory, ResourceAddress, TransferError};
use futures::{Stream, StreamExt};
use transfer_http::{default_client, HttpSourceFactory};

/// What the server saw of the last request to a path.
#[derive(Debug, Clone, Default)]
struct Seen {
    query: String,
    headers: HashMap<String, String>,
}

#[derive(Default)]
struct EventState {
    seen: Mutex<HashMap<String, Seen>>,
}

struct Server {
    base: String,
    state: web::Data<EventState>,
}

impl Server {
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn seen(&self, path: &str) -> Seen {
        self.state
            .seen
            .lock()
            .unwrap()
            .get(path)
            .cloned()
            .unwrap_or_else(|| panic!("no request to {path}"))
    }
}

fn record(state: &EventState, request: &HttpRequest) {
    let headers = request
        .headers()
        .iter()
        .map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap_or("?").to_owned()))
        .collect();
    state.seen.lock().unwrap().insert(
        request.path().to_owned(),
        Seen {
            query: request.query_string().to_owned(),
            headers,
        },
    );
}

fn query_param(request: &HttpRequest, name: &str) -> Option<String> {
    web::Query::<HashMap<String, String>>::from_query(request.query_string())
        .ok()
        .and_then(|q| q.get(name).cloned())
}

/// `body` in 7-byte pieces, a little apart, so that events and line ends are split.
fn in_pieces(body: String) -> impl Stream<Item = Result<Bytes, actix_web::Error>> {
    let pieces: Vec<Bytes> = body
        .into_bytes()
        .chunks(7)
        .map(Bytes::copy_from_slice)
        .collect();
    futures::stream::iter(pieces).then(|piece| async move {
        tokio::time::sleep(Duration::from_millis(1)).await;
        Ok(piece)
    })
}

/// Event `i` as the server sends it: every third one with two data lines, CRLF and a comment.
fn sse_event(i: u64) -> String {
    if i.is_multiple_of(3) {
        format!(": ping\r\nid: {i}\r\ndata: event {i} a\r\ndata:event {i} b\r\n\r\n")
    } else {
        format!("id: {i}\ndata: {{\"n\": {i}}}\n\n")
    }
}

/// Event `i` as the source yields it.
fn sse_canonical(i: u64) -> String {
    if i.is_multiple_of(3) {
        format!("id: {i}\ndata: event {i} a\ndata: event {i} b\n\n")
    } else {
        format!("id: {i}\ndata: {{\"n\": {i}}}\n\n")
    }
}

/// `GET /sse/{n}`: events 1..=n, after `Last-Event-ID` (or the `since` query parameter).
async fn sse(
    request: HttpRequest,
    n: web::Path<u64>,
    state: web::Data<EventState>,
) -> HttpResponse {
    record(&state, &request);
    let after = request
        .headers()
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .or_else(|| query_param(&request, "since"))
        .map_or(0, |id| id.parse::<u64>().unwrap());
    let mut body = String::from(": welcome\n\nretry: 100\n\n");
    for i in after + 1..=*n {
        body.push_str(&sse_event(i));
    }
    HttpResponse::Ok()
        .content_type("text/event-stream; charset=utf-8")
        .streaming(in_pieces(body))
}

/// `GET /ndjson/{n}`: lines for events 1..=n, after the `after` (or `from`) query parameter.
async fn ndjson(
    request: HttpRequest,
    n: web::Path<u64>,
    state: web::Data<EventState>,
) -> HttpResponse {
    record(&state, &request);
    let after = query_param(&request, "after")
        .or_else(|| query_param(&request, "from"))
        .map_or(0, |id| id.parse::<u64>().unwrap());
    let mut body = String::new();
    for i in after + 1..=*n {
        body.push_str(&format!(
            "{{\"id\":\"{i}\",\"seq\":{i},\"v\":\"value {i}\"}}"
        ));
        body.push_str(if i.is_multiple_of(2) { "\r\n\n" } else { "\n" });
    }
    HttpResponse::Ok()
        .content_type("application/x-ndjson")
        .streaming(in_pieces(body))
}

/// `GET /stall`: one event, then nothing, the response left open.
async fn stall() -> HttpResponse {
    let first = futures::stream::once(async {
        Ok::<_, actix_web::Error>(Bytes::from_static(b"id: 1\ndata: first\n\n"))
    });
    HttpResponse::Ok()
        .content_type("text/event-stream")
        .streaming(first.chain(futures::stream::pending()))
}

/// Any method on `/status/{code}`: that status.
async fn status(code: web::Path<u16>) -> HttpResponse {
    HttpResponse::build(actix_web::http::StatusCode::from_u16(*code).unwrap()).finish()
}

fn start_server() -> Server {
    let state = web::Data::new(EventState::default());
    let app_state = state.clone();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = HttpServer::new(move || {
        App::new()
            .app_data(app_state.clone())
            .route("/sse/{n}", web::get().to(sse))
            .route("/ndjson/{n}", web::get().to(ndjson))
            .route("/stall", web::get().to(stall))
            .route(
                "/html",
                web::get()
                    .to(|| async { HttpResponse::Ok().content_type("text/html").body("<p>") }),
            )
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

fn sources() -> HttpSourceFactory {
    HttpSourceFactory::new(default_client().unwrap())
}

fn event_source(url: &str, properties: serde_json::Value) -> Box<dyn DataSource> {
    let mut json = serde_json::json!({"type": "HttpData", "baseUrl": url});
    for (k, v) in properties.as_object().unwrap() {
        json[k] = v.clone();
    }
    sources()
        .create(&ResourceAddress::from_json(json).unwrap())
        .unwrap()
}

/// Reads the stream chunk by chunk, checking that `cursor()` follows each chunk's id.
async fn read_events(
    source: &dyn DataSource,
    cursor: Option<&str>,
    id_of: impl Fn(&str) -> String,
) -> Vec<String> {
    let opened = source.open_after(0, cursor).await.unwrap();
    assert_eq!(opened.offset, 0);
    assert_eq!(opened.size, None);
    assert_eq!(source.cursor().as_deref(), cursor, "before the first event");
    let mut stream = opened.stream;
    let mut chunks = Vec::new();
    while let Some(chunk) = stream.next().await {
        let text = String::from_utf8(chunk.unwrap().to_vec()).unwrap();
        assert_eq!(source.cursor(), Some(id_of(&text)), "after {text:?}");
        chunks.push(text);
    }
    chunks
}

fn sse_id(chunk: &str) -> String {
    chunk
        .strip_prefix("id: ")
        .and_then(|rest| rest.split('\n').next())
        .unwrap()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_sent_events_arrive_one_chunk_per_event() {
    let server = start_server();
    let source = event_source(
        &server.url("/sse/25"),
        serde_json::json!({"eventStream": "sse"}),
    );

    let opened = source.open(0).await.unwrap();
    assert_eq!(opened.content_type.as_deref(), Some("text/event-stream"));
    drop(opened);
    let chunks = read_events(source.as_ref(), None, sse_id).await;

    let expected: Vec<String> = (1..=25).map(sse_canonical).collect();
    assert_eq!(chunks, expected);
    assert_eq!(source.cursor().as_deref(), Some("25"));
    let seen = server.seen("/sse/25");
    assert_eq!(
        seen.headers.get("accept").map(String::as_str),
        Some("text/event-stream")
    );
    assert!(!seen.headers.contains_key("last-event-id"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_sent_events_resume_after_the_cursor() {
    let server = start_server();
    let source = event_source(
        &server.url("/sse/20"),
        serde_json::json!({"eventStream": "SSE"}),
    );

    let chunks = read_events(source.as_ref(), Some("13"), sse_id).await;

    let expected: Vec<String> = (14..=20).map(sse_canonical).collect();
    assert_eq!(chunks, expected);
    assert_eq!(source.cursor().as_deref(), Some("20"));
    let seen = server.seen("/sse/20");
    assert_eq!(
        seen.headers.get("last-event-id").map(String::as_str),
        Some("13")
    );
    assert_eq!(seen.query, "", "no cursorParam: no query parameter");

    // Nothing after the last event: an empty stream, the cursor stays.
    let chunks = read_events(source.as_ref(), Some("20"), sse_id).await;
    assert!(chunks.is_empty());
    assert_eq!(source.cursor().as_deref(), Some("20"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cursor_param_is_appended_to_the_query() {
    let server = start_server();
    let source = event_source(
        &server.url("/sse/9?topic=a%20b"),
        serde_json::json!({"eventStream": "sse", "cursorParam": "since"}),
    );

    let chunks = read_events(source.as_ref(), Some("4"), sse_id).await;

    assert_eq!(chunks, (5..=9).map(sse_canonical).collect::<Vec<_>>());
    let seen = server.seen("/sse/9");
    assert_eq!(seen.query, "topic=a%20b&since=4");
    assert_eq!(
        seen.headers.get("last-event-id").map(String::as_str),
        Some("4")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ndjson_lines_are_events_resumed_with_after() {
    let server = start_server();
    let source = event_source(
        &server.url("/ndjson/12"),
        serde_json::json!({"eventStream": "ndjson"}),
    );
    let id_of = |line: &str| {
        let value: serde_json::Value = serde_json::from_str(line).unwrap();
        value["id"].as_str().unwrap().to_owned()
    };
    let line = |i: u64| format!("{{\"id\":\"{i}\",\"seq\":{i},\"v\":\"value {i}\"}}\n");

    let opened = source.open(0).await.unwrap();
    assert_eq!(opened.content_type.as_deref(), Some("application/x-ndjson"));
    drop(opened);
    let chunks = read_events(source.as_ref(), None, id_of).await;
    assert_eq!(chunks, (1..=12).map(line).collect::<Vec<_>>());
    assert_eq!(source.cursor().as_deref(), Some("12"));

    let chunks = read_events(source.as_ref(), Some("7"), id_of).await;
    assert_eq!(chunks, (8..=12).map(line).collect::<Vec<_>>());
    let seen = server.seen("/ndjson/12");
    assert_eq!(seen.query, "after=7");
    assert!(!seen.headers.contains_key("last-event-id"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ndjson_ids_can_come_from_another_field_and_param() {
    let server = start_server();
    let source = event_source(
        &server.url("/ndjson/6"),
        serde_json::json!({"eventStream": "ndjson", "idField": "seq", "cursorParam": "from"}),
    );
    let seq_of = |line: &str| {
        let value: serde_json::Value = serde_json::from_str(line).unwrap();
        value["seq"].to_string()
    };

    let chunks = read_events(source.as_ref(), Some("2"), seq_of).await;

    assert_eq!(chunks.len(), 4);
    assert_eq!(source.cursor().as_deref(), Some("6"));
    assert_eq!(server.seen("/ndjson/6").query, "from=2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_stream_hits_the_idle_timeout_after_its_events() {
    let server = start_server();
    let mut address = ResourceAddress::http(&server.url("/stall"));
    address.set("eventStream", "sse");
    let source = sources()
        .with_idle_timeout(Duration::from_millis(300))
        .create(&address)
        .unwrap();

    let mut stream = source.open(0).await.unwrap().stream;

    assert_eq!(
        stream.next().await.unwrap().unwrap(),
        Bytes::from_static(b"id: 1\ndata: first\n\n")
    );
    let err = stream.next().await.unwrap().unwrap_err();
    assert!(
        matches!(&err, TransferError::Transient(m) if m.contains("no data")),
        "{err:?}"
    );
    assert!(stream.next().await.is_none());
    assert_eq!(
        source.cursor().as_deref(),
        Some("1"),
        "resume after the event yielded"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_to_open_are_mapped() {
    let server = start_server();
    let sse = serde_json::json!({"eventStream": "sse"});

    let err = event_source(&server.url("/html"), sse.clone())
        .open(0)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, TransferError::Rejected(m) if m.contains("text/html")),
        "{err:?}"
    );
    let err = event_source(&server.url("/status/404"), sse.clone())
        .open(0)
        .await
        .unwrap_err();
    assert!(matches!(err, TransferError::Rejected(_)), "{err:?}");
    let err = event_source(&server.url("/status/503"), sse)
        .open(0)
        .await
        .unwrap_err();
    assert!(err.is_retryable(), "{err:?}");
}

#[test]
fn unknown_event_stream_kinds_are_invalid() {
    for properties in [
        serde_json::json!({"eventStream": "websocket"}),
        serde_json::json!({"eventStream": 1}),
        serde_json::json!({"eventStream": "sse", "cursorParam": 5}),
        serde_json::json!({"eventStream": "ndjson", "idField": true}),
    ] {
        let mut json = serde_json::json!({"type": "HttpData", "baseUrl": "http://h/events"});
        for (k, v) in properties.as_object().unwrap() {
            json[k] = v.clone();
        }
        let err = sources()
            .create(&ResourceAddress::from_json(json).unwrap())
            .unwrap_err();
        assert!(
            matches!(err, TransferError::InvalidAddress(_)),
            "{properties}: {err:?}"
        );
    }
    // Byte sources have no cursor.
    let plain = sources()
        .create(&ResourceAddress::http("http://h/data"))
        .unwrap();
    assert_eq!(plain.cursor(), None);
}
