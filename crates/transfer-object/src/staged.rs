//! What both staging sinks (one object, a prefix) share: the published snapshot of their
//! state, and how a recorded state is read back.

use std::sync::Mutex as StdMutex;

use dataplane_spi::TransferError;
use serde::de::DeserializeOwned;
use serde::Serialize;

/// The sink's state as last published (JSON), read by [`DataSink::state`] without waiting for
/// a running write.
///
/// [`DataSink::state`]: dataplane_spi::DataSink::state
#[derive(Debug, Default)]
pub(crate) struct Snapshot(StdMutex<Option<String>>);

impl Snapshot {
    pub(crate) fn publish<T: Serialize>(&self, state: &T) {
        self.set(serde_json::to_string(state).ok());
    }

    pub(crate) fn clear(&self) {
        self.set(None);
    }

    fn set(&self, value: Option<String>) {
        if let Ok(mut snapshot) = self.0.lock() {
            *snapshot = value;
        }
    }

    pub(crate) fn get(&self) -> Option<String> {
        self.0.lock().ok().and_then(|s| s.clone())
    }
}

/// Parses a recorded state (`what`: how to name it in the error) and locks `inner` to restore
/// it; refused while the sink is busy.
pub(crate) fn restore<'a, S: DeserializeOwned, I>(
    state: &str,
    what: &str,
    inner: &'a tokio::sync::Mutex<I>,
) -> Result<(S, tokio::sync::MutexGuard<'a, I>), TransferError> {
    let state: S = serde_json::from_str(state).map_err(|e| {
        TransferError::Rejected(format!("an unreadable {what} state in the checkpoint: {e}"))
    })?;
    let inner = inner.try_lock().map_err(|_| {
        TransferError::Transient("the sink is busy; its state cannot be restored now".into())
    })?;
    Ok((state, inner))
}
