//! A small JSON-over-HTTP client for the dpf REST APIs: URLs built from encoded path segments,
//! bounded response bodies, the APIs' `{"error": "...", "code": "..."}` answers turned into
//! plain error messages ([`HttpError`]), and long-lived server-sent-event streams.

use std::sync::OnceLock;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use futures::StreamExt;
use reqwest::{Method, Url};
use serde_json::Value;

/// Largest response body accepted (management lists of many flows fit easily).
const MAX_BODY: usize = 32 * 1024 * 1024;

/// The body of a request.
#[derive(Debug)]
pub enum Body<'a> {
    /// No body at all (GET, DELETE, DPS `completed`).
    None,
    /// A JSON document.
    Json(&'a Value),
}

/// An error answer of an API: its status and its message (the `error` of a
/// `{"error": ..., "code": ...}` answer, else a description). Displays as the
/// message; find it with `anyhow::Error::downcast_ref`.
#[derive(Debug, Clone)]
pub struct HttpError {
    /// The HTTP status.
    pub status: reqwest::StatusCode,
    /// The message.
    pub message: String,
}

impl std::fmt::Display for HttpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for HttpError {}

/// The [`HttpError`] behind `error`, if it is an API's error answer.
pub fn http_error(error: &anyhow::Error) -> Option<&HttpError> {
    error.downcast_ref::<HttpError>()
}

/// One dpf API, rooted at a base URL such as `http://127.0.0.1:8080/api/v1`.
#[derive(Debug, Clone)]
pub struct Api {
    http: reqwest::Client,
    /// For streams that stay open indefinitely: no overall timeout (built when first needed).
    streaming: OnceLock<reqwest::Client>,
    base: Url,
}

impl Api {
    /// A client for the API at `base` (an absolute http(s) URL).
    ///
    /// # Errors
    /// When `base` is not such a URL.
    pub fn new(base: &str) -> Result<Self> {
        let trimmed = base.trim().trim_end_matches('/');
        let url = Url::parse(trimmed).with_context(|| format!("'{base}' is not a valid URL"))?;
        if !matches!(url.scheme(), "http" | "https") || !url.has_host() {
            bail!("'{base}' must be an http:// or https:// URL with a host");
        }
        let connection = crate::connection::current();
        let http = connection
            .client_builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(120))
            .default_headers(connection.auth_headers()?)
            .build()
            .context("cannot build the HTTP client")?;
        Ok(Self {
            http,
            streaming: OnceLock::new(),
            base: url,
        })
    }

    /// The base URL, without a trailing slash.
    pub fn base(&self) -> &str {
        self.base.as_str().trim_end_matches('/')
    }

    /// The base URL with `segments` appended, each percent-encoded.
    pub fn url(&self, segments: &[&str]) -> Url {
        let mut url = self.base.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend(segments);
        }
        url
    }

    /// The base URL with `path` appended as it is: `path` must already be percent-encoded
    /// (see [`encode_path`]).
    pub fn url_with_encoded_path(&self, path: &str) -> Url {
        let mut url = self.base.clone();
        let joined = format!("{}/{}", url.path().trim_end_matches('/'), path);
        url.set_path(&joined);
        url
    }

    /// `GET` a JSON document.
    pub async fn get(&self, segments: &[&str], query: &[(&str, String)]) -> Result<Value> {
        self.call(Method::GET, segments, query, Body::None)
            .await?
            .ok_or_else(|| anyhow!("{} answered with an empty body", self.url(segments)))
    }

    /// `POST` a JSON document, expecting a JSON answer.
    pub async fn post(&self, segments: &[&str], body: &Value) -> Result<Value> {
        self.call(Method::POST, segments, &[], Body::Json(body))
            .await?
            .ok_or_else(|| anyhow!("{} answered with an empty body", self.url(segments)))
    }

    /// Sends one request; `Ok(None)` for a successful answer without a body.
    ///
    /// # Errors
    /// `cannot reach URL: cause` when the server cannot be reached; the API's own message
    /// for error answers; a description of anything else that is not JSON.
    pub async fn call(
        &self,
        method: Method,
        segments: &[&str],
        query: &[(&str, String)],
        body: Body<'_>,
    ) -> Result<Option<Value>> {
        self.call_url(method, self.url(segments), query, body).await
    }

    /// [`Api::call`] for a URL built by the caller.
    ///
    /// # Errors
    /// As [`Api::call`].
    pub async fn call_url(
        &self,
        method: Method,
        mut url: Url,
        query: &[(&str, String)],
        body: Body<'_>,
    ) -> Result<Option<Value>> {
        add_query(&mut url, query);
        let mut request = self.http.request(method.clone(), url.clone());
        if let Body::Json(value) = body {
            request = request.json(value);
        }
        let response = request
            .send()
            .await
            .map_err(|e| transport_error(&url, &e))?;
        let status = response.status();
        let bytes = read_body(&url, response).await?;
        if !status.is_success() {
            return Err(api_error(&method, &url, status, &bytes));
        }
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(None);
        }
        serde_json::from_slice(&bytes)
            .map(Some)
            .with_context(|| format!("{url} answered {status} with something that is not JSON"))
    }

    /// Opens a server-sent-event stream: `GET segments?query` with no overall timeout. The
    /// answer's body is the stream (read it with `bytes_stream`).
    ///
    /// # Errors
    /// As [`Api::call`] when the stream cannot be opened or the API answers with an error.
    pub async fn open_stream(
        &self,
        segments: &[&str],
        query: &[(&str, String)],
    ) -> Result<reqwest::Response> {
        let mut url = self.url(segments);
        add_query(&mut url, query);
        let http = match self.streaming.get() {
            Some(http) => http,
            None => {
                let connection = crate::connection::current();
                let built = connection
                    .client_builder()
                    .connect_timeout(Duration::from_secs(5))
                    .tcp_keepalive(Duration::from_secs(15))
                    .default_headers(connection.auth_headers()?)
                    .build()
                    .context("cannot build the HTTP client")?;
                self.streaming.get_or_init(|| built)
            }
        };
        let response = http
            .get(url.clone())
            .header(reqwest::header::ACCEPT, "text/event-stream")
            .send()
            .await
            .map_err(|e| transport_error(&url, &e))?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let bytes = read_body(&url, response).await?;
        Err(api_error(&Method::GET, &url, status, &bytes))
    }
}

