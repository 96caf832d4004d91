//! The HTTP surface of a dpf data plane, on actix-web, under `/api/v1`:
//!
//! | method | path | what |
//! |---|---|---|
//! | `POST` | `/signaling/dataflows/prepare` | DPS prepare (consumer) |
//! | `POST` | `/signaling/dataflows/start` | DPS start (provider) |
//! | `POST` | `/signaling/dataflows/{id}/started` | DPS started notification (consumer) |
//! | `POST` | `/signaling/dataflows/{id}/suspend` | DPS suspend |
//! | `POST` | `/signaling/dataflows/{id}/resume` | DPS resume |
//! | `POST` | `/signaling/dataflows/{id}/terminate` | DPS terminate |
//! | `POST` | `/signaling/dataflows/{id}/completed` | DPS completed (empty body or `{}`) |
//! | `GET` | `/signaling/dataflows/{id}/status` | DPS status |
//! | `PUT` | `/signaling/controlplanes` | DPS control-plane registration |
//! | `DELETE` | `/signaling/controlplanes/{id}` | remove a control plane |
//! | `GET` | `/dataflows`, `/dataflows/{id}` | management view (`?state=STARTED&limit=100`) |
//! | `PUT`/`GET`/`DELETE` | `/datasets/{id}`, `GET /datasets` | dataset registry |
//! | `GET` | `/public/{id}` | provider-pull endpoint (bearer token, `Range`) |
//! | `POST`/`PUT` | `/ingest/{id}` | consumer-push endpoint (bearer token) |
//! | `GET` | `/health`, `/openapi.json` | liveness, this API's OpenAPI |
//!
//! `{id}` of a data flow may be its id or its process id. No business logic lives here: handlers
//! decode, call [`DataPlane`], and map [`DataPlaneError`] to HTTP in one place.

use std::sync::Arc;

use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse, ResponseError};
use dataplane_manager::{DataPlane, DataPlaneError};
use dataplane_spi::{
    ControlPlaneRegistration, DataFlowAddressMessage, DataFlowMessage, DataFlowReasonMessage,
    DataFlowState, DataFlowStatusResponseMessage, ResourceAddress, TransferError,
};
use futures::StreamExt;
use serde::Deserialize;

/// Base path of the data-plane API.
pub const BASE_PATH: &str = "/api/v1";

/// The OpenAPI document of this API.
pub const OPENAPI_JSON: &str = include_str!("../openapi.json");

