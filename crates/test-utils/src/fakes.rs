//! Fault-injecting sources and sinks for in-process tests of the transfer path: a source that
//! fails, flakes, stalls or is slow on demand, and a sink that records what it received and can
//! refuse writes. They are fakes for fault injection only: acceptance tests use real peers.
//!
//! Both are cheap to clone (clones share their state and counters), so a test keeps one handle
//! and registers another through [`FakeSourceFactory`] / [`RecordingSinkFactory`].
//!
//! ```
//! # async fn demo() {
//! use dataplane_spi::{DataSink, DataSource};
//! use test_utils::fakes::{FakeSource, RecordingSink};
//!
//! let source = FakeSource::new(vec![7u8; 100]).chunk_size(10).fail_after(50);
//! let sink = RecordingSink::new();
//! assert!(sink.write(source.open(0).await.unwrap()).await.is_err());
//! assert_eq!(sink.received().len(), 50);
//! # }
//! ```

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use dataplane_spi::{
    DataSink, DataSinkFactory, DataSource, DataSourceFactory, ResourceAddress, SourceStream,
    TransferError,
};
use futures::StreamExt;

#[derive(Debug)]
struct SourceState {
    data: Bytes,
    chunk: usize,
    delay: Option<Duration>,
    fail_after: Option<u64>,
    stall_after: Option<u64>,
    flaky_opens: AtomicU32,
    opens: AtomicU64,
}

/// A source serving fixed bytes, with faults on demand.
#[derive(Debug, Clone)]
pub struct FakeSource {
    state: Arc<SourceState>,
}

impl FakeSource {
    /// A source serving `data` in 64 KiB chunks, with no fault.
    pub fn new(data: impl Into<Bytes>) -> Self {
        Self {
            state: Arc::new(SourceState {
                data: data.into(),
                chunk: 64 * 1024,
                delay: None,
                fail_after: None,
                stall_after: None,
                flaky_opens: AtomicU32::new(0),
                opens: AtomicU64::new(0),
            }),
        }
    }

    fn with(self, change: impl FnOnce(&mut SourceState)) -> Self {
        let mut state = Arc::try_unwrap(self.state).unwrap_or_else(|shared| SourceState {
            data: shared.data.clone(),
            chunk: shared.chunk,
            delay: shared.delay,
            fail_after: shared.fail_after,
            stall_after: shared.stall_after,
            flaky_opens: AtomicU32::new(shared.flaky_opens.load(Ordering::SeqCst)),
            opens: AtomicU64::new(0),
        });
        change(&mut state);
        Self {
            state: Arc::new(state),
        }
    }

    /// Yields chunks of at most `bytes` (at least 1).
    #[must_use]
    pub fn chunk_size(self, bytes: usize) -> Self {
        self.with(|s| s.chunk = bytes.max(1))
    }

    /// Slow: waits `delay` (tokio time) before each chunk.
    #[must_use]
    pub fn delay_per_chunk(self, delay: Duration) -> Self {
        self.with(|s| s.delay = Some(delay))
    }

    /// Failing: after `bytes` bytes of the resource, every stream ends with a transient error.
    #[must_use]
    pub fn fail_after(self, bytes: u64) -> Self {
        self.with(|s| s.fail_after = Some(bytes))
    }

    /// Stalling: after `bytes` bytes of the resource, streams yield nothing more, ever.
    #[must_use]
    pub fn stall_after(self, bytes: u64) -> Self {
        self.with(|s| s.stall_after = Some(bytes))
    }

    /// Flaky: the next `opens` calls to `open` fail with a transient error.
    #[must_use]
    pub fn flaky(self, opens: u32) -> Self {
        self.with(|s| s.flaky_opens = AtomicU32::new(opens))
    }

    /// How many times `open` was called (failed opens included).
    pub fn opens(&self) -> u64 {
        self.state.opens.load(Ordering::SeqCst)
    }
}

