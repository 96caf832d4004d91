//! One transfer attempt: open the source where the last attempt left off, stream through a byte
//! counter and the lease check into the sink, and take checkpoints on the way.
//!
//! Checkpoints: when the sink can resume ([`DataSink::resume_point`] answers an offset), the
//! stream is written in segments of at most `bytes` bytes or `interval` time; each segment is one
//! [`DataSink::write`] that ends with the data acknowledged (file flushed and synced, tus PATCH
//! answered), after which the position — and, for event streams, the source's cursor — is
//! recorded through a [`Checkpointer`]. The first attempt of a flow asks nothing of the
//! destination ([`DataSink::first_point`]: there is nothing to resume, so no tus `HEAD` probe);
//! a later attempt (retry, takeover, resume) asks the sink where it can continue
//! ([`DataSink::resume_point`]), opens the source there (`Range`, seek, or the event cursor) and
//! goes on; a source that cannot seek restarts the transfer from zero, and so does a sink that
//! cannot append (a plain HTTP upload replaces the object). Each restart says why
//! ([`AttemptStart::reason`]).
//!
//! [`DataSink::first_point`]: dataplane_spi::DataSink::first_point
//! [`DataSink::resume_point`]: dataplane_spi::DataSink::resume_point

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use dataplane_spi::{
    ByteStream, Checkpoint, DataSink, ResourceAddress, SourceStream, TransferError,
    TransferRegistry,
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

    /// Called once per attempt, after the source was opened and before any byte is written:
    /// how the attempt starts. Record it durably: whether a flow had an attempt before decides
    /// whether the next one may probe the destination.
    ///
    /// # Errors
    /// A [`TransferError`] that stops the transfer.
    async fn started(&self, start: &AttemptStart) -> Result<(), TransferError>;

    /// The sink of the attempt, right after it was created: kept so that what it staged at the
    /// destination can be discarded when the flow ends without completing
    /// ([`DataSink::abort`]). The default ignores it.
    fn sink_opened(&self, sink: Arc<dyn DataSink>) {
        let _ = sink;
    }
}

/// How an attempt starts, as told to [`Checkpointer::started`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttemptStart {
    /// The first attempt of the flow (nothing was written before; the destination was not
    /// asked anything).
    pub first: bool,
    /// It continues from where an earlier attempt left off.
    pub resumed: bool,
    /// A later attempt that starts from zero.
    pub restarted: bool,
    /// Why it restarted from zero (set when `restarted`).
    pub reason: Option<String>,
}

/// How an attempt began and ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttemptReport {
    /// Where the attempt started (0 for a fresh start or a restart).
    pub started_at: u64,
    /// Whether it continued from a checkpoint.
    pub resumed: bool,
    /// Whether it is a later attempt that had to start from zero (the sink cannot append, the
    /// source ignored the range, nothing was kept at the destination).
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

/// An input written in segments, each by one [`DataSink::write`] that ends with the data
/// acknowledged (a pipeline attempt, an upload to the ingest endpoint).
pub(crate) struct Segments {
    shared: Shared,
    exhausted: Arc<AtomicBool>,
    content_type: Option<String>,
}

impl Segments {
    pub(crate) fn new(input: SourceStream) -> Self {
        // Fused: segments after the end ask it again.
        let stream: ByteStream = Box::pin(input.stream.fuse());
        Self {
            shared: Arc::new(tokio::sync::Mutex::new(stream)),
            exhausted: Arc::new(AtomicBool::new(false)),
            content_type: input.content_type,
        }
    }

    /// Whether the input ended.
    pub(crate) fn exhausted(&self) -> bool {
        self.exhausted.load(Ordering::Acquire)
    }

