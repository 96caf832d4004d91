//! Tests of sinks that stage their data (a multipart upload): their state travels with the
//! checkpoints and back into the next attempt, which may resume before the checkpoint; the
//! last write is followed by `finish`.

#![allow(clippy::unwrap_used)]

use std::sync::Mutex;

use bytes::Bytes;
use dataplane_spi::{DataSink, DataSinkFactory, DataSource, DataSourceFactory};

use super::*;

/// A sink that acknowledges data in blocks of 4 bytes; the rest waits for `finish`.
#[derive(Debug, Default)]
struct Staged {
    restored: Mutex<Option<String>>,
    acked: Mutex<u64>,
    finished: Mutex<Vec<u64>>,
    opened_at: Mutex<Vec<u64>>,
}

#[derive(Debug, Clone)]
struct Fake(Arc<Staged>, Bytes);

#[async_trait]
impl DataSink for Fake {
    async fn write(&self, input: SourceStream) -> Result<u64, TransferError> {
        let chunks: Vec<_> = input.stream.collect().await;
        let n: u64 = chunks
            .iter()
            .map(|c| c.as_ref().unwrap().len() as u64)
            .sum();
        *self.0.acked.lock().unwrap() = (input.offset + n) / 4 * 4;
        Ok(n)
    }

    async fn resume_point(&self, _checkpoint: u64) -> Result<Option<u64>, TransferError> {
        Ok(Some(*self.0.acked.lock().unwrap()))
    }

    async fn first_point(&self) -> Result<Option<u64>, TransferError> {
        Ok(Some(0))
    }

    fn restore_state(&self, state: &str) -> Result<(), TransferError> {
        *self.0.restored.lock().unwrap() = Some(state.to_owned());
        *self.0.acked.lock().unwrap() = state.trim_start_matches("acked=").parse().unwrap();
        Ok(())
    }

    fn state(&self) -> Option<String> {
        Some(format!("acked={}", self.0.acked.lock().unwrap()))
    }

    async fn finish(&self, position: u64) -> Result<(), TransferError> {
        self.0.finished.lock().unwrap().push(position);
        Ok(())
    }
}

#[async_trait]
impl DataSource for Fake {
    async fn open(&self, offset: u64) -> Result<SourceStream, TransferError> {
        self.0.opened_at.lock().unwrap().push(offset);
        let rest = self.1.slice(usize::try_from(offset).unwrap()..);
        Ok(SourceStream {
            stream: Box::pin(futures::stream::iter([Ok(rest)])),
            size: Some(self.1.len() as u64),
            content_type: None,
            offset,
        })
    }
}

impl DataSinkFactory for Fake {
    fn type_name(&self) -> &str {
        "Fake"
    }
    fn create(&self, _: &ResourceAddress) -> Result<Box<dyn DataSink>, TransferError> {
        Ok(Box::new(self.clone()))
    }
}

impl DataSourceFactory for Fake {
    fn type_name(&self) -> &str {
        "Fake"
    }
    fn create(&self, _: &ResourceAddress) -> Result<Box<dyn DataSource>, TransferError> {
        Ok(Box::new(self.clone()))
    }
}

#[derive(Default)]
struct Records(Mutex<Vec<Checkpoint>>);

#[async_trait]
impl Checkpointer for Records {
    async fn record(&self, checkpoint: Checkpoint) -> Result<(), TransferError> {
        self.0.lock().unwrap().push(checkpoint);
        Ok(())
    }
    async fn started(&self, _: &AttemptStart) -> Result<(), TransferError> {
        Ok(())
    }
}

async fn run(
    fake: &Fake,
    from: Option<Checkpoint>,
    first: bool,
) -> (AttemptReport, Vec<Checkpoint>) {
    let registry = TransferRegistry::builder()
        .source(Arc::new(fake.clone()))
        .unwrap()
        .sink(Arc::new(fake.clone()))
        .unwrap()
        .build();
    let address = ResourceAddress::new("Fake");
    let records = Records::default();
    let report = run_attempt(
        &registry,
        &address,
        &address,
        from.as_ref(),
        first,
        CheckpointPolicy::default(),
        Arc::new(Progress::default()),
        || true,
        &records,
    )
    .await
    .unwrap();
    let recorded = records.0.lock().unwrap().clone();
    (report, recorded)
}

#[tokio::test]
async fn the_state_is_checkpointed_and_the_transfer_finished() {
    let fake = Fake(Arc::default(), Bytes::from_static(b"0123456789"));
    let (report, records) = run(&fake, None, true).await;
    assert_eq!(report.position, 10);
    let last = records.last().unwrap();
    assert_eq!(last.bytes, 10);
    assert_eq!(last.sink.as_deref(), Some("acked=8"));
    assert_eq!(*fake.0.finished.lock().unwrap(), [10]);
}

#[tokio::test]
async fn a_later_attempt_restores_the_state_and_resumes_before_the_checkpoint() {
    let fake = Fake(Arc::default(), Bytes::from_static(b"0123456789"));
    let from = Checkpoint {
        bytes: 10,
        cursor: None,
        sink: Some("acked=8".into()),
    };
    let (report, records) = run(&fake, Some(from), false).await;
    assert_eq!(fake.0.restored.lock().unwrap().as_deref(), Some("acked=8"));
    assert_eq!(
        *fake.0.opened_at.lock().unwrap(),
        [8],
        "the tail is read again"
    );
    assert!(report.resumed);
    assert_eq!(report.position, 10);
    // The checkpoint never moves back, whatever the sink's resume point.
    assert!(records.iter().all(|c| c.bytes >= 10));
    assert_eq!(*fake.0.finished.lock().unwrap(), [10]);
}
