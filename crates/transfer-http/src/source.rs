//! The HTTP source: a streaming `GET`, resumed with `Range` where the server supports it
//! (otherwise restarted from zero). The body is passed on exactly as the server sent it: no
//! `Content-Encoding` is decoded (the transfer client has no decompression), and a body without
//! `Content-Length` is streamed to its end. Event streams are in [`crate::events`].

use std::time::Duration;

use async_trait::async_trait;
use dataplane_spi::{
    ByteStream, DataSource, DataSourceFactory, ResourceAddress, SourceStream, TransferError,
    HTTP_DATA_TYPE,
};
use futures::StreamExt;
use reqwest::header::{HeaderMap, CONTENT_RANGE, CONTENT_TYPE, RANGE};
use reqwest::{Client, RequestBuilder, Response, StatusCode, Url};

use crate::endpoint::{display_url, Endpoint};
use crate::errors::{request_error, status_error};
use crate::events::{EventStreamConfig, HttpEventSource};
use address_policy::AddressPolicy;

use crate::{default_client_or_fallback, DEFAULT_IDLE_TIMEOUT};

/// Creates [`HttpSource`]s for `HttpData` addresses, all sharing one [`Client`].
#[derive(Debug, Clone)]
pub struct HttpSourceFactory {
    client: Client,
    idle_timeout: Duration,
    policy: AddressPolicy,
}

impl HttpSourceFactory {
    /// A factory whose sources use `client` (clone one client for all factories: it holds the
    /// connection pool).
    pub fn new(client: Client) -> Self {
        Self {
            client,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            policy: AddressPolicy::unrestricted(),
        }
    }

    /// Checks every address with `policy` (default [`AddressPolicy::unrestricted`]); give the
    /// factory a client from [`crate::client_for`] with the same policy, so that names are
    /// checked on their resolved addresses too.
    #[must_use]
    pub fn with_policy(mut self, policy: AddressPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// Fails a download when the server sends no response or no data for `idle_timeout`
    /// (default [`DEFAULT_IDLE_TIMEOUT`]). There is no limit on the total duration.
    #[must_use]
    pub fn with_idle_timeout(mut self, idle_timeout: Duration) -> Self {
        self.idle_timeout = idle_timeout;
        self
    }
}

impl Default for HttpSourceFactory {
    /// A factory with a client from [`crate::default_client`].
    fn default() -> Self {
        Self::new(default_client_or_fallback())
    }
}

impl DataSourceFactory for HttpSourceFactory {
    fn type_name(&self) -> &str {
        HTTP_DATA_TYPE
    }

    /// An [`HttpSource`], or an [`HttpEventSource`] when the address has an `eventStream`.
    fn create(&self, address: &ResourceAddress) -> Result<Box<dyn DataSource>, TransferError> {
        let endpoint = Endpoint::from_address(address, &self.policy)?;
        if let Some(config) = EventStreamConfig::from_address(address)? {
            return Ok(Box::new(HttpEventSource::new(
                self.client.clone(),
                endpoint,
                config,
                self.idle_timeout,
            )));
        }
        Ok(Box::new(HttpSource {
            client: self.client.clone(),
            endpoint,
            idle_timeout: self.idle_timeout,
        }))
    }
}

/// A resource to download with `GET`. Created by [`HttpSourceFactory`].
#[derive(Debug, Clone)]
pub struct HttpSource {
    client: Client,
    endpoint: Endpoint,
    idle_timeout: Duration,
}

/// A parsed `Content-Range: bytes <start>-<end>/<total or *>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ContentRange {
    start: u64,
    end: u64,
    total: Option<u64>,
}

fn header_str<'a>(headers: &'a HeaderMap, name: &reqwest::header::HeaderName) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn parse_content_range(value: &str) -> Option<ContentRange> {
    let rest = value.trim().strip_prefix("bytes")?.trim_start();
    let (range, total) = rest.split_once('/')?;
    let (start, end) = range.trim().split_once('-')?;
    let start = start.trim().parse().ok()?;
    let end = end.trim().parse().ok()?;
    let total = match total.trim() {
        "*" => None,
        t => Some(t.parse().ok()?),
    };
    if start > end || matches!(total, Some(t) if end >= t) {
        return None;
    }
    Some(ContentRange { start, end, total })
}

/// The total of a 416's `Content-Range: bytes */<total>`.
fn unsatisfied_range_total(value: &str) -> Option<u64> {
    value
        .trim()
        .strip_prefix("bytes")?
        .trim_start()
        .strip_prefix("*/")?
        .trim()
        .parse()
        .ok()
}

impl HttpSource {
    /// Sends the `GET`, with a `Range` from `offset` when it is not 0.
    async fn get(&self, offset: u64) -> Result<Response, TransferError> {
        let url = &self.endpoint.url;
        let mut request = self
            .client
            .get(url.clone())
            .headers(self.endpoint.headers.clone());
        if offset > 0 {
            request = request.header(RANGE, format!("bytes={offset}-"));
        }
        send_get(request, url, self.idle_timeout).await
    }

    fn opened(&self, response: Response, size: Option<u64>, offset: u64) -> SourceStream {
        let content_type = header_str(response.headers(), &CONTENT_TYPE).map(str::to_owned);
        SourceStream {
            stream: idle_body(response, &self.endpoint.url, self.idle_timeout),
            size,
            content_type,
            offset,
        }
    }

    /// Downloads from the start after a server could not serve a range.
    async fn restart(&self, requested: u64, why: &str) -> Result<SourceStream, TransferError> {
        tracing::info!(
            url = %display_url(&self.endpoint.url),
            requested,
            "{why}: downloading from the start"
        );
        let response = self.get(0).await?;
        if !response.status().is_success() {
            return Err(status_error("GET", &self.endpoint.url, response).await);
        }
        let size = response.content_length();
        Ok(self.opened(response, size, 0))
    }
}