/// A [`DataPlaneError`] on its way to an HTTP response.
#[derive(Debug)]
pub struct ApiError(pub DataPlaneError);

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl From<DataPlaneError> for ApiError {
    fn from(error: DataPlaneError) -> Self {
        Self(error)
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        StatusCode::from_u16(self.0.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    fn error_response(&self) -> HttpResponse {
        let status = self.status_code();
        if status.is_server_error() {
            tracing::warn!(error = %self.0, "data-plane request failed");
        }
        api_common::error_response(status, self.0.to_string(), self.0.code())
    }
}

type Plane = web::Data<Arc<DataPlane>>;
type ApiResult = Result<HttpResponse, ApiError>;

/// Registers the data-plane routes (under [`BASE_PATH`]).
pub fn configure(plane: Arc<DataPlane>) -> impl FnOnce(&mut web::ServiceConfig) {
    move |cfg: &mut web::ServiceConfig| {
        cfg.app_data(web::Data::new(plane))
            .app_data(api_common::json_config())
            .app_data(api_common::query_config())
            .app_data(api_common::path_config())
            .service(
                web::scope(BASE_PATH)
                    .route("/health", web::get().to(health))
                    .route("/ready", web::get().to(ready))
                    .route("/metrics", web::get().to(metrics))
                    .route("/openapi.json", web::get().to(openapi))
                    .route("/signaling/dataflows/prepare", web::post().to(prepare))
                    .route("/signaling/dataflows/start", web::post().to(start))
                    .route("/signaling/dataflows/{id}/started", web::post().to(started))
                    .route("/signaling/dataflows/{id}/suspend", web::post().to(suspend))
                    .route("/signaling/dataflows/{id}/resume", web::post().to(resume))
                    .route(
                        "/signaling/dataflows/{id}/terminate",
                        web::post().to(terminate),
                    )
                    .route(
                        "/signaling/dataflows/{id}/completed",
                        web::post().to(completed),
                    )
                    .route("/signaling/dataflows/{id}/status", web::get().to(status))
                    .route("/signaling/controlplanes", web::put().to(put_control_plane))
                    .route(
                        "/signaling/controlplanes/{id}",
                        web::delete().to(delete_control_plane),
                    )
                    .route("/cluster/members", web::get().to(members))
                    .route("/cluster/leader", web::get().to(leader))
                    .route("/cluster/baseline", web::get().to(baseline_show))
                    .route("/cluster/baseline", web::put().to(baseline_set))
                    .route("/cluster/baseline/version", web::get().to(baseline_version))
                    .route("/cluster/baseline/add", web::post().to(baseline_add))
                    .route("/cluster/baseline/remove", web::post().to(baseline_remove))
                    .route(
                        "/cluster/baseline/activate",
                        web::post().to(baseline_activate),
                    )
                    .route(
                        "/cluster/baseline/deactivate",
                        web::post().to(baseline_deactivate),
                    )
                    .route(
                        "/cluster/baseline/auto-adjust",
                        web::put().to(baseline_auto_adjust),
                    )
                    .route("/cluster/kv", web::get().to(kv_list))
                    .route("/cluster/kv/{key:.+}", web::get().to(kv_get))
                    .route("/cluster/kv/{key:.+}", web::put().to(kv_put))
                    .route("/cluster/kv/{key:.+}", web::delete().to(kv_delete))
                    .route("/dataflows", web::get().to(list_flows))
                    .route("/dataflows/{id}", web::get().to(get_flow))
                    .route("/datasets", web::get().to(list_datasets))
                    .route("/datasets/{id}", web::put().to(put_dataset))
                    .route("/datasets/{id}", web::get().to(get_dataset))
                    .route("/datasets/{id}", web::delete().to(delete_dataset))
                    .route("/public/{id}", web::get().to(pull))
                    .route("/ingest/{id}", web::post().to(ingest))
                    .route("/ingest/{id}", web::put().to(ingest))
                    .route("/ingest/{id}", web::head().to(ingest_offset))
                    .route("/ingest/{id}", web::patch().to(ingest_patch)),
            );
    }
}

async fn health() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({"status": "UP"}))
}

/// `GET /ready`: 200 when the store answers and the replica is ACTIVE or IDLE, else 503.
async fn ready(plane: Plane) -> HttpResponse {
    match plane.ready().await {
        Ok(state) => {
            HttpResponse::Ok().json(serde_json::json!({"status": "READY", "state": state}))
        }
        Err(reason) => HttpResponse::ServiceUnavailable()
            .json(serde_json::json!({"status": "NOT_READY", "reason": reason})),
    }
}

/// `GET /metrics`: Prometheus text format.
async fn metrics(plane: Plane) -> ApiResult {
    let text = plane.metrics_text().await?;
    Ok(HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(text))
}

async fn openapi() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body(OPENAPI_JSON)
}

fn status_location(id: &str) -> String {
    format!("{BASE_PATH}/signaling/dataflows/{id}/status")
}

async fn prepare(plane: Plane, msg: web::Json<DataFlowMessage>) -> ApiResult {
    let outcome = plane.prepare(msg.into_inner()).await?;
    Ok(HttpResponse::Ok().json(outcome.message))
}

async fn start(plane: Plane, msg: web::Json<DataFlowMessage>) -> ApiResult {
    let outcome = plane.start(msg.into_inner()).await?;
    Ok(HttpResponse::Ok()
        .insert_header((
            header::CONTENT_LOCATION,
            status_location(&outcome.message.data_flow_id),
        ))
        .json(outcome.message))
}

