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
//!
//! Authentication is decided by route (see [`configure_with`]): health, readiness, metrics,
//! OpenAPI, `/public/{id}` and `/ingest/{id}` are open (the last two take the flow's bearer
//! token); everything else needs a key when one is configured. A per-control-plane key only
//! sees and signals its participant's flows (others are 404) and may not use the cluster,
//! baseline, KV or dataset routes (403). The raw KV API never writes under `dpf/` except the
//! live settings under `dpf/config/`. Watch streams are capped per replica ([`ApiOptions`]).

use std::sync::Arc;

use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse, ResponseError};
use api_common::Role;
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

/// An error on its way to an HTTP response: a [`DataPlaneError`], or a refusal decided by the
/// API itself (403 for a role, 429, 416).
#[derive(Debug)]
pub enum ApiError {
    /// What the data plane answered.
    Plane(DataPlaneError),
    /// Refused by the API layer.
    Refused {
        /// The HTTP status.
        status: StatusCode,
        /// Human-readable message.
        message: String,
        /// Stable code.
        code: &'static str,
    },
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Plane(error) => error.fmt(f),
            Self::Refused { message, .. } => f.write_str(message),
        }
    }
}

impl From<DataPlaneError> for ApiError {
    fn from(error: DataPlaneError) -> Self {
        Self::Plane(error)
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            Self::Plane(error) => {
                StatusCode::from_u16(error.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
            }
            Self::Refused { status, .. } => *status,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let status = self.status_code();
        match self {
            Self::Plane(error) => {
                if status.is_server_error() {
                    tracing::warn!(error = %error, "data-plane request failed");
                }
                api_common::error_response(status, error.to_string(), error.code())
            }
            Self::Refused { message, code, .. } => {
                api_common::error_response(status, message.clone(), code)
            }
        }
    }
}

fn forbidden(message: String) -> ApiError {
    ApiError::Refused {
        status: StatusCode::FORBIDDEN,
        message,
        code: "FORBIDDEN",
    }
}

/// The 404 of a flow that does not exist, or that a control plane may not see: the same.
fn flow_not_found(id: &str) -> ApiError {
    DataPlaneError::NotFound(format!("data flow '{id}' not found")).into()
}

/// The flow id the caller may act on. An administrator acts on `id` as given; a control plane
/// only on flows of its own participant, others are 404 exactly as if they did not exist (it
/// then acts on the resolved flow's id, so that the check and the action name one flow).
async fn visible_flow_id(plane: &Plane, req: &HttpRequest, id: &str) -> Result<String, ApiError> {
    let Role::ControlPlane(participant) = api_common::role_of(req) else {
        return Ok(id.to_owned());
    };
    let flow = plane.resolve(id).await?;
    if flow.participant_id.as_deref() == Some(participant.as_ref()) {
        Ok(flow.id)
    } else {
        Err(flow_not_found(id))
    }
}

/// A control plane may only send messages for its own participant.
fn check_participant(req: &HttpRequest, participant_id: &str) -> Result<(), ApiError> {
    match api_common::role_of(req) {
        Role::ControlPlane(participant) if participant.as_ref() != participant_id => {
            Err(forbidden(format!(
                "the key of control plane '{participant}' may only send messages with participantId '{participant}'"
            )))
        }
        _ => Ok(()),
    }
}

type Plane = web::Data<Arc<DataPlane>>;
type ApiResult = Result<HttpResponse, ApiError>;

/// Concurrent server-sent-event watch streams a replica serves by default
/// (`dpf.api.max-watchers`).
pub const DEFAULT_MAX_WATCHERS: usize = 64;

/// Settings of the API that are shared by every worker of one server: build one per process
/// and hand clones to [`configure_with`].
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
                used: std::sync::atomic::AtomicUsize::new(0),
            }),
        }
    }

    /// Watch streams open right now.
    pub fn open_watchers(&self) -> usize {
        self.watchers
            .used
            .load(std::sync::atomic::Ordering::Acquire)
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
    used: std::sync::atomic::AtomicUsize,
}

/// One taken watch slot, given back when dropped (with the stream that holds it: when the
/// stream ends or the client disconnects).
#[derive(Debug)]
struct WatchSlot(Arc<WatchSlots>);

