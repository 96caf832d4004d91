//! Object sources: one object, or a prefix as a ustar archive, read by parallel range reads.

use std::ops::Range;

use async_trait::async_trait;
use bytes::Bytes;
use dataplane_spi::{DataSource, SourceStream, TransferError};
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};

use crate::address::{Selection, Target};
use crate::errors::translate;
use crate::tar;
use crate::ObjectOptions;

/// Largest chunk handed on (a range read is split into chunks of this size, without copying).
const CHUNK: usize = 1024 * 1024;

/// A piece of the stream: bytes known up front (archive headers, padding) or a range of an
/// object.
#[derive(Debug, Clone)]
enum Piece {
    Inline(Bytes),
    Range(Path, Range<u64>),
}

impl Piece {
    fn len(&self) -> u64 {
        match self {
            Self::Inline(bytes) => bytes.len() as u64,
            Self::Range(_, range) => range.end - range.start,
        }
    }

    /// The piece without its first `skip` bytes.
    fn skip(self, skip: u64) -> Self {
        match self {
            Self::Inline(bytes) => {
                Self::Inline(bytes.slice(usize::try_from(skip).unwrap_or(usize::MAX)..))
            }
            Self::Range(path, range) => Self::Range(path, range.start + skip..range.end),
        }
    }
}

/// A readable object or prefix.
#[derive(Debug)]
pub(crate) struct ObjectSource {
    target: Target,
    options: ObjectOptions,
}

impl ObjectSource {
    pub(crate) fn new(target: Target, options: ObjectOptions) -> Self {
        Self { target, options }
    }

    /// The ranges of one object, `range_size` each.
    fn ranges(&self, path: &Path, size: u64, pieces: &mut Vec<Piece>) {
        let mut at = 0;
        while at < size {
            let end = (at + self.options.range_size).min(size);
            pieces.push(Piece::Range(path.clone(), at..end));
            at = end;
        }
    }

    /// The whole stream as pieces, and its content type.
    async fn layout(&self) -> Result<(Vec<Piece>, Option<String>), TransferError> {
        let shown = &self.target.shown;
        let mut pieces = Vec::new();
        match &self.target.selection {
            Selection::Key(key) => {
                let meta = self
                    .target
                    .store
                    .head(key)
                    .await
                    .map_err(|e| translate("cannot read", shown, &e))?;
                self.ranges(key, meta.size, &mut pieces);
                Ok((pieces, None))
            }
            Selection::Prefix(prefix) => {
                let base = prefix.rfind('/').map_or("", |i| &prefix[..=i]);
                let directory = Path::parse(base.trim_end_matches('/')).map_err(|e| {
                    TransferError::InvalidAddress(format!("prefix '{prefix}': {e}"))
                })?;
                let listed = if base.is_empty() {
                    self.target.store.list(None)
                } else {
                    self.target.store.list(Some(&directory))
                };
                let mut objects = listed
                    .try_filter(|meta| {
                        futures::future::ready(meta.location.as_ref().starts_with(prefix.as_str()))
                    })
                    .try_collect::<Vec<_>>()
                    .await
                    .map_err(|e| translate("cannot list", shown, &e))?;
                objects.sort_by(|a, b| a.location.cmp(&b.location));
                tracing::debug!(source = %shown, objects = objects.len(), "prefix listed");
                for meta in objects {
                    let name = &meta.location.as_ref()[base.len()..];
                    let header = tar::header(name, meta.size)?;
                    pieces.push(Piece::Inline(Bytes::copy_from_slice(&header)));
                    self.ranges(&meta.location, meta.size, &mut pieces);
                    let pad = tar::padding(meta.size);
                    if pad > 0 {
                        pieces.push(Piece::Inline(Bytes::from(vec![
                            0u8;
                            usize::try_from(pad)
                                .unwrap_or(0)
                        ])));
                    }
                }
                pieces.push(Piece::Inline(Bytes::from(vec![0u8; 1024])));
                Ok((pieces, Some("application/x-tar".to_owned())))
            }
        }
    }
}

#[async_trait]
impl DataSource for ObjectSource {
    async fn open(&self, offset: u64) -> Result<SourceStream, TransferError> {
        let (pieces, content_type) = self.layout().await?;
        let size: u64 = pieces.iter().map(Piece::len).sum();
        if offset > size {
            return Err(TransferError::Rejected(format!(
                "cannot read {} from offset {offset}: it has only {size} bytes",
                self.target.shown
            )));
        }
        let mut skip = offset;
        let mut rest = Vec::with_capacity(pieces.len());
        for piece in pieces {
            let len = piece.len();
            if skip >= len {
                skip -= len;
                continue;
            }
            rest.push(piece.skip(skip));
            skip = 0;
        }
        tracing::debug!(source = %self.target.shown, offset, size, "object source opened");
        let store = self.target.store.clone();
        let shown = self.target.shown.clone();
        let stream = futures::stream::iter(rest)
            .map(move |piece| {
                let store = store.clone();
                let shown = shown.clone();
                async move { fetch(&*store, &shown, piece).await }
            })
            .buffered(self.options.read_parallelism)
            .map_ok(|bytes| {
                let chunks = (0..bytes.len())
                    .step_by(CHUNK)
                    .map(|at| Ok(bytes.slice(at..(at + CHUNK).min(bytes.len()))))
                    .collect::<Vec<_>>();
                futures::stream::iter(chunks)
            })
            .try_flatten();
        Ok(SourceStream {
            stream: Box::pin(stream),
            size: Some(size),
            content_type,
            offset,
        })
    }
}

/// Reads one piece; a range that comes back short means the object changed meanwhile.
async fn fetch(store: &dyn ObjectStore, shown: &str, piece: Piece) -> Result<Bytes, TransferError> {
    match piece {
        Piece::Inline(bytes) => Ok(bytes),
        Piece::Range(path, range) => {
            let expected = range.end - range.start;
            let bytes = store
                .get_range(&path, range.clone())
                .await
                .map_err(|e| translate("cannot read", shown, &e))?;
            if bytes.len() as u64 != expected {
                return Err(TransferError::Transient(format!(
                    "reading {shown} ({path} bytes {}..{}) returned {} bytes: the object changed",
                    range.start,
                    range.end,
                    bytes.len()
                )));
            }
            Ok(bytes)
        }
    }
}
