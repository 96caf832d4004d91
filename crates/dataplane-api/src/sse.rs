//! Server-sent-event watch streams (`?watch=true` on `/cluster/members` and `/cluster/kv`) and
//! the per-replica budget of them (`dpf.api.max-watchers`): each stream holds a [`WatchSlot`]
//! that is given back when the stream ends or the client goes away.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse};
use bytes::Bytes;
use cluster::kv::KvWatchItem;
use dataplane_manager::registry::redact_kv_value;
use dataplane_manager::DataPlaneError;
use futures::{Stream, StreamExt};

use crate::cluster::{member_json, members_with_revisions};
use crate::{ApiError, ApiResult, Plane};

/// Concurrent server-sent-event watch streams a replica serves by default
/// (`dpf.api.max-watchers`).
pub const DEFAULT_MAX_WATCHERS: usize = 64;

/// How often a members watch compares the table with what it sent.
const MEMBERS_WATCH_INTERVAL: Duration = Duration::from_millis(200);
/// How often a KV watch looks for new events.
const KV_WATCH_INTERVAL: Duration = Duration::from_millis(100);
/// How long an idle watch waits before it sends a keep-alive comment.
const KEEP_ALIVE: Duration = Duration::from_secs(1);

/// Settings of the API that are shared by every worker of one server: build one per process
/// and hand clones to [`configure_with`](crate::configure_with).
#[derive(Debug, Clone)]
pub struct ApiOptions {
    watchers: Arc<WatchSlots>,
}

impl ApiOptions {
    /// At most `max_watchers` concurrent watch streams (`?watch=true` on `/cluster/kv` and
    /// `/cluster/members`); more are answered 429.
    pub fn new(max_watchers: usize) -> Self {
        Self {
            watchers: Arc::new(WatchSlots {
                max: max_watchers,
                used: AtomicUsize::new(0),
            }),
        }
    }

    /// Watch streams open right now.
    pub fn open_watchers(&self) -> usize {
        self.watchers.used.load(Ordering::Acquire)
    }
}

impl Default for ApiOptions {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_WATCHERS)
    }
}

/// The watch-stream budget of one replica.
#[derive(Debug)]
struct WatchSlots {
    max: usize,
    used: AtomicUsize,
}

/// One taken watch slot, given back when dropped (with the stream that holds it: when the
/// stream ends or the client disconnects).
#[derive(Debug)]
struct WatchSlot(Arc<WatchSlots>);

impl WatchSlots {
    fn take(self: &Arc<Self>) -> Result<WatchSlot, ApiError> {
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                (used < self.max).then_some(used + 1)
            })
            .map(|_| WatchSlot(self.clone()))
            .map_err(|_| {
                ApiError::TooManyWatchers(format!(
                    "too many watch streams on this replica (dpf.api.max-watchers = {}); retry later",
                    self.max
                ))
            })
    }
}

impl Drop for WatchSlot {
    fn drop(&mut self) {
        self.0.used.fetch_sub(1, Ordering::AcqRel);
    }
}

/// One event frame.
fn frame(event: &str, data: &serde_json::Value) -> Bytes {
    Bytes::from(format!("event: {event}\ndata: {data}\n\n"))
}

/// A comment, so that a client that went away is noticed (and its watch slot freed) and
/// proxies keep the connection.
fn keep_alive() -> Bytes {
    Bytes::from_static(b": keep-alive\n\n")
}

fn event_stream<S>(stream: S) -> HttpResponse
where
    S: Stream<Item = Result<Bytes, actix_web::Error>> + 'static,
{
    HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .streaming(stream)
}

/// `items` rendered into frames by `render` (`None`: nothing to send for that item), with a
/// keep-alive comment whenever nothing was sent for [`KEEP_ALIVE`]. Ends with `items`; holds
/// `slot` until then (or until the client goes away and the response is dropped). Dropping a
/// pending `next()` at a keep-alive loses nothing: the cluster's streams keep their place.
fn rendered<S, T>(
    items: S,
    slot: WatchSlot,
    render: impl FnMut(T) -> Option<Bytes> + 'static,
) -> impl Stream<Item = Result<Bytes, actix_web::Error>> + 'static
where
    S: Stream<Item = T> + Send + 'static,
{
    let items = Box::pin(items);
    futures::stream::unfold(
        (items, slot, render),
        |(mut items, slot, mut render)| async move {
            // Counted from the last frame sent, not from the last item skipped.
            let deadline = tokio::time::Instant::now() + KEEP_ALIVE;
            loop {
                match tokio::time::timeout_at(deadline, items.next()).await {
                    Err(_) => return Some((Ok(keep_alive()), (items, slot, render))),
                    Ok(None) => return None,
                    Ok(Some(item)) => {
                        if let Some(bytes) = render(item) {
                            return Some((Ok(bytes), (items, slot, render)));
                        }
                    }
                }
            }
        },
    )
}

