//! The HTTP sink: one streaming `POST` or `PUT` of everything the input yields.

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use async_trait::async_trait;
use bytes::Bytes;
use dataplane_spi::{
    ByteStream, DataSink, DataSinkFactory, ResourceAddress, SourceStream, TransferError,
    HTTP_DATA_TYPE,
};
use futures::Stream;
use reqwest::header::{HeaderValue, CONTENT_LENGTH, CONTENT_TYPE};
use reqwest::{Body, Client, Method};

use crate::default_client_or_fallback;
use crate::endpoint::{content_type, sink_method, Endpoint};
use crate::errors::{drain, request_error, status_error};

/// Content type of uploads when neither the address nor the source tells one.
pub const DEFAULT_CONTENT_TYPE: &str = "application/octet-stream";

/// Creates [`HttpSink`]s for `HttpData` addresses, all sharing one [`Client`].
#[derive(Debug, Clone)]
pub struct HttpSinkFactory {
    client: Client,
}

impl HttpSinkFactory {
    /// A factory whose sinks use `client` (clone one client for all factories: it holds the
    /// connection pool).
    pub fn new(client: Client) -> Self {
        Self { client }
    }
}

impl Default for HttpSinkFactory {
    /// A factory with a client from [`crate::default_client`].
    fn default() -> Self {
        Self::new(default_client_or_fallback())
    }
}

impl DataSinkFactory for HttpSinkFactory {
    fn type_name(&self) -> &str {
        HTTP_DATA_TYPE
    }

    fn create(&self, address: &ResourceAddress) -> Result<Box<dyn DataSink>, TransferError> {
        Ok(Box::new(HttpSink {
            client: self.client.clone(),
            endpoint: Endpoint::from_address(address)?,
            method: sink_method(address)?,
            content_type: content_type(address)?,
        }))
    }
}

/// A resource to upload to with `POST` or `PUT`. Created by [`HttpSinkFactory`].
#[derive(Debug, Clone)]
pub struct HttpSink {
    client: Client,
    endpoint: Endpoint,
    method: Method,
    content_type: Option<HeaderValue>,
}

/// What a [`Counting`] stream saw, shared with the sink.
#[derive(Debug, Default)]
struct Progress {
    bytes: AtomicU64,
    /// The error that ended the input, to be returned instead of the HTTP client's.
    error: Mutex<Option<TransferError>>,
}

impl Progress {
    fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Acquire)
    }

    fn set_error(&self, error: TransferError) {
        let mut slot = self.error.lock().unwrap_or_else(PoisonError::into_inner);
        slot.get_or_insert(error);
    }

    fn take_error(&self) -> Option<TransferError> {
        self.error
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
    }
}

/// The request body: the input stream, counted, checked against the announced length, with
/// its error kept aside for the sink.
struct Counting {
    inner: ByteStream,
    progress: Arc<Progress>,
    /// The announced length (sent as `Content-Length`), if any.
    expected: Option<u64>,
    done: bool,
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl Counting {
    fn fail(&mut self, error: TransferError) -> Poll<Option<Result<Bytes, BoxError>>> {
        self.done = true;
        self.progress.set_error(error.clone());
        Poll::Ready(Some(Err(Box::new(error))))
    }
}

impl Stream for Counting {
    type Item = Result<Bytes, BoxError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if this.done {
            return Poll::Ready(None);
        }
        match this.inner.as_mut().poll_next(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Some(Ok(chunk))) => {
                let total = this.progress.bytes() + chunk.len() as u64;
                if let Some(expected) = this.expected.filter(|e| total > *e) {
                    return this.fail(TransferError::Transient(format!(
                        "the source yielded more than the {expected} bytes it announced"
                    )));
                }
                this.progress.bytes.store(total, Ordering::Release);
                Poll::Ready(Some(Ok(chunk)))
            }
            Poll::Ready(Some(Err(error))) => this.fail(error),
            Poll::Ready(None) => {
                let total = this.progress.bytes();
                if let Some(expected) = this.expected.filter(|e| total < *e) {
                    return this.fail(TransferError::Transient(format!(
                        "the source ended after {total} of the {expected} bytes it announced"
                    )));
                }
                this.done = true;
                Poll::Ready(None)
            }
        }
    }
}

#[async_trait]
impl DataSink for HttpSink {
    async fn write(&self, input: SourceStream) -> Result<u64, TransferError> {
        let SourceStream {
            stream,
            size,
            content_type,
            offset,
        } = input;
        let url = &self.endpoint.url;
        let what = self.method.as_str();
        let content_type = self
            .content_type
            .clone()
            .or_else(|| content_type.and_then(|t| HeaderValue::from_str(&t).ok()))
            .unwrap_or_else(|| HeaderValue::from_static(DEFAULT_CONTENT_TYPE));
        // What the stream will yield: the rest of the resource from `offset`.
        let expected = size.and_then(|size| size.checked_sub(offset));

        let progress = Arc::new(Progress::default());
        let body = Counting {
            inner: stream,
            progress: Arc::clone(&progress),
            expected,
            done: false,
        };
        let mut request = self
            .client
            .request(self.method.clone(), url.clone())
            .headers(self.endpoint.headers.clone())
            .header(CONTENT_TYPE, content_type);
        if let Some(length) = expected {
            request = request.header(CONTENT_LENGTH, length);
        }
        let result = request.body(Body::wrap_stream(body)).send().await;

        // A failing input makes the request fail too: report the input's error, not that.
        if let Some(error) = progress.take_error() {
            return Err(error);
        }
        let response = result.map_err(|e| request_error(what, url, &e))?;
        if !response.status().is_success() {
            return Err(status_error(what, url, response).await);
        }
        drain(response).await;
        let sent = progress.bytes();
        tracing::debug!(url = %crate::endpoint::display_url(url), sent, offset, "HTTP sink done");
        Ok(sent)
    }
}