#[async_trait]
impl DataSource for FakeSource {
    async fn open(&self, offset: u64) -> Result<SourceStream, TransferError> {
        let state = self.state.clone();
        state.opens.fetch_add(1, Ordering::SeqCst);
        let flaked = state
            .flaky_opens
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        if flaked {
            return Err(TransferError::Transient("injected: open failed".into()));
        }
        let len = state.data.len() as u64;
        if offset > len {
            return Err(TransferError::Rejected(format!(
                "offset {offset} is past the end ({len} bytes)"
            )));
        }
        let stream = futures::stream::unfold(offset, move |position| {
            let state = state.clone();
            async move {
                if state.stall_after.is_some_and(|at| position >= at) {
                    futures::future::pending::<()>().await;
                }
                if state.fail_after.is_some_and(|at| position >= at) {
                    // Yield the error once, then end (the state moves past the end).
                    return (position <= len).then(|| {
                        (
                            Err(TransferError::Transient(format!(
                                "injected: the source failed at byte {position}"
                            ))),
                            len + 1,
                        )
                    });
                }
                if position >= len {
                    return None;
                }
                if let Some(delay) = state.delay {
                    tokio::time::sleep(delay).await;
                }
                let mut end = (position + state.chunk as u64).min(len);
                for limit in [state.fail_after, state.stall_after].into_iter().flatten() {
                    if limit > position {
                        end = end.min(limit);
                    }
                }
                let (start, stop) = (
                    usize::try_from(position).unwrap_or(usize::MAX),
                    usize::try_from(end).unwrap_or(usize::MAX),
                );
                Some((Ok(state.data.slice(start..stop)), end))
            }
        })
        .boxed();
        Ok(SourceStream {
            stream,
            size: Some(len),
            content_type: None,
            offset,
        })
    }
}

#[derive(Debug, Default)]
struct SinkState {
    received: Mutex<Vec<u8>>,
    writes: AtomicU64,
    failing_writes: AtomicU32,
    resumable: bool,
}

/// A sink keeping what it received in memory (tests move small data), recording its calls.
#[derive(Debug, Clone, Default)]
pub struct RecordingSink {
    state: Arc<SinkState>,
}

impl RecordingSink {
    /// A sink that accepts every write and cannot resume (`resume_point` is `None`).
    pub fn new() -> Self {
        Self::default()
    }

    /// A sink that resumes at the checkpoint, or at what it holds when that is less.
    pub fn resumable() -> Self {
        Self {
            state: Arc::new(SinkState {
                resumable: true,
                ..SinkState::default()
            }),
        }
    }

    /// The next `writes` calls to `write` fail with a transient error before reading anything.
    pub fn fail_next_writes(&self, writes: u32) {
        self.state.failing_writes.store(writes, Ordering::SeqCst);
    }

    /// The bytes received so far (a write from offset 0 replaces them, a later offset appends
    /// after truncating to it).
    pub fn received(&self) -> Vec<u8> {
        self.state
            .received
            .lock()
            .map(|r| r.clone())
            .unwrap_or_default()
    }

    /// How many times `write` was called.
    pub fn writes(&self) -> u64 {
        self.state.writes.load(Ordering::SeqCst)
    }
}

#[async_trait]
impl DataSink for RecordingSink {
    async fn write(&self, input: SourceStream) -> Result<u64, TransferError> {
        self.state.writes.fetch_add(1, Ordering::SeqCst);
        let failed = self
            .state
            .failing_writes
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        if failed {
            return Err(TransferError::Transient("injected: write failed".into()));
        }
        let SourceStream {
            mut stream, offset, ..
        } = input;
        {
            let mut received = self
                .state
                .received
                .lock()
                .map_err(|_| TransferError::Transient("sink lock poisoned".into()))?;
            let keep = usize::try_from(offset).unwrap_or(usize::MAX);
            if keep > received.len() {
                return Err(TransferError::Rejected(format!(
                    "cannot resume at {offset}: only {} bytes received",
                    received.len()
                )));
            }
            received.truncate(keep);
        }
        let mut written = 0u64;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk?;
            written += chunk.len() as u64;
            self.state
                .received
                .lock()
                .map_err(|_| TransferError::Transient("sink lock poisoned".into()))?
                .extend_from_slice(&chunk);
        }
        Ok(written)
    }

    async fn resume_point(&self, checkpoint: u64) -> Result<Option<u64>, TransferError> {
        if !self.state.resumable {
            return Ok(None);
        }
        let held = self.received().len() as u64;
        Ok(Some(checkpoint.min(held)))
    }
}

