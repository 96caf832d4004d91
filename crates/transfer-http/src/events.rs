//! Event-stream sources: a streaming `GET` of server-sent events or NDJSON, yielding one chunk
//! per event and resumed after the last event's id.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use dataplane_spi::{
    ByteStream, DataSource, ResourceAddress, SourceStream, TransferError, HTTP_DATA_TYPE,
};
use futures::StreamExt;
use reqwest::header::{HeaderName, HeaderValue, ACCEPT, CACHE_CONTROL, CONTENT_TYPE};
use reqwest::Client;

use crate::endpoint::{
    display_url, string_property, Endpoint, CURSOR_PARAM_PROPERTY, EVENT_STREAM_PROPERTY,
    ID_FIELD_PROPERTY,
};
use crate::errors::status_error;
use crate::event_decoder::{Decoded, Decoder};
use crate::source::{idle_body, send_get};

/// The query parameter carrying the cursor of `ndjson` event streams when the address names none.
pub const DEFAULT_NDJSON_CURSOR_PARAM: &str = "after";
/// The id field of `ndjson` events when the address names none.
pub const DEFAULT_ID_FIELD: &str = "id";
/// Media type of server-sent events.
pub const EVENT_STREAM_CONTENT_TYPE: &str = "text/event-stream";
/// Media type of NDJSON event streams.
pub const NDJSON_CONTENT_TYPE: &str = "application/x-ndjson";

const LAST_EVENT_ID: HeaderName = HeaderName::from_static("last-event-id");

/// The kind of event stream an address designates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventStreamFormat {
    /// `text/event-stream`, resumed with `Last-Event-ID` (and `cursorParam`, if given).
    Sse,
    /// One JSON object a line, resumed with the `cursorParam` query parameter.
    Ndjson,
}

/// The event-stream properties of an address.
#[derive(Debug, Clone)]
pub(crate) struct EventStreamConfig {
    format: EventStreamFormat,
    cursor_param: Option<String>,
    id_field: String,
}

impl EventStreamConfig {
    /// `None` when the address has no `eventStream` (a plain byte source).
    pub(crate) fn from_address(address: &ResourceAddress) -> Result<Option<Self>, TransferError> {
        let Some(kind) = string_property(address, EVENT_STREAM_PROPERTY)? else {
            return Ok(None);
        };
        let format = match kind.trim() {
            k if k.eq_ignore_ascii_case("sse") => EventStreamFormat::Sse,
            k if k.eq_ignore_ascii_case("ndjson") => EventStreamFormat::Ndjson,
            other => {
                return Err(TransferError::InvalidAddress(format!(
                    "\"{EVENT_STREAM_PROPERTY}\" of an {HTTP_DATA_TYPE} address must be \"sse\" or \"ndjson\", not '{other}'"
                )))
            }
        };
        let cursor_param = string_property(address, CURSOR_PARAM_PROPERTY)?
            .map(|p| p.trim().to_owned())
            .or_else(|| {
                (format == EventStreamFormat::Ndjson)
                    .then(|| DEFAULT_NDJSON_CURSOR_PARAM.to_owned())
            });
        let id_field = string_property(address, ID_FIELD_PROPERTY)?
            .unwrap_or(DEFAULT_ID_FIELD)
            .to_owned();
        Ok(Some(Self {
            format,
            cursor_param,
            id_field,
        }))
    }
}

/// The cursor shared by an [`HttpEventSource`] and the stream it opened last.
#[derive(Debug, Default)]
struct CursorSlot {
    /// Counts the opens: a stream only records into the slot of its own open.
    generation: u64,
    cursor: Option<String>,
}

type SharedCursor = Arc<Mutex<CursorSlot>>;

fn lock(cursor: &SharedCursor) -> std::sync::MutexGuard<'_, CursorSlot> {
    cursor.lock().unwrap_or_else(PoisonError::into_inner)
}

/// An event stream to read with `GET`: server-sent events or NDJSON, one chunk per event, and
/// [`DataSource::cursor`] the id of the last event yielded. Created by
/// [`crate::HttpSourceFactory`] for addresses with an `eventStream`.
#[derive(Debug)]
pub struct HttpEventSource {
    client: Client,
    endpoint: Endpoint,
    config: EventStreamConfig,
    idle_timeout: Duration,
    cursor: SharedCursor,
}

impl HttpEventSource {
    pub(crate) fn new(
        client: Client,
        endpoint: Endpoint,
        config: EventStreamConfig,
        idle_timeout: Duration,
    ) -> Self {
        Self {
            client,
            endpoint,
            config,
            idle_timeout,
            cursor: SharedCursor::default(),
        }
    }

    /// The kind of event stream read.
    pub fn format(&self) -> EventStreamFormat {
        self.config.format
    }
}

