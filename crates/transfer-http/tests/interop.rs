#![allow(clippy::unwrap_used)]
//! Behaviour with servers that do not speak tus and do not behave like dpf: the first attempt
//! sends no probe, a later attempt's probe takes any non-tus answer as "restart from zero",
//! uploads of a known size carry `Content-Length`, `100 Continue` and early answers are
//! understood, bodies pass through undecoded, keep-alive connections closed early are
//! survived. The peers are raw TCP servers written here, each doing exactly one odd thing.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use dataplane_spi::{
    DataSink, DataSinkFactory, DataSourceFactory, ResourceAddress, SourceStream, TransferError,
};
use futures::StreamExt;
use transfer_http::{default_client, HttpSinkFactory, HttpSourceFactory};

/// A request as a raw server read it.
#[derive(Debug, Clone, Default)]
struct Request {
    method: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Request {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// What a raw server does with a request.
enum Reply {
    /// Read the body (after a `100 Continue` when asked for), then answer these bytes.
    After(Vec<u8>),
    /// Answer these bytes before reading the body, then read and drop it and close.
    Early(Vec<u8>),
    /// Read the body, answer these bytes, then close the connection (without saying so).
    AfterThenClose(Vec<u8>),
    /// Close the connection without an answer.
    Close,
}

type Handler = dyn Fn(&Request, usize) -> Reply + Send + Sync;

/// Reads a request head; `None` when the client closed.
fn read_head(reader: &mut BufReader<TcpStream>) -> Option<Request> {
    let mut line = String::new();
    if reader.read_line(&mut line).ok()? == 0 {
        return None;
    }
    let method = line.split_whitespace().next()?.to_owned();
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).ok()?;
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        let (name, value) = line.split_once(':')?;
        headers.push((name.trim().to_owned(), value.trim().to_owned()));
    }
    Some(Request {
        method,
        headers,
        body: Vec::new(),
    })
}

/// Reads the body announced by `request`'s headers.
fn read_body(reader: &mut BufReader<TcpStream>, request: &mut Request) {
    if let Some(length) = request.header("content-length") {
        let mut body = vec![0; length.parse().unwrap()];
        reader.read_exact(&mut body).unwrap();
        request.body = body;
    } else if request
        .header("transfer-encoding")
        .is_some_and(|t| t.contains("chunked"))
    {
        loop {
            let mut size = String::new();
            reader.read_line(&mut size).unwrap();
            let size = usize::from_str_radix(size.trim(), 16).unwrap();
            let mut chunk = vec![0; size + 2];
            reader.read_exact(&mut chunk).unwrap();
            if size == 0 {
                break;
            }
            request.body.extend_from_slice(&chunk[..size]);
        }
    }
}

/// A raw HTTP/1.1 server: `handle(request head, its index on the connection)` says what to
/// do. Returns its URL and every request seen.
fn raw_server(
    handle: impl Fn(&Request, usize) -> Reply + Send + Sync + 'static,
) -> (String, Arc<Mutex<Vec<Request>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let handle: Arc<Handler> = Arc::new(handle);
    let log = seen.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { return };
            let handle = handle.clone();
            let log = log.clone();
            std::thread::spawn(move || {
                let mut writer = stream.try_clone().unwrap();
                let mut reader = BufReader::new(stream);
                for index in 0.. {
                    let Some(mut request) = read_head(&mut reader) else {
                        return;
                    };
                    let expect = request
                        .header("expect")
                        .is_some_and(|e| e.eq_ignore_ascii_case("100-continue"));
                    match handle(&request, index) {
                        Reply::After(bytes) => {
                            if expect {
                                writer.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").unwrap();
                            }
                            read_body(&mut reader, &mut request);
                            log.lock().unwrap().push(request);
                            if writer.write_all(&bytes).is_err() {
                                return;
                            }
                        }
                        Reply::AfterThenClose(bytes) => {
                            read_body(&mut reader, &mut request);
                            log.lock().unwrap().push(request);
                            let _ = writer.write_all(&bytes);
                            let _ = writer.shutdown(std::net::Shutdown::Both);
                            return;
                        }
                        Reply::Early(bytes) => {
                            log.lock().unwrap().push(request);
                            let _ = writer.write_all(&bytes);
                            // Drain what the client still sends, so that closing does not
                            // reset the connection under the answer.
                            let _ = reader
                                .get_ref()
                                .set_read_timeout(Some(Duration::from_millis(500)));
                            let mut sink = [0; 65536];
                            while matches!(reader.read(&mut sink), Ok(n) if n > 0) {}
                            return;
                        }
                        Reply::Close => {
                            log.lock().unwrap().push(request);
                            let _ = writer.shutdown(std::net::Shutdown::Both);
                            return;
                        }
                    }
                }
            });
        }
    });
    (url, seen)
}