async fn started(
    plane: Plane,
    id: web::Path<String>,
    msg: web::Json<DataFlowAddressMessage>,
) -> ApiResult {
    let outcome = plane.started(&id, msg.into_inner().data_address).await?;
    Ok(HttpResponse::Ok().json(outcome.message))
}

async fn suspend(
    plane: Plane,
    id: web::Path<String>,
    msg: web::Json<DataFlowReasonMessage>,
) -> ApiResult {
    let outcome = plane.suspend(&id, msg.into_inner().reason).await?;
    Ok(HttpResponse::Ok().json(outcome.message))
}

async fn resume(
    plane: Plane,
    id: web::Path<String>,
    msg: web::Json<DataFlowAddressMessage>,
) -> ApiResult {
    let outcome = plane.resume(&id, msg.into_inner().data_address).await?;
    Ok(HttpResponse::Ok().json(outcome.message))
}

async fn terminate(
    plane: Plane,
    id: web::Path<String>,
    msg: web::Json<DataFlowReasonMessage>,
) -> ApiResult {
    let outcome = plane.terminate(&id, msg.into_inner().reason).await?;
    Ok(HttpResponse::Ok().json(outcome.message))
}

/// `completed` carries an empty body (DPS) or `{}`; anything else must at least be JSON.
async fn completed(plane: Plane, id: web::Path<String>, body: web::Bytes) -> ApiResult {
    if !body.iter().all(u8::is_ascii_whitespace)
        && serde_json::from_slice::<serde_json::Value>(&body).is_err()
    {
        return Err(DataPlaneError::InvalidInput(
            "completed takes an empty body or a JSON object".into(),
        )
        .into());
    }
    let outcome = plane.completed(&id).await?;
    Ok(HttpResponse::Ok().json(outcome.message))
}

async fn status(plane: Plane, id: web::Path<String>) -> ApiResult {
    let flow = plane.status(&id).await?;
    Ok(HttpResponse::Ok().json(DataFlowStatusResponseMessage {
        data_flow_id: flow.id,
        state: flow.state.dps_name().to_owned(),
    }))
}

async fn put_control_plane(plane: Plane, msg: web::Json<ControlPlaneRegistration>) -> ApiResult {
    plane.control_planes().put(msg.into_inner())?;
    Ok(HttpResponse::Ok().finish())
}

async fn delete_control_plane(plane: Plane, id: web::Path<String>) -> ApiResult {
    if plane.control_planes().remove(&id)? {
        Ok(HttpResponse::NoContent().finish())
    } else {
        Err(DataPlaneError::NotFound(format!("control plane '{id}' not found")).into())
    }
}

#[derive(Deserialize)]
struct MembersQuery {
    #[serde(default)]
    watch: bool,
}

fn member_json(member: &dataplane_spi::Member, revisions: &[(String, i64)]) -> serde_json::Value {
    let revision = revisions
        .iter()
        .find(|(name, _)| *name == member.runtime_id)
        .map(|(_, r)| *r);
    serde_json::json!({
        "configRevision": revision,
        "name": member.runtime_id,
        "incarnation": member.incarnation,
        "state": member.state,
        "startedAt": member.started_at,
        "heartbeatAt": member.heartbeat_at,
        "leaseExpiresAt": member.lease_expires_at,
    })
}

/// How often a members watch compares the table with what it sent.
const MEMBERS_WATCH_INTERVAL: std::time::Duration = std::time::Duration::from_millis(200);

