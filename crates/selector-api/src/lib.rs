//! REST API of the dpf data-plane selector, on actix-web, under the base path `/api/v1`.
//!
//! | method | path | what |
//! |---|---|---|
//! | `PUT` | `/dataplanes` | DPS `DataPlaneRegistrationMessage`: create or replace, 200 |
//! | `POST` | `/dataplanes` | create only: 201, 409 when the id exists |
//! | `GET` | `/dataplanes` | list |
//! | `GET` | `/dataplanes/{id}` | one instance, 404 when unknown |
//! | `DELETE` | `/dataplanes/{id}` | remove: 204, 404 when unknown |
//! | `POST` | `/dataplanes/select` | choose an instance for a [`SelectionRequest`] |
//! | `GET` | `/strategies` | registered strategy names and the default |
//! | `GET` | `/health` | liveness |
//! | `GET` | `/openapi.json` | this API's OpenAPI 3 document |
//!
//! `/health` and `/openapi.json` are open; every other route requires the API key when one is
//! configured ([`api_common::ApiKey`], `Authorization: Bearer <key>` or `X-Api-Key: <key>`).
//! Every request goes through [`api_common::access_log`] (an `X-Request-Id`, one access-log
//! line with the route pattern, a `dpf_http_request_duration_seconds` sample; the embedded
//! launcher's `/api/v1/metrics` shows them). Answers never carry credentials:
//! `authorization.clientSecret` is omitted and any other field named like a credential shows
//! `***` ([`DataPlaneInstance::redacted`]).
//!
//! This crate holds no business logic: it decodes requests, calls a [`DataPlaneSelector`] and
//! maps [`SelectorError`]s to HTTP in one place ([`ApiError`]). Every error is JSON:
//! `{"error": "<message>", "code": "<CODE>"}`.

mod error;

use std::net::TcpListener;
use std::sync::Arc;

use actix_web::dev::Server;
use actix_web::http::header;
use actix_web::middleware::from_fn;
use actix_web::{web, App, HttpResponse, HttpServer};
use selector_spi::{DataPlaneInstance, DataPlaneRegistration, DataPlaneSelector, SelectionRequest};
use serde::Serialize;

pub use api_common::{json_config, not_found_handler, MAX_JSON_BODY};
pub use error::ApiError;

/// Base path of the selector API.
pub const BASE_PATH: &str = "/api/v1";

/// The OpenAPI document of this API.
pub const OPENAPI_JSON: &str = include_str!("../openapi.json");

type SelectorData = web::Data<Arc<dyn DataPlaneSelector>>;

/// Registers the selector routes (under [`BASE_PATH`]) on an actix-web app or scope.
pub fn configure(selector: Arc<dyn DataPlaneSelector>) -> impl FnOnce(&mut web::ServiceConfig) {
    configure_at(BASE_PATH, selector)
}

/// Registers the selector routes under `base` (the embedded launcher serves them at
/// `/api/v1/selector` next to the data plane's `/api/v1`).
///
/// Authentication is decided by route, never by looking at the path: `GET {base}/health` and
/// `GET {base}/openapi.json` are their own resources, open to anyone; every other route lives
/// in one scope wrapped with [`api_common::require_api_key`], which checks the
/// [`api_common::AuthConfig`] or [`api_common::ApiKey`] registered as app data (none: open).
/// Registering, adding and removing instances needs the administrator key; a per-control-plane
/// key may list, get, select and read the strategies.
pub fn configure_at(
    base: &'static str,
    selector: Arc<dyn DataPlaneSelector>,
) -> impl FnOnce(&mut web::ServiceConfig) {
    move |cfg: &mut web::ServiceConfig| {
        cfg.app_data(web::Data::new(selector))
            .app_data(json_config())
            .app_data(api_common::query_config())
            .app_data(api_common::path_config())
            // Every service: request id, access log, histogram (outside the key check, so
            // refusals are logged and counted too).
            // Open: liveness and the API description.
            .service(
                web::resource(format!("{base}/health"))
                    .wrap(from_fn(api_common::access_log))
                    .route(web::get().to(health))
                    .default_service(web::to(not_found_handler)),
            )
            .service(
                web::resource(format!("{base}/openapi.json"))
                    .wrap(from_fn(api_common::access_log))
                    .route(web::get().to(openapi))
                    .default_service(web::to(not_found_handler)),
            )
            // Everything else: behind the key.
            .service(
                web::scope(base)
                    .wrap(from_fn(api_common::require_api_key))
                    .wrap(from_fn(api_common::access_log))
                    .route("/strategies", web::get().to(strategies))
                    .route("/dataplanes/select", web::post().to(select))
                    .route("/dataplanes", admin(web::put().to(register)))
                    .route("/dataplanes", admin(web::post().to(add)))
                    .route("/dataplanes", web::get().to(list))
                    .route("/dataplanes/{id}", web::get().to(get))
                    .route("/dataplanes/{id}", admin(web::delete().to(remove)))
                    .default_service(web::to(not_found_handler)),
            );
    }
}

