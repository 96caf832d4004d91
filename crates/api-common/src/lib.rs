//! What every dpf HTTP API shares, so that all of them answer errors the same way:
//! `{"error": "<message>", "code": "<CODE>"}` with the right status.
//!
//! - [`error_response`]: builds such a response;
//! - [`json_config`]: the JSON extractor's body limit and its decoding errors as JSON
//!   (413 too large, 415 not JSON, 400 malformed or missing fields);
//! - [`not_found_handler`]: the default service, a JSON 404 for unknown routes.

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::error::JsonPayloadError;
use actix_web::http::StatusCode;
use actix_web::middleware::Next;
use actix_web::{HttpRequest, HttpResponse};
use serde::Serialize;

/// Largest accepted JSON body, in bytes, on every dpf API.
pub const MAX_JSON_BODY: usize = 64 * 1024;

/// JSON body of every error response.
#[derive(Debug, Serialize)]
pub struct ErrorBody<'a> {
    /// Human-readable message.
    pub error: String,
    /// Stable code.
    pub code: &'a str,
}

/// An error response with the dpf JSON error body.
pub fn error_response(status: StatusCode, error: String, code: &str) -> HttpResponse {
    HttpResponse::build(status).json(ErrorBody { error, code })
}

/// JSON extractor settings: [`MAX_JSON_BODY`] and JSON errors for every decoding failure.
pub fn json_config() -> actix_web::web::JsonConfig {
    actix_web::web::JsonConfig::default()
        .limit(MAX_JSON_BODY)
        .error_handler(|error, _req| {
            let (status, message, code) = match &error {
                JsonPayloadError::OverflowKnownLength { length, limit } => (
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!("request body of {length} bytes exceeds the limit of {limit} bytes"),
                    "PAYLOAD_TOO_LARGE",
                ),
                JsonPayloadError::Overflow { limit } => (
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!("request body exceeds the limit of {limit} bytes"),
                    "PAYLOAD_TOO_LARGE",
                ),
                JsonPayloadError::ContentType => (
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    "request body must be JSON (Content-Type: application/json)".to_owned(),
                    "UNSUPPORTED_MEDIA_TYPE",
                ),
                JsonPayloadError::Deserialize(e) => (
                    StatusCode::BAD_REQUEST,
                    format!("invalid JSON body: {e}"),
                    "INVALID_INPUT",
                ),
                other => (
                    StatusCode::BAD_REQUEST,
                    format!("invalid request body: {other}"),
                    "INVALID_INPUT",
                ),
            };
            actix_web::error::InternalError::from_response(
                error,
                error_response(status, message, code),
            )
            .into()
        })
}

/// Query-string extractor settings: a malformed query is a JSON 400 naming the problem.
pub fn query_config() -> actix_web::web::QueryConfig {
    actix_web::web::QueryConfig::default().error_handler(|error, _req| {
        let response = error_response(
            StatusCode::BAD_REQUEST,
            format!("invalid query string: {error}"),
            "INVALID_INPUT",
        );
        actix_web::error::InternalError::from_response(error, response).into()
    })
}

/// Path extractor settings: a malformed path parameter is a JSON 400.
pub fn path_config() -> actix_web::web::PathConfig {
    actix_web::web::PathConfig::default().error_handler(|error, _req| {
        let response = error_response(
            StatusCode::BAD_REQUEST,
            format!("invalid path: {error}"),
            "INVALID_INPUT",
        );
        actix_web::error::InternalError::from_response(error, response).into()
    })
}

/// The key every protected request must present (`Authorization: Bearer <key>` or
/// `X-Api-Key: <key>`); `None` disables the check. Register as app data and wrap the app with
/// `actix_web::middleware::from_fn(require_api_key)`.
#[derive(Debug, Clone, Default)]
pub struct ApiKey(pub Option<std::sync::Arc<str>>);

/// Whether a path stays open without the API key: liveness/readiness/metrics, the OpenAPI
/// document, and the public pull and ingest endpoints (they check their own per-flow tokens).
pub fn is_open_path(path: &str) -> bool {
    ["/health", "/ready", "/metrics", "/openapi.json"]
        .iter()
        .any(|p| path.ends_with(p))
        || path.contains("/public/")
        || path.contains("/ingest/")
}

/// Compares without revealing, through timing, where two secrets differ.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn presented_key(req: &ServiceRequest) -> Option<String> {
    let headers = req.headers();
    if let Some(key) = headers.get("x-api-key").and_then(|v| v.to_str().ok()) {
        return Some(key.trim().to_owned());
    }
    let value = headers
        .get(actix_web::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim().to_owned())
}

/// Middleware: 401 JSON for a protected request without the right key. The key is never
/// logged.
///
/// # Errors
/// Whatever the inner service returns.
pub async fn require_api_key(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, actix_web::Error> {
    let expected = req
        .app_data::<actix_web::web::Data<ApiKey>>()
        .and_then(|k| k.0.clone());
    let Some(expected) = expected else {
        return Ok(next.call(req).await?.map_into_left_body());
    };
    if is_open_path(req.path()) {
        return Ok(next.call(req).await?.map_into_left_body());
    }
    match presented_key(&req) {
        Some(key) if constant_time_eq(key.as_bytes(), expected.as_bytes()) => {
            Ok(next.call(req).await?.map_into_left_body())
        }
        presented => {
            let message = if presented.is_some() {
                "wrong API key"
            } else {
                "missing API key: send Authorization: Bearer <key> or X-Api-Key: <key>"
            };
            let response = error_response(StatusCode::UNAUTHORIZED, message.into(), "UNAUTHORIZED");
            Ok(req.into_response(response).map_into_right_body())
        }
    }
}

/// Default service: unknown paths and methods get a JSON 404.
pub async fn not_found_handler(req: HttpRequest) -> HttpResponse {
    error_response(
        StatusCode::NOT_FOUND,
        format!("no route for {} {}", req.method(), req.path()),
        "NOT_FOUND",
    )
}