/// Registers a [`FakeSource`] under a type name: every address of that type reads it.
#[derive(Debug, Clone)]
pub struct FakeSourceFactory(pub String, pub FakeSource);

impl DataSourceFactory for FakeSourceFactory {
    fn type_name(&self) -> &str {
        &self.0
    }

    fn create(&self, _address: &ResourceAddress) -> Result<Box<dyn DataSource>, TransferError> {
        Ok(Box::new(self.1.clone()))
    }
}

/// Registers a [`RecordingSink`] under a type name: every address of that type writes it.
#[derive(Debug, Clone)]
pub struct RecordingSinkFactory(pub String, pub RecordingSink);

impl DataSinkFactory for RecordingSinkFactory {
    fn type_name(&self) -> &str {
        &self.0
    }

    fn create(&self, _address: &ResourceAddress) -> Result<Box<dyn DataSink>, TransferError> {
        Ok(Box::new(self.1.clone()))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn data() -> Vec<u8> {
        (0..=255u8).cycle().take(1000).collect()
    }

    #[tokio::test]
    async fn a_plain_source_arrives_whole_and_resumes_from_an_offset() {
        let source = FakeSource::new(data()).chunk_size(64);
        let sink = RecordingSink::resumable();
        assert_eq!(
            sink.write(source.open(0).await.unwrap()).await.unwrap(),
            1000
        );
        assert_eq!(sink.received(), data());
        assert_eq!(sink.resume_point(400).await.unwrap(), Some(400));
        assert_eq!(
            sink.write(source.open(400).await.unwrap()).await.unwrap(),
            600
        );
        assert_eq!(sink.received(), data());
        assert_eq!(sink.writes(), 2);
        assert_eq!(source.opens(), 2);
    }

    #[tokio::test]
    async fn a_failing_source_fails_exactly_where_told() {
        let source = FakeSource::new(data()).chunk_size(64).fail_after(300);
        let sink = RecordingSink::new();
        let error = sink.write(source.open(0).await.unwrap()).await.unwrap_err();
        assert!(matches!(error, TransferError::Transient(_)), "{error:?}");
        assert_eq!(sink.received(), data()[..300].to_vec());
    }

    #[tokio::test]
    async fn a_flaky_source_fails_its_first_opens() {
        let source = FakeSource::new(data()).flaky(2);
        assert!(source.open(0).await.is_err());
        assert!(source.open(0).await.is_err());
        assert!(source.open(0).await.is_ok());
        assert_eq!(source.opens(), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn a_stalling_source_yields_nothing_after_the_stall() {
        let source = FakeSource::new(data()).chunk_size(100).stall_after(200);
        let mut stream = source.open(0).await.unwrap().stream;
        assert_eq!(stream.next().await.unwrap().unwrap().len(), 100);
        assert_eq!(stream.next().await.unwrap().unwrap().len(), 100);
        let next = tokio::time::timeout(Duration::from_secs(3600), stream.next()).await;
        assert!(next.is_err(), "the stalled stream yielded");
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_source_spends_its_delay_per_chunk() {
        let source = FakeSource::new(data())
            .chunk_size(250)
            .delay_per_chunk(Duration::from_secs(1));
        let started = tokio::time::Instant::now();
        let sink = RecordingSink::new();
        sink.write(source.open(0).await.unwrap()).await.unwrap();
        assert_eq!(started.elapsed(), Duration::from_secs(4));
    }

    #[tokio::test]
    async fn a_sink_can_refuse_its_next_writes() {
        let sink = RecordingSink::new();
        sink.fail_next_writes(1);
        let source = FakeSource::new(data());
        assert!(sink.write(source.open(0).await.unwrap()).await.is_err());
        assert!(sink.received().is_empty());
        sink.write(source.open(0).await.unwrap()).await.unwrap();
        assert_eq!(sink.received(), data());
        assert_eq!(sink.resume_point(10).await.unwrap(), None);
    }
}
