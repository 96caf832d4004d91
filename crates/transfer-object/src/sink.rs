//! The sink of one object: a multipart upload whose id and acknowledged parts are the sink's
//! checkpointed state, so that another replica continues the same upload.
//!
//! Driven by the pipeline (staged: [`DataSink::first_point`] or
//! [`DataSink::restore_state`] was called), each [`DataSink::write`] starts parts as they fill
//! and returns as soon as the next part in order is acknowledged (or its input ends), so that
//! the pipeline records a checkpoint right after every acknowledgement; the bytes after the
//! last full part stay in memory (the tail) and the upload is completed by
//! [`DataSink::finish`]. The resume point is the end of the last acknowledged part (it may lie
//! before the checkpoint: the tail is read again). A write the pipeline does not drive is
//! refused ([`not_staged`]).

use std::collections::VecDeque;

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use dataplane_spi::{DataSink, SourceStream, TransferError};
use futures::StreamExt;
use object_store::multipart::PartId;
use object_store::path::Path;
use object_store::{ObjectStoreExt, PutPayload};
use serde::{Deserialize, Serialize};
use tokio::task::JoinHandle;

use crate::address::Target;
use crate::errors::translate;
use crate::staged::{self, Snapshot};
use crate::ObjectOptions;

/// The recorded state: the upload and its acknowledged parts, in order.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct State {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    upload_id: Option<String>,
    part_size: u64,
    /// Content ids (S3 ETags, Azure block ids) of parts 1..=n.
    #[serde(default)]
    parts: Vec<String>,
}

type PartTask = JoinHandle<Result<String, TransferError>>;

#[derive(Debug, Default)]
struct Inner {
    state: State,
    /// Bytes after the last part started, not yet uploaded.
    tail: BytesMut,
    /// Parts uploading, in order.
    in_flight: VecDeque<PartTask>,
    /// Bytes consumed: the end of the parts started plus the tail.
    position: u64,
    /// Driven by the pipeline: the upload is completed by `finish`.
    staged: bool,
    done: bool,
}

impl Inner {
    fn acked_end(&self) -> u64 {
        self.state.parts.len() as u64 * self.state.part_size
    }

    fn cancel(&mut self) {
        for task in self.in_flight.drain(..) {
            task.abort();
        }
        self.tail.clear();
        self.position = self.acked_end();
    }
}

/// A write by a caller that does not drive the sink in steps ([`DataSink::stages`]: first
/// `first_point` or `restore_state`, then `finish`) could not carry a multipart upload to its
/// end: refused, rather than completing an object from the first write alone.
pub(crate) fn not_staged(shown: &str) -> TransferError {
    TransferError::Rejected(format!(
        "{shown} stages its data: the writer must start it with first_point or restore_state and complete it with finish"
    ))
}

/// A multipart upload of one object.
#[derive(Debug)]
pub(crate) struct ObjectSink {
    target: Target,
    key: Path,
    options: ObjectOptions,
    inner: tokio::sync::Mutex<Inner>,
    snapshot: Snapshot,
}

impl ObjectSink {
    pub(crate) fn new(target: Target, key: Path, options: ObjectOptions) -> Self {
        let inner = Inner {
            state: State {
                part_size: options.part_size,
                ..State::default()
            },
            ..Inner::default()
        };
        Self {
            target,
            key,
            options,
            inner: tokio::sync::Mutex::new(inner),
            snapshot: Snapshot::default(),
        }
    }

    fn publish(&self, inner: &Inner) {
        self.snapshot.publish(&inner.state);
    }

    fn fail(&self, what: &str, error: &object_store::Error) -> TransferError {
        translate(what, &self.target.shown, error)
    }

    async fn upload_id(&self, inner: &mut Inner) -> Result<String, TransferError> {
        if let Some(id) = &inner.state.upload_id {
            return Ok(id.clone());
        }
        let id = self
            .target
            .multipart
            .create_multipart(&self.key)
            .await
            .map_err(|e| self.fail("cannot start an upload to", &e))?;
        tracing::debug!(destination = %self.target.shown, "multipart upload created");
        inner.state.upload_id = Some(id.clone());
        self.publish(inner);
        Ok(id)
    }

    /// Starts uploading the next part.
    async fn launch(&self, inner: &mut Inner, data: Bytes) -> Result<(), TransferError> {
        let id = self.upload_id(inner).await?;
        let index = inner.state.parts.len() + inner.in_flight.len();
        let (multipart, key, shown) = (
            self.target.multipart.clone(),
            self.key.clone(),
            self.target.shown.clone(),
        );
        inner.in_flight.push_back(tokio::spawn(async move {
            multipart
                .put_part(&key, &id, index, PutPayload::from(data))
                .await
                .map(|part| part.content_id)
                .map_err(|e| translate(&format!("cannot upload part {} of", index + 1), &shown, &e))
        }));
        Ok(())
    }

    /// Waits for the next part in order and records it.
    async fn settle_front(&self, inner: &mut Inner) -> Result<(), TransferError> {
        let Some(task) = inner.in_flight.pop_front() else {
            return Ok(());
        };
        let content_id = task
            .await
            .map_err(|e| TransferError::Transient(format!("a part upload stopped: {e}")))??;
        inner.state.parts.push(content_id);
        self.publish(inner);
        Ok(())
    }

