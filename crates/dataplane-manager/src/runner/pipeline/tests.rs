//! Tests of one transfer attempt, with fake sources and sinks.

#![allow(clippy::unwrap_used)]

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
        sink: None,
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
