//! Streaming sources and sinks, and the registry of their factories by address type.
//!
//! A transfer is `sink.write(source.open(offset))`: the source yields a bounded stream of
//! chunks, the sink pulls from it, so backpressure and cancellation (dropping the future) come
//! for free and no transfer is ever held in memory whole.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::pin::Pin;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use futures::Stream;

use crate::ResourceAddress;

/// Failures of a transfer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransferError {
    /// No factory for this address type.
    #[error("unsupported address type '{0}'")]
    Unsupported(String),
    /// The address lacks something or is malformed.
    #[error("invalid address: {0}")]
    InvalidAddress(String),
    /// The remote side refused for good (e.g. HTTP 4xx, missing file): retrying will not help.
    #[error("rejected: {0}")]
    Rejected(String),
    /// A transient failure (I/O, connection, HTTP 5xx/429): retrying may help.
    #[error("transfer failed: {0}")]
    Transient(String),
}

impl TransferError {
    /// Whether retrying the transfer may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Transient(_))
    }
}

/// A stream of chunks.
pub type ByteStream = Pin<Box<dyn Stream<Item = Result<Bytes, TransferError>> + Send>>;

/// An opened source: the chunks and what is known about them.
pub struct SourceStream {
    /// The data, starting at `offset`.
    pub stream: ByteStream,
    /// Total size of the resource in bytes, when known.
    pub size: Option<u64>,
    /// Media type, when known.
    pub content_type: Option<String>,
    /// Where the stream starts: the requested offset, or 0 when the source could not seek.
    pub offset: u64,
}

impl Debug for SourceStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SourceStream")
            .field("size", &self.size)
            .field("content_type", &self.content_type)
            .field("offset", &self.offset)
            .finish_non_exhaustive()
    }
}

/// Where data comes from.
#[async_trait]
pub trait DataSource: Send + Sync + Debug {
    /// Opens the resource at byte `offset` (0 = from the start).
    ///
    /// # Errors
    /// [`TransferError`]; transient ones are retried by the caller.
    async fn open(&self, offset: u64) -> Result<SourceStream, TransferError>;

    /// Opens a source that is not a byte stream (an event stream) right after `cursor`, the
    /// position of the last item already delivered (see [`DataSource::cursor`]); byte sources
    /// ignore the cursor and seek to `offset`.
    ///
    /// # Errors
    /// As [`DataSource::open`].
    async fn open_after(
        &self,
        offset: u64,
        cursor: Option<&str>,
    ) -> Result<SourceStream, TransferError> {
        let _ = cursor;
        self.open(offset).await
    }

    /// The cursor of the last chunk the opened stream has yielded (for event streams: the last
    /// event id), recorded with each checkpoint. `None` for byte sources.
    fn cursor(&self) -> Option<String> {
        None
    }
}

/// Where data goes.
#[async_trait]
pub trait DataSink: Send + Sync + Debug {
    /// Writes everything `input` yields, starting at `input.offset`, and returns once the
    /// destination acknowledged the last byte (flushed file, HTTP response received).
    /// Returns the number of bytes written.
    ///
    /// # Errors
    /// [`TransferError`]; transient ones are retried by the caller.
    async fn write(&self, input: SourceStream) -> Result<u64, TransferError>;

    /// Where an interrupted transfer to this destination can continue, given the last
    /// checkpoint: the offset the next [`DataSink::write`] may start at (a file: the checkpoint,
    /// it truncates what came after; a tus upload: the receiver's `Upload-Offset`). `None` when
    /// the sink cannot append at an offset: the transfer then restarts from zero, replacing the
    /// object. Sinks that can resume accept writes at any returned offset, one after another,
    /// which is how checkpoints are taken (each write ends with the data acknowledged).
    ///
    /// # Errors
    /// [`TransferError`] when the destination cannot be asked.
    async fn resume_point(&self, checkpoint: u64) -> Result<Option<u64>, TransferError> {
        let _ = checkpoint;
        Ok(None)
    }

    /// Where the **first** attempt of a flow writes, when the flow never wrote to this
    /// destination: `Some(0)` when the sink takes its input in segments from the start (so
    /// that checkpoints are taken from the first byte: a file, an upload known to be tus),
    /// `None` when it is written in one piece (a plain HTTP upload). There is nothing to resume
    /// yet, so a sink must not ask a remote destination here (no tus `HEAD` probe). The
    /// default is [`DataSink::resume_point`] for checkpoint 0, right for sinks that answer
    /// without a request (files).
    ///
    /// # Errors
    /// [`TransferError`] when the destination cannot be used.
    async fn first_point(&self) -> Result<Option<u64>, TransferError> {
        self.resume_point(0).await
    }

    /// Hands the sink the state it reported with the flow's last checkpoint
    /// ([`DataSink::state`]), before [`DataSink::resume_point`] is asked: a multipart upload
    /// continues the same upload from the next part. The default ignores it.
    ///
    /// # Errors
    /// [`TransferError`] when the state is unusable (the transfer then fails or restarts).
    fn restore_state(&self, state: &str) -> Result<(), TransferError> {
        let _ = state;
        Ok(())
    }

    /// The sink's state to record with the next checkpoint, taken right after a
    /// [`DataSink::write`] returned (e.g. an upload id and the acknowledged parts). `None`
    /// (the default) for sinks whose destination itself tells where to continue.
    fn state(&self) -> Option<String> {
        None
    }

