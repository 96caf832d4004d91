//! The [`Runner`]: what this replica does locally for each flow, in one map
//! `FlowId → LocalTransfer { epoch, task, progress, gate }`.
//!
//! An entry exists exactly while something runs here for the flow: a transfer task (a
//! pipeline or an ingest upload) or public pull streams. It is removed when the task ends
//! (completed, failed for good, stopped because the lease was lost), when the flow is stopped
//! here (suspend, terminate, completed, release over max-concurrent-flows, lease lost,
//! shutdown), or when the last pull stream of the flow ends — whatever the path, so the map
//! holds the flows that run now and never the flows that ran ([`Runner::len`]).
//!
//! - `attempts`: the attempt loop of a transfer (retries with backoff, completion, failure).
//! - `checkpointer`: the owner's fenced checkpoint writes and the resume counters.
//! - [`pipeline`]: one transfer attempt (`sink.write(source.open())`) with a byte counter and
//!   checkpoints (also public as `dataplane_manager::pipeline`).

pub(crate) mod attempts;
pub(crate) mod checkpointer;
pub mod pipeline;

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::task::JoinHandle;

use crate::runner::pipeline::Progress;

/// Gate of a flow's public pull streams on this replica: closed streams end at once.
pub(crate) type Gate = Arc<AtomicBool>;

/// What runs on this replica for one flow.
#[derive(Debug)]
struct LocalTransfer {
    /// Identifies this entry among all entries the flow ever had here: a task or a stream
    /// only ever removes the entry it was started with.
    serial: u64,
    /// The owner epoch the task runs under (0 without a task).
    epoch: i64,
    /// The transfer task (pipeline or ingest upload), if any.
    task: Option<JoinHandle<()>>,
    /// Live byte counts, shown by the management view.
    progress: Arc<Progress>,
    /// Open while pull streams may continue.
    gate: Gate,
    /// Public pull streams open now.
    streams: usize,
}

impl LocalTransfer {
    fn running(&self) -> bool {
        self.task.as_ref().is_some_and(|task| !task.is_finished())
    }

    /// Nothing runs for the flow any more: the entry can go.
    fn idle(&self) -> bool {
        !self.running() && self.streams == 0
    }
}

/// How [`Runner::spawn`] treats a task that is already running for the flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum IfRunning {
    /// Keep a running task of the same epoch (a pipeline claimed twice); replace otherwise.
    KeepSameEpoch,
    /// Refuse while any task runs (an ingest upload still being received).
    Refuse,
}

/// The local transfers of one replica (see the module documentation).
#[derive(Debug, Default)]
pub struct Runner {
    flows: Mutex<HashMap<String, LocalTransfer>>,
    serial: AtomicU64,
}

impl Runner {
    /// An empty runner.
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    fn flows(&self) -> MutexGuard<'_, HashMap<String, LocalTransfer>> {
        // The map stays consistent across a panic (every change is one insert or remove).
        self.flows.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn next_serial(&self) -> u64 {
        self.serial.fetch_add(1, Ordering::Relaxed)
    }

    /// Flows with a local entry (a running task or open pull streams). For tests and metrics:
    /// it returns to zero when nothing runs, however many flows ran before.
    pub fn len(&self) -> usize {
        self.flows().len()
    }

    /// Whether no flow has a local entry.
    pub fn is_empty(&self) -> bool {
        self.flows().is_empty()
    }

    /// Transfer tasks running now.
    pub(crate) fn running(&self) -> usize {
        self.flows().values().filter(|t| t.running()).count()
    }

    /// Whether a task (a pipeline, an ingest upload) runs for `flow_id` now.
    pub(crate) fn is_running(&self, flow_id: &str) -> bool {
        self.flows()
            .get(flow_id)
            .is_some_and(LocalTransfer::running)
    }

    /// The running tasks with their epochs.
    pub(crate) fn running_tasks(&self) -> Vec<(String, i64)> {
        self.flows()
            .iter()
            .filter(|(_, t)| t.running())
            .map(|(id, t)| (id.clone(), t.epoch))
            .collect()
    }

    /// Flows with a task (running or just ended), to stop them all.
    pub(crate) fn with_tasks(&self) -> Vec<String> {
        self.flows()
            .iter()
            .filter(|(_, t)| t.task.is_some())
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// The live progress of a flow, while something runs for it here.
    pub(crate) fn progress(&self, flow_id: &str) -> Option<Arc<Progress>> {
        self.flows().get(flow_id).map(|t| t.progress.clone())
    }

    /// Starts the task `make(progress)` for `flow_id` under `epoch`, with fresh progress. The
    /// entry is removed when the task ends. Answers `false` when nothing was started because of
    /// `if_running`.
    pub(crate) fn spawn<F>(
        self: &Arc<Self>,
        flow_id: &str,
        epoch: i64,
        if_running: IfRunning,
        make: impl FnOnce(Arc<Progress>) -> F,
    ) -> bool
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let mut flows = self.flows();
        let (gate, streams) = match flows.get(flow_id) {
            Some(existing) if existing.running() => {
                let keep = match if_running {
                    IfRunning::KeepSameEpoch => existing.epoch == epoch,
                    IfRunning::Refuse => true,
                };
                if keep {
                    return false;
                }
                (existing.gate.clone(), existing.streams)
            }
            Some(existing) => (existing.gate.clone(), existing.streams),
            None => (Arc::new(AtomicBool::new(true)), 0),
        };
        let serial = self.next_serial();
        let progress = Arc::new(Progress::default());
        let work = make(progress.clone());
        let runner = Arc::clone(self);
        let key = flow_id.to_owned();
        // Spawned under the lock: the task cannot end (and look for its entry) before the
        // entry is in the map.
        let task = tokio::spawn(async move {
            work.await;
            runner.task_ended(&key, serial);
        });
        flows.insert(
            flow_id.to_owned(),
            LocalTransfer {
                serial,
                epoch,
                task: Some(task),
                progress,
                gate,
                streams,
            },
        );
        true
    }