/// A route that changes the registry: administrators only ([`api_common::require_admin`]); a
/// per-control-plane key (where the embedding configures them) may list and select.
fn admin(route: actix_web::Route) -> actix_web::Route {
    route.wrap(actix_web::middleware::from_fn(api_common::require_admin))
}

/// Starts an HTTP server for the selector on an already bound listener (bind port 0 in tests).
///
/// # Errors
/// When the listener cannot be used.
pub fn serve(
    listener: TcpListener,
    selector: Arc<dyn DataPlaneSelector>,
    workers: usize,
) -> std::io::Result<Server> {
    serve_with_key(listener, selector, workers, None)
}

/// [`serve`] requiring `api_key` on every route but `/health` and `/openapi.json`.
///
/// # Errors
/// When the listener cannot be used.
pub fn serve_with_key(
    listener: TcpListener,
    selector: Arc<dyn DataPlaneSelector>,
    workers: usize,
    api_key: Option<String>,
) -> std::io::Result<Server> {
    serve_with(
        listener,
        selector,
        workers,
        api_common::AuthConfig::admin(api_key.as_deref()),
        None,
    )
}

/// Serves the selector with the keys (and, without keys, the `Host` check) of `auth`, over TLS
/// when `tls` is given (a rustls 0.23 server configuration, e.g. from
/// `dpf_launch::server_tls`), else plain HTTP.
///
/// # Errors
/// When the listener cannot be used.
pub fn serve_with(
    listener: TcpListener,
    selector: Arc<dyn DataPlaneSelector>,
    workers: usize,
    auth: api_common::AuthConfig,
    tls: Option<rustls::ServerConfig>,
) -> std::io::Result<Server> {
    let server = HttpServer::new(move || {
        App::new()
            .app_data(web::Data::new(auth.clone()))
            .configure(configure(selector.clone()))
            .default_service(web::to(not_found_handler))
    })
    .workers(workers.max(1));
    let server = match tls {
        Some(tls) => server.listen_rustls_0_23(listener, tls)?,
        None => server.listen(listener)?,
    };
    Ok(server.run())
}

#[derive(Serialize)]
struct Health {
    status: &'static str,
}

async fn health() -> HttpResponse {
    HttpResponse::Ok().json(Health { status: "UP" })
}

async fn openapi() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body(OPENAPI_JSON)
}

#[derive(Serialize)]
struct Strategies {
    strategies: Vec<String>,
    default: String,
}

async fn strategies(selector: SelectorData) -> HttpResponse {
    let (strategies, default) = selector.strategies();
    HttpResponse::Ok().json(Strategies {
        strategies,
        default,
    })
}

async fn select(
    selector: SelectorData,
    request: web::Json<SelectionRequest>,
) -> Result<HttpResponse, ApiError> {
    let instance = selector.select(&request).await?;
    Ok(HttpResponse::Ok().json(instance.redacted()))
}

async fn register(
    selector: SelectorData,
    registration: web::Json<DataPlaneRegistration>,
) -> Result<HttpResponse, ApiError> {
    let (instance, _created) = selector.register(&registration).await?;
    Ok(HttpResponse::Ok().json(instance.redacted()))
}

async fn add(
    selector: SelectorData,
    registration: web::Json<DataPlaneRegistration>,
) -> Result<HttpResponse, ApiError> {
    let instance = selector.add(&registration).await?;
    Ok(HttpResponse::Created()
        .insert_header((
            header::LOCATION,
            format!("{BASE_PATH}/dataplanes/{}", instance.id),
        ))
        .json(instance.redacted()))
}

async fn list(selector: SelectorData) -> Result<HttpResponse, ApiError> {
    let instances: Vec<_> = selector
        .list()
        .await?
        .into_iter()
        .map(DataPlaneInstance::redacted)
        .collect();
    Ok(HttpResponse::Ok().json(instances))
}

async fn get(selector: SelectorData, id: web::Path<String>) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(selector.get(&id).await?.redacted()))
}

async fn remove(selector: SelectorData, id: web::Path<String>) -> Result<HttpResponse, ApiError> {
    selector.remove(&id).await?;
    Ok(HttpResponse::NoContent().finish())
}
