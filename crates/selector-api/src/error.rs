use actix_web::error::JsonPayloadError;
use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, ResponseError};
use selector_spi::{ErrorCode, SelectorError};
use serde::Serialize;

/// A [`SelectorError`] on its way to an HTTP response: the one place errors meet status codes.
#[derive(Debug)]
pub struct ApiError(pub SelectorError);

impl From<SelectorError> for ApiError {
    fn from(error: SelectorError) -> Self {
        Self(error)
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// JSON body of every error response.
#[derive(Debug, Serialize)]
struct ErrorBody<'a> {
    error: String,
    code: &'a str,
}

fn code_name(code: ErrorCode) -> &'static str {
    match code {
        ErrorCode::InvalidInput => "INVALID_INPUT",
        ErrorCode::NotFound => "NOT_FOUND",
        ErrorCode::AlreadyExists => "ALREADY_EXISTS",
        ErrorCode::NoMatch => "NO_MATCH",
        ErrorCode::UnknownStrategy => "UNKNOWN_STRATEGY",
        ErrorCode::Unavailable => "UNAVAILABLE",
        ErrorCode::Internal => "INTERNAL",
    }
}

fn error_response(status: StatusCode, error: String, code: &str) -> HttpResponse {
    HttpResponse::build(status).json(ErrorBody { error, code })
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self.0.code() {
            ErrorCode::InvalidInput | ErrorCode::UnknownStrategy => StatusCode::BAD_REQUEST,
            ErrorCode::NotFound | ErrorCode::NoMatch => StatusCode::NOT_FOUND,
            ErrorCode::AlreadyExists => StatusCode::CONFLICT,
            ErrorCode::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let status = self.status_code();
        if status.is_server_error() {
            tracing::warn!(error = %self.0, "selector request failed");
        }
        error_response(status, self.0.to_string(), code_name(self.0.code()))
    }
}

/// JSON extractor settings: a body limit and JSON errors for every decoding failure
/// (413 too large, 415 wrong content type, 400 malformed or missing fields).
pub fn json_config() -> actix_web::web::JsonConfig {
    actix_web::web::JsonConfig::default()
        .limit(crate::MAX_JSON_BODY)
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

/// Default service: unknown paths and methods get a JSON 404.
pub async fn not_found_handler(req: HttpRequest) -> HttpResponse {
    error_response(
        StatusCode::NOT_FOUND,
        format!("no route for {} {}", req.method(), req.path()),
        "NOT_FOUND",
    )
}