    fn task_ended(&self, flow_id: &str, serial: u64) {
        let mut flows = self.flows();
        if let Some(entry) = flows.get_mut(flow_id).filter(|t| t.serial == serial) {
            entry.task = None;
            if entry.streams == 0 {
                flows.remove(flow_id);
            }
        }
    }

    /// Registers a public pull stream of `flow_id` (creating the entry if needed). Take it
    /// before reading the flow's state: a stop recorded after the read then closes this gate.
    pub(crate) fn open_stream(self: &Arc<Self>, flow_id: &str) -> StreamGuard {
        let mut flows = self.flows();
        let entry = flows
            .entry(flow_id.to_owned())
            .or_insert_with(|| LocalTransfer {
                serial: self.next_serial(),
                epoch: 0,
                task: None,
                progress: Arc::new(Progress::default()),
                gate: Arc::new(AtomicBool::new(true)),
                streams: 0,
            });
        entry.streams += 1;
        StreamGuard {
            runner: Arc::clone(self),
            flow_id: flow_id.to_owned(),
            serial: entry.serial,
            gate: entry.gate.clone(),
            progress: entry.progress.clone(),
        }
    }

    /// Re-opens the gate of a flow that runs again (its pull streams may continue).
    pub(crate) fn open_gate(&self, flow_id: &str) {
        if let Some(entry) = self.flows().get_mut(flow_id) {
            entry.gate = Arc::new(AtomicBool::new(true));
        }
    }

    /// Closes a flow's gate: its pull streams end at their next chunk. An entry without a task
    /// goes at once (the streams' guards then find nothing to remove).
    pub(crate) fn close_gate(&self, flow_id: &str) {
        let mut flows = self.flows();
        if let Some(entry) = flows.get(flow_id) {
            entry.gate.store(false, Ordering::Release);
            if entry.task.is_none() {
                flows.remove(flow_id);
            }
        }
    }

    /// Stops this replica's work on a flow (closes the gate, aborts the task) and waits until
    /// the task cannot write any more. The entry is gone when this returns.
    pub(crate) async fn stop(&self, flow_id: &str) {
        let removed = self.flows().remove(flow_id);
        if let Some(entry) = removed {
            entry.gate.store(false, Ordering::Release);
            if let Some(task) = entry.task {
                task.abort();
                let _ = task.await;
                tracing::debug!(%flow_id, epoch = entry.epoch, "local transfer stopped");
            }
        }
    }
}

/// A public pull stream's hold on its flow's entry: the gate to check and the progress to
/// count in. Dropping the last one removes an entry without a task.
#[derive(Debug)]
pub(crate) struct StreamGuard {
    runner: Arc<Runner>,
    flow_id: String,
    serial: u64,
    /// Closed when the flow is suspended or terminated.
    pub(crate) gate: Gate,
    /// Bytes served.
    pub(crate) progress: Arc<Progress>,
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        let mut flows = self.runner.flows();
        if let Some(entry) = flows
            .get_mut(&self.flow_id)
            .filter(|t| t.serial == self.serial)
        {
            entry.streams = entry.streams.saturating_sub(1);
            if entry.idle() {
                flows.remove(&self.flow_id);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn a_task_entry_goes_when_the_task_ends() {
        let runner = Runner::new();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        assert!(
            runner.spawn("f", 1, IfRunning::KeepSameEpoch, |_| async move {
                let _ = rx.await;
            })
        );
        assert_eq!(runner.len(), 1);
        assert_eq!(runner.running(), 1);
        assert!(!runner.spawn("f", 1, IfRunning::KeepSameEpoch, |_| async {}));
        assert!(!runner.spawn("f", 2, IfRunning::Refuse, |_| async {}));
        tx.send(()).unwrap();
        for _ in 0..100 {
            if runner.is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        assert_eq!(runner.len(), 0);
    }

    #[tokio::test]
    async fn a_replaced_task_does_not_remove_its_successor() {
        let runner = Runner::new();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        runner.spawn("f", 1, IfRunning::KeepSameEpoch, |_| async move {
            let _ = rx.await;
        });
        runner.spawn("f", 2, IfRunning::KeepSameEpoch, |_| std::future::pending());
        tx.send(()).unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(runner.running_tasks(), vec![("f".to_owned(), 2)]);
        runner.stop("f").await;
        assert!(runner.is_empty());
    }

    #[tokio::test]
    async fn streams_hold_the_entry_and_a_closed_gate_releases_it() {
        let runner = Runner::new();
        let first = runner.open_stream("f");
        let second = runner.open_stream("f");
        assert_eq!(runner.len(), 1);
        drop(first);
        assert_eq!(runner.len(), 1, "a stream is still open");
        drop(second);
        assert!(runner.is_empty());

        let stream = runner.open_stream("g");
        runner.close_gate("g");
        assert!(
            !stream.gate.load(Ordering::Acquire),
            "the open stream is gated"
        );
        assert!(runner.is_empty());
        let fresh = runner.open_stream("g");
        drop(stream);
        assert_eq!(runner.len(), 1, "an old stream does not remove a new entry");
        drop(fresh);
        assert!(runner.is_empty());
    }
}