    /// Writes the next segment (at most `max_bytes`, or `interval` once data passed) to `sink`
    /// at `position`; the bytes written.
    pub(crate) async fn write_next(
        &self,
        sink: &dyn DataSink,
        position: u64,
        max_bytes: u64,
        interval: Duration,
    ) -> Result<u64, TransferError> {
        let stream = segment(
            self.shared.clone(),
            self.exhausted.clone(),
            max_bytes,
            interval,
        );
        sink.write(SourceStream {
            stream,
            size: None,
            content_type: self.content_type.clone(),
            offset: position,
        })
        .await
    }
}

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
/// flow's last checkpoint) where the sink and the source allow it. `first_attempt`: no attempt
/// of this flow ever started before, so the destination is not asked where to continue.
///
/// # Errors
/// The source's, the sink's or the checkpointer's [`TransferError`].
#[allow(clippy::too_many_arguments)]
pub async fn run_attempt<F>(
    registry: &TransferRegistry,
    source: &ResourceAddress,
    destination: &ResourceAddress,
    from: Option<&Checkpoint>,
    first_attempt: bool,
    policy: CheckpointPolicy,
    progress: Arc<Progress>,
    still_owner: F,
    checkpointer: &dyn Checkpointer,
) -> Result<AttemptReport, TransferError>
where
    F: Fn() -> bool + Send + 'static,
{
    let source = registry.source(source)?;
    let sink: Arc<dyn DataSink> = Arc::from(registry.sink(destination)?);
    checkpointer.sink_opened(sink.clone());
    let checkpoint = from.map_or(0, |c| u64::try_from(c.bytes).unwrap_or(0));
    let first = first_attempt && from.is_none();
    let resume_at = if first {
        sink.first_point().await?
    } else {
        // A sink that stages its data (a multipart upload) continues from the state it
        // reported with the checkpoint: its resume point may lie before the checkpoint.
        if let Some(state) = from.and_then(|c| c.sink.as_deref()) {
            sink.restore_state(state)?;
        }
        sink.resume_point(checkpoint).await?
    };
    let mut reason = None;
    let (offset, cursor) = match resume_at {
        // The event cursor belongs to the checkpoint; it is only valid at exactly that offset.
        Some(at) if at == checkpoint => (at, from.and_then(|c| c.cursor.clone())),
        Some(at) if from.and_then(|c| c.cursor.as_ref()).is_none() => (at, None),
        Some(at) => {
            reason = Some(format!(
                "the destination is at byte {at}, not at the checkpoint ({checkpoint}) the event cursor belongs to"
            ));
            (0, None)
        }
        None => {
            reason = Some(
                "the destination cannot continue an upload (no tus Upload-Offset): a plain upload from zero"
                    .to_owned(),
            );
            (0, None)
        }
    };
    if offset == 0 && reason.is_none() {
        reason = Some("the destination holds nothing to continue from".to_owned());
    }
    let input = source.open_after(offset, cursor.as_deref()).await?;
    if offset > 0 && input.offset == 0 && cursor.is_none() {
        reason = Some(format!(
            "the source cannot serve the rest from byte {offset} (no Range support)"
        ));
    }
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
    let restarted = !first && started_at == 0;
    checkpointer
        .started(&AttemptStart {
            first,
            resumed: started_at > 0,
            restarted,
            reason: if restarted { reason } else { None },
        })
        .await?;
    let resumable = resume_at.is_some();
    let report = |position| AttemptReport {
        started_at,
        resumed: started_at > 0,
        restarted,
        position,
    };
    let input = fenced(counted(input, progress), still_owner);
    if !resumable {
        let written = sink.write(input).await?;
        sink.finish(started_at + written).await?;
        return Ok(report(started_at + written));
    }
    let segments = Segments::new(input);
    let mut position = started_at;
    loop {
        // Checkpoints disabled (`bytes == 0`): one segment, unless the sink returns early (a
        // multipart upload returns after each acknowledged part).
        let (max_bytes, interval) = match policy.bytes {
            0 => (u64::MAX, Duration::MAX),
            bytes => (bytes, policy.interval),
        };
        position += segments
            .write_next(sink.as_ref(), position, max_bytes, interval)
            .await?;
        let state = sink.state();
        // A sink with a state may resume before the recorded checkpoint (its staged tail was
        // not yet committed): the checkpoint never moves back, the state tells the truth.
        let recorded = match (&state, from) {
            (Some(_), Some(from)) => position.max(u64::try_from(from.bytes).unwrap_or(0)),
            _ => position,
        };
        checkpointer
            .record(Checkpoint {
                bytes: i64::try_from(recorded).unwrap_or(i64::MAX),
                cursor: source.cursor(),
                sink: state,
            })
            .await?;
        if segments.exhausted() {
            sink.finish(position).await?;
            return Ok(report(position));
        }
    }
}

#[cfg(test)]
mod staged_tests;
#[cfg(test)]
mod tests;
