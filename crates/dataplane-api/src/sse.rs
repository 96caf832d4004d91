//! Server-sent-event watch streams (`?watch=true` on `/cluster/members` and `/cluster/kv`) and
//! the per-replica budget of them (`dpf.api.max-watchers`): each stream holds a [`WatchSlot`]
//! that is given back when the stream ends or the client goes away.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse};
use bytes::Bytes;
use dataplane_manager::DataPlaneError;
use dataplane_spi::{CoordinationError, Member};
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
/// How long an idle KV watch waits before it sends a keep-alive comment.
const KV_KEEP_ALIVE: Duration = Duration::from_secs(1);
/// Most KV events read per poll.
const KV_BATCH: usize = 500;

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

type Known = BTreeMap<String, Member>;

/// What changed from `known` to `fresh`: `join`, `update` (state changed), `leave` (left or
/// lease expired; a new incarnation is a `leave` then a `join`).
fn member_changes(known: &Known, fresh: &Known) -> Vec<Bytes> {
    let mut events = Vec::new();
    for (name, member) in fresh {
        match known.get(name) {
            None => events.push(frame("join", &member_json(member, &[]))),
            Some(old) if old.incarnation != member.incarnation => {
                events.push(frame("leave", &member_json(old, &[])));
                events.push(frame("join", &member_json(member, &[])));
            }
            Some(old) if old.state != member.state => {
                events.push(frame("update", &member_json(member, &[])))
            }
            Some(_) => {}
        }
    }
    for (name, member) in known {
        if !fresh.contains_key(name) {
            events.push(frame("leave", &member_json(member, &[])));
        }
    }
    events
}

/// `GET /cluster/members?watch=true`: first one `join` per current member (the listing), then
/// `join`, `update` and `leave` as they happen — list-then-watch in one stream, so a watcher
/// misses nothing between the two.
pub(crate) async fn members(plane: Plane, options: &crate::ApiOptions) -> ApiResult {
    let slot = options.watchers.take()?;
    let (current, revisions) = members_with_revisions(&plane).await?;
    let plane = plane.get_ref().clone();
    let initial: Vec<Bytes> = current
        .iter()
        .map(|m| frame("join", &member_json(m, &revisions)))
        .collect();
    let known: Known = current
        .into_iter()
        .map(|m| (m.runtime_id.clone(), m))
        .collect();
    let snapshot = futures::stream::iter(initial.into_iter().map(Ok::<_, actix_web::Error>));
    let changes =
        futures::stream::unfold((plane, known, slot), |(plane, known, slot)| async move {
            let now = loop {
                tokio::time::sleep(MEMBERS_WATCH_INTERVAL).await;
                // Nothing to compare while the store does not answer: try again.
                if let Ok(now) = plane.live_members().await {
                    break now;
                }
            };
            let fresh: Known = now.into_iter().map(|m| (m.runtime_id.clone(), m)).collect();
            let events = member_changes(&known, &fresh);
            let chunk = if events.is_empty() {
                keep_alive()
            } else {
                Bytes::from(events.concat())
            };
            Some((Ok(chunk), (plane, fresh, slot)))
        });
    Ok(event_stream(snapshot.chain(changes)))
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
    let coordinator = plane.coordinator().clone();
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
        Some(revision) if revision < 0 => {
            return Err(DataPlaneError::InvalidInput(format!(
                "fromRevision must be ≥ 0, got {revision}"
            ))
            .into())
        }
        Some(revision) => revision,
        None => coordinator.kv_list(&prefix).await?.1,
    };
    // Refuse a compacted start before the stream begins, with a clear 4xx.
    coordinator.kv_events(&prefix, from, 1).await?;
    // Held by the stream: given back when it ends or the client goes away.
    let slot = options.watchers.take()?;
    let stream = futures::stream::unfold(
        (coordinator, from, false, slot),
        move |(coordinator, after, done, slot)| {
            let prefix = prefix.clone();
            async move {
                if done {
                    return None;
                }
                let mut idle = Duration::ZERO;
                loop {
                    match coordinator.kv_events(&prefix, after, KV_BATCH).await {
                        Ok(events) if events.is_empty() => {
                            if idle >= KV_KEEP_ALIVE {
                                return Some((Ok(keep_alive()), (coordinator, after, false, slot)));
                            }
                            tokio::time::sleep(KV_WATCH_INTERVAL).await;
                            idle += KV_WATCH_INTERVAL;
                        }
                        Ok(events) => {
                            let last = events.last().map_or(after, |e| e.revision);
                            let mut body = String::new();
                            for event in &events {
                                // Registry entries hold credentials: shown redacted.
                                let event = dataplane_spi::KvEvent {
                                    value: dataplane_manager::registry::redact_kv_value(
                                        &event.key,
                                        event.value.clone(),
                                    ),
                                    ..event.clone()
                                };
                                let data = serde_json::to_string(&event).unwrap_or_default();
                                body.push_str(&format!(
                                    "id: {}\nevent: {}\ndata: {data}\n\n",
                                    event.revision,
                                    event.kind.as_str()
                                ));
                            }
                            return Some((
                                Ok::<_, actix_web::Error>(Bytes::from(body)),
                                (coordinator, last, false, slot),
                            ));
                        }
                        Err(CoordinationError::Compacted { compacted, .. }) => {
                            let body = format!(
                                "event: compacted\ndata: {{\"compacted\":{compacted}}}\n\n"
                            );
                            return Some((Ok(Bytes::from(body)), (coordinator, after, true, slot)));
                        }
                        Err(_) => {
                            tokio::time::sleep(KV_WATCH_INTERVAL).await;
                            idle += KV_WATCH_INTERVAL;
                        }
                    }
                }
            }
        },
    );
    Ok(event_stream(stream))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use actix_web::http::StatusCode;
    use actix_web::ResponseError;

    #[test]
    fn watch_slots_are_counted_and_given_back() {
        let options = ApiOptions::new(2);
        let a = options.watchers.take().unwrap();
        let b = options.watchers.take().unwrap();
        let refused = options.watchers.take().unwrap_err();
        assert_eq!(refused.status_code(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(options.open_watchers(), 2);
        drop(a);
        assert_eq!(options.open_watchers(), 1);
        let _c = options.watchers.take().unwrap();
        drop(b);
        assert_eq!(options.open_watchers(), 1);
    }
}