/// The state of an opened event stream.
struct Reading {
    body: ByteStream,
    decoder: Decoder,
    ready: Decoded,
    /// The body ended or failed: only `ready` is left.
    ended: bool,
    cursor: SharedCursor,
    generation: u64,
}

impl Reading {
    fn record(&self, id: String) {
        let mut slot = lock(&self.cursor);
        if slot.generation == self.generation {
            slot.cursor = Some(id);
        }
    }

    /// The next event (as one chunk), recording its id as the cursor as it is handed out.
    async fn next(&mut self) -> Option<Result<bytes::Bytes, TransferError>> {
        loop {
            match self.ready.pop_front() {
                Some(Ok(event)) => {
                    if let Some(id) = event.id {
                        self.record(id);
                    }
                    return Some(Ok(event.chunk));
                }
                Some(Err(error)) => {
                    self.ready.clear();
                    self.ended = true;
                    return Some(Err(error));
                }
                None if self.ended => return None,
                None => {}
            }
            match self.body.next().await {
                Some(Ok(bytes)) => self.decoder.feed(&bytes, &mut self.ready),
                Some(Err(error)) => {
                    self.ended = true;
                    return Some(Err(error));
                }
                None => {
                    self.ended = true;
                    self.decoder.finish(&mut self.ready);
                }
            }
        }
    }
}

/// Whether `content_type` is `expected`, parameters aside.
fn is_media_type(content_type: &str, expected: &str) -> bool {
    content_type
        .split(';')
        .next()
        .is_some_and(|essence| essence.trim().eq_ignore_ascii_case(expected))
}

#[async_trait]
impl DataSource for HttpEventSource {
    async fn open(&self, offset: u64) -> Result<SourceStream, TransferError> {
        self.open_after(offset, None).await
    }

    /// `GET` of the stream; after `cursor` (an event id) when given: `Last-Event-ID` for
    /// server-sent events, and the `cursorParam` query parameter when there is one. The offset
    /// is ignored: the stream's `offset` is 0.
    async fn open_after(
        &self,
        offset: u64,
        cursor: Option<&str>,
    ) -> Result<SourceStream, TransferError> {
        let generation = {
            let mut slot = lock(&self.cursor);
            slot.generation += 1;
            slot.cursor = cursor.map(str::to_owned);
            slot.generation
        };
        let sse = self.config.format == EventStreamFormat::Sse;
        let content_type = if sse {
            EVENT_STREAM_CONTENT_TYPE
        } else {
            NDJSON_CONTENT_TYPE
        };

        let mut url = self.endpoint.url.clone();
        if let (Some(cursor), Some(param)) = (cursor, self.config.cursor_param.as_deref()) {
            url.query_pairs_mut().append_pair(param, cursor);
        }
        let mut headers = self.endpoint.headers.clone();
        if let (true, Some(cursor)) = (sse, cursor) {
            let value = HeaderValue::from_bytes(cursor.as_bytes()).map_err(|_| {
                TransferError::Rejected(format!(
                    "the event id '{}' cannot be sent as Last-Event-ID",
                    cursor.escape_debug()
                ))
            })?;
            headers.insert(LAST_EVENT_ID, value);
        }
        // The address's headers may override Accept, not the cursor.
        let request = self
            .client
            .get(url.clone())
            .header(ACCEPT, content_type)
            .header(CACHE_CONTROL, "no-cache")
            .headers(headers);
        let response = send_get(request, &url, self.idle_timeout).await?;
        if !response.status().is_success() {
            return Err(status_error("GET", &url, response).await);
        }
        if sse {
            if let Some(received) = response
                .headers()
                .get(CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .filter(|t| !is_media_type(t, EVENT_STREAM_CONTENT_TYPE))
            {
                return Err(TransferError::Rejected(format!(
                    "GET {} answered '{received}', not {EVENT_STREAM_CONTENT_TYPE}",
                    display_url(&url)
                )));
            }
        }
        tracing::debug!(url = %display_url(&url), offset, cursor, "event stream opened");

        let reading = Reading {
            body: idle_body(response, &url, self.idle_timeout),
            decoder: if sse {
                Decoder::sse()
            } else {
                Decoder::ndjson(&self.config.id_field)
            },
            ready: VecDeque::new(),
            ended: false,
            cursor: Arc::clone(&self.cursor),
            generation,
        };
        let stream = futures::stream::unfold(reading, |mut reading| async move {
            let item = reading.next().await?;
            Some((item, reading))
        });
        Ok(SourceStream {
            stream: stream.boxed(),
            size: None,
            content_type: Some(content_type.to_owned()),
            offset: 0,
        })
    }

    fn cursor(&self) -> Option<String> {
        lock(&self.cursor).cursor.clone()
    }
}
