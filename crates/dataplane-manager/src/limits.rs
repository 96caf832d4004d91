//! Per-flow byte cap (`dpf.transfer.max-bytes`): no flow reads more than the cap from its
//! source, and no ingest upload writes more than the cap to its destination.
//!
//! The cap counts positions in the resource (a stream opened at offset `n` has `n` bytes behind
//! it already), so a resumed transfer is held to the same total. A source that declares a
//! larger size fails when it is opened; one that does not is cut off with an error before the
//! chunk that would pass the cap, so nothing beyond the cap reaches a sink.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use dataplane_spi::{DataSource, DataSourceFactory, ResourceAddress, SourceStream, TransferError};
use futures::StreamExt;

/// The error of a flow that passed the cap (never retried).
pub fn too_large(max: u64, what: &str) -> TransferError {
    TransferError::Rejected(format!(
        "{what} exceeds dpf.transfer.max-bytes ({max} bytes per data flow)"
    ))
}

/// `input` limited to `max` bytes of resource position. `exceeded` is set when the cap was hit.
///
/// # Errors
/// [`too_large`] when the input declares a size (or starts at an offset) beyond the cap.
pub fn capped(
    input: SourceStream,
    max: u64,
    what: &'static str,
    exceeded: Arc<AtomicBool>,
) -> Result<SourceStream, TransferError> {
    if input.size.is_some_and(|size| size > max) || input.offset > max {
        exceeded.store(true, Ordering::Release);
        return Err(too_large(max, what));
    }
    let start = input.offset;
    let stream = input
        .stream
        .scan((start, false), move |(position, done), chunk| {
            if *done {
                return futures::future::ready(None);
            }
            let item = match chunk {
                Ok(bytes) => match position.checked_add(bytes.len() as u64) {
                    Some(next) if next <= max => {
                        *position = next;
                        Ok(bytes)
                    }
                    _ => {
                        *done = true;
                        exceeded.store(true, Ordering::Release);
                        Err(too_large(max, what))
                    }
                },
                Err(error) => Err(error),
            };
            futures::future::ready(Some(item))
        });
    Ok(SourceStream {
        stream: Box::pin(stream),
        ..input
    })
}

/// A source factory whose sources yield at most `max` bytes (see the module doc).
#[derive(Debug)]
pub struct CappedSourceFactory {
    inner: Arc<dyn DataSourceFactory>,
    max: u64,
}

impl CappedSourceFactory {
    /// Wraps `inner`.
    pub fn new(inner: Arc<dyn DataSourceFactory>, max: u64) -> Self {
        Self { inner, max }
    }
}

impl DataSourceFactory for CappedSourceFactory {
    fn type_name(&self) -> &str {
        self.inner.type_name()
    }

    fn create(&self, address: &ResourceAddress) -> Result<Box<dyn DataSource>, TransferError> {
        Ok(Box::new(CappedSource {
            inner: self.inner.create(address)?,
            max: self.max,
        }))
    }
}

#[derive(Debug)]
struct CappedSource {
    inner: Box<dyn DataSource>,
    max: u64,
}

#[async_trait]
impl DataSource for CappedSource {
    async fn open(&self, offset: u64) -> Result<SourceStream, TransferError> {
        let input = self.inner.open(offset).await?;
        capped(input, self.max, "the source", Arc::default())
    }

    async fn open_after(
        &self,
        offset: u64,
        cursor: Option<&str>,
    ) -> Result<SourceStream, TransferError> {
        let input = self.inner.open_after(offset, cursor).await?;
        capped(input, self.max, "the source", Arc::default())
    }

    fn cursor(&self) -> Option<String> {
        self.inner.cursor()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn stream_of(chunks: &[&'static [u8]], size: Option<u64>, offset: u64) -> SourceStream {
        let items: Vec<Result<Bytes, TransferError>> =
            chunks.iter().map(|c| Ok(Bytes::from_static(c))).collect();
        SourceStream {
            stream: Box::pin(futures::stream::iter(items)),
            size,
            content_type: None,
            offset,
        }
    }

    async fn collect(input: SourceStream) -> (Vec<u8>, Option<TransferError>) {
        let mut data = Vec::new();
        let mut stream = input.stream;
        while let Some(chunk) = stream.next().await {
            match chunk {
                Ok(bytes) => data.extend_from_slice(&bytes),
                Err(error) => return (data, Some(error)),
            }
        }
        (data, None)
    }

    #[tokio::test]
    async fn within_the_cap_everything_passes() {
        let flag = Arc::new(AtomicBool::new(false));
        let input = capped(stream_of(&[b"abc", b"de"], None, 0), 5, "x", flag.clone()).unwrap();
        assert_eq!(collect(input).await, (b"abcde".to_vec(), None));
        assert!(!flag.load(Ordering::Acquire));
    }

    #[tokio::test]
    async fn nothing_beyond_the_cap_is_yielded() {
        let flag = Arc::new(AtomicBool::new(false));
        let input = capped(
            stream_of(&[b"abc", b"def", b"g"], None, 0),
            5,
            "x",
            flag.clone(),
        )
        .unwrap();
        let (data, error) = collect(input).await;
        assert_eq!(data, b"abc");
        assert!(error
            .unwrap()
            .to_string()
            .contains("dpf.transfer.max-bytes"));
        assert!(flag.load(Ordering::Acquire));
    }

    #[tokio::test]
    async fn a_declared_size_or_offset_beyond_the_cap_fails_at_open() {
        let flag = Arc::new(AtomicBool::new(false));
        assert!(capped(stream_of(&[], Some(6), 0), 5, "x", flag.clone()).is_err());
        assert!(flag.load(Ordering::Acquire));
        // Resumed at 4: one more byte fits, two do not.
        let input = capped(stream_of(&[b"a", b"b"], None, 4), 5, "x", Arc::default()).unwrap();
        let (data, error) = collect(input).await;
        assert_eq!(data, b"a");
        assert!(error.is_some());
    }
}
