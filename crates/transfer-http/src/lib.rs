//! HTTP data source and sink for the dpf data plane: address type
//! [`HttpData`](dataplane_spi::HTTP_DATA_TYPE). Sources download with `GET` (resumed with
//! `Range`) or read event streams (server-sent events, NDJSON; resumed after the last event
//! id); sinks upload with `POST`/`PUT` and resume as tus uploads.
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
//! | `resumable` | sinks only: `tus` when the destination is a tus 1.0 upload (dpf's ingest endpoint says so in its `DataAddress`): checkpointed segments from the first byte; `none` or absent: one plain upload on the first attempt |
//! | `contentType` | sinks only: the upload's `Content-Type`; else the source's content type, else `application/octet-stream` |
//! | `eventStream` | sources only: the resource is an event stream, `sse` (server-sent events) or `ndjson` (one JSON object a line); see [Event streams](#event-streams) |
//! | `cursorParam` | event streams only: the query parameter that carries the cursor (the last event id) when resuming; default `after` for `ndjson`, none for `sse` |
//! | `idField` | `ndjson` only: the field holding an event's id (a string, or a number taken as its text); default `id` |
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
//! - `416` whose `Content-Range` total equals `offset`: nothing is left, an empty stream; a
//!   `416` without a total (a server refusing ranges, `Accept-Ranges: none`) or with a total
//!   above `offset`: the whole resource from 0, as for a `200`;
//! - `size` is otherwise the `Content-Length`, if any: a body without one (chunked, or ending
//!   when the connection closes) is streamed to its end with `size` unknown.
//!
//! The body is passed on as the server sent it: a `Content-Encoding` (`gzip` …) is never
//! decoded (the transfer client has no decompression and sends no `Accept-Encoding`). A `GET`
//! whose connection closes before an answer (a keep-alive connection the server closed as the
//! request went out) is sent once more on a fresh connection.
//!
//! The response and every chunk must arrive within an idle timeout
//! ([`DEFAULT_IDLE_TIMEOUT`], see [`HttpSourceFactory::with_idle_timeout`]); there is no limit
//! on a download's total duration.
//!
//! # Event streams
//!
//! With an `eventStream` property, [`HttpSourceFactory`] creates an [`HttpEventSource`]
//! instead: a `GET` (with `Accept: text/event-stream` or `application/x-ndjson`, which the
//! address's `headers` may override) whose body is decoded incrementally, whatever the network
//! chunk sizes, and yielded as **one chunk per event**, so chunk boundaries are event
//! boundaries:
//!
//! - `sse`: events are separated by a blank line (`\n`, `\r\n` or `\r` line ends); `id`,
//!   `event` and `data` fields are kept (several `data` lines join with `\n`), comments (`:`),
//!   `retry` and unknown fields are dropped, and so is an event without `data` (as browsers
//!   do). Each event is re-serialised canonically as `id: <id>\n` (if it has one),
//!   `event: <type>\n` (if it has one), one `data: <line>\n` per data line, then `\n`. The
//!   response must be `text/event-stream` when it names a content type; an event unfinished when
//!   the server closes is dropped.
//! - `ndjson`: each non-blank line must be a JSON object (else [`TransferError::Rejected`]) and
//!   is yielded as the line plus `\n`; its id is the `idField`. A last line without newline
//!   counts.
//!
//! [`DataSource::cursor`](dataplane_spi::DataSource::cursor) is the id of the last event the
//! stream has yielded (events without an id keep the previous one; before the first, the
//! cursor the stream was opened after). `open_after(_, Some(cursor))` resumes after that
//! event: `Last-Event-ID: <cursor>` for `sse`, plus `?<cursorParam>=<cursor>` (appended to the
//! query) when there is a `cursorParam`, which `ndjson` always has. The byte offset is ignored:
//! the stream's `offset` is 0, its `size` unknown, its content type `text/event-stream` or
//! `application/x-ndjson`. The stream ends when the server closes the response; the idle
//! timeout applies as for byte sources (comments sent as keep-alives count as data). An event
//! (or line) larger than [`MAX_EVENT_SIZE`] fails the stream.
//!
//! # Sink
//!
//! [`HttpSinkFactory`] creates [`HttpSink`]s. `write(input)` streams the input as it is
//! produced (never buffered whole), with `Content-Length: size - offset` when the input's size
//! (that of the whole resource) is known — many servers refuse chunked uploads (411) — checked
//! while streaming: a source that yields more or less fails the upload; chunked only when the
//! size is unknown. It returns the number of bytes streamed once a `2xx` response arrived; at
//! most 64 KiB of that response are read. An error of the input stream is returned as is. An
//! interim `100 Continue` (when the address's `headers` ask for one with `Expect`) is skipped;
//! a final answer that arrives before the body was read (`401`, `411`, `413` …) is reported
//! with its status. An upload whose connection closes before anything of the input was sent
//! (a stale keep-alive connection) is sent once more on a fresh connection.
//!
//! - `offset == 0`: one `POST`/`PUT` that replaces the object.
//! - `offset > 0`: a [tus 1.0](https://tus.io/protocols/resumable-upload) core `PATCH` with
//!   `Tus-Resumable: 1.0.0`, `Upload-Offset: <offset>` and `Content-Type:
//!   application/offset+octet-stream`, appending to the upload. A `409` is
//!   [`TransferError::Rejected`] `offset mismatch: receiver is at <its Upload-Offset>`.
//!
//! The first attempt of a flow asks the receiver nothing
//! ([`DataSink::first_point`](dataplane_spi::DataSink::first_point)): `Some(0)` when the
//! address says `resumable: tus`, else `None` — one plain `POST`/`PUT`, no `HEAD` probe. A
//! later attempt calls `resume_point`, which asks the receiver with `HEAD` (and
//! `Tus-Resumable: 1.0.0`): only a tus answer — a `2xx` with `Tus-Resumable` and
//! `Upload-Offset` — gives an offset, whatever the checkpoint (the next write continues
//! there); any other answer — `404`, `405`, `501`, `400`, `403`, a `2xx` without those
//! headers, a connection closed without an answer — gives `None`: not resumable, the transfer
//! restarts from zero with a plain upload. A `401` while an `authorization` is configured is
//! [`TransferError::Rejected`] (the credential was refused); failing to connect, timeouts,
//! `408`, `429` and `5xx` other than `501` are [`TransferError::Transient`]. See
//! `docs/interop.md` for how common servers answer.
//!
//! # Errors
//!
//! `4xx` responses (except `408` and `429`) and redirects that were not followed are
//! [`TransferError::Rejected`], with the status, the URL (without query) and the start of the
//! response body; `5xx`, `408`, `429`, connection failures, timeouts and broken bodies are
//! [`TransferError::Transient`].
//!
//! # Client and address policy
//!
//! Both factories take a shared [`reqwest::Client`] ([`HttpSourceFactory::new`],
//! [`HttpSinkFactory::new`]); their `Default` uses [`default_client`]. Give them the data
//! plane's [`AddressPolicy`] (`with_policy`) and a client from [`client_for`] with the same
//! policy: every `baseUrl` is then parsed and checked when a source or sink is created (scheme,
//! HTTPS, IP literals against the denied networks, the allow-list), names are checked on the
//! addresses they resolve to when connecting, and redirects are never followed (a `3xx` is
//! [`TransferError::Rejected`]).
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
mod event_decoder;
mod events;
mod sink;
mod source;

