//! The HTTP sink: one streaming `POST` or `PUT` of everything the input yields, or a tus
//! `PATCH` appending it at an offset. The tus `HEAD` probe is only sent on later attempts of a
//! flow, and any answer that is not a tus one means "restart from zero with a plain upload".

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
use reqwest::header::{HeaderName, HeaderValue, AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE};
use reqwest::{Body, Client, Method, RequestBuilder, Response, StatusCode};

use crate::endpoint::{content_type, display_url, sink_method, tus_declared, Endpoint};
use crate::errors::{chain, drain, is_retryable_status, request_error, status_error};
use address_policy::AddressPolicy;

use crate::{default_client_or_fallback, DEFAULT_IDLE_TIMEOUT};

/// Content type of uploads when neither the address nor the source tells one.
pub const DEFAULT_CONTENT_TYPE: &str = "application/octet-stream";

/// Creates [`HttpSink`]s for `HttpData` addresses, all sharing one [`Client`].
#[derive(Debug, Clone)]
pub struct HttpSinkFactory {
    client: Client,
    policy: AddressPolicy,
}

impl HttpSinkFactory {
    /// A factory whose sinks use `client` (clone one client for all factories: it holds the
    /// connection pool).
    pub fn new(client: Client) -> Self {
        Self {
            client,
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
            endpoint: Endpoint::from_address(address, &self.policy)?,
            method: sink_method(address)?,
            content_type: content_type(address)?,
            tus: tus_declared(address)?,
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
    /// The address says it is a tus upload (`resumable: tus`).
    tus: bool,
}

/// What a [`Counting`] stream saw, shared with the sink.
#[derive(Debug, Default)]
struct Progress {
    bytes: AtomicU64,
    /// Whether the input was consumed at all (a chunk, its end or an error was taken from it):
    /// until then the request can be sent again on a fresh connection.
    pulled: std::sync::atomic::AtomicBool,
    /// The error that ended the input, to be returned instead of the HTTP client's.
    error: Mutex<Option<TransferError>>,
}

impl Progress {
    fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Acquire)
    }