fn add_query(url: &mut Url, query: &[(&str, String)]) {
    if !query.is_empty() {
        url.query_pairs_mut()
            .extend_pairs(query.iter().map(|(k, v)| (*k, v.as_str())));
    }
}

/// The whole body of `response`, at most [`MAX_BODY`] bytes.
async fn read_body(url: &Url, response: reqwest::Response) -> Result<Vec<u8>> {
    let mut bytes = Vec::new();
    let mut stream = response.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| transport_error(url, &e))?;
        if bytes.len() + chunk.len() > MAX_BODY {
            bail!("the answer of {url} exceeds {MAX_BODY} bytes");
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(bytes)
}

/// Percent-encodes `path` for a URL path, keeping `/` as the segment separator: everything but
/// the unreserved characters (`A-Z a-z 0-9 - . _ ~`) and `/` is encoded as `%XX` (of its
/// UTF-8 bytes).
pub fn encode_path(path: &str) -> String {
    let mut encoded = String::with_capacity(path.len());
    for byte in path.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~' | b'/') {
            encoded.push(char::from(byte));
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
}

/// `cannot reach URL: innermost cause` (e.g. `Connection refused (os error 111)`; for an
/// untrusted certificate `invalid peer certificate: UnknownIssuer` and what to do about it).
fn transport_error(url: &Url, error: &reqwest::Error) -> anyhow::Error {
    if error.is_timeout() {
        return anyhow!("{url} did not answer in time");
    }
    let mut cause: &dyn std::error::Error = error;
    while let Some(source) = cause.source() {
        cause = source;
    }
    let cause = cause.to_string();
    match crate::connection::tls_hint(&cause) {
        Some(hint) => anyhow!("cannot reach {url}: {cause} ({hint})"),
        None => anyhow!("cannot reach {url}: {cause}"),
    }
}

/// An [`HttpError`]: the API's message for `{"error": ..., "code": ...}` answers, else a
/// description.
fn api_error(
    method: &Method,
    url: &Url,
    status: reqwest::StatusCode,
    body: &[u8],
) -> anyhow::Error {
    let error = |message: String| anyhow::Error::new(HttpError { status, message });
    if let Ok(value) = serde_json::from_slice::<Value>(body) {
        if let Some(message) = value.get("error").and_then(Value::as_str) {
            return error(message.to_owned());
        }
    }
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    if text.is_empty() {
        error(format!("{method} {url} answered {status}"))
    } else {
        let snippet: String = text.chars().take(300).collect();
        error(format!("{method} {url} answered {status}: {snippet}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_joined_and_encoded() {
        let api = Api::new("http://localhost:8080/api/v1/").unwrap();
        assert_eq!(api.base(), "http://localhost:8080/api/v1");
        assert_eq!(
            api.url(&["datasets", "a b/c"]).as_str(),
            "http://localhost:8080/api/v1/datasets/a%20b%2Fc"
        );
    }

    #[test]
    fn encoded_paths_keep_their_slashes() {
        assert_eq!(encode_path("dpf/config/a.b-c_d~e"), "dpf/config/a.b-c_d~e");
        assert_eq!(
            encode_path("a b/c?d#e%f+g&h=i;j:k@l/é"),
            "a%20b/c%3Fd%23e%25f%2Bg%26h%3Di%3Bj%3Ak%40l/%C3%A9"
        );
        let api = Api::new("http://localhost:8080/api/v1").unwrap();
        assert_eq!(
            api.url_with_encoded_path("cluster/kv/a%3F/b//c").as_str(),
            "http://localhost:8080/api/v1/cluster/kv/a%3F/b//c"
        );
    }

    #[test]
    fn bad_urls_are_refused() {
        assert!(Api::new("not a url").is_err());
        assert!(Api::new("ftp://host/x").is_err());
    }

    #[test]
    fn api_errors_show_the_message() {
        let url = Url::parse("http://h/x").unwrap();
        let error = api_error(
            &Method::GET,
            &url,
            reqwest::StatusCode::NOT_FOUND,
            br#"{"error":"dataset 'x' not found","code":"NOT_FOUND"}"#,
        );
        assert_eq!(error.to_string(), "dataset 'x' not found");
        assert_eq!(
            http_error(&error).unwrap().status,
            reqwest::StatusCode::NOT_FOUND
        );
        let error = api_error(&Method::GET, &url, reqwest::StatusCode::BAD_GATEWAY, b"");
        assert_eq!(error.to_string(), "GET http://h/x answered 502 Bad Gateway");
    }
}
