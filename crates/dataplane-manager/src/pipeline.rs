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

    /// Called once per attempt, after the source was opened and before any byte is written:
    /// how the attempt starts. Record it durably: whether a flow had an attempt before decides
    /// whether the next one may probe the destination.
    ///
    /// # Errors
    /// A [`TransferError`] that stops the transfer.
    async fn started(&self, start: &AttemptStart) -> Result<(), TransferError>;
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
    let sink = registry.sink(destination)?;
    let checkpoint = from.map_or(0, |c| u64::try_from(c.bytes).unwrap_or(0));
    let first = first_attempt && from.is_none();
    let resume_at = if first {
        sink.first_point().await?
    } else {
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::sync::Mutex;

    use bytes::Bytes;
    use dataplane_spi::{DataSink, DataSinkFactory, DataSource, DataSourceFactory};

    use super::*;

    /// What the fake sink and source were asked.
    #[derive(Debug, Default)]
    struct Calls {
        first_points: usize,
        resume_points: usize,
        opened_at: Vec<u64>,
        written: Vec<u8>,
    }

    #[derive(Debug, Clone)]
    struct Fakes {
        calls: Arc<Mutex<Calls>>,
        /// What `resume_point` answers.
        resume: Option<u64>,
        /// Whether the source serves ranges.
        ranges: bool,
        data: Bytes,
    }

    #[async_trait]
    impl DataSink for Fakes {
        async fn write(&self, input: SourceStream) -> Result<u64, TransferError> {
            let chunks: Vec<_> = input.stream.collect().await;
            let mut calls = self.calls.lock().unwrap();
            calls
                .written
                .truncate(usize::try_from(input.offset).unwrap());
            let mut n = 0;
            for chunk in chunks {
                let chunk = chunk?;
                n += chunk.len() as u64;
                calls.written.extend_from_slice(&chunk);
            }
            Ok(n)
        }

        async fn resume_point(&self, _checkpoint: u64) -> Result<Option<u64>, TransferError> {
            self.calls.lock().unwrap().resume_points += 1;
            Ok(self.resume)
        }

        async fn first_point(&self) -> Result<Option<u64>, TransferError> {
            self.calls.lock().unwrap().first_points += 1;
            Ok(None)
        }
    }

    #[async_trait]
    impl DataSource for Fakes {
        async fn open(&self, offset: u64) -> Result<SourceStream, TransferError> {
            let offset = if self.ranges { offset } else { 0 };
            self.calls.lock().unwrap().opened_at.push(offset);
            let rest = self.data.slice(usize::try_from(offset).unwrap()..);
            Ok(SourceStream {
                stream: Box::pin(futures::stream::iter([Ok(rest)])),
                size: Some(self.data.len() as u64),
                content_type: None,
                offset,
            })
        }
    }

    impl DataSinkFactory for Fakes {
        fn type_name(&self) -> &str {
            "Fake"
        }
        fn create(&self, _: &ResourceAddress) -> Result<Box<dyn DataSink>, TransferError> {
            Ok(Box::new(self.clone()))
        }
    }

    impl DataSourceFactory for Fakes {
        fn type_name(&self) -> &str {
            "Fake"
        }
        fn create(&self, _: &ResourceAddress) -> Result<Box<dyn DataSource>, TransferError> {
            Ok(Box::new(self.clone()))
        }
    }

    #[derive(Default)]
    struct Starts(Mutex<Vec<AttemptStart>>);

    #[async_trait]
    impl Checkpointer for Starts {
        async fn record(&self, _: Checkpoint) -> Result<(), TransferError> {
            Ok(())
        }
        async fn started(&self, start: &AttemptStart) -> Result<(), TransferError> {
            self.0.lock().unwrap().push(start.clone());
            Ok(())
        }
    }

    async fn attempt(fakes: &Fakes, from: Option<Checkpoint>, first: bool) -> AttemptStart {
        let registry = TransferRegistry::builder()
            .source(Arc::new(fakes.clone()))
            .unwrap()
            .sink(Arc::new(fakes.clone()))
            .unwrap()
            .build();
        let address = ResourceAddress::new("Fake");
        let starts = Starts::default();
        let report = run_attempt(
            &registry,
            &address,
            &address,
            from.as_ref(),
            first,
            CheckpointPolicy::default(),
            Arc::new(Progress::default()),
            || true,
            &starts,
        )
        .await
        .unwrap();
        assert_eq!(report.position, fakes.data.len() as u64);
        assert!(fakes.calls.lock().unwrap().written == fakes.data);
        let start = starts.0.lock().unwrap().pop();
        start.unwrap()
    }

    fn fakes(resume: Option<u64>, ranges: bool) -> Fakes {
        Fakes {
            calls: Arc::default(),
            resume,
            ranges,
            data: Bytes::from_static(b"0123456789abcdefghij"),
        }
    }

    #[tokio::test]
    async fn the_first_attempt_does_not_ask_the_destination() {
        let fakes = fakes(Some(5), true);
        let start = attempt(&fakes, None, true).await;
        assert_eq!(
            start,
            AttemptStart {
                first: true,
                resumed: false,
                restarted: false,
                reason: None
            }
        );
        let calls = fakes.calls.lock().unwrap();
        assert_eq!((calls.first_points, calls.resume_points), (1, 0));
    }

    #[tokio::test]
    async fn a_later_attempt_to_a_sink_that_cannot_append_restarts_and_says_why() {
        let fakes = fakes(None, true);
        let start = attempt(&fakes, None, false).await;
        assert!(start.restarted && !start.resumed && !start.first);
        assert!(
            start
                .reason
                .as_deref()
                .is_some_and(|r| r.contains("cannot continue an upload")),
            "{start:?}"
        );
        let calls = fakes.calls.lock().unwrap();
        assert_eq!((calls.first_points, calls.resume_points), (0, 1));
        assert_eq!(calls.opened_at, [0]);
    }

    #[tokio::test]
    async fn a_later_attempt_resumes_where_the_sink_is_or_restarts_when_the_source_cannot_seek() {
        let checkpoint = Checkpoint {
            bytes: 5,
            cursor: None,
        };
        let resumable = fakes(Some(5), true);
        resumable
            .calls
            .lock()
            .unwrap()
            .written
            .extend_from_slice(b"01234");
        let start = attempt(&resumable, Some(checkpoint.clone()), false).await;
        assert!(start.resumed && !start.restarted && start.reason.is_none());
        assert_eq!(resumable.calls.lock().unwrap().opened_at, [5]);

        let no_ranges = fakes(Some(5), false);
        let start = attempt(&no_ranges, Some(checkpoint), true).await;
        assert!(!start.first, "a checkpoint means an earlier attempt");
        assert!(start.restarted);
        assert!(
            start
                .reason
                .as_deref()
                .is_some_and(|r| r.contains("no Range support")),
            "{start:?}"
        );
    }
}
