//! HTTP data source and sink for the dpf data plane: address type
//! [`HttpData`](dataplane_spi::HTTP_DATA_TYPE).
//!
//! # Address properties
//!
//! | property | meaning |
//! | --- | --- |
//! | `baseUrl` | required; an `http` or `https` URL with a host |
//! | `path` | optional; appended to the path of `baseUrl` with one `/` (the query is kept) |
//! | `authorization` | optional credential, sent in the `Authorization` header |
//! | `authType` | `bearer` (default: `Bearer <authorization>`) or `raw` (the value as is) |
//! | `headers` | optional extra headers: a JSON object of names to strings (or a string holding such an object); `Host`, `Content-Length`, `Transfer-Encoding` and `Connection` are refused |
//! | `method` | sinks only: `POST` (default) or `PUT` |
//! | `contentType` | sinks only: the upload's `Content-Type`; else the source's content type, else `application/octet-stream` |
//!
//! A malformed address is [`TransferError::InvalidAddress`] at `create`.
//!
//! # Source
//!
//! [`HttpSourceFactory`] creates [`HttpSource`]s. `open(offset)` sends a `GET` (with
//! `Range: bytes=<offset>-` when `offset > 0`) and streams the body as it arrives:
//!
//! - `206` with a `Content-Range` starting at `offset` and running to the end: the stream starts
//!   at `offset`, `size` is the `Content-Range` total;
//! - `200` (the server ignored the `Range`), or a `206` that is not the requested rest: the
//!   stream starts at 0 and `offset` is 0, so the caller knows the transfer restarted;
//! - `416` whose `Content-Range` total equals `offset`: nothing is left, an empty stream;
//! - `size` is otherwise the `Content-Length`, if any.
//!
//! The response and every chunk must arrive within an idle timeout
//! ([`DEFAULT_IDLE_TIMEOUT`], see [`HttpSourceFactory::with_idle_timeout`]); there is no limit
//! on a download's total duration.
//!
//! # Sink
//!
//! [`HttpSinkFactory`] creates [`HttpSink`]s. `write(input)` sends one `POST`/`PUT` whose body
//! streams the input as it is produced (never buffered whole), with `Content-Length:
//! size - offset` when the input's size is known (checked while streaming: a source that yields
//! more or less fails the upload) and chunked otherwise. It returns the number of bytes
//! streamed once a `2xx` response arrived; at most 64 KiB of that response are read. An error
//! of the input stream is returned as is. The sink sends what it is given: a resumed transfer
//! (`offset > 0`) uploads only the rest, and it is up to the receiver to know what that means.
//!
//! # Errors
//!
//! `4xx` responses (except `408` and `429`) and redirects that were not followed are
//! [`TransferError::Rejected`], with the status, the URL (without query) and the start of the
//! response body; `5xx`, `408`, `429`, connection failures, timeouts and broken bodies are
//! [`TransferError::Transient`].
//!
//! # Client
//!
//! Both factories take a shared [`reqwest::Client`] ([`HttpSourceFactory::new`],
//! [`HttpSinkFactory::new`]); their `Default` uses [`default_client`].
//!
//! ```no_run
//! # async fn demo() -> Result<(), dataplane_spi::TransferError> {
//! use dataplane_spi::{DataSinkFactory, DataSourceFactory, ResourceAddress};
//! use transfer_http::{default_client, HttpSinkFactory, HttpSourceFactory};
//!
//! let client = default_client().expect("an HTTP client");
//! let sources = HttpSourceFactory::new(client.clone());
//! let sinks = HttpSinkFactory::new(client);
//!
//! let mut to = ResourceAddress::http("https://consumer.example/upload");
//! to.set("authorization", "token-123");
//! let source = sources.create(&ResourceAddress::http("https://provider.example/data.csv"))?;
//! let sent = sinks.create(&to)?.write(source.open(0).await?).await?;
//! # let _ = sent;
//! # Ok(())
//! # }
//! ```

mod endpoint;
mod errors;
mod sink;
mod source;

use std::time::Duration;

use reqwest::Client;

#[doc(no_inline)]
pub use dataplane_spi::TransferError;
pub use endpoint::{
    AUTHORIZATION_PROPERTY, AUTH_TYPE_PROPERTY, BASE_URL_PROPERTY, CONTENT_TYPE_PROPERTY,
    HEADERS_PROPERTY, METHOD_PROPERTY, PATH_PROPERTY,
};
pub use sink::{HttpSink, HttpSinkFactory, DEFAULT_CONTENT_TYPE};
pub use source::{HttpSource, HttpSourceFactory};

/// Connect timeout of [`default_client`].
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Default idle timeout of sources: the longest wait for the response or for the next chunk.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// A client for transfers: connect timeout [`CONNECT_TIMEOUT`], no total timeout (transfers can
/// be long), `TCP_NODELAY`, TCP keep-alive (to notice dead peers during long transfers).
///
/// # Errors
/// When the client cannot be built (e.g. the TLS backend fails to initialise).
pub fn default_client() -> reqwest::Result<Client> {
    Client::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .tcp_nodelay(true)
        .tcp_keepalive(Some(Duration::from_secs(30)))
        .build()
}

/// [`default_client`], or reqwest's default one should that fail.
fn default_client_or_fallback() -> Client {
    default_client().unwrap_or_else(|e| {
        tracing::warn!(error = %e, "cannot build the transfer HTTP client, using reqwest's default");
        Client::new()
    })
}