fn response(status: &str, headers: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
    let mut out = format!("HTTP/1.1 {status}\r\nContent-Length: {}\r\n", body.len());
    for (name, value) in headers {
        out.push_str(&format!("{name}: {value}\r\n"));
    }
    out.push_str("\r\n");
    let mut out = out.into_bytes();
    out.extend_from_slice(body);
    out
}

fn sink_at(address: &ResourceAddress) -> Box<dyn DataSink> {
    HttpSinkFactory::new(default_client().unwrap())
        .create(address)
        .unwrap()
}

fn input(data: &[u8], size: Option<u64>) -> SourceStream {
    let chunks: Vec<Result<Bytes, TransferError>> = data
        .chunks(4096)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    SourceStream {
        stream: futures::stream::iter(chunks).boxed(),
        size,
        content_type: None,
        offset: 0,
    }
}

fn payload(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31 % 251) as u8).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_attempt_sends_no_probe() {
    let (url, seen) = raw_server(|_, _| Reply::After(response("501 Not Implemented", &[], b"")));
    let plain = sink_at(&ResourceAddress::http(&format!("{url}/up")));
    assert_eq!(plain.first_point().await.unwrap(), None, "one plain upload");
    let mut declared = ResourceAddress::http(&format!("{url}/up"));
    declared.set("resumable", "tus");
    assert_eq!(
        sink_at(&declared).first_point().await.unwrap(),
        Some(0),
        "a declared tus upload is written in segments from the first byte"
    );
    assert!(seen.lock().unwrap().is_empty(), "the destination was asked");

    let mut invalid = ResourceAddress::http(&format!("{url}/up"));
    invalid.set("resumable", "maybe");
    assert!(matches!(
        HttpSinkFactory::new(default_client().unwrap()).create(&invalid),
        Err(TransferError::InvalidAddress(_))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn any_answer_but_a_tus_one_means_restart_from_zero() {
    let (url, _) = raw_server(|request, _| {
        let path_status = request.header("x-status").unwrap().to_owned();
        match path_status.as_str() {
            "close" => Reply::Close,
            "offset-only" => Reply::After(response("200 OK", &[("Upload-Offset", "10")], b"")),
            "tus" => Reply::After(response(
                "200 OK",
                &[("Upload-Offset", "10"), ("Tus-Resumable", "1.0.0")],
                b"",
            )),
            status => Reply::After(response(status, &[], b"")),
        }
    });
    let probe = |status: &str, token: Option<&str>| {
        let mut address = ResourceAddress::http(&format!("{url}/up"));
        address.set("headers", &format!("{{\"X-Status\": \"{status}\"}}"));
        if let Some(token) = token {
            address.set("authorization", token);
        }
        async move { sink_at(&address).resume_point(10).await }
    };
    for status in [
        "501 Not Implemented",
        "404 Not Found",
        "405 Method Not Allowed",
        "400 Bad Request",
        "403 Forbidden",
        "401 Unauthorized",
        "200 OK",
        "offset-only",
        "close",
    ] {
        assert_eq!(probe(status, None).await, Ok(None), "{status}");
    }
    assert_eq!(probe("tus", None).await, Ok(Some(10)));
    let refused = probe("401 Unauthorized", Some("secret")).await.unwrap_err();
    assert!(
        matches!(&refused, TransferError::Rejected(m) if m.contains("refused the configured authorization") && !m.contains("secret")),
        "{refused:?}"
    );
    for status in [
        "500 Internal Server Error",
        "503 Service Unavailable",
        "429 Too Many Requests",
    ] {
        let error = probe(status, None).await.unwrap_err();
        assert!(error.is_retryable(), "{status}: {error:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_known_size_is_sent_with_content_length_and_an_unknown_one_chunked() {
    // Like many WebDAV servers and S3-compatible gateways: no chunked bodies.
    let (url, seen) = raw_server(|request, _| {
        if request.header("content-length").is_none() {
            Reply::Early(response(
                "411 Length Required",
                &[("Connection", "close")],
                b"length required",
            ))
        } else {
            Reply::Close
        }
    });
    let sink = sink_at(&ResourceAddress::http(&format!("{url}/up")));
    let error = sink.write(input(&payload(10_000), None)).await.unwrap_err();
    assert!(
        matches!(&error, TransferError::Rejected(m) if m.contains("411")),
        "an early 411 is reported as such: {error:?}"
    );
    assert_eq!(
        seen.lock().unwrap()[0].header("transfer-encoding"),
        Some("chunked")
    );

    let (url, seen) = raw_server(|_, _| Reply::After(response("201 Created", &[], b"")));
    let data = payload(300_000);
    let sink = sink_at(&ResourceAddress::http(&format!("{url}/up")));
    assert_eq!(sink.write(input(&data, Some(300_000))).await, Ok(300_000));
    let request = seen.lock().unwrap()[0].clone();
    assert_eq!(request.header("content-length"), Some("300000"));
    assert_eq!(request.header("transfer-encoding"), None);
    assert!(request.body == data);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expect_100_continue_is_honoured() {
    let (url, seen) = raw_server(|_, _| Reply::After(response("204 No Content", &[], b"")));
    let mut address = ResourceAddress::http(&format!("{url}/up"));
    address.set("method", "PUT");
    address.set("headers", "{\"Expect\": \"100-continue\"}");
    let data = payload(200_000);
    assert_eq!(
        sink_at(&address).write(input(&data, Some(200_000))).await,
        Ok(200_000),
        "the interim 100 Continue is skipped, the final answer counts"
    );
    let request = seen.lock().unwrap()[0].clone();
    assert_eq!(request.method, "PUT");
    assert_eq!(request.header("expect"), Some("100-continue"));
    assert!(request.body == data);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sources_without_length_gzip_bodies_and_refused_ranges() {
    let gzip = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3, 1, 2, 3, 4, 5];
    let body = gzip.clone();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let ranges = Arc::new(Mutex::new(Vec::new()));
    let seen = ranges.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let mut stream = stream.unwrap();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let request = read_head(&mut reader).unwrap();
            seen.lock()
                .unwrap()
                .push(request.header("range").map(str::to_owned));
            if request.header("range").is_some() {
                // Ranges refused outright.
                let _ = stream.write_all(&response(
                    "416 Range Not Satisfiable",
                    &[("Accept-Ranges", "none")],
                    b"",
                ));
                continue;
            }
            // HTTP/1.0 style: no Content-Length, the body ends when the connection closes.
            let mut head = b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nAccept-Ranges: none\r\nConnection: close\r\n\r\n".to_vec();
            head.extend_from_slice(&body);
            let _ = stream.write_all(&head);
        }
    });
    let source = HttpSourceFactory::new(default_client().unwrap())
        .create(&ResourceAddress::http(&format!("{url}/data.gz")))
        .unwrap();
    let opened = source.open(0).await.unwrap();
    assert_eq!((opened.offset, opened.size), (0, None));
    let bytes: Vec<u8> = opened.stream.map(|c| c.unwrap().to_vec()).concat().await;
    assert_eq!(bytes, gzip, "streamed to the end, not decompressed");

    let reopened = source.open(5).await.unwrap();
    assert_eq!(reopened.offset, 0, "416 to a range: restarted from zero");
    let bytes: Vec<u8> = reopened.stream.map(|c| c.unwrap().to_vec()).concat().await;
    assert_eq!(bytes, gzip);
    assert_eq!(
        *ranges.lock().unwrap(),
        [None, Some("bytes=5-".to_owned()), None]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_get_whose_keep_alive_connection_closes_before_the_answer_is_sent_again() {
    // Answers the first request of a connection (keep-alive), closes the connection when a
    // second one arrives on it: a keep-alive timeout racing the client's next request.
    let data = payload(50_000);
    let body = data.clone();
    let (url, seen) = raw_server(move |_, index| {
        if index > 0 {
            Reply::Close
        } else {
            Reply::After(response("200 OK", &[], &body))
        }
    });
    let source = HttpSourceFactory::new(default_client().unwrap())
        .create(&ResourceAddress::http(&format!("{url}/data")))
        .unwrap();
    for _ in 0..3 {
        let opened = source.open(0).await.unwrap();
        let bytes: Vec<u8> = opened.stream.map(|c| c.unwrap().to_vec()).concat().await;
        assert!(bytes == data);
        // Time for the connection to go back to the pool.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Requests 2 and 3 each hit a reused connection first, then went again.
    assert_eq!(seen.lock().unwrap().len(), 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn servers_closing_every_connection_after_one_answer_are_survived() {
    // Keep-alive answers (no `Connection: close`), but the server closes each connection right
    // after its first answer.
    let data = payload(50_000);
    let body = data.clone();
    let (url, seen) = raw_server(move |request, _| {
        let answer = match request.method.as_str() {
            "GET" => response("200 OK", &[], &body),
            "HEAD" => response("404 Not Found", &[], b""),
            _ => response("201 Created", &[], b""),
        };
        Reply::AfterThenClose(answer)
    });
    let client = default_client().unwrap();
    let source = HttpSourceFactory::new(client.clone())
        .create(&ResourceAddress::http(&format!("{url}/data")))
        .unwrap();
    let sink = HttpSinkFactory::new(client)
        .create(&ResourceAddress::http(&format!("{url}/up")))
        .unwrap();
    for _ in 0..3 {
        let opened = source.open(0).await.unwrap();
        let bytes: Vec<u8> = opened.stream.map(|c| c.unwrap().to_vec()).concat().await;
        assert!(bytes == data);
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(sink.resume_point(100).await, Ok(None));
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(sink.write(input(&data, Some(50_000))).await, Ok(50_000));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let posts = seen
        .lock()
        .unwrap()
        .iter()
        .filter(|r| r.method == "POST" && r.body == data)
        .count();
    assert_eq!(posts, 3);
}
