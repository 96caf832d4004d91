//! A small JSON-over-HTTP client for the dpf REST APIs: URLs built from encoded path segments,
//! bounded response bodies, and the APIs' `{"error": "...", "code": "..."}` answers turned
//! into plain error messages.

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

/// One dpf API, rooted at a base URL such as `http://127.0.0.1:8080/api/v1`.
#[derive(Debug, Clone)]
pub struct Api {
    http: reqwest::Client,
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
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(120))
            .build()
            .context("cannot build the HTTP client")?;
        Ok(Self { http, base: url })
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
        let mut url = self.url(segments);
        if !query.is_empty() {
            url.query_pairs_mut()
                .extend_pairs(query.iter().map(|(k, v)| (*k, v.as_str())));
        }
        let mut request = self.http.request(method.clone(), url.clone());
        if let Body::Json(value) = body {
            request = request.json(value);
        }
        let response = request
            .send()
            .await
            .map_err(|e| transport_error(&url, &e))?;
        let status = response.status();
        let mut bytes = Vec::new();
        let mut stream = response.bytes_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| transport_error(&url, &e))?;
            if bytes.len() + chunk.len() > MAX_BODY {
                bail!("the answer of {url} exceeds {MAX_BODY} bytes");
            }
            bytes.extend_from_slice(&chunk);
        }
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
}

/// `cannot reach URL: innermost cause` (e.g. `Connection refused (os error 111)`).
fn transport_error(url: &Url, error: &reqwest::Error) -> anyhow::Error {
    if error.is_timeout() {
        return anyhow!("{url} did not answer in time");
    }
    let mut cause: &dyn std::error::Error = error;
    while let Some(source) = cause.source() {
        cause = source;
    }
    anyhow!("cannot reach {url}: {cause}")
}

/// The API's message for `{"error": ..., "code": ...}` answers, else a description.
fn api_error(
    method: &Method,
    url: &Url,
    status: reqwest::StatusCode,
    body: &[u8],
) -> anyhow::Error {
    if let Ok(value) = serde_json::from_slice::<Value>(body) {
        if let Some(message) = value.get("error").and_then(Value::as_str) {
            return anyhow!("{message}");
        }
    }
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    if text.is_empty() {
        anyhow!("{method} {url} answered {status}")
    } else {
        let snippet: String = text.chars().take(300).collect();
        anyhow!("{method} {url} answered {status}: {snippet}")
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
        let error = api_error(&Method::GET, &url, reqwest::StatusCode::BAD_GATEWAY, b"");
        assert_eq!(error.to_string(), "GET http://h/x answered 502 Bad Gateway");
    }
}