impl WatchSlots {
    fn take(self: &Arc<Self>) -> Result<WatchSlot, ApiError> {
        use std::sync::atomic::Ordering;
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                (used < self.max).then_some(used + 1)
            })
            .map(|_| WatchSlot(self.clone()))
            .map_err(|_| ApiError::Refused {
                status: StatusCode::TOO_MANY_REQUESTS,
                message: format!(
                    "too many watch streams on this replica (dpf.api.max-watchers = {}); retry later",
                    self.max
                ),
                code: "TOO_MANY_REQUESTS",
            })
    }
}

impl Drop for WatchSlot {
    fn drop(&mut self) {
        self.0
            .used
            .fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
    }
}

type Options = web::Data<ApiOptions>;

/// Registers the data-plane routes (under [`BASE_PATH`]) with default [`ApiOptions`] (each
/// worker then has its own watch budget; prefer [`configure_with`]).
pub fn configure(plane: Arc<DataPlane>) -> impl FnOnce(&mut web::ServiceConfig) {
    configure_with(plane, ApiOptions::default())
}

/// Registers the data-plane routes (under [`BASE_PATH`]).
///
/// Authentication is decided by route, never by looking at the path: the open routes
/// (`/health`, `/ready`, `/metrics`, `/openapi.json`, and `/public/{id}`, `/ingest/{id}`, which
/// check their own per-flow bearer tokens) are resources of their own; every other route lives
/// in one scope wrapped with [`api_common::require_api_key`], which checks the
/// [`api_common::AuthConfig`] (or [`api_common::ApiKey`]) registered as app data and puts the
/// caller's [`Role`] into the request. Cluster, baseline, KV and dataset routes need the
/// administrator; a control plane only sees and signals its own participant's flows.
pub fn configure_with(
    plane: Arc<DataPlane>,
    options: ApiOptions,
) -> impl FnOnce(&mut web::ServiceConfig) {
    move |cfg: &mut web::ServiceConfig| {
        cfg.app_data(web::Data::new(plane))
            .app_data(web::Data::new(options))
            .app_data(api_common::json_config())
            .app_data(api_common::query_config())
            .app_data(api_common::path_config())
            .service(
                web::scope(BASE_PATH)
                    // Open routes.
                    .route("/health", web::get().to(health))
                    .route("/ready", web::get().to(ready))
                    .route("/metrics", web::get().to(metrics))
                    .route("/openapi.json", web::get().to(openapi))
                    // Open, each authorised by the flow's own bearer token.
                    .route("/public/{id}", web::get().to(pull))
                    .route("/ingest/{id}", web::post().to(ingest))
                    .route("/ingest/{id}", web::put().to(ingest))
                    .route("/ingest/{id}", web::head().to(ingest_offset))
                    .route("/ingest/{id}", web::patch().to(ingest_patch))
                    // Everything else: behind the key.
                    .service(
                        web::scope("")
                            .wrap(actix_web::middleware::from_fn(api_common::require_api_key))
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
                            .route("/dataflows", web::get().to(list_flows))
                            .route("/dataflows/{id}", web::get().to(get_flow))
                            // Administrators only.
                            .route("/cluster/members", admin(web::get().to(members)))
                            .route("/cluster/leader", admin(web::get().to(leader)))
                            .route("/cluster/baseline", admin(web::get().to(baseline_show)))
                            .route("/cluster/baseline", admin(web::put().to(baseline_set)))
                            .route(
                                "/cluster/baseline/version",
                                admin(web::get().to(baseline_version)),
                            )
                            .route("/cluster/baseline/add", admin(web::post().to(baseline_add)))
                            .route(
                                "/cluster/baseline/remove",
                                admin(web::post().to(baseline_remove)),
                            )
                            .route(
                                "/cluster/baseline/activate",
                                admin(web::post().to(baseline_activate)),
                            )
                            .route(
                                "/cluster/baseline/deactivate",
                                admin(web::post().to(baseline_deactivate)),
                            )
                            .route(
                                "/cluster/baseline/auto-adjust",
                                admin(web::put().to(baseline_auto_adjust)),
                            )
                            .route("/cluster/kv", admin(web::get().to(kv_list)))
                            .route("/cluster/kv/{key:.+}", admin(web::get().to(kv_get)))
                            .route("/cluster/kv/{key:.+}", admin(web::put().to(kv_put)))
                            .route("/cluster/kv/{key:.+}", admin(web::delete().to(kv_delete)))
                            .route("/datasets", admin(web::get().to(list_datasets)))
                            .route("/datasets/{id}", admin(web::put().to(put_dataset)))
                            .route("/datasets/{id}", admin(web::get().to(get_dataset)))
                            .route("/datasets/{id}", admin(web::delete().to(delete_dataset)))
                            .default_service(web::to(api_common::not_found_handler)),
                    ),
            );
    }
}

