//! One transfer attempt: open the source where the last attempt left off, stream through a byte
//! counter and the lease check into the sink, and take checkpoints on the way.
//!
//! Checkpoints: when the sink can resume ([`DataSink::resume_point`] answers an offset), the
//! stream is written in segments of at most `bytes` bytes or `interval` time; each segment is one
//! [`DataSink::write`] that ends with the data acknowledged (file flushed and synced, tus PATCH
//! answered), after which the position — and, for event streams, the source's cursor — is
//! recorded through a [`Checkpointer`]. A later attempt (retry, takeover, resume) asks the sink
//! where it can continue, opens the source there (`Range`, seek, or the event cursor) and goes
//! on; a source that cannot seek restarts the transfer from zero, and so does a sink that cannot
//! append (a plain HTTP upload replaces the object).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use dataplane_spi::{
    ByteStream, Checkpoint, ResourceAddress, SourceStream, TransferError, TransferRegistry,
};
use futures::StreamExt;

/// Live progress of a running transfer, readable while it runs.
#[derive(Debug, Default)]
pub struct Progress {
    /// Position reached: bytes handed to the sink, counted from the start of the resource.
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

/// How often checkpoints are taken. `bytes == 0` disables them.
#[derive(Debug, Clone, Copy)]
pub struct CheckpointPolicy {
    /// At most this many bytes between checkpoints.
    pub bytes: u64,
    /// At most this long between checkpoints (while data flows).
    pub interval: Duration,
}

impl Default for CheckpointPolicy {
    fn default() -> Self {
        Self {
            bytes: 64 * 1024 * 1024,
            interval: Duration::from_secs(5),
        }
    }
}

/// Records checkpoints (fenced by the caller's ownership).
#[async_trait]
pub trait Checkpointer: Send + Sync {
    /// Records that everything before `checkpoint.bytes` is durably at the destination.
    ///
    /// # Errors
    /// A [`TransferError`] that stops the transfer (e.g. the lease was lost).
    async fn record(&self, checkpoint: Checkpoint) -> Result<(), TransferError>;

    /// Called once per attempt before any byte is written: whether it continues from a
    /// checkpoint (`resumed`) or had to restart from zero although one existed (`restarted`).
    ///
    /// # Errors
    /// A [`TransferError`] that stops the transfer.
    async fn started(&self, resumed: bool, restarted: bool) -> Result<(), TransferError>;
}

/// How an attempt began and ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttemptReport {
    /// Where the attempt started (0 for a fresh start or a restart).
    pub started_at: u64,
    /// Whether it continued from a checkpoint.
    pub resumed: bool,
    /// Whether it had to restart from zero although a checkpoint existed (source ignored the
    /// range, or the sink cannot append).
    pub restarted: bool,
    /// Position reached at the end (the size of the transferred resource).
    pub position: u64,
}

/// Bytes moved by every transfer of this process (the `dpf_bytes_transferred_total` metric).
pub static BYTES_TRANSFERRED: AtomicU64 = AtomicU64::new(0);

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
            BYTES_TRANSFERRED.fetch_add(bytes.len() as u64, Ordering::Relaxed);
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

type Shared = Arc<tokio::sync::Mutex<ByteStream>>;

/// The next segment of a shared stream: ends after `max_bytes`, after `interval` once some data
/// passed, or with the source (then `exhausted` is set).
fn segment(
    shared: Shared,
    exhausted: Arc<AtomicBool>,
    max_bytes: u64,
    interval: Duration,
) -> ByteStream {
    let began = Instant::now();
    Box::pin(futures::stream::unfold(0u64, move |taken| {
        let shared = shared.clone();
        let exhausted = exhausted.clone();
        async move {
            if taken > 0 && (taken >= max_bytes || began.elapsed() >= interval) {
                return None;
            }
            match shared.lock().await.next().await {
                Some(Ok(chunk)) => {
                    let len = chunk.len() as u64;
                    Some((Ok(chunk), taken + len))
                }
                Some(Err(error)) => Some((Err(error), u64::MAX)),
                None => {
                    exhausted.store(true, Ordering::Release);
                    None
                }
            }
        }
    }))
}

/// Runs one attempt of a transfer from `source` to `destination`, continuing from `from` (the
/// flow's last checkpoint) where the sink and the source allow it.
///
/// # Errors
/// The source's, the sink's or the checkpointer's [`TransferError`].
#[allow(clippy::too_many_arguments)]
pub async fn run_attempt<F>(
    registry: &TransferRegistry,
    source: &ResourceAddress,
    destination: &ResourceAddress,
    from: Option<&Checkpoint>,
    policy: CheckpointPolicy,
    progress: Arc<Progress>,
    still_owner: F,
    checkpointer: &dyn Checkpointer,
) -> Result<AttemptReport, TransferError>
where
    F: Fn() -> bool + Send + 'static,
{
    let source = registry.source(source)?;
    let sink = registry.sink(destination)?;
    let checkpoint = from.map_or(0, |c| u64::try_from(c.bytes).unwrap_or(0));
    let resume_at = sink.resume_point(checkpoint).await?;
    let (offset, cursor) = match resume_at {
        // The event cursor belongs to the checkpoint; it is only valid at exactly that offset.
        Some(at) if at == checkpoint => (at, from.and_then(|c| c.cursor.clone())),
        Some(at) if from.and_then(|c| c.cursor.as_ref()).is_none() => (at, None),
        _ => (0, None),
    };
    let input = source.open_after(offset, cursor.as_deref()).await?;
    // Event sources resume by cursor and say nothing about offsets; byte sources report where
    // they really start (0 when they ignored the range).
    let started_at = if cursor.is_some() {
        offset
    } else {
        input.offset
    };
    let input = SourceStream {
        offset: started_at,
        ..input
    };
    checkpointer
        .started(started_at > 0, checkpoint > 0 && started_at == 0)
        .await?;
    let resumable = resume_at.is_some();
    let report = |position| AttemptReport {
        started_at,
        resumed: started_at > 0,
        restarted: checkpoint > 0 && started_at == 0,
        position,
    };
    let input = fenced(counted(input, progress), still_owner);
    if !resumable || policy.bytes == 0 {
        let written = sink.write(input).await?;
        return Ok(report(started_at + written));
    }
    let content_type = input.content_type.clone();
    let shared: Shared = Arc::new(tokio::sync::Mutex::new(input.stream));
    let exhausted = Arc::new(AtomicBool::new(false));
    let mut position = started_at;
    loop {
        let stream = segment(
            shared.clone(),
            exhausted.clone(),
            policy.bytes,
            policy.interval,
        );
        let written = sink
            .write(SourceStream {
                stream,
                size: None,
                content_type: content_type.clone(),
                offset: position,
            })
            .await?;
        position += written;
        checkpointer
            .record(Checkpoint {
                bytes: i64::try_from(position).unwrap_or(i64::MAX),
                cursor: source.cursor(),
            })
            .await?;
        if exhausted.load(Ordering::Acquire) {
            return Ok(report(position));
        }
    }
}
