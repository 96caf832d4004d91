//! [`DataServer`]: real HTTP sources and sinks for transfers.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use bytes::Bytes;
use futures::StreamExt;
use serde_json::json;
use sha2::Digest;

use crate::hex;

/// What a [`DataServer`] serves under a name.
#[derive(Clone, Debug)]
pub enum Content {
    /// These bytes.
    Bytes(Bytes),
    /// `len` bytes repeating `block`; `delay` between 64 KiB chunks (throttling).
    Pattern {
        /// Repeated block.
        block: Bytes,
        /// Total length.
        len: u64,
        /// Pause between chunks.
        delay: Duration,
    },
}

impl Content {
    fn len(&self) -> u64 {
        match self {
            Self::Bytes(b) => b.len() as u64,
            Self::Pattern { len, .. } => *len,
        }
    }

    /// The byte at `position`.
    fn chunk(&self, position: u64, max: usize) -> Bytes {
        match self {
            Self::Bytes(b) => {
                let start = usize::try_from(position).unwrap();
                b.slice(start..(start + max).min(b.len()))
            }
            Self::Pattern { block, len, .. } => {
                let offset = usize::try_from(position % block.len() as u64).unwrap();
                let left = usize::try_from(len - position).unwrap_or(usize::MAX);
                block.slice(offset..(offset + max).min(block.len()).min(offset + left))
            }
        }
    }
}

/// One upload received by a [`DataServer`].
#[derive(Debug, Clone, Default)]
pub struct Upload {
    /// Bytes received so far.
    pub bytes: u64,
    /// SHA-256 of the body, when complete.
    pub sha256: Option<String>,
    /// The `Authorization` header.
    pub authorization: Option<String>,
    /// Whether the body arrived completely.
    pub complete: bool,
}

#[derive(Default, Debug)]
struct ServerState {
    content: HashMap<String, Content>,
    uploads: HashMap<String, Vec<Upload>>,
    /// Names whose GET ignores `Range` (always 200 from byte 0).
    ignore_range: std::collections::HashSet<String>,
    /// Bytes served per name.
    served: HashMap<String, Arc<AtomicU64>>,
}

/// An HTTP server that serves [`Content`] at `GET /data/{name}` (with `Range`) and accepts
/// uploads at `POST|PUT /upload/{name}`, hashing them as they stream in.
#[derive(Clone, Debug)]
pub struct DataServer {
    state: Arc<Mutex<ServerState>>,
    /// Bytes received by all uploads, live.
    pub received: Arc<AtomicU64>,
    /// `http://127.0.0.1:PORT`.
    pub url: String,
}

impl DataServer {
    /// Starts the server on a free port in the current tokio runtime.
    pub fn start() -> Self {
        let state = Arc::new(Mutex::new(ServerState::default()));
        let received = Arc::new(AtomicU64::new(0));
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let server = {
            let state = state.clone();
            let received = received.clone();
            HttpServer::new(move || {
                App::new()
                    .app_data(web::Data::new(state.clone()))
                    .app_data(web::Data::new(received.clone()))
                    .app_data(web::PayloadConfig::new(usize::MAX))
                    .route("/data/{name}", web::get().to(serve))
                    .route("/events/{count}", web::get().to(events))
                    .route("/upload/{name}", web::post().to(upload))
                    .route("/upload/{name}", web::put().to(upload))
            })
            .workers(2)
            .listen(listener)
            .unwrap()
            .run()
        };
        tokio::spawn(server);
        Self {
            state,
            received,
            url,
        }
    }

    /// Serves `content` at `/data/{name}`; returns its URL.
    pub fn put(&self, name: &str, content: Content) -> String {
        self.state
            .lock()
            .unwrap()
            .content
            .insert(name.to_owned(), content);
        format!("{}/data/{name}", self.url)
    }

    /// Makes `GET /data/{name}` ignore `Range` headers, like servers that cannot seek.
    pub fn ignore_range(&self, name: &str) {
        self.state
            .lock()
            .unwrap()
            .ignore_range
            .insert(name.to_owned());
    }

    /// Bytes served from `/data/{name}` so far, over every request.
    pub fn served(&self, name: &str) -> u64 {
        self.state
            .lock()
            .unwrap()
            .served
            .get(name)
            .map_or(0, |c| c.load(Ordering::Relaxed))
    }