/// A route only an administrator may use: 403 for a control-plane key.
fn admin(route: actix_web::Route) -> actix_web::Route {
    route.wrap(actix_web::middleware::from_fn(api_common::require_admin))
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

async fn prepare(plane: Plane, req: HttpRequest, msg: web::Json<DataFlowMessage>) -> ApiResult {
    check_participant(&req, &msg.participant_id)?;
    let outcome = plane.prepare(msg.into_inner()).await?;
    Ok(HttpResponse::Ok().json(outcome.message))
}

async fn start(plane: Plane, req: HttpRequest, msg: web::Json<DataFlowMessage>) -> ApiResult {
    check_participant(&req, &msg.participant_id)?;
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
    req: HttpRequest,
    id: web::Path<String>,
    msg: web::Json<DataFlowAddressMessage>,
) -> ApiResult {
    let id = visible_flow_id(&plane, &req, &id).await?;
    let outcome = plane.started(&id, msg.into_inner().data_address).await?;
    Ok(HttpResponse::Ok().json(outcome.message))
}

async fn suspend(
    plane: Plane,
    req: HttpRequest,
    id: web::Path<String>,
    msg: web::Json<DataFlowReasonMessage>,
) -> ApiResult {
    let id = visible_flow_id(&plane, &req, &id).await?;
    let outcome = plane.suspend(&id, msg.into_inner().reason).await?;
    Ok(HttpResponse::Ok().json(outcome.message))
}

async fn resume(
    plane: Plane,
    req: HttpRequest,
    id: web::Path<String>,
    msg: web::Json<DataFlowAddressMessage>,
) -> ApiResult {
    let id = visible_flow_id(&plane, &req, &id).await?;
    let outcome = plane.resume(&id, msg.into_inner().data_address).await?;
    Ok(HttpResponse::Ok().json(outcome.message))
}

async fn terminate(
    plane: Plane,
    req: HttpRequest,
    id: web::Path<String>,
    msg: web::Json<DataFlowReasonMessage>,
) -> ApiResult {
    let id = visible_flow_id(&plane, &req, &id).await?;
    let outcome = plane.terminate(&id, msg.into_inner().reason).await?;
    Ok(HttpResponse::Ok().json(outcome.message))
}

/// `completed` carries an empty body (DPS) or `{}`; anything else must at least be JSON.
async fn completed(
    plane: Plane,
    req: HttpRequest,
    id: web::Path<String>,
    body: web::Bytes,
) -> ApiResult {
    if !body.iter().all(u8::is_ascii_whitespace)
        && serde_json::from_slice::<serde_json::Value>(&body).is_err()
    {
        return Err(DataPlaneError::InvalidInput(
            "completed takes an empty body or a JSON object".into(),
        )
        .into());
    }
    let id = visible_flow_id(&plane, &req, &id).await?;
    let outcome = plane.completed(&id).await?;
    Ok(HttpResponse::Ok().json(outcome.message))
}

async fn status(plane: Plane, req: HttpRequest, id: web::Path<String>) -> ApiResult {
    let id = visible_flow_id(&plane, &req, &id).await?;
    let flow = plane.status(&id).await?;
    Ok(HttpResponse::Ok().json(DataFlowStatusResponseMessage {
        data_flow_id: flow.id,
        state: flow.state.dps_name().to_owned(),
    }))
}

async fn put_control_plane(
    plane: Plane,
    req: HttpRequest,
    msg: web::Json<ControlPlaneRegistration>,
) -> ApiResult {
    if let Role::ControlPlane(participant) = api_common::role_of(&req) {
        if participant.as_ref() != msg.controlplane_id {
            return Err(forbidden(format!(
                "the key of control plane '{participant}' may only register controlplaneId '{participant}'"
            )));
        }
    }
    plane.control_planes().put(msg.into_inner())?;
    Ok(HttpResponse::Ok().finish())
}

async fn delete_control_plane(plane: Plane, req: HttpRequest, id: web::Path<String>) -> ApiResult {
    if let Role::ControlPlane(participant) = api_common::role_of(&req) {
        if participant.as_ref() != id.as_str() {
            return Err(forbidden(format!(
                "the key of control plane '{participant}' may only remove controlplaneId '{participant}'"
            )));
        }
    }
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
async fn members(plane: Plane, options: Options, query: web::Query<MembersQuery>) -> ApiResult {
    let slot = if query.watch {
        Some(options.watchers.take()?)
    } else {
        None
    };
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
    let changes = futures::stream::unfold(
        (plane, known, slot),
        |(plane, mut known, slot)| async move {
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
                        (plane, known, slot),
                    ));
                }
                // Keep the connection alive through proxies.
                return Some((
                    Ok(bytes::Bytes::from_static(b": keep-alive\n\n")),
                    (plane, known, slot),
                ));
            }
        },
    );
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
    ApiError::Plane(match error {
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

/// Where dpf keeps its own state in the key-value store.
const RESERVED_PREFIX: &str = "dpf/";

/// Writes and deletes under `dpf/` are refused through the raw KV API (cluster id, baseline,
/// cluster state, heartbeats…), for administrators too: those keys change only through their
/// own routes. The one exception is a known live setting `dpf/config/<setting>` (its value is
/// validated by the caller; an unknown setting is a 400).
fn check_writable(key: &str) -> Result<(), ApiError> {
    use dataplane_manager::live::{CONFIG_PREFIX, SETTINGS};
    if key.starts_with(CONFIG_PREFIX) {
        if SETTINGS.contains(&key) {
            return Ok(());
        }
        return Err(DataPlaneError::InvalidInput(format!(
            "unknown setting '{key}'; settings under {CONFIG_PREFIX}: {}",
            SETTINGS.join(", ")
        ))
        .into());
    }
    if key.starts_with(RESERVED_PREFIX) {
        return Err(forbidden(format!(
            "key '{key}' is reserved: keys under {RESERVED_PREFIX} are written by dpf itself; only the settings under {CONFIG_PREFIX} can be changed here"
        )));
    }
    Ok(())
}

async fn kv_put(plane: Plane, key: web::Path<String>, body: web::Json<KvPut>) -> ApiResult {
    let body = body.into_inner();
    check_writable(&key)?;
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
    check_writable(&key)?;
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
/// How long an idle KV watch waits before it sends a keep-alive comment.
const KV_KEEP_ALIVE: std::time::Duration = std::time::Duration::from_secs(1);

/// `GET /cluster/kv?prefix=…`: the keys and the revision of the listing. With `watch=true`,
/// server-sent events (`id:` = revision, `event:` PUT or DELETE) after `fromRevision` (default:
/// now), resumable by reconnecting with the last id as `fromRevision` or `Last-Event-ID`; a
/// revision that was compacted away is a 400 (re-list, then watch from the listing's revision).
async fn kv_list(
    plane: Plane,
    options: Options,
    req: HttpRequest,
    query: web::Query<KvQuery>,
) -> ApiResult {
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
    // Held by the stream: given back when it ends or the client goes away.
    let slot = options.watchers.take()?;
    let prefix = query.prefix;
    let stream = futures::stream::unfold(
        (coordinator, from, false, slot),
        move |(coordinator, after, done, slot)| {
            let prefix = prefix.clone();
            async move {
                if done {
                    return None;
                }
                let mut idle = std::time::Duration::ZERO;
                loop {
                    match coordinator.kv_events(&prefix, after, 500).await {
                        Ok(events) if events.is_empty() => {
                            if idle >= KV_KEEP_ALIVE {
                                // A comment, so that a client that went away is noticed (and
                                // its watch slot freed) and proxies keep the connection.
                                return Some((
                                    Ok(bytes::Bytes::from_static(b": keep-alive\n\n")),
                                    (coordinator, after, false, slot),
                                ));
                            }
                            tokio::time::sleep(KV_WATCH_INTERVAL).await;
                            idle += KV_WATCH_INTERVAL;
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
                                (coordinator, last, false, slot),
                            ));
                        }
                        Err(dataplane_spi::CoordinationError::Compacted { compacted, .. }) => {
                            let body = format!(
                                "event: compacted\ndata: {{\"compacted\":{compacted}}}\n\n"
                            );
                            return Some((
                                Ok(bytes::Bytes::from(body)),
                                (coordinator, after, true, slot),
                            ));
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

async fn list_flows(plane: Plane, req: HttpRequest, query: web::Query<FlowQuery>) -> ApiResult {
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
    let views = match api_common::role_of(&req) {
        Role::Admin => plane.views(state, limit).await?,
        Role::ControlPlane(participant) => {
            plane.participant_views(&participant, state, limit).await?
        }
    };
    Ok(HttpResponse::Ok().json(views))
}

async fn get_flow(plane: Plane, req: HttpRequest, id: web::Path<String>) -> ApiResult {
    let id = visible_flow_id(&plane, &req, &id).await?;
    Ok(HttpResponse::Ok().json(plane.view(&id).await?))
}

fn dataset_json(id: &str, address: &ResourceAddress) -> serde_json::Value {
    // Credentials at any depth, URL userinfo and queries masked, as in every management view.
    let mut value = dataplane_manager::redact(address.to_json());
    if let Some(map) = value.as_object_mut() {
        map.insert("id".into(), id.into());
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

/// What a `Range` header asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Requested {
    /// `bytes=N-` (`end` None) or `bytes=N-M` (`end` the inclusive last byte, ≥ N, < u64::MAX).
    Bytes { start: u64, end: Option<u64> },
    /// A range no representation can satisfy: numbers beyond 64 bits, a last byte of
    /// 2⁶⁴ − 1 (its exclusive end overflows) or a last byte before the first.
    Unsatisfiable,
}

/// `Range: bytes=N-` or `bytes=N-M`. A malformed header is a 400; an overflowing or reversed
/// range is [`Requested::Unsatisfiable`] (416). Never panics, whatever the numbers.
fn parse_range(req: &HttpRequest) -> Result<Option<Requested>, DataPlaneError> {
    let Some(value) = req.headers().get(header::RANGE) else {
        return Ok(None);
    };
    let bad =
        || DataPlaneError::InvalidInput("unsupported Range: use bytes=N- or bytes=N-M".into());
    let spec = value.to_str().map_err(|_| bad())?.trim();
    let spec = spec.strip_prefix("bytes=").ok_or_else(bad)?;
    let (start, end) = spec.split_once('-').ok_or_else(bad)?;
    let (start, end) = (start.trim(), end.trim());
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(start) || !(end.is_empty() || digits(end)) {
        return Err(bad());
    }
    // Only digits are left: a parse failure is an overflow.
    let Ok(start) = start.parse::<u64>() else {
        return Ok(Some(Requested::Unsatisfiable));
    };
    if end.is_empty() {
        return Ok(Some(Requested::Bytes { start, end: None }));
    }
    match end.parse::<u64>() {
        Ok(end) if end >= start && end.checked_add(1).is_some() => Ok(Some(Requested::Bytes {
            start,
            end: Some(end),
        })),
        _ => Ok(Some(Requested::Unsatisfiable)),
    }
}

fn stream_error(error: TransferError) -> actix_web::Error {
    actix_web::error::ErrorInternalServerError(error.to_string())
}

/// 416 JSON, with `Content-Range: bytes */<size>` when the size is known.
fn range_not_satisfiable(size: Option<u64>) -> HttpResponse {
    let message = match size {
        Some(size) => format!("the requested range is not satisfiable: the data has {size} bytes"),
        None => "the requested range is not satisfiable".to_owned(),
    };
    let mut response = api_common::error_response(
        StatusCode::RANGE_NOT_SATISFIABLE,
        message,
        "RANGE_NOT_SATISFIABLE",
    );
    if let Some(size) = size {
        if let Ok(value) = header::HeaderValue::from_str(&format!("bytes */{size}")) {
            response.headers_mut().insert(header::CONTENT_RANGE, value);
        }
    }
    response
}

/// `GET /public/{id}`: the flow's data, from a `Range` start when one is asked for (206), with
/// checked arithmetic throughout: an unsatisfiable range is a 416, never a panic or a wrong
/// `Content-Length`.
async fn pull(plane: Plane, req: HttpRequest, id: web::Path<String>) -> ApiResult {
    let requested = parse_range(&req)?;
    let (range, offset) = match requested {
        Some(Requested::Bytes { start, end }) => (Some((start, end)), start),
        // Opened (after the token check) only to learn the size for the 416.
        Some(Requested::Unsatisfiable) | None => (None, 0),
    };
    let token = bearer(&req);
    let grant = match plane.open_pull(&id, token.as_deref(), offset).await {
        Ok(grant) => grant,
        // A source refuses to open past its end: when that is why, the range is a 416.
        Err(error @ DataPlaneError::Conflict(_)) if offset > 0 => {
            return match plane.open_pull(&id, token.as_deref(), 0).await {
                Ok(grant) if grant.stream.size.is_some_and(|size| offset >= size) => {
                    Ok(range_not_satisfiable(grant.stream.size))
                }
                _ => Err(error.into()),
            };
        }
        Err(error) => return Err(error.into()),
    };
    let input = grant.stream;
    let total = input.size;
    if requested == Some(Requested::Unsatisfiable) {
        return Ok(range_not_satisfiable(total));
    }
    let honoured = range.is_some() && input.offset == offset;
    if let (true, Some(size)) = (honoured, total) {
        if offset >= size {
            return Ok(range_not_satisfiable(Some(size)));
        }
    }
    // Inclusive last byte served (when known).
    let end = match (range, total) {
        (Some((_, Some(end))), Some(size)) => size.checked_sub(1).map(|last| end.min(last)),
        (Some((_, Some(end))), None) => Some(end),
        (_, Some(size)) => size.checked_sub(1),
        _ => None,
    };
    let length = if honoured {
        match end {
            Some(end) => match end.checked_sub(offset).and_then(|n| n.checked_add(1)) {
                Some(length) => Some(length),
                None => return Ok(range_not_satisfiable(total)),
            },
            None => None,
        }
    } else {
        total
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
            // The writer is gone: it failed (e.g. dpf.transfer.max-bytes, 413), or the flow was
            // suspended or terminated meanwhile.
            if let Ok(Err(error)) = done.await {
                return Err(error.into());
            }
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn range(value: &str) -> Result<Option<Requested>, DataPlaneError> {
        let req = actix_web::test::TestRequest::default()
            .insert_header((header::RANGE, value))
            .to_http_request();
        parse_range(&req)
    }

    #[test]
    fn ranges_parse_with_checked_arithmetic() {
        let bytes = |start, end| Ok(Some(Requested::Bytes { start, end }));
        assert_eq!(range("bytes=0-"), bytes(0, None));
        assert_eq!(range("bytes= 10 - 19 "), bytes(10, Some(19)));
        assert_eq!(range("bytes=5-5"), bytes(5, Some(5)));
        assert_eq!(
            range("bytes=0-18446744073709551614"),
            bytes(0, Some(u64::MAX - 1))
        );
        assert_eq!(range("bytes=18446744073709551615-"), bytes(u64::MAX, None));
        for unsatisfiable in [
            "bytes=0-18446744073709551615",
            "bytes=10-5",
            "bytes=18446744073709551616-",
            "bytes=0-99999999999999999999999",
        ] {
            assert_eq!(
                range(unsatisfiable),
                Ok(Some(Requested::Unsatisfiable)),
                "{unsatisfiable}"
            );
        }
        for malformed in [
            "bytes=-5",
            "bytes=a-",
            "items=0-1",
            "bytes=0-1,3-4",
            "bytes=+1-",
            "bytes=1",
        ] {
            assert!(range(malformed).is_err(), "{malformed}");
        }
        let none = actix_web::test::TestRequest::default().to_http_request();
        assert_eq!(parse_range(&none), Ok(None));
    }

    #[test]
    fn reserved_kv_keys() {
        assert!(check_writable("app/x").is_ok());
        assert!(check_writable("dpfx/y").is_ok());
        assert!(check_writable(dataplane_manager::live::CHECKPOINT_BYTES).is_ok());
        for key in [
            "dpf/cluster/id",
            "dpf/cluster/baseline",
            "dpf/heartbeat/r0",
            "dpf/x",
        ] {
            let error = check_writable(key).unwrap_err();
            assert_eq!(error.status_code(), StatusCode::FORBIDDEN, "{key}");
        }
        let unknown = check_writable("dpf/config/no.such").unwrap_err();
        assert_eq!(unknown.status_code(), StatusCode::BAD_REQUEST);
    }

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