    async fn write_locked(
        &self,
        inner: &mut Inner,
        input: SourceStream,
    ) -> Result<u64, TransferError> {
        if input.offset != inner.position && input.offset == 0 {
            // The transfer restarts from zero (a source that cannot seek, an event cursor that
            // does not match): a new upload; the old one is discarded.
            inner.cancel();
            if let Some(id) = inner.state.upload_id.take() {
                let (multipart, key) = (self.target.multipart.clone(), self.key.clone());
                tokio::spawn(async move {
                    let _ = multipart.abort_multipart(&key, &id).await;
                });
            }
            inner.state.parts.clear();
            inner.state.part_size = self.options.part_size;
            inner.position = 0;
            self.publish(inner);
        }
        if input.offset != inner.position {
            let acked = inner.acked_end();
            if input.offset != acked {
                return Err(TransferError::Rejected(format!(
                    "cannot write {} from byte {}: the upload holds {acked} bytes",
                    self.target.shown, input.offset
                )));
            }
            inner.cancel();
        }
        let part_size = usize::try_from(inner.state.part_size).unwrap_or(usize::MAX);
        let mut stream = input.stream;
        let mut consumed = 0u64;
        let mut ended = false;
        loop {
            if !ended && inner.in_flight.len() < self.options.parts_in_flight {
                match stream.next().await {
                    Some(chunk) => {
                        let chunk = chunk?;
                        consumed += chunk.len() as u64;
                        inner.position += chunk.len() as u64;
                        inner.tail.extend_from_slice(&chunk);
                        while inner.tail.len() >= part_size {
                            let part = inner.tail.split_to(part_size).freeze();
                            self.launch(inner, part).await?;
                        }
                        continue;
                    }
                    None => ended = true,
                }
            }
            if inner.in_flight.is_empty() {
                return Ok(consumed);
            }
            self.settle_front(inner).await?;
            // Staged: return at once, so that the acknowledged part is checkpointed.
            if inner.staged {
                return Ok(consumed);
            }
        }
    }

    async fn finish_locked(&self, inner: &mut Inner) -> Result<(), TransferError> {
        if inner.done {
            return Ok(());
        }
        while !inner.in_flight.is_empty() {
            self.settle_front(inner).await?;
        }
        let tail = inner.tail.split().freeze();
        match inner.state.upload_id.clone() {
            None => {
                self.target
                    .store
                    .put(&self.key, PutPayload::from(tail))
                    .await
                    .map_err(|e| self.fail("cannot write", &e))?;
            }
            Some(id) => {
                if !tail.is_empty() {
                    self.launch(inner, tail).await?;
                    self.settle_front(inner).await?;
                }
                let parts = inner
                    .state
                    .parts
                    .iter()
                    .map(|content_id| PartId {
                        content_id: content_id.clone(),
                    })
                    .collect();
                self.target
                    .multipart
                    .complete_multipart(&self.key, &id, parts)
                    .await
                    .map_err(|e| self.fail("cannot complete the upload to", &e))?;
            }
        }
        tracing::debug!(destination = %self.target.shown, parts = inner.state.parts.len(), "object written");
        inner.done = true;
        inner.state = State {
            part_size: inner.state.part_size,
            ..State::default()
        };
        self.snapshot.clear();
        Ok(())
    }

    async fn abort_locked(&self, inner: &mut Inner) -> Result<(), TransferError> {
        inner.cancel();
        if let Some(id) = inner.state.upload_id.take() {
            inner.state.parts.clear();
            self.publish(inner);
            self.target
                .multipart
                .abort_multipart(&self.key, &id)
                .await
                .map_err(|e| self.fail("cannot abort the upload to", &e))?;
            tracing::info!(destination = %self.target.shown, "multipart upload aborted");
        }
        Ok(())
    }
}

#[async_trait]
impl DataSink for ObjectSink {
    async fn write(&self, input: SourceStream) -> Result<u64, TransferError> {
        let mut inner = self.inner.lock().await;
        if inner.done {
            return Err(TransferError::Rejected(format!(
                "{} is complete already",
                self.target.shown
            )));
        }
        if !inner.staged {
            return Err(not_staged(&self.target.shown));
        }
        let result = self.write_locked(&mut inner, input).await;
        if result.is_err() {
            inner.cancel();
        }
        result
    }

    async fn resume_point(&self, checkpoint: u64) -> Result<Option<u64>, TransferError> {
        let mut inner = self.inner.lock().await;
        // The pipeline asks with its checkpoint; the ingest endpoint asks with u64::MAX for the
        // upload offset of a fresh sink, which it cannot know: such uploads are not resumable.
        if checkpoint == u64::MAX {
            return Ok(None);
        }
        inner.staged = true;
        Ok(Some(inner.acked_end()))
    }

    async fn first_point(&self) -> Result<Option<u64>, TransferError> {
        self.inner.lock().await.staged = true;
        Ok(Some(0))
    }

    fn restore_state(&self, state: &str) -> Result<(), TransferError> {
        let (state, mut inner): (State, _) = staged::restore(state, "upload", &self.inner)?;
        inner.state = state;
        inner.staged = true;
        inner.position = inner.acked_end();
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
        let result = self.finish_locked(&mut inner).await;
        if result.is_err() {
            inner.cancel();
        }
        result
    }

    async fn abort(&self) -> Result<(), TransferError> {
        let mut inner = self.inner.lock().await;
        self.abort_locked(&mut inner).await
    }
}