/// Sends a `GET` request to `url`, waiting at most `idle_timeout` for the response. A
/// connection that closes before answering (a keep-alive connection the server closed as the
/// request went out) is tried once more on a fresh one: a `GET` can be repeated.
pub(crate) async fn send_get(
    request: RequestBuilder,
    url: &Url,
    idle_timeout: Duration,
) -> Result<Response, TransferError> {
    let again = request.try_clone();
    let error = match tokio::time::timeout(idle_timeout, request.send()).await {
        Ok(Ok(response)) => return Ok(response),
        Ok(Err(e)) => e,
        Err(_) => return Err(no_response(url, idle_timeout)),
    };
    let closed_early =
        !(error.is_connect() || error.is_timeout() || error.is_builder() || error.is_redirect());
    let Some(again) = again.filter(|_| closed_early) else {
        return Err(request_error("GET", url, &error));
    };
    tracing::debug!(url = %display_url(url), error = %crate::errors::chain(&error), "GET: the connection closed before the answer; trying once more");
    match tokio::time::timeout(idle_timeout, again.send()).await {
        Ok(result) => result.map_err(|e| request_error("GET", url, &e)),
        Err(_) => Err(no_response(url, idle_timeout)),
    }
}

fn no_response(url: &Url, idle_timeout: Duration) -> TransferError {
    TransferError::Transient(format!(
        "GET {} got no response within {idle_timeout:?}",
        display_url(url)
    ))
}

/// The body of `response` (to a `GET` of `url`) as chunks, each awaited at most `idle_timeout`.
pub(crate) fn idle_body(response: Response, url: &Url, idle_timeout: Duration) -> ByteStream {
    struct State<S> {
        body: S,
        done: bool,
    }
    let url = display_url(url);
    let state = State {
        body: Box::pin(response.bytes_stream()),
        done: false,
    };
    futures::stream::unfold(state, move |mut state| {
        let url = url.clone();
        async move {
            if state.done {
                return None;
            }
            let item = match tokio::time::timeout(idle_timeout, state.body.next()).await {
                Ok(None) => return None,
                Ok(Some(Ok(chunk))) => Ok(chunk),
                Ok(Some(Err(e))) => Err(TransferError::Transient(format!(
                    "reading the body of GET {url} failed: {}",
                    crate::errors::chain(&e)
                ))),
                Err(_) => Err(TransferError::Transient(format!(
                    "GET {url} sent no data for {idle_timeout:?}"
                ))),
            };
            state.done = item.is_err();
            Some((item, state))
        }
    })
    .boxed()
}

#[async_trait]
impl DataSource for HttpSource {
    async fn open(&self, offset: u64) -> Result<SourceStream, TransferError> {
        let url = &self.endpoint.url;
        let response = self.get(offset).await?;
        let status = response.status();

        if status == StatusCode::RANGE_NOT_SATISFIABLE && offset > 0 {
            // Everything was transferred already: nothing is left to send.
            let total =
                header_str(response.headers(), &CONTENT_RANGE).and_then(unsatisfied_range_total);
            if total == Some(offset) {
                return Ok(SourceStream {
                    stream: futures::stream::empty().boxed(),
                    size: total,
                    content_type: None,
                    offset,
                });
            }
            // A server that does not serve ranges (`Accept-Ranges: none`) and refuses them
            // rather than ignoring them: the whole resource, from the start. (A total below
            // the offset means the resource shrank under the transfer: refused below.)
            if !matches!(total, Some(t) if t < offset) {
                drop(response);
                let why = format!(
                    "asked for bytes from {offset}, the server answered 416 (Content-Range total {})",
                    total.map_or_else(|| "unknown".to_owned(), |t| t.to_string())
                );
                return self.restart(offset, &why).await;
            }
        }
        if !status.is_success() {
            return Err(status_error("GET", url, response).await);
        }

        if status != StatusCode::PARTIAL_CONTENT {
            if offset > 0 {
                tracing::info!(
                    url = %display_url(url),
                    offset,
                    %status,
                    "the server ignored the Range: downloading from the start"
                );
            }
            let size = response.content_length();
            return Ok(self.opened(response, size, 0));
        }

        let raw = header_str(response.headers(), &CONTENT_RANGE)
            .unwrap_or_default()
            .to_owned();
        match parse_content_range(&raw) {
            // The rest of the resource, not just a part of it.
            Some(range)
                if range.start == offset
                    && !matches!(range.total, Some(t) if range.end + 1 != t) =>
            {
                Ok(self.opened(response, range.total, offset))
            }
            _ => {
                drop(response);
                let why = format!(
                    "asked for bytes from {offset}, the server answered 206 with Content-Range '{raw}'"
                );
                self.restart(offset, &why).await
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_ranges_are_parsed() {
        let parsed = parse_content_range("bytes 10-99/100");
        assert_eq!(
            parsed,
            Some(ContentRange {
                start: 10,
                end: 99,
                total: Some(100)
            })
        );
        assert_eq!(
            parse_content_range("bytes 10-99/*").map(|r| r.total),
            Some(None)
        );
        assert_eq!(parse_content_range("bytes 10-99/50"), None);
        assert_eq!(parse_content_range("bytes 20-10/50"), None);
        assert_eq!(parse_content_range("items 0-1/2"), None);
        assert_eq!(parse_content_range("bytes */100"), None);
        assert_eq!(unsatisfied_range_total("bytes */100"), Some(100));
        assert_eq!(unsatisfied_range_total("bytes 0-1/100"), None);
    }
}
