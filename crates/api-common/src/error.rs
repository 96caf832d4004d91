//! Every status an error response of the shared machinery (extractors, key middleware,
//! unknown routes) carries is chosen here.

use actix_web::error::JsonPayloadError;
use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse};
use serde::Serialize;

use crate::MAX_JSON_BODY;

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

/// The 403 a control-plane caller gets on an administrator's route.
pub fn forbidden_for(participant: &str) -> HttpResponse {
    error_response(
        StatusCode::FORBIDDEN,
        format!("the key of control plane '{participant}' does not allow this: administrator key required"),
        "FORBIDDEN",
    )
}

/// Default service: unknown paths and methods get a JSON 404.
pub async fn not_found_handler(req: HttpRequest) -> HttpResponse {
    error_response(
        StatusCode::NOT_FOUND,
        format!("no route for {} {}", req.method(), req.path()),
        "NOT_FOUND",
    )
}

/// The 401 of a protected route called without a valid key.
pub(crate) fn unauthorized(message: &str) -> HttpResponse {
    error_response(StatusCode::UNAUTHORIZED, message.into(), "UNAUTHORIZED")
}

/// The 403 of a request, with no key configured, to a host that is neither loopback nor the
/// configured public host (DNS rebinding).
pub(crate) fn host_refused() -> HttpResponse {
    error_response(
        StatusCode::FORBIDDEN,
        "refused: with no API key configured, only requests to a loopback host or to \
         the configured public host (dpf.public.url) are served"
            .into(),
        "FORBIDDEN",
    )
}