/// `GET /cluster/members?watch=true`: first one `join` per current member (the listing), then
/// `join`, `update` and `leave` as they happen — list-then-watch in one stream, so a watcher
/// misses nothing between the two.
pub(crate) async fn members(plane: Plane, options: &crate::ApiOptions) -> ApiResult {
    let slot = options.watchers.take()?;
    let (current, revisions) = members_with_revisions(&plane).await?;
    let initial: Vec<Result<Bytes, actix_web::Error>> = current
        .iter()
        .map(|m| Ok(frame("join", &member_json(m, &revisions))))
        .collect();
    let changes = plane.member_changes_after(MEMBERS_WATCH_INTERVAL, current);
    let changes = rendered(changes, slot, |change| match change {
        Ok(change) => Some(frame(change.event(), &member_json(change.member(), &[]))),
        // Nothing to compare while the store does not answer: the stream tries again.
        Err(error) => {
            tracing::debug!(%error, "members watch: cannot list the members");
            None
        }
    });
    Ok(event_stream(futures::stream::iter(initial).chain(changes)))
}

/// One KV watch item as its frame: `id:` = revision, `event:` PUT or DELETE, the event as data
/// (registry values redacted); `compacted` ends the stream; failures send nothing (the watch
/// tries again).
fn kv_frame(item: cluster::Result<KvWatchItem>) -> Option<Bytes> {
    match item {
        Ok(KvWatchItem::Event(mut event)) => {
            // Registry entries hold credentials: shown redacted.
            event.value = redact_kv_value(&event.key, std::mem::take(&mut event.value));
            let data = serde_json::to_string(&event).unwrap_or_default();
            Some(Bytes::from(format!(
                "id: {}\nevent: {}\ndata: {data}\n\n",
                event.revision,
                event.kind.as_str()
            )))
        }
        Ok(KvWatchItem::Compacted { compacted, .. }) => Some(Bytes::from(format!(
            "event: compacted\ndata: {{\"compacted\":{compacted}}}\n\n"
        ))),
        Err(error) => {
            tracing::debug!(%error, "KV watch: cannot read the events");
            None
        }
    }
}

/// `GET /cluster/kv?watch=true&prefix=…`: server-sent events (`id:` = revision, `event:` PUT or
/// DELETE) after `fromRevision` (default: now), resumable by reconnecting with the last id as
/// `fromRevision` or `Last-Event-ID`; a revision that was compacted away is a 400 (re-list,
/// then watch from the listing's revision), or a `compacted` event that ends the stream when
/// it happens while watching.
pub(crate) async fn kv(
    plane: Plane,
    options: &crate::ApiOptions,
    req: &HttpRequest,
    prefix: String,
    from_revision: Option<i64>,
) -> ApiResult {
    let kv = plane.kv().clone();
    let last_event_id = req
        .headers()
        .get("last-event-id")
        .map(|v| {
            v.to_str()
                .ok()
                .and_then(|s| s.trim().parse::<i64>().ok())
                .ok_or_else(|| {
                    DataPlaneError::InvalidInput("Last-Event-ID must be a revision number".into())
                })
        })
        .transpose()?;
    let from = match from_revision.or(last_event_id) {
        Some(revision) => revision,
        None => kv.list(&prefix).await?.1,
    };
    // Refuse a negative or compacted start before the stream begins, with a clear 4xx.
    kv.check_watch_start(&prefix, from).await?;
    // Held by the stream: given back when it ends or the client goes away.
    let slot = options.watchers.take()?;
    let events = kv.watch(prefix, from, KV_WATCH_INTERVAL);
    Ok(event_stream(rendered(events, slot, kv_frame)))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn watch_slots_are_counted_and_given_back() {
        let options = ApiOptions::new(2);
        let a = options.watchers.take().unwrap();
        let b = options.watchers.take().unwrap();
        let refused = options.watchers.take().unwrap_err();
        assert!(matches!(refused, ApiError::TooManyWatchers(_)));
        assert_eq!(options.open_watchers(), 2);
        drop(a);
        assert_eq!(options.open_watchers(), 1);
        let _c = options.watchers.take().unwrap();
        drop(b);
        assert_eq!(options.open_watchers(), 1);
    }
}
