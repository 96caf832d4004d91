//! The cluster key-value store: reads and compare-and-set writes, and watch streams that read
//! the event log after a revision in batches (resumable: a watcher that reconnects with the
//! last revision it saw misses nothing, unless that revision was compacted away).

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use dataplane_spi::{CoordinationError, Coordinator, Expected, KvEntry, KvEvent, Session};
use futures::Stream;

use crate::{ClusterError, Result};

/// Most events a watch reads per poll.
pub const KV_WATCH_BATCH: usize = 500;

/// The key-value store of the cluster over a [`Coordinator`]. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Kv {
    coordinator: Arc<dyn Coordinator>,
}

/// One item of a [`Kv::watch`] stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KvWatchItem {
    /// A PUT or DELETE, in revision order.
    Event(KvEvent),
    /// The events after the watched revision were compacted away: the last item of the
    /// stream. List again and watch from the listing's revision.
    Compacted {
        /// The revision the watch asked events after.
        requested: i64,
        /// Events at or below this revision are gone.
        compacted: i64,
    },
}

impl Kv {
    /// The key-value store over `coordinator`.
    pub fn new(coordinator: Arc<dyn Coordinator>) -> Self {
        Self { coordinator }
    }

    /// The coordinator underneath, for leader-only and session operations.
    pub fn coordinator(&self) -> &Arc<dyn Coordinator> {
        &self.coordinator
    }

    /// The current value of `key`, if any.
    ///
    /// # Errors
    /// Backend failures.
    pub async fn get(&self, key: &str) -> Result<Option<KvEntry>> {
        Ok(self.coordinator.kv_get(key).await?)
    }

    /// Creates or replaces `key` if `expected` holds.
    ///
    /// # Errors
    /// [`ClusterError::Conflict`] when `expected` does not hold (nothing changed),
    /// [`ClusterError::InvalidInput`] for a bad key or an oversized value.
    pub async fn put(&self, key: &str, value: &str, expected: Expected) -> Result<KvEntry> {
        Ok(self.coordinator.kv_put(key, value, expected, None).await?)
    }

    /// As [`Kv::put`], the key bound to `session`: it is deleted when the session dies.
    ///
    /// # Errors
    /// As [`Kv::put`], and [`ClusterError::Conflict`] when the session is not alive.
    pub async fn put_with_session(
        &self,
        key: &str,
        value: &str,
        expected: Expected,
        session: &Session,
    ) -> Result<KvEntry> {
        Ok(self
            .coordinator
            .kv_put(key, value, expected, Some(session))
            .await?)
    }

    /// Deletes `key` if `expected` holds; returns the DELETE event.
    ///
    /// # Errors
    /// [`ClusterError::NotFound`], [`ClusterError::Conflict`].
    pub async fn delete(&self, key: &str, expected: Expected) -> Result<KvEvent> {
        Ok(self.coordinator.kv_delete(key, expected).await?)
    }

    /// Every key starting with `prefix`, sorted, and the revision the listing reflects (watch
    /// from there to miss nothing).
    ///
    /// # Errors
    /// Backend failures.
    pub async fn list(&self, prefix: &str) -> Result<(Vec<KvEntry>, i64)> {
        Ok(self.coordinator.kv_list(prefix).await?)
    }

    /// Checks that a watch of `prefix` can start after `from_revision`, to refuse a bad start
    /// before a stream begins.
    ///
    /// # Errors
    /// [`ClusterError::InvalidInput`] for a negative revision, [`CoordinationError::Compacted`]
    /// when events after it were discarded (kept as the coordination error so the caller can
    /// show the compacted revision), backend failures.
    pub async fn check_watch_start(
        &self,
        prefix: &str,
        from_revision: i64,
    ) -> std::result::Result<(), CoordinationError> {
        if from_revision < 0 {
            return Err(CoordinationError::InvalidInput(format!(
                "fromRevision must be ≥ 0, got {from_revision}"
            )));
        }
        self.coordinator
            .kv_events(prefix, from_revision, 1)
            .await
            .map(|_| ())
    }

    /// The events on keys starting with `prefix` with a revision above `from_revision`, in
    /// revision order, read in batches of [`KV_WATCH_BATCH`] and polled every `poll` while
    /// there are none (the coordinator offers no change hints).
    ///
    /// When the revision is (or becomes) compacted away the stream yields one
    /// [`KvWatchItem::Compacted`] and ends. Other failures are yielded as `Err` items and do
    /// not end the stream: it tries again a `poll` later from the same revision. A negative
    /// `from_revision` is one [`ClusterError::InvalidInput`] item, then the end. The stream
    /// only ends in those two cases; a pending `next()` may be dropped (e.g. by a keep-alive
    /// timeout) without losing anything.
    pub fn watch(
        &self,
        prefix: impl Into<String>,
        from_revision: i64,
        poll: Duration,
    ) -> impl Stream<Item = Result<KvWatchItem>> + Send + 'static {
        let start = Watch {
            coordinator: self.coordinator.clone(),
            prefix: prefix.into(),
            after: from_revision,
            poll,
            pending: VecDeque::new(),
            done: false,
            backoff: false,
        };
        futures::stream::unfold(start, |mut watch| async move {
            if let Some(event) = watch.pending.pop_front() {
                return Some((Ok(KvWatchItem::Event(event)), watch));
            }
            if watch.done {
                return None;
            }
            if watch.after < 0 {
                watch.done = true;
                let message = format!("fromRevision must be ≥ 0, got {}", watch.after);
                return Some((Err(ClusterError::InvalidInput(message)), watch));
            }
            loop {
                if std::mem::take(&mut watch.backoff) {
                    tokio::time::sleep(watch.poll).await;
                }
                match watch
                    .coordinator
                    .kv_events(&watch.prefix, watch.after, KV_WATCH_BATCH)
                    .await
                {
                    Ok(events) if events.is_empty() => watch.backoff = true,
                    Ok(events) => {
                        watch.after = events.last().map_or(watch.after, |e| e.revision);
                        watch.pending.extend(events);
                        let first = watch.pending.pop_front().map(KvWatchItem::Event)?;
                        return Some((Ok(first), watch));
                    }
                    Err(CoordinationError::Compacted {
                        requested,
                        compacted,
                    }) => {
                        watch.done = true;
                        let item = KvWatchItem::Compacted {
                            requested,
                            compacted,
                        };
                        return Some((Ok(item), watch));
                    }
                    Err(error) => {
                        watch.backoff = true;
                        return Some((Err(error.into()), watch));
                    }
                }
            }
        })
    }
}

struct Watch {
    coordinator: Arc<dyn Coordinator>,
    prefix: String,
    /// The last revision read (or the start).
    after: i64,
    poll: Duration,
    pending: VecDeque<KvEvent>,
    done: bool,
    /// Wait a poll interval before the next read.
    backoff: bool,
}
