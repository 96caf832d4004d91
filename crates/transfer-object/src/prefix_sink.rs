//! The sink of a prefix: unpacks the ustar archive a prefix source sends into one object per
//! entry (`<prefix><name>`). Its state is the archive offset of the first object not yet
//! completed and the number completed: a later attempt continues there (per object; an object
//! cut by the interruption is written again from its start).

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use dataplane_spi::{DataSink, SourceStream, TransferError};
use futures::StreamExt;
use object_store::path::Path;
use object_store::{ObjectStoreExt, PutPayload, WriteMultipart};
use serde::{Deserialize, Serialize};

use crate::address::Target;
use crate::errors::translate;
use crate::staged::{self, Snapshot};
use crate::tar::{self, Entry, BLOCK};
use crate::ObjectOptions;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct State {
    /// Archive offset of the first object not completed.
    next: u64,
    /// Objects completed.
    objects: u64,
}

/// Where the data of the current entry goes.
enum Writer {
    /// Small objects: buffered, then one `put`.
    Buffer(BytesMut),
    /// Large ones: a streaming multipart upload.
    Multipart(Box<WriteMultipart>),
    /// Entries that are not files: skipped.
    Skip,
}

impl std::fmt::Debug for Writer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Buffer(_) => "Buffer",
            Self::Multipart(_) => "Multipart",
            Self::Skip => "Skip",
        })
    }
}

#[derive(Debug)]
struct Current {
    path: Option<Path>,
    /// Data bytes still to come, then padding bytes.
    remaining: u64,
    padding: u64,
    writer: Writer,
}

#[derive(Debug, Default)]
struct Inner {
    state: State,
    /// Archive bytes consumed.
    position: u64,
    header: Vec<u8>,
    current: Option<Current>,
    ended: bool,
    done: bool,
    /// Driven by the pipeline (`first_point` or `restore_state` was called).
    staged: bool,
}

/// Unpacks an archive under a prefix.
#[derive(Debug)]
pub(crate) struct PrefixSink {
    target: Target,
    prefix: String,
    options: ObjectOptions,
    inner: tokio::sync::Mutex<Inner>,
    snapshot: Snapshot,
}

impl PrefixSink {
    pub(crate) fn new(target: Target, prefix: String, options: ObjectOptions) -> Self {
        Self {
            target,
            prefix,
            options,
            inner: tokio::sync::Mutex::new(Inner::default()),
            snapshot: Snapshot::default(),
        }
    }

    fn publish(&self, inner: &Inner) {
        self.snapshot.publish(&inner.state);
    }

    /// The destination of an archive entry: refused when it would leave the prefix.
    fn path_of(&self, name: &str) -> Result<Path, TransferError> {
        if name.starts_with('/') || name.split('/').any(|s| s == ".." || s == ".") {
            return Err(TransferError::Rejected(format!(
                "the archive entry '{name}' would leave the destination prefix"
            )));
        }
        Path::parse(format!("{}{name}", self.prefix)).map_err(|e| {
            TransferError::Rejected(format!("the archive entry '{name}' is no object name: {e}"))
        })
    }

    async fn begin(&self, inner: &mut Inner, entry: Entry) -> Result<(), TransferError> {
        let (path, size, writer) = match entry {
            Entry::End => {
                inner.ended = true;
                return Ok(());
            }
            Entry::Other { size } => (None, size, Writer::Skip),
            Entry::File { name, size } => {
                let path = self.path_of(&name)?;
                let writer = if size <= self.options.part_size {
                    Writer::Buffer(BytesMut::with_capacity(usize::try_from(size).unwrap_or(0)))
                } else {
                    let upload = self.target.store.put_multipart(&path).await.map_err(|e| {
                        translate("cannot start an upload to", &self.target.shown, &e)
                    })?;
                    Writer::Multipart(Box::new(WriteMultipart::new_with_chunk_size(
                        upload,
                        usize::try_from(self.options.part_size).unwrap_or(usize::MAX),
                    )))
                };
                (Some(path), size, writer)
            }
        };
        inner.current = Some(Current {
            path,
            remaining: size,
            padding: tar::padding(size),
            writer,
        });
        Ok(())
    }

    async fn data(&self, current: &mut Current, bytes: Bytes) -> Result<(), TransferError> {
        match &mut current.writer {
            Writer::Buffer(buffer) => buffer.extend_from_slice(&bytes),
            Writer::Multipart(upload) => {
                upload
                    .wait_for_capacity(self.options.parts_in_flight)
                    .await
                    .map_err(|e| translate("cannot upload to", &self.target.shown, &e))?;
                upload.put(bytes);
            }
            Writer::Skip => {}
        }
        Ok(())
    }

    async fn complete(&self, inner: &mut Inner) -> Result<(), TransferError> {
        let Some(current) = inner.current.take() else {
            return Ok(());
        };
        let shown = &self.target.shown;
        match (current.writer, current.path) {
            (Writer::Buffer(buffer), Some(path)) => {
                self.target
                    .store
                    .put(&path, PutPayload::from(buffer.freeze()))
                    .await
                    .map_err(|e| translate("cannot write", shown, &e))?;
            }
            (Writer::Multipart(upload), Some(_)) => {
                upload
                    .finish()
                    .await
                    .map_err(|e| translate("cannot complete an upload to", shown, &e))?;
            }
            _ => {}
        }
        inner.state.objects += 1;
        inner.state.next = inner.position;
        self.publish(inner);
        Ok(())
    }

