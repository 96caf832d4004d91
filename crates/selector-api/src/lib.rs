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
//! This crate holds no business logic: it decodes requests, calls a [`DataPlaneSelector`] and
//! maps [`SelectorError`]s to HTTP in one place ([`ApiError`]). Every error is JSON:
//! `{"error": "<message>", "code": "<CODE>"}`.

mod error;

use std::net::TcpListener;
use std::sync::Arc;

use actix_web::dev::Server;
use actix_web::http::header;
use actix_web::{web, App, HttpResponse, HttpServer};
use selector_spi::{DataPlaneRegistration, DataPlaneSelector, SelectionRequest};
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
pub fn configure_at(
    base: &'static str,
    selector: Arc<dyn DataPlaneSelector>,
) -> impl FnOnce(&mut web::ServiceConfig) {
    move |cfg: &mut web::ServiceConfig| {
        cfg.app_data(web::Data::new(selector))
            .app_data(json_config())
            .app_data(api_common::query_config())
            .app_data(api_common::path_config())
            .service(
                web::scope(base)
                    .route("/health", web::get().to(health))
                    .route("/openapi.json", web::get().to(openapi))
                    .route("/strategies", web::get().to(strategies))
                    .route("/dataplanes/select", web::post().to(select))
                    .route("/dataplanes", web::put().to(register))
                    .route("/dataplanes", web::post().to(add))
                    .route("/dataplanes", web::get().to(list))
                    .route("/dataplanes/{id}", web::get().to(get))
                    .route("/dataplanes/{id}", web::delete().to(remove)),
            );
    }
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
    let key = api_common::ApiKey(api_key.map(Into::into));
    let server = HttpServer::new(move || {
        App::new()
            .app_data(web::Data::new(key.clone()))
            .wrap(actix_web::middleware::from_fn(api_common::require_api_key))
            .configure(configure(selector.clone()))
            .default_service(web::to(not_found_handler))
    })
    .workers(workers.max(1))
    .listen(listener)?
    .run();
    Ok(server)
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
    Ok(HttpResponse::Ok().json(instance))
}

async fn register(
    selector: SelectorData,
    registration: web::Json<DataPlaneRegistration>,
) -> Result<HttpResponse, ApiError> {
    let (instance, _created) = selector.register(&registration).await?;
    Ok(HttpResponse::Ok().json(instance))
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
        .json(instance))
}

async fn list(selector: SelectorData) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(selector.list().await?))
}

async fn get(selector: SelectorData, id: web::Path<String>) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(selector.get(&id).await?))
}

async fn remove(selector: SelectorData, id: web::Path<String>) -> Result<HttpResponse, ApiError> {
    selector.remove(&id).await?;
    Ok(HttpResponse::NoContent().finish())
}