/// `GET /cluster/members`: live members (valid lease). With `?watch=true`, server-sent events:
/// first one `join` per current member (the listing), then `join`, `update` (state changed) and
/// `leave` (left or lease expired) as they happen — list-then-watch in one stream, so a
/// watcher misses nothing between the two.
async fn members(plane: Plane, query: web::Query<MembersQuery>) -> ApiResult {
    let current = plane.live_members().await?;
    let revisions = plane
        .coordinator()
        .config_revisions()
        .await
        .unwrap_or_default();
    if !query.watch {
        let listing: Vec<serde_json::Value> =
            current.iter().map(|m| member_json(m, &revisions)).collect();
        return Ok(HttpResponse::Ok().json(listing));
    }
    type Known = std::collections::BTreeMap<String, dataplane_spi::Member>;
    let plane = plane.get_ref().clone();
    let initial: Vec<bytes::Bytes> = current
        .iter()
        .map(|m| sse("join", &member_json(m, &revisions)))
        .collect();
    let known: Known = current
        .into_iter()
        .map(|m| (m.runtime_id.clone(), m))
        .collect();
    let snapshot = futures::stream::iter(initial.into_iter().map(Ok::<_, actix_web::Error>));
    let changes = futures::stream::unfold((plane, known), |(plane, mut known)| async move {
        loop {
            tokio::time::sleep(MEMBERS_WATCH_INTERVAL).await;
            let Ok(now) = plane.live_members().await else {
                continue;
            };
            let mut events = Vec::new();
            let fresh: Known = now.into_iter().map(|m| (m.runtime_id.clone(), m)).collect();
            for (name, member) in &fresh {
                match known.get(name) {
                    None => events.push(sse("join", &member_json(member, &[]))),
                    Some(old) if old.incarnation != member.incarnation => {
                        events.push(sse("leave", &member_json(old, &[])));
                        events.push(sse("join", &member_json(member, &[])));
                    }
                    Some(old) if old.state != member.state => {
                        events.push(sse("update", &member_json(member, &[])))
                    }
                    Some(_) => {}
                }
            }
            for (name, member) in &known {
                if !fresh.contains_key(name) {
                    events.push(sse("leave", &member_json(member, &[])));
                }
            }
            known = fresh;
            if !events.is_empty() {
                let batch = events.concat();
                return Some((
                    Ok::<_, actix_web::Error>(bytes::Bytes::from(batch)),
                    (plane, known),
                ));
            }
            // Keep the connection alive through proxies.
            return Some((
                Ok(bytes::Bytes::from_static(b": keep-alive\n\n")),
                (plane, known),
            ));
        }
    });
    Ok(HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .streaming(snapshot.chain(changes)))
}

fn sse(event: &str, data: &serde_json::Value) -> bytes::Bytes {
    bytes::Bytes::from(format!("event: {event}\ndata: {data}\n\n"))
}

fn coordination_error(error: dataplane_spi::CoordinationError) -> ApiError {
    use dataplane_spi::CoordinationError as E;
    ApiError(match error {
        E::Conflict { .. } | E::StaleTerm { .. } => DataPlaneError::Conflict(error.to_string()),
        E::NotFound(_) => DataPlaneError::NotFound(error.to_string()),
        E::Compacted { .. } | E::InvalidInput(_) | E::SessionGone(_) => {
            DataPlaneError::InvalidInput(error.to_string())
        }
        E::Unavailable(_) => DataPlaneError::Unavailable(error.to_string()),
        E::Internal(_) => DataPlaneError::Internal(error.to_string()),
    })
}

/// `GET /cluster/leader`: `{"leader": "<runtime name>", "term": n, "expiresAt": …}`, 404 when
/// no replica leads right now.
async fn leader(plane: Plane) -> ApiResult {
    match plane
        .coordinator()
        .leader()
        .await
        .map_err(coordination_error)?
    {
        Some(leader) => Ok(HttpResponse::Ok().json(serde_json::json!({
            "leader": leader.leader,
            "term": leader.term,
            "incarnation": leader.incarnation,
            "expiresAt": leader.expires_at,
        }))),
        None => Err(DataPlaneError::NotFound(
            "no replica leads right now (an election is due)".into(),
        )
        .into()),
    }
}

/// Body of baseline changes.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct BaselineChange {
    members: Vec<String>,
    /// Compare-and-set on the baseline version.
    expected_version: Option<u64>,
}

/// `GET /cluster/baseline`: state, version, members online/offline, replicas outside it.
async fn baseline_show(plane: Plane) -> ApiResult {
    Ok(HttpResponse::Ok().json(plane.baseline_view().await?))
}

async fn baseline_version(plane: Plane) -> ApiResult {
    let view = plane.baseline_view().await?;
    Ok(HttpResponse::Ok()
        .json(serde_json::json!({"version": view.version, "history": view.history})))
}