    /// Whether the sink stages its data at the destination (a multipart upload) and must be
    /// driven in steps: [`DataSink::first_point`] or [`DataSink::restore_state`] before the
    /// first write, its [`DataSink::state`] recorded after each write, [`DataSink::finish`] at
    /// the end, [`DataSink::abort`] when the flow ends without completing. dpf's ingest
    /// endpoint (consumer push) carries such a sink across the uploads of a flow. The default
    /// is `false`.
    fn stages(&self) -> bool {
        false
    }

    /// Called once after the last [`DataSink::write`] of a transfer, with the position reached:
    /// a sink that stages data (a multipart upload) commits it here. The default does nothing.
    ///
    /// # Errors
    /// [`TransferError`]; transient ones are retried by the caller (from the last checkpoint).
    async fn finish(&self, position: u64) -> Result<(), TransferError> {
        let _ = position;
        Ok(())
    }

    /// Discards what an unfinished transfer staged at the destination (an incomplete multipart
    /// upload), when the flow ends without completing (terminated, failed for good). The
    /// default does nothing.
    ///
    /// # Errors
    /// [`TransferError`] when the destination could not be asked.
    async fn abort(&self) -> Result<(), TransferError> {
        Ok(())
    }
}

/// Creates sources for one address type.
pub trait DataSourceFactory: Send + Sync + Debug {
    /// The address type handled (`File`, `HttpData`, ...).
    fn type_name(&self) -> &str;

    /// A source for `address`.
    ///
    /// # Errors
    /// [`TransferError::InvalidAddress`] when a property is missing or malformed.
    fn create(&self, address: &ResourceAddress) -> Result<Box<dyn DataSource>, TransferError>;
}

/// Creates sinks for one address type.
pub trait DataSinkFactory: Send + Sync + Debug {
    /// The address type handled.
    fn type_name(&self) -> &str;

    /// A sink for `address`.
    ///
    /// # Errors
    /// [`TransferError::InvalidAddress`] when a property is missing or malformed.
    fn create(&self, address: &ResourceAddress) -> Result<Box<dyn DataSink>, TransferError>;
}

/// Source and sink factories by address type. Built with [`TransferRegistry::builder`], which
/// refuses duplicate types.
#[derive(Debug, Clone, Default)]
pub struct TransferRegistry {
    sources: BTreeMap<String, Arc<dyn DataSourceFactory>>,
    sinks: BTreeMap<String, Arc<dyn DataSinkFactory>>,
}

/// Builder of a [`TransferRegistry`].
#[derive(Debug, Default)]
pub struct TransferRegistryBuilder {
    registry: TransferRegistry,
}

impl TransferRegistryBuilder {
    /// Adds a source factory.
    ///
    /// # Errors
    /// A message when its type is registered already.
    pub fn source(mut self, factory: Arc<dyn DataSourceFactory>) -> Result<Self, String> {
        let name = factory.type_name().to_owned();
        if self
            .registry
            .sources
            .insert(name.clone(), factory)
            .is_some()
        {
            return Err(format!("a source factory for '{name}' is registered twice"));
        }
        Ok(self)
    }

    /// Adds a sink factory.
    ///
    /// # Errors
    /// A message when its type is registered already.
    pub fn sink(mut self, factory: Arc<dyn DataSinkFactory>) -> Result<Self, String> {
        let name = factory.type_name().to_owned();
        if self.registry.sinks.insert(name.clone(), factory).is_some() {
            return Err(format!("a sink factory for '{name}' is registered twice"));
        }
        Ok(self)
    }

    /// The registry.
    pub fn build(self) -> TransferRegistry {
        self.registry
    }
}

impl TransferRegistry {
    /// An empty builder.
    pub fn builder() -> TransferRegistryBuilder {
        TransferRegistryBuilder::default()
    }

    /// The registry with every source factory replaced by `wrap(factory)` (e.g. to limit
    /// what sources may yield).
    #[must_use]
    pub fn wrap_sources(
        mut self,
        wrap: impl Fn(Arc<dyn DataSourceFactory>) -> Arc<dyn DataSourceFactory>,
    ) -> Self {
        for factory in self.sources.values_mut() {
            *factory = wrap(factory.clone());
        }
        self
    }

    /// A source for `address`.
    ///
    /// # Errors
    /// [`TransferError::Unsupported`] for an unknown type, or the factory's error.
    pub fn source(&self, address: &ResourceAddress) -> Result<Box<dyn DataSource>, TransferError> {
        let type_name = address.type_name().unwrap_or_default();
        self.sources
            .get(type_name)
            .ok_or_else(|| TransferError::Unsupported(type_name.to_owned()))?
            .create(address)
    }

    /// A sink for `address`.
    ///
    /// # Errors
    /// [`TransferError::Unsupported`] for an unknown type, or the factory's error.
    pub fn sink(&self, address: &ResourceAddress) -> Result<Box<dyn DataSink>, TransferError> {
        let type_name = address.type_name().unwrap_or_default();
        self.sinks
            .get(type_name)
            .ok_or_else(|| TransferError::Unsupported(type_name.to_owned()))?
            .create(address)
    }

    /// Types with a source factory.
    pub fn source_types(&self) -> Vec<String> {
        self.sources.keys().cloned().collect()
    }

    /// Types with a sink factory.
    pub fn sink_types(&self) -> Vec<String> {
        self.sinks.keys().cloned().collect()
    }
}
