//! Public access to a flow's data: pulls from the public endpoint ([`DataPlane::open_pull`]) and
//! uploads to the ingest endpoint ([`DataPlane::begin_ingest`], [`DataPlane::ingest_offset`]),
//! each authorised by the flow's bearer token.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use dataplane_spi::{
    DataFlow, DataFlowState, FlowKind, ResourceAddress, SourceStream, TransferError,
};
use futures::StreamExt;
use tokio::sync::mpsc;

use crate::runner::pipeline::counted;
use crate::runner::IfRunning;
use crate::signaling::{illegal, TOKEN_KEY};
use crate::{DataPlane, DataPlaneError};

type Result<T> = std::result::Result<T, DataPlaneError>;

/// A pull granted by [`DataPlane::open_pull`]: the stream (gated, counted) and its range.
#[derive(Debug)]
pub struct PullGrant {
    /// The data from `stream.offset`.
    pub stream: SourceStream,
}

impl DataPlane {
    pub(crate) fn check_token(flow: &DataFlow, presented: Option<&str>) -> Result<()> {
        let expected = flow.metadata.get(TOKEN_KEY).and_then(|t| t.as_str());
        match (expected, presented) {
            (Some(expected), Some(presented))
                if dataplane_spi::secrets::token_matches(expected, presented) =>
            {
                Ok(())
            }
            _ => Err(DataPlaneError::Unauthorized(
                "missing or wrong bearer token for this data flow".into(),
            )),
        }
    }

    /// Authorises a pull from the public endpoint and opens the dataset at `offset`.
    ///
    /// # Errors
    /// `Unauthorized` wrong token (checked first, so flow ids cannot be probed), `NotFound`, `Conflict` when the flow
    /// is not a STARTED provider-pull flow.
    pub async fn open_pull(
        self: &Arc<Self>,
        id: &str,
        token: Option<&str>,
        offset: u64,
    ) -> Result<PullGrant> {
        // Registered before the flow is read: a suspend recorded after the read closes it.
        let guard = self.runner.open_stream(id);
        let flow = self.store.find(id).await?;
        let flow = match flow {
            Some(flow) => {
                Self::check_token(&flow, token)?;
                flow
            }
            None => {
                return Err(DataPlaneError::Unauthorized(
                    "missing or wrong bearer token for this data flow".into(),
                ))
            }
        };
        if flow.kind != FlowKind::ProviderPull || flow.state != DataFlowState::Started {
            return Err(illegal(&flow.id, flow.state.as_str(), "pull from"));
        }
        let source_address =
            ResourceAddress::from_json(flow.source.clone()).map_err(DataPlaneError::Internal)?;
        let source = self
            .transfers
            .source(&source_address)
            .map_err(transfer_to_api)?;
        let input = source.open(offset).await.map_err(transfer_to_api)?;
        let counted = counted(input, guard.progress.clone());
        // The guard lives as long as the stream: the flow's entry goes with its last stream.
        let gated = counted.stream.map(move |chunk| {
            if guard.gate.load(Ordering::Acquire) {
                chunk
            } else {
                Err(TransferError::Rejected(
                    "the data flow was suspended or terminated".into(),
                ))
            }
        });
        // End the stream after the first refused chunk.
        let gated = gated.scan(false, |failed, chunk| {
            if *failed {
                return futures::future::ready(None);
            }
            *failed = chunk.is_err();
            futures::future::ready(Some(chunk))
        });
        Ok(PullGrant {
            stream: SourceStream {
                stream: Box::pin(gated),
                ..counted
            },
        })
    }

    pub(crate) async fn ingest_flow(
        &self,
        id: &str,
        token: Option<&str>,
    ) -> Result<(DataFlow, Box<dyn dataplane_spi::DataSink>)> {
        let flow = match self.store.find(id).await? {
            Some(flow) => {
                Self::check_token(&flow, token)?;
                flow
            }
            None => {
                return Err(DataPlaneError::Unauthorized(
                    "missing or wrong bearer token for this data flow".into(),
                ))
            }
        };
        if flow.kind != FlowKind::ConsumerPush
            || !matches!(flow.state, DataFlowState::Prepared | DataFlowState::Started)
        {
            return Err(illegal(&flow.id, flow.state.as_str(), "upload to"));
        }
        let destination = flow
            .destination
            .clone()
            .ok_or_else(|| DataPlaneError::Internal("consumer flow without destination".into()))
            .and_then(|d| ResourceAddress::from_json(d).map_err(DataPlaneError::Internal))?;
        let sink = self.transfers.sink(&destination).map_err(transfer_to_api)?;
        Ok((flow, sink))
    }

    /// The tus `Upload-Offset` of a flow's ingest endpoint: how many bytes its destination
    /// holds, so that an interrupted push continues there.
    ///
    /// # Errors
    /// As [`DataPlane::begin_ingest`]; `Conflict` when the destination cannot append.
    pub async fn ingest_offset(&self, id: &str, token: Option<&str>) -> Result<u64> {
        let (flow, sink) = self.ingest_flow(id, token).await?;
        if sink.stages() {
            return self.staged_offset(&flow).await;
        }
        sink.resume_point(u64::MAX)
            .await
            .map_err(transfer_to_api)?
            .ok_or_else(|| {
                DataPlaneError::Conflict(format!(
                    "the destination of data flow '{}' cannot be resumed",
                    flow.id
                ))
            })
    }