    async fn consume(&self, inner: &mut Inner, mut chunk: Bytes) -> Result<(), TransferError> {
        while !chunk.is_empty() {
            if inner.ended {
                inner.position += chunk.len() as u64;
                return Ok(());
            }
            let Some(current) = inner.current.as_mut() else {
                let need = usize::try_from(BLOCK).unwrap_or(512) - inner.header.len();
                let take = need.min(chunk.len());
                inner.header.extend_from_slice(&chunk.split_to(take));
                inner.position += take as u64;
                if inner.header.len() == 512 {
                    let mut block = [0u8; 512];
                    block.copy_from_slice(&inner.header);
                    inner.header.clear();
                    let entry = tar::parse(&block)?;
                    self.begin(inner, entry).await?;
                    if inner
                        .current
                        .as_ref()
                        .is_some_and(|c| c.remaining + c.padding == 0)
                    {
                        self.complete(inner).await?;
                    }
                }
                continue;
            };
            if current.remaining > 0 {
                let take = usize::try_from(current.remaining)
                    .unwrap_or(usize::MAX)
                    .min(chunk.len());
                let data = chunk.split_to(take);
                current.remaining -= take as u64;
                inner.position += take as u64;
                let mut current = inner.current.take();
                if let Some(c) = current.as_mut() {
                    self.data(c, data).await?;
                }
                inner.current = current;
            } else {
                let take = usize::try_from(current.padding)
                    .unwrap_or(usize::MAX)
                    .min(chunk.len());
                let _ = chunk.split_to(take);
                current.padding -= take as u64;
                inner.position += take as u64;
            }
            if inner
                .current
                .as_ref()
                .is_some_and(|c| c.remaining + c.padding == 0)
            {
                self.complete(inner).await?;
            }
        }
        Ok(())
    }

    fn rewind(inner: &mut Inner) {
        if let Some(Current {
            writer: Writer::Multipart(upload),
            ..
        }) = inner.current.take()
        {
            // Discard the object cut by the interruption; it is written again from its start.
            tokio::spawn(async move {
                let _ = upload.abort().await;
            });
        }
        inner.header.clear();
        inner.ended = false;
        inner.position = inner.state.next;
    }
}

#[async_trait]
impl DataSink for PrefixSink {
    async fn write(&self, input: SourceStream) -> Result<u64, TransferError> {
        let mut inner = self.inner.lock().await;
        if !inner.staged {
            return Err(crate::sink::not_staged(&self.target.shown));
        }
        if input.offset != inner.position && input.offset == 0 {
            // Restarted from zero: every object is written again.
            inner.state = State::default();
            Self::rewind(&mut inner);
        }
        if input.offset != inner.position {
            if input.offset != inner.state.next {
                return Err(TransferError::Rejected(format!(
                    "cannot continue the objects under {} at archive byte {}: the next object starts at {}",
                    self.target.shown, input.offset, inner.state.next
                )));
            }
            Self::rewind(&mut inner);
        }
        let mut stream = input.stream;
        let mut consumed = 0u64;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk?;
            consumed += chunk.len() as u64;
            if let Err(error) = self.consume(&mut inner, chunk).await {
                Self::rewind(&mut inner);
                return Err(error);
            }
        }
        Ok(consumed)
    }

    async fn resume_point(&self, checkpoint: u64) -> Result<Option<u64>, TransferError> {
        if checkpoint == u64::MAX {
            return Ok(None);
        }
        let mut inner = self.inner.lock().await;
        inner.staged = true;
        Ok(Some(inner.state.next))
    }

    async fn first_point(&self) -> Result<Option<u64>, TransferError> {
        self.inner.lock().await.staged = true;
        Ok(Some(0))
    }

    fn restore_state(&self, state: &str) -> Result<(), TransferError> {
        let (state, mut inner): (State, _) = staged::restore(state, "prefix", &self.inner)?;
        inner.position = state.next;
        inner.state = state;
        inner.staged = true;
        self.publish(&inner);
        Ok(())
    }

    fn stages(&self) -> bool {
        true
    }

    fn state(&self) -> Option<String> {
        self.snapshot.get()
    }

    async fn finish(&self, _position: u64) -> Result<(), TransferError> {
        let mut inner = self.inner.lock().await;
        if inner.done {
            return Ok(());
        }
        if inner.current.is_some() || !inner.header.is_empty() {
            Self::rewind(&mut inner);
            return Err(TransferError::Rejected(format!(
                "the archive for {} ended inside an object",
                self.target.shown
            )));
        }
        inner.done = true;
        tracing::debug!(destination = %self.target.shown, objects = inner.state.objects, "prefix written");
        Ok(())
    }

    async fn abort(&self) -> Result<(), TransferError> {
        let mut inner = self.inner.lock().await;
        Self::rewind(&mut inner);
        Ok(())
    }
}
