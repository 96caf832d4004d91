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
//! | various | `/cluster/members`, `/cluster/leader`, `/cluster/baseline…`, `/cluster/kv…` | cluster (administrators; `?watch=true` streams) |
//! | `GET` | `/health`, `/ready`, `/metrics`, `/openapi.json` | liveness, readiness, metrics, this API's OpenAPI |
//!
//! `{id}` of a data flow may be its id or its process id. No business logic lives here: handlers
//! decode, call [`DataPlane`], and answer; every error status is chosen in one place,
//! [`ApiError`] (`error.rs`).
//!
//! One file per surface: `signaling.rs` (DPS, control planes), `management.rs` (data flows,
//! datasets), `cluster.rs` (members, leader, baseline, KV), `sse.rs` (the watch streams and
//! their per-replica budget), `public.rs` (pull with `Range`), `ingest.rs` (push, tus),
//! `ops.rs` (health, readiness, metrics, OpenAPI). This file mounts them.
//!
//! Authentication is decided by route (see [`configure_with`]): health, readiness, metrics,
//! OpenAPI, `/public/{id}` and `/ingest/{id}` are open (the last two take the flow's bearer
//! token); everything else needs a key when one is configured. A per-control-plane key only
//! sees and signals its participant's flows (others are 404) and may not use the cluster,
//! baseline, KV or dataset routes (403). The raw KV API never writes under `dpf/` except the
//! live settings under `dpf/config/`. Watch streams are capped per replica ([`ApiOptions`]).
//!
//! Every request under [`BASE_PATH`] goes through [`api_common::access_log`]: an `X-Request-Id`,
//! one access-log line (route pattern, never the path) and a sample of
//! `dpf_http_request_duration_seconds`, which `/metrics` appends to the manager's metrics.

use std::sync::Arc;

use actix_web::{web, HttpRequest};
use api_common::Role;
use dataplane_manager::{DataPlane, DataPlaneError, Entity};

mod cluster;
mod error;
mod ingest;
mod management;
mod ops;
mod public;
mod signaling;
mod sse;

pub use error::ApiError;
pub use ops::configure_standin;
pub use sse::{ApiOptions, DEFAULT_MAX_WATCHERS};

/// Base path of the data-plane API.
pub const BASE_PATH: &str = "/api/v1";

/// The OpenAPI document of this API.
pub const OPENAPI_JSON: &str = include_str!("../openapi.json");

type Plane = web::Data<Arc<DataPlane>>;
type Options = web::Data<ApiOptions>;
type ApiResult = Result<actix_web::HttpResponse, ApiError>;

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
    use crate::{cluster as c, management as m, signaling as s};
    move |cfg: &mut web::ServiceConfig| {
        cfg.app_data(web::Data::new(plane))
            .app_data(web::Data::new(options))
            .app_data(api_common::json_config())
            .app_data(api_common::query_config())
            .app_data(api_common::path_config())
            .service(
                web::scope(BASE_PATH)
                    // Every request: request id, access log, histogram (outside the key check,
                    // so refusals are logged and counted too).
                    .wrap(actix_web::middleware::from_fn(api_common::access_log))
                    // Open routes.
                    .route("/health", web::get().to(ops::health))
                    .route("/ready", web::get().to(ops::ready))
                    .route("/metrics", web::get().to(ops::metrics))
                    .route("/openapi.json", web::get().to(ops::openapi))
                    // Open, each authorised by the flow's own bearer token.
                    .route("/public/{id}", web::get().to(public::pull))
                    .route("/ingest/{id}", web::post().to(ingest::replace))
                    .route("/ingest/{id}", web::put().to(ingest::replace))
                    .route("/ingest/{id}", web::head().to(ingest::offset))
                    .route("/ingest/{id}", web::patch().to(ingest::append))
                    // Everything else: behind the key.
                    .service(
                        web::scope("")
                            .wrap(actix_web::middleware::from_fn(api_common::require_api_key))
                            .route("/signaling/dataflows/prepare", web::post().to(s::prepare))
                            .route("/signaling/dataflows/start", web::post().to(s::start))
                            .route(
                                "/signaling/dataflows/{id}/started",
                                web::post().to(s::started),
                            )
                            .route(
                                "/signaling/dataflows/{id}/suspend",
                                web::post().to(s::suspend),
                            )
                            .route(
                                "/signaling/dataflows/{id}/resume",
                                web::post().to(s::resume),
                            )
                            .route(
                                "/signaling/dataflows/{id}/terminate",
                                web::post().to(s::terminate),
                            )
                            .route(
                                "/signaling/dataflows/{id}/completed",
                                web::post().to(s::completed),
                            )
                            .route("/signaling/dataflows/{id}/status", web::get().to(s::status))
                            .route(
                                "/signaling/controlplanes",
                                web::put().to(s::put_control_plane),
                            )
                            .route(
                                "/signaling/controlplanes/{id}",
                                web::delete().to(s::delete_control_plane),
                            )
                            .route("/dataflows", web::get().to(m::list_flows))
                            .route("/dataflows/{id}", web::get().to(m::get_flow))
                            // Administrators only.
                            .route("/cluster/members", admin(web::get().to(c::members)))
                            .route("/cluster/leader", admin(web::get().to(c::leader)))
                            .route("/cluster/baseline", admin(web::get().to(c::baseline_show)))
                            .route("/cluster/baseline", admin(web::put().to(c::baseline_set)))
                            .route(
                                "/cluster/baseline/version",
                                admin(web::get().to(c::baseline_version)),
                            )
                            .route(
                                "/cluster/baseline/add",
                                admin(web::post().to(c::baseline_add)),
                            )
                            .route(
                                "/cluster/baseline/remove",
                                admin(web::post().to(c::baseline_remove)),
                            )
                            .route(
                                "/cluster/baseline/activate",
                                admin(web::post().to(c::baseline_activate)),
                            )
                            .route(
                                "/cluster/baseline/deactivate",
                                admin(web::post().to(c::baseline_deactivate)),
                            )
                            .route(
                                "/cluster/baseline/auto-adjust",
                                admin(web::put().to(c::baseline_auto_adjust)),
                            )
                            .route("/cluster/kv", admin(web::get().to(c::kv_list)))
                            .route("/cluster/kv/{key:.+}", admin(web::get().to(c::kv_get)))
                            .route("/cluster/kv/{key:.+}", admin(web::put().to(c::kv_put)))
                            .route(
                                "/cluster/kv/{key:.+}",
                                admin(web::delete().to(c::kv_delete)),
                            )
                            .route("/datasets", admin(web::get().to(m::list_datasets)))
                            .route("/datasets/{id}", admin(web::put().to(m::put_dataset)))
                            .route("/datasets/{id}", admin(web::get().to(m::get_dataset)))
                            .route("/datasets/{id}", admin(web::delete().to(m::delete_dataset)))
                            .default_service(web::to(api_common::not_found_handler)),
                    ),
            );
    }
}

/// A route only an administrator may use: 403 for a control-plane key.
fn admin(route: actix_web::Route) -> actix_web::Route {
    route.wrap(actix_web::middleware::from_fn(api_common::require_admin))
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
        Err(DataPlaneError::not_found(Entity::DataFlow, id).into())
    }
}

/// The bearer token of a request, if any (`/public` and `/ingest` take the flow's own).
fn bearer(req: &HttpRequest) -> Option<String> {
    let value = req
        .headers()
        .get(actix_web::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim().to_owned())
}