    fn pulled(&self) -> bool {
        self.pulled.load(Ordering::Acquire)
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

/// The input of an upload, shared between the request bodies of its tries.
type InputSlot = Arc<Mutex<Option<ByteStream>>>;

/// The request body: the input stream, counted, checked against the announced length, with
/// its error kept aside for the sink. The stream stays in a shared slot, so that a request
/// that failed before taking anything from it can be sent again.
struct Counting {
    inner: InputSlot,
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
        let polled = {
            let mut slot = this.inner.lock().unwrap_or_else(PoisonError::into_inner);
            match slot.as_mut() {
                Some(inner) => inner.as_mut().poll_next(cx),
                // Taken by a later try: this body belongs to a request that failed.
                None => Poll::Ready(None),
            }
        };
        if polled.is_ready() {
            this.progress.pulled.store(true, Ordering::Release);
        }
        match polled {
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

/// The tus protocol version spoken (core protocol only).
pub const TUS_VERSION: &str = "1.0.0";
/// Content type of tus `PATCH` requests.
pub const TUS_PATCH_CONTENT_TYPE: &str = "application/offset+octet-stream";

const TUS_RESUMABLE: HeaderName = HeaderName::from_static("tus-resumable");
const UPLOAD_OFFSET: HeaderName = HeaderName::from_static("upload-offset");

/// The `Upload-Offset` of a response, if it has a valid one.
fn upload_offset(response: &Response) -> Option<u64> {
    response
        .headers()
        .get(UPLOAD_OFFSET)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
}

/// An upload whose body is sent as it streams: the request and what it carries.
struct Upload {
    what: &'static str,
    request: RequestBuilder,
    stream: ByteStream,
    /// The bytes the stream must yield, when known (sent as `Content-Length`).
    expected: Option<u64>,
}

impl HttpSink {
    /// Sends `upload`, its body streamed from its input: the response and the bytes streamed,
    /// or the input's own error when the input failed.
    async fn send(&self, upload: Upload) -> Result<(Response, u64), TransferError> {
        let Upload {
            what,
            mut request,
            stream,
            expected,
        } = upload;
        // The size is known: `Content-Length` (many servers and proxies refuse chunked
        // uploads); chunked only when it is not.
        if let Some(length) = expected {
            request = request.header(CONTENT_LENGTH, length);
        }
        let mut slot: InputSlot = Arc::new(Mutex::new(Some(stream)));
        let mut tries = 0;
        loop {
            tries += 1;
            if tries > 1 {
                // A new slot: the body of the failed request, should it still be polled, ends.
                let input = slot.lock().unwrap_or_else(PoisonError::into_inner).take();
                slot = Arc::new(Mutex::new(input));
            }
            let progress = Arc::new(Progress::default());
            let body = Counting {
                inner: Arc::clone(&slot),
                progress: Arc::clone(&progress),
                expected,
                done: false,
            };
            // No body was set on `request`, so it can always be cloned.
            let attempt = request.try_clone().ok_or_else(|| {
                TransferError::Transient(format!("{what}: request not cloneable"))
            })?;
            let result = attempt.body(Body::wrap_stream(body)).send().await;

            // A failing input makes the request fail too: report the input's error, not that.
            if let Some(error) = progress.take_error() {
                return Err(error);
            }
            match result {
                Ok(response) => return Ok((response, progress.bytes())),
                // A pooled keep-alive connection the server had closed: nothing of the input
                // was taken, so the request goes again on a fresh connection (once).
                Err(e)
                    if tries == 1
                        && !progress.pulled()
                        && !e.is_connect()
                        && !e.is_timeout()
                        && !e.is_builder()
                        && !e.is_redirect() =>
                {
                    tracing::debug!(url = %display_url(&self.endpoint.url), error = %chain(&e), "{what} failed before sending any data: sending it again");
                }
                Err(e) => return Err(request_error(what, &self.endpoint.url, &e)),
            }
        }
    }

    /// A `POST`/`PUT` of the whole input, replacing the object.
    async fn replace(&self, input: SourceStream) -> Result<u64, TransferError> {
        let SourceStream {
            stream,
            size,
            content_type,
            offset,
        } = input;
        let url = &self.endpoint.url;
        let what = if self.method == Method::PUT {
            "PUT"
        } else {
            "POST"
        };
        let content_type = self
            .content_type
            .clone()
            .or_else(|| content_type.and_then(|t| HeaderValue::from_str(&t).ok()))
            .unwrap_or_else(|| HeaderValue::from_static(DEFAULT_CONTENT_TYPE));
        let request = self
            .client
            .request(self.method.clone(), url.clone())
            .headers(self.endpoint.headers.clone())
            .header(CONTENT_TYPE, content_type);
        let (response, sent) = self
            .send(Upload {
                what,
                request,
                stream,
                // What the stream will yield: the rest of the resource from `offset`.
                expected: size.and_then(|size| size.checked_sub(offset)),
            })
            .await?;
        if !response.status().is_success() {
            return Err(status_error(what, url, response).await);
        }
        drain(response).await;
        tracing::debug!(url = %display_url(url), sent, "HTTP upload done");
        Ok(sent)
    }

    /// A tus `PATCH` appending the input at `input.offset`.
    async fn append(&self, input: SourceStream) -> Result<u64, TransferError> {
        let SourceStream {
            stream,
            size,
            offset,
            ..
        } = input;
        let url = &self.endpoint.url;
        let mut headers = self.endpoint.headers.clone();
        headers.insert(TUS_RESUMABLE, HeaderValue::from_static(TUS_VERSION));
        headers.insert(UPLOAD_OFFSET, HeaderValue::from(offset));
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_static(TUS_PATCH_CONTENT_TYPE),
        );
        let request = self
            .client
            .request(Method::PATCH, url.clone())
            .headers(headers);
        let (response, sent) = self
            .send(Upload {
                what: "PATCH",
                request,
                stream,
                expected: size.and_then(|size| size.checked_sub(offset)),
            })
            .await?;
        let status = response.status();
        if status == StatusCode::CONFLICT {
            let at = upload_offset(&response)
                .map_or_else(|| "an unknown offset".to_owned(), |at| at.to_string());
            drain(response).await;
            return Err(TransferError::Rejected(format!(
                "offset mismatch: receiver is at {at} (PATCH {} at Upload-Offset {offset} answered {status})",
                display_url(url)
            )));
        }
        if !status.is_success() {
            return Err(status_error("PATCH", url, response).await);
        }
        let reached = upload_offset(&response);
        drain(response).await;
        if let Some(reached) = reached.filter(|r| *r != offset + sent) {
            tracing::warn!(
                url = %display_url(url),
                offset,
                sent,
                reached,
                "the receiver's Upload-Offset after the PATCH is not offset + bytes sent"
            );
        }
        tracing::debug!(url = %display_url(url), sent, offset, "tus PATCH done");
        Ok(sent)
    }
}

#[async_trait]
impl DataSink for HttpSink {
    /// Offset 0: one `POST`/`PUT` replacing the object; else a tus `PATCH` at the offset.
    async fn write(&self, input: SourceStream) -> Result<u64, TransferError> {
        if input.offset == 0 {
            self.replace(input).await
        } else {
            self.append(input).await
        }
    }

    /// The first attempt of a flow sends no probe: `Some(0)` (segments from the first byte)
    /// when the address says it is a tus upload, else `None` (one plain upload).
    async fn first_point(&self) -> Result<Option<u64>, TransferError> {
        Ok(self.tus.then_some(0))
    }

    /// The receiver's tus `Upload-Offset`, asked with `HEAD`. Only a tus answer (a `2xx` with
    /// `Tus-Resumable` and `Upload-Offset`) gives an offset; anything else — `404`, `405`,
    /// `501`, `400`, `403`, a `2xx` without those headers, a connection closed without an
    /// answer — is `None`: no resumable upload here, the transfer restarts from zero with a
    /// plain upload. A `401` while an `authorization` is configured is
    /// [`TransferError::Rejected`] (the credential was refused); failing to connect, timeouts,
    /// `408`, `429` and `5xx` other than `501` are [`TransferError::Transient`].
    async fn resume_point(&self, checkpoint: u64) -> Result<Option<u64>, TransferError> {
        let url = &self.endpoint.url;
        let mut headers = self.endpoint.headers.clone();
        headers.insert(TUS_RESUMABLE, HeaderValue::from_static(TUS_VERSION));
        let request = self.client.head(url.clone()).headers(headers).send();
        let response = match tokio::time::timeout(DEFAULT_IDLE_TIMEOUT, request).await {
            Ok(Ok(response)) => response,
            Ok(Err(e)) if e.is_connect() || e.is_timeout() || e.is_builder() || e.is_redirect() => {
                return Err(request_error("HEAD", url, &e))
            }
            Ok(Err(e)) => {
                // Connected, but the server closed the connection instead of answering (some
                // do so for methods they do not handle): not a tus upload.
                tracing::info!(url = %display_url(url), error = %chain(&e), "HEAD got no answer: not a tus upload, restarting from zero");
                return Ok(None);
            }
            Err(_) => {
                return Err(TransferError::Transient(format!(
                    "HEAD {} got no response within {DEFAULT_IDLE_TIMEOUT:?}",
                    display_url(url)
                )))
            }
        };
        let status = response.status();
        if status == StatusCode::UNAUTHORIZED && self.endpoint.headers.contains_key(AUTHORIZATION) {
            let error = status_error("HEAD", url, response).await;
            return Err(TransferError::Rejected(format!(
                "the receiver refused the configured authorization: {}",
                error_text(&error)
            )));
        }
        if is_retryable_status(status) && status != StatusCode::NOT_IMPLEMENTED {
            return Err(status_error("HEAD", url, response).await);
        }
        let tus = status.is_success() && response.headers().contains_key(TUS_RESUMABLE);
        let offset = if tus { upload_offset(&response) } else { None };
        drain(response).await;
        if offset.is_none() {
            tracing::info!(url = %display_url(url), %status, checkpoint, "HEAD: not a tus upload, restarting from zero with a plain upload");
        } else {
            tracing::debug!(url = %display_url(url), %status, checkpoint, ?offset, "tus offset asked");
        }
        Ok(offset)
    }
}

/// The message of a [`TransferError`] without its kind prefix.
fn error_text(error: &TransferError) -> &str {
    match error {
        TransferError::Unsupported(m)
        | TransferError::InvalidAddress(m)
        | TransferError::Rejected(m)
        | TransferError::Transient(m) => m,
    }
}