use std::time::Duration;

pub use address_policy::AddressPolicy;
use reqwest::Client;

#[doc(no_inline)]
pub use dataplane_spi::TransferError;
pub use endpoint::{
    AUTHORIZATION_PROPERTY, AUTH_TYPE_PROPERTY, BASE_URL_PROPERTY, CONTENT_TYPE_PROPERTY,
    CURSOR_PARAM_PROPERTY, EVENT_STREAM_PROPERTY, HEADERS_PROPERTY, ID_FIELD_PROPERTY,
    METHOD_PROPERTY, PATH_PROPERTY, RESUMABLE_PROPERTY,
};
pub use event_decoder::MAX_EVENT_SIZE;
pub use events::{
    EventStreamFormat, HttpEventSource, DEFAULT_ID_FIELD, DEFAULT_NDJSON_CURSOR_PARAM,
    EVENT_STREAM_CONTENT_TYPE, NDJSON_CONTENT_TYPE,
};
pub use sink::{
    HttpSink, HttpSinkFactory, DEFAULT_CONTENT_TYPE, TUS_PATCH_CONTENT_TYPE, TUS_VERSION,
};
pub use source::{HttpSource, HttpSourceFactory};

/// Connect timeout of [`default_client`].
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Default idle timeout of sources: the longest wait for the response or for the next chunk.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// A client for transfers under `policy` ([`AddressPolicy::client_builder`]: names resolved
/// and checked on their addresses, no redirects, no environment proxies), connect timeout
/// [`CONNECT_TIMEOUT`], no total timeout (transfers can be long), `TCP_NODELAY`, TCP
/// keep-alive (to notice dead peers during long transfers).
///
/// # Errors
/// When the client cannot be built (e.g. the TLS backend fails to initialise).
pub fn client_for(policy: &AddressPolicy) -> reqwest::Result<Client> {
    transfer_settings(policy.client_builder()).build()
}

/// The transfer settings of [`client_for`] applied to `builder` (e.g. one that already trusts
/// an extra CA).
pub fn transfer_settings(builder: reqwest::ClientBuilder) -> reqwest::ClientBuilder {
    builder
        .connect_timeout(CONNECT_TIMEOUT)
        .tcp_nodelay(true)
        .tcp_keepalive(Some(Duration::from_secs(30)))
}

/// [`client_for`] with [`AddressPolicy::unrestricted`]: every network, but still no redirects.
///
/// # Errors
/// When the client cannot be built (e.g. the TLS backend fails to initialise).
pub fn default_client() -> reqwest::Result<Client> {
    client_for(&AddressPolicy::unrestricted())
}

/// [`default_client`], or reqwest's default one should that fail.
fn default_client_or_fallback() -> Client {
    default_client().unwrap_or_else(|e| {
        tracing::warn!(error = %e, "cannot build the transfer HTTP client, using reqwest's default");
        Client::new()
    })
}