    /// Authorises an upload to the ingest endpoint and starts writing it to the flow's
    /// destination: from the start (`offset` `None`: POST/PUT replace the object) or appended at
    /// `offset`, which must equal the current [`DataPlane::ingest_offset`] (tus `PATCH`). Send
    /// the body's chunks into the returned sender, drop it at the end, then await the receiver
    /// for the bytes written.
    ///
    /// # Errors
    /// `Unauthorized` wrong token, `Conflict` when the flow is not a PREPARED/STARTED consumer-push flow or
    /// `offset` is not the current offset, `Unavailable` while an earlier upload is still running.
    pub async fn begin_ingest(
        self: &Arc<Self>,
        id: &str,
        token: Option<&str>,
        body_length: Option<u64>,
        offset: Option<u64>,
    ) -> Result<(
        mpsc::Sender<std::result::Result<bytes::Bytes, TransferError>>,
        tokio::sync::oneshot::Receiver<Result<u64>>,
    )> {
        let (flow, sink) = self.ingest_flow(id, token).await?;
        // A destination that stages its data (a multipart upload) is carried across uploads.
        let staged = if sink.stages() {
            Some(self.staged_sink_for(&flow, offset).await?)
        } else {
            None
        };
        if let (Some(offset), None) = (offset, &staged) {
            let current = sink.resume_point(u64::MAX).await.map_err(transfer_to_api)?;
            if current != Some(offset) {
                return Err(DataPlaneError::Conflict(format!(
                    "Upload-Offset {offset} does not match the upload's offset {}",
                    current.map_or_else(|| "(not resumable)".to_owned(), |c| c.to_string())
                )));
            }
        }
        let offset = offset.unwrap_or(0);
        let size = body_length.map(|length| offset.saturating_add(length));
        if let Some(max) = self.config.max_bytes {
            // Refused before the destination is touched when the sender says how much comes.
            if size.unwrap_or(offset) > max {
                return Err(DataPlaneError::TooLarge(format!(
                    "the upload exceeds dpf.transfer.max-bytes ({max} bytes per data flow)"
                )));
            }
        }
        let (sender, receiver) = mpsc::channel(8);
        let (done_tx, done_rx) = tokio::sync::oneshot::channel();
        let input = SourceStream {
            stream: Box::pin(tokio_stream_from(receiver)),
            size,
            content_type: None,
            offset,
        };
        let exceeded = Arc::new(AtomicBool::new(false));
        let input = match self.config.max_bytes {
            Some(max) => crate::limits::capped(input, max, "the upload", exceeded.clone())
                .map_err(|e| DataPlaneError::TooLarge(e.to_string()))?,
            None => input,
        };
        let flow_id = flow.id.clone();
        let plane = self.clone();
        let staged_flow = flow.clone();
        // The flow completes on the control plane's `completed`; the upload only moves bytes.
        let upload = move |progress| async move {
            let input = counted(input, progress);
            let written = match staged {
                Some(staged) => plane
                    .write_staged(&staged_flow, staged, input)
                    .await
                    .map(|end| end.saturating_sub(offset)),
                None => sink.write(input).await,
            };
            let staged = sink.stages();
            let result = written.map_err(|error| {
                if exceeded.load(Ordering::Acquire) {
                    DataPlaneError::TooLarge(error.to_string())
                } else {
                    transfer_to_api(error)
                }
            });
            if result.is_err() && offset > 0 && !staged {
                // An interrupted append leaves nothing behind: the next HEAD answers the offset
                // the sender last completed, so each PATCH lands whole or not at all.
                let rewind = SourceStream {
                    stream: Box::pin(futures::stream::empty()),
                    size: None,
                    content_type: None,
                    offset,
                };
                if let Err(error) = sink.write(rewind).await {
                    tracing::warn!(%flow_id, %error, "cannot discard a partial upload");
                }
            }
            if let Ok(bytes) = &result {
                tracing::debug!(%flow_id, offset, bytes, "ingest finished");
            }
            let _ = done_tx.send(result.map(|bytes| offset + bytes));
        };
        // Checked before anything is written, so a refused upload never touches the
        // destination. A previous upload still running is usually the connection of a sender
        // that just lost its flow to another replica and is about to be closed: `Unavailable`, which
        // senders retry.
        if !self
            .runner
            .spawn(&flow.id, flow.epoch, IfRunning::Refuse, upload)
        {
            return Err(DataPlaneError::Unavailable(format!(
                "an earlier upload to data flow '{}' is still being received; retry shortly",
                flow.id
            )));
        }
        Ok((sender, done_rx))
    }
}

pub(crate) fn transfer_to_api(error: TransferError) -> DataPlaneError {
    match error {
        TransferError::Unsupported(_) | TransferError::InvalidAddress(_) => {
            DataPlaneError::InvalidInput(error.to_string())
        }
        TransferError::Rejected(_) => DataPlaneError::Conflict(error.to_string()),
        TransferError::Transient(_) => DataPlaneError::Unavailable(error.to_string()),
    }
}

/// A `Stream` over an mpsc receiver (ingest bodies).
pub(crate) fn tokio_stream_from(
    mut receiver: mpsc::Receiver<std::result::Result<bytes::Bytes, TransferError>>,
) -> impl futures::Stream<Item = std::result::Result<bytes::Bytes, TransferError>> + Send {
    futures::stream::poll_fn(move |cx| receiver.poll_recv(cx))
}