    /// A server-sent event stream of events `1..=count` (`id: i`, `data: event i`), 100 events
    /// per network chunk every 5 ms, resuming after `Last-Event-ID`.
    pub fn events_url(&self, count: u64) -> String {
        format!("{}/events/{count}", self.url)
    }

    /// The upload URL for `name`.
    pub fn upload_url(&self, name: &str) -> String {
        format!("{}/upload/{name}", self.url)
    }

    /// Uploads received for `name`, oldest first.
    pub fn uploads(&self, name: &str) -> Vec<Upload> {
        self.state
            .lock()
            .unwrap()
            .uploads
            .get(name)
            .cloned()
            .unwrap_or_default()
    }
}

async fn serve(
    req: HttpRequest,
    name: web::Path<String>,
    state: web::Data<Arc<Mutex<ServerState>>>,
) -> HttpResponse {
    let (content, ignore_range, served) = {
        let mut state = state.lock().unwrap();
        let Some(content) = state.content.get(name.as_str()).cloned() else {
            return HttpResponse::NotFound().finish();
        };
        let ignore = state.ignore_range.contains(name.as_str());
        let served = state.served.entry(name.to_string()).or_default().clone();
        (content, ignore, served)
    };
    let len = content.len();
    let start: u64 = if ignore_range {
        0
    } else {
        req.headers()
            .get("range")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("bytes="))
            .and_then(|v| v.trim_end_matches('-').parse().ok())
            .unwrap_or(0)
    };
    let delay = match &content {
        Content::Pattern { delay, .. } => *delay,
        Content::Bytes(_) => Duration::ZERO,
    };
    let body = futures::stream::unfold(start, move |position| {
        let content = content.clone();
        let served = served.clone();
        async move {
            if position >= len {
                return None;
            }
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            let chunk = content.chunk(position, 64 * 1024);
            served.fetch_add(chunk.len() as u64, Ordering::Relaxed);
            let next = position + chunk.len() as u64;
            Some((Ok::<_, actix_web::Error>(chunk), next))
        }
    });
    let mut response = if start > 0 {
        HttpResponse::PartialContent()
    } else {
        HttpResponse::Ok()
    };
    if start > 0 {
        response.insert_header(("Content-Range", format!("bytes {start}-{}/{len}", len - 1)));
    }
    response.no_chunking(len - start).streaming(body)
}

async fn events(req: HttpRequest, count: web::Path<u64>) -> HttpResponse {
    let count = count.into_inner();
    let after: u64 = req
        .headers()
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let body = futures::stream::unfold(after + 1, move |next| async move {
        if next > count {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
        let last = (next + 99).min(count);
        let mut chunk = String::new();
        for id in next..=last {
            chunk.push_str(&format!("id: {id}\ndata: event {id}\n\n"));
        }
        Some((Ok::<_, actix_web::Error>(Bytes::from(chunk)), last + 1))
    });
    HttpResponse::Ok()
        .content_type("text/event-stream")
        .streaming(body)
}

async fn upload(
    req: HttpRequest,
    name: web::Path<String>,
    mut payload: web::Payload,
    state: web::Data<Arc<Mutex<ServerState>>>,
    received: web::Data<Arc<AtomicU64>>,
) -> HttpResponse {
    let authorization = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let index = {
        let mut state = state.lock().unwrap();
        let uploads = state.uploads.entry(name.to_string()).or_default();
        uploads.push(Upload {
            authorization,
            ..Upload::default()
        });
        uploads.len() - 1
    };
    let mut hasher = sha2::Sha256::new();
    while let Some(chunk) = payload.next().await {
        let Ok(chunk) = chunk else {
            return HttpResponse::BadRequest().finish();
        };
        hasher.update(&chunk);
        received.fetch_add(chunk.len() as u64, Ordering::Relaxed);
        state
            .lock()
            .unwrap()
            .uploads
            .get_mut(name.as_str())
            .unwrap()[index]
            .bytes += chunk.len() as u64;
    }
    let digest = hex(&hasher.finalize());
    let mut state = state.lock().unwrap();
    let entry = &mut state.uploads.get_mut(name.as_str()).unwrap()[index];
    entry.sha256 = Some(digest);
    entry.complete = true;
    HttpResponse::Ok().json(json!({"received": entry.bytes}))
}
