//! Operations: liveness, readiness, metrics and this API's OpenAPI document (all open), and
//! the stand-in served while the store is unreachable at start.

use std::sync::{Arc, Mutex};

use actix_web::{web, HttpResponse};

use crate::{error, ApiResult, Plane, BASE_PATH, OPENAPI_JSON};

/// `GET /health`: the process answers.
pub(crate) async fn health() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({"status": "UP"}))
}

/// `GET /ready`: 200 when the store answers and the replica is ACTIVE or IDLE, else 503.
pub(crate) async fn ready(plane: Plane) -> HttpResponse {
    match plane.ready().await {
        Ok(state) => {
            HttpResponse::Ok().json(serde_json::json!({"status": "READY", "state": state}))
        }
        Err(reason) => error::not_ready(reason),
    }
}

/// `GET /metrics`: Prometheus text format: the data plane's metrics, then the HTTP request
/// histograms ([`api_common::metrics_text`]).
pub(crate) async fn metrics(plane: Plane) -> ApiResult {
    let mut text = plane.metrics_text().await?;
    if !text.is_empty() && !text.ends_with('\n') {
        text.push('\n');
    }
    text.push_str(&api_common::metrics_text());
    Ok(HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(text))
}

/// `GET /openapi.json`.
pub(crate) async fn openapi() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body(OPENAPI_JSON)
}

/// The routes of a stand-in server a replica runs while its store is unreachable at start:
/// `/api/v1/health` is UP, everything else is 503 with `reason` (read at each request).
pub fn configure_standin(
    reason: Arc<Mutex<String>>,
) -> impl FnOnce(&mut web::ServiceConfig) + Clone {
    move |cfg: &mut web::ServiceConfig| {
        cfg.route(&format!("{BASE_PATH}/health"), web::get().to(health))
            .default_service(web::to(move || {
                let reason = reason.lock().map(|r| r.clone()).unwrap_or_default();
                async move { error::store_unreachable(reason) }
            }));
    }
}
