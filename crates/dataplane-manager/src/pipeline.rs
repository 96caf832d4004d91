//! One transfer: open the source, stream through a byte counter into the sink.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use dataplane_spi::{ResourceAddress, SourceStream, TransferError, TransferRegistry};
use futures::StreamExt;

/// Live progress of a running transfer, readable while it runs.
#[derive(Debug, Default)]
pub struct Progress {
    /// Bytes handed to the sink so far.
    pub bytes: AtomicU64,
    /// Total size, when the source knows it (0 = unknown).
    pub total: AtomicU64,
}

impl Progress {
    /// Bytes so far.
    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }

    /// Total, when known.
    pub fn total(&self) -> Option<u64> {
        match self.total.load(Ordering::Relaxed) {
            0 => None,
            n => Some(n),
        }
    }
}

/// Wraps a source stream so that every chunk is counted in `progress` as it passes.
pub fn counted(input: SourceStream, progress: Arc<Progress>) -> SourceStream {
    if let Some(size) = input.size {
        progress.total.store(size, Ordering::Relaxed);
    }
    progress.bytes.store(input.offset, Ordering::Relaxed);
    let stream = input.stream.map(move |chunk| {
        if let Ok(bytes) = &chunk {
            progress
                .bytes
                .fetch_add(bytes.len() as u64, Ordering::Relaxed);
        }
        chunk
    });
    SourceStream {
        stream: Box::pin(stream),
        ..input
    }
}

/// Ends a stream with an error as soon as `still_owner` says the lease can no longer be
/// trusted: checked before every chunk is handed to the sink, so a replica resumed after a
/// pause longer than its lease writes nothing more.
pub fn fenced<F>(input: SourceStream, still_owner: F) -> SourceStream
where
    F: Fn() -> bool + Send + 'static,
{
    let stream = input.stream.map(move |chunk| {
        if still_owner() {
            chunk
        } else {
            Err(TransferError::Rejected(
                "this replica's lease expired; it may no longer own the flow".into(),
            ))
        }
    });
    SourceStream {
        stream: Box::pin(stream),
        ..input
    }
}

/// Runs one attempt of a transfer from `source` to `destination`; returns the bytes written.
///
/// # Errors
/// The source's or the sink's [`TransferError`].
pub async fn transfer_once<F>(
    registry: &TransferRegistry,
    source: &ResourceAddress,
    destination: &ResourceAddress,
    progress: Arc<Progress>,
    still_owner: F,
) -> Result<u64, TransferError>
where
    F: Fn() -> bool + Send + 'static,
{
    let source = registry.source(source)?;
    let sink = registry.sink(destination)?;
    let input = source.open(0).await?;
    sink.write(fenced(counted(input, progress), still_owner))
        .await
}