async fn baseline_set(plane: Plane, body: web::Json<BaselineChange>) -> ApiResult {
    Ok(HttpResponse::Ok().json(
        plane
            .change_baseline("set", &body.members, body.expected_version)
            .await?,
    ))
}

async fn baseline_add(plane: Plane, body: web::Json<BaselineChange>) -> ApiResult {
    Ok(HttpResponse::Ok().json(
        plane
            .change_baseline("add", &body.members, body.expected_version)
            .await?,
    ))
}

async fn baseline_remove(plane: Plane, body: web::Json<BaselineChange>) -> ApiResult {
    Ok(HttpResponse::Ok().json(
        plane
            .change_baseline("remove", &body.members, body.expected_version)
            .await?,
    ))
}

async fn baseline_activate(plane: Plane) -> ApiResult {
    Ok(HttpResponse::Ok().json(plane.set_cluster_state(true).await?))
}

async fn baseline_deactivate(plane: Plane) -> ApiResult {
    Ok(HttpResponse::Ok().json(plane.set_cluster_state(false).await?))
}

async fn baseline_auto_adjust(
    plane: Plane,
    body: web::Json<dataplane_manager::baseline::AutoAdjust>,
) -> ApiResult {
    Ok(HttpResponse::Ok().json(plane.set_auto_adjust(body.into_inner()).await?))
}

async fn kv_get(plane: Plane, key: web::Path<String>) -> ApiResult {
    match plane
        .coordinator()
        .kv_get(&key)
        .await
        .map_err(coordination_error)?
    {
        Some(entry) => Ok(HttpResponse::Ok().json(entry)),
        None => Err(DataPlaneError::NotFound(format!("key '{key}' not found")).into()),
    }
}

/// Body of `PUT /cluster/kv/{key}`.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct KvPut {
    value: String,
    /// Compare-and-set: the version the key must have (0: must not exist).
    expected_version: Option<i64>,
}

fn expected(version: Option<i64>) -> Result<dataplane_spi::Expected, ApiError> {
    Ok(match version {
        None => dataplane_spi::Expected::Any,
        Some(0) => dataplane_spi::Expected::Absent,
        Some(v) if v > 0 => dataplane_spi::Expected::Version(v),
        Some(v) => {
            return Err(DataPlaneError::InvalidInput(format!(
                "expectedVersion must be ≥ 0, got {v}"
            ))
            .into())
        }
    })
}

async fn kv_put(plane: Plane, key: web::Path<String>, body: web::Json<KvPut>) -> ApiResult {
    let body = body.into_inner();
    if key.starts_with(dataplane_manager::live::CONFIG_PREFIX) {
        dataplane_manager::live::validate_setting(&key, &body.value)?;
    }
    let entry = plane
        .coordinator()
        .kv_put(&key, &body.value, expected(body.expected_version)?, None)
        .await
        .map_err(coordination_error)?;
    Ok(HttpResponse::Ok().json(entry))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct KvDeleteQuery {
    expected_version: Option<i64>,
}

async fn kv_delete(
    plane: Plane,
    key: web::Path<String>,
    query: web::Query<KvDeleteQuery>,
) -> ApiResult {
    let event = plane
        .coordinator()
        .kv_delete(&key, expected(query.expected_version)?)
        .await
        .map_err(coordination_error)?;
    Ok(HttpResponse::Ok().json(event))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct KvQuery {
    #[serde(default)]
    prefix: String,
    #[serde(default)]
    watch: bool,
    from_revision: Option<i64>,
}

/// How often a KV watch looks for new events.
const KV_WATCH_INTERVAL: std::time::Duration = std::time::Duration::from_millis(100);

/// `GET /cluster/kv?prefix=…`: the keys and the revision of the listing. With `watch=true`,
/// server-sent events (`id:` = revision, `event:` PUT or DELETE) after `fromRevision` (default:
/// now), resumable by reconnecting with the last id as `fromRevision` or `Last-Event-ID`; a
/// revision that was compacted away is a 400 (re-list, then watch from the listing's revision).
async fn kv_list(plane: Plane, req: HttpRequest, query: web::Query<KvQuery>) -> ApiResult {
    let query = query.into_inner();
    let coordinator = plane.coordinator().clone();
    if !query.watch {
        let (entries, revision) = coordinator
            .kv_list(&query.prefix)
            .await
            .map_err(coordination_error)?;
        return Ok(
            HttpResponse::Ok().json(serde_json::json!({"revision": revision, "entries": entries}))
        );
    }
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
    let from = match query.from_revision.or(last_event_id) {
        Some(revision) if revision < 0 => {
            return Err(DataPlaneError::InvalidInput(format!(
                "fromRevision must be ≥ 0, got {revision}"
            ))
            .into())
        }
        Some(revision) => revision,
        None => {
            coordinator
                .kv_list(&query.prefix)
                .await
                .map_err(coordination_error)?
                .1
        }
    };
    // Refuse a compacted start before the stream begins, with a clear 4xx.
    coordinator
        .kv_events(&query.prefix, from, 1)
        .await
        .map_err(coordination_error)?;
    let prefix = query.prefix;
    let stream = futures::stream::unfold(
        (coordinator, from, false),
        move |(coordinator, after, done)| {
            let prefix = prefix.clone();
            async move {
                if done {
                    return None;
                }
                loop {
                    match coordinator.kv_events(&prefix, after, 500).await {
                        Ok(events) if events.is_empty() => {
                            tokio::time::sleep(KV_WATCH_INTERVAL).await;
                        }
                        Ok(events) => {
                            let last = events.last().map_or(after, |e| e.revision);
                            let mut body = String::new();
                            for event in &events {
                                let data = serde_json::to_string(event).unwrap_or_default();
                                body.push_str(&format!(
                                    "id: {}\nevent: {}\ndata: {data}\n\n",
                                    event.revision,
                                    event.kind.as_str()
                                ));
                            }
                            return Some((
                                Ok::<_, actix_web::Error>(bytes::Bytes::from(body)),
                                (coordinator, last, false),
                            ));
                        }
                        Err(dataplane_spi::CoordinationError::Compacted { compacted, .. }) => {
                            let body = format!(
                                "event: compacted\ndata: {{\"compacted\":{compacted}}}\n\n"
                            );
                            return Some((
                                Ok(bytes::Bytes::from(body)),
                                (coordinator, after, true),
                            ));
                        }
                        Err(_) => tokio::time::sleep(KV_WATCH_INTERVAL).await,
                    }
                }
            }
        },
    );
    Ok(HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .streaming(stream))
}

#[derive(Deserialize)]
struct FlowQuery {
    state: Option<String>,
    limit: Option<usize>,
}

async fn list_flows(plane: Plane, query: web::Query<FlowQuery>) -> ApiResult {
    let state = match query.state.as_deref() {
        None => None,
        Some(name) => Some(
            DataFlowState::parse(&name.to_ascii_uppercase()).map_err(|_| {
                DataPlaneError::InvalidInput(format!(
                    "unknown state '{name}'; known: {}",
                    DataFlowState::ALL.map(DataFlowState::as_str).join(", ")
                ))
            })?,
        ),
    };
    let limit = query.limit.unwrap_or(100).clamp(1, 10_000);
    Ok(HttpResponse::Ok().json(plane.views(state, limit).await?))
}

async fn get_flow(plane: Plane, id: web::Path<String>) -> ApiResult {
    Ok(HttpResponse::Ok().json(plane.view(&id).await?))
}

fn dataset_json(id: &str, address: &ResourceAddress) -> serde_json::Value {
    let mut value = address.to_json();
    if let Some(map) = value.as_object_mut() {
        map.insert("id".into(), id.into());
        if map.contains_key("authorization") {
            map.insert("authorization".into(), "***".into());
        }
    }
    value
}

async fn list_datasets(plane: Plane) -> HttpResponse {
    let datasets: Vec<serde_json::Value> = plane
        .datasets()
        .list()
        .iter()
        .map(|(id, address)| dataset_json(id, address))
        .collect();
    HttpResponse::Ok().json(datasets)
}

async fn put_dataset(
    plane: Plane,
    id: web::Path<String>,
    body: web::Json<serde_json::Value>,
) -> ApiResult {
    let address =
        ResourceAddress::from_json(body.into_inner()).map_err(DataPlaneError::InvalidInput)?;
    let known = plane.known_types();
    plane.datasets().put(&id, address.clone(), &known)?;
    Ok(HttpResponse::Ok().json(dataset_json(&id, &address)))
}

async fn get_dataset(plane: Plane, id: web::Path<String>) -> ApiResult {
    let address = plane
        .datasets()
        .get(&id)
        .ok_or_else(|| DataPlaneError::NotFound(format!("dataset '{id}' not found")))?;
    Ok(HttpResponse::Ok().json(dataset_json(&id, &address)))
}

async fn delete_dataset(plane: Plane, id: web::Path<String>) -> ApiResult {
    if plane.datasets().remove(&id)? {
        Ok(HttpResponse::NoContent().finish())
    } else {
        Err(DataPlaneError::NotFound(format!("dataset '{id}' not found")).into())
    }
}

fn bearer(req: &HttpRequest) -> Option<String> {
    let value = req.headers().get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim().to_owned())
}

/// `Range: bytes=N-` or `bytes=N-M` → (N, optional inclusive end M).
fn parse_range(req: &HttpRequest) -> Result<Option<(u64, Option<u64>)>, DataPlaneError> {
    let Some(value) = req.headers().get(header::RANGE) else {
        return Ok(None);
    };
    let bad =
        || DataPlaneError::InvalidInput("unsupported Range: use bytes=N- or bytes=N-M".into());
    let spec = value.to_str().map_err(|_| bad())?.trim();
    let spec = spec.strip_prefix("bytes=").ok_or_else(bad)?;
    let (start, end) = spec.split_once('-').ok_or_else(bad)?;
    let start: u64 = start.trim().parse().map_err(|_| bad())?;
    let end = match end.trim() {
        "" => None,
        e => {
            let e: u64 = e.parse().map_err(|_| bad())?;
            if e < start {
                return Err(bad());
            }
            Some(e)
        }
    };
    Ok(Some((start, end)))
}

fn stream_error(error: TransferError) -> actix_web::Error {
    actix_web::error::ErrorInternalServerError(error.to_string())
}

async fn pull(plane: Plane, req: HttpRequest, id: web::Path<String>) -> ApiResult {
    let range = parse_range(&req)?;
    let offset = range.map_or(0, |(start, _)| start);
    let grant = plane
        .open_pull(&id, bearer(&req).as_deref(), offset)
        .await?;
    let input = grant.stream;
    let total = input.size;
    let honoured = range.is_some() && input.offset == offset;
    let end = match (range, total) {
        (Some((_, Some(end))), Some(size)) => Some(end.min(size.saturating_sub(1))),
        (Some((_, Some(end))), None) => Some(end),
        (_, Some(size)) => Some(size.saturating_sub(1)),
        _ => None,
    };
    if let (true, Some(size)) = (honoured, total) {
        if offset >= size && size > 0 {
            return Ok(HttpResponse::build(StatusCode::RANGE_NOT_SATISFIABLE)
                .insert_header((header::CONTENT_RANGE, format!("bytes */{size}")))
                .finish());
        }
    }
    let length = match (honoured, end, total) {
        (true, Some(end), _) => Some(end + 1 - offset),
        (false, _, Some(size)) => Some(size),
        _ => None,
    };
    let mut remaining = length;
    let body = input.stream.map(move |chunk| {
        let mut chunk = chunk.map_err(stream_error)?;
        if let Some(left) = remaining.as_mut() {
            let take = usize::try_from(*left)
                .unwrap_or(usize::MAX)
                .min(chunk.len());
            chunk.truncate(take);
            *left -= take as u64;
        }
        Ok::<_, actix_web::Error>(chunk)
    });
    let body =
        body.take_while(|chunk| futures::future::ready(!matches!(chunk, Ok(c) if c.is_empty())));
    let mut response = if honoured {
        HttpResponse::PartialContent()
    } else {
        HttpResponse::Ok()
    };
    response.insert_header((header::ACCEPT_RANGES, "bytes"));
    response.content_type(
        input
            .content_type
            .unwrap_or_else(|| "application/octet-stream".into()),
    );
    if honoured {
        let total = total.map_or_else(|| "*".to_owned(), |t| t.to_string());
        let last = end.map_or_else(String::new, |e| e.to_string());
        response.insert_header((
            header::CONTENT_RANGE,
            format!("bytes {offset}-{last}/{total}"),
        ));
    }
    if let Some(length) = length {
        response.no_chunking(length);
    }
    Ok(response.streaming(body))
}

/// tus 1.0 core: the version every tus response carries.
const TUS_VERSION: &str = "1.0.0";

/// `HEAD /ingest/{id}` (tus): how many bytes the destination holds.
async fn ingest_offset(plane: Plane, req: HttpRequest, id: web::Path<String>) -> ApiResult {
    let offset = plane.ingest_offset(&id, bearer(&req).as_deref()).await?;
    Ok(HttpResponse::Ok()
        .insert_header(("Upload-Offset", offset.to_string()))
        .insert_header(("Tus-Resumable", TUS_VERSION))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .finish())
}

/// `PATCH /ingest/{id}` (tus): appends the body at `Upload-Offset`, which must be the current
/// offset (409 otherwise).
async fn ingest_patch(
    plane: Plane,
    req: HttpRequest,
    id: web::Path<String>,
    payload: web::Payload,
) -> ApiResult {
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if content_type != "application/offset+octet-stream" {
        return Ok(api_common::error_response(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "a PATCH upload needs Content-Type: application/offset+octet-stream".into(),
            "UNSUPPORTED_MEDIA_TYPE",
        ));
    }
    let offset: u64 = req
        .headers()
        .get("Upload-Offset")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| {
            DataPlaneError::InvalidInput("a PATCH upload needs an Upload-Offset header".into())
        })?;
    let end = receive(&plane, &req, &id, payload, Some(offset)).await?;
    Ok(HttpResponse::NoContent()
        .insert_header(("Upload-Offset", end.to_string()))
        .insert_header(("Tus-Resumable", TUS_VERSION))
        .finish())
}

/// `POST|PUT /ingest/{id}`: the body replaces the destination's content.
async fn ingest(
    plane: Plane,
    req: HttpRequest,
    id: web::Path<String>,
    payload: web::Payload,
) -> ApiResult {
    let bytes = receive(&plane, &req, &id, payload, None).await?;
    Ok(HttpResponse::Ok().json(serde_json::json!({"bytes": bytes})))
}

/// Streams a request body into the flow's destination; returns the offset reached.
async fn receive(
    plane: &Plane,
    req: &HttpRequest,
    id: &str,
    mut payload: web::Payload,
    offset: Option<u64>,
) -> Result<u64, ApiError> {
    let length = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    let (sender, done) = plane
        .begin_ingest(id, bearer(req).as_deref(), length, offset)
        .await?;
    while let Some(chunk) = payload.next().await {
        let chunk = match chunk {
            Ok(chunk) => chunk,
            Err(error) => {
                let _ = sender
                    .send(Err(TransferError::Transient(format!(
                        "upload interrupted: {error}"
                    ))))
                    .await;
                break;
            }
        };
        if sender.send(Ok(chunk)).await.is_err() {
            // The writer is gone: the flow was suspended or terminated meanwhile.
            return Err(DataPlaneError::Conflict(format!(
                "data flow '{id}' stopped accepting data (suspended or terminated)"
            ))
            .into());
        }
    }
    drop(sender);
    let reached = done.await.map_err(|_| {
        DataPlaneError::Conflict(format!(
            "data flow '{id}' stopped accepting data (suspended or terminated)"
        ))
    })??;
    Ok(reached)
}
