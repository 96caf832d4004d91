use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use api_common::error_response;
use selector_spi::{ErrorCode, SelectorError};

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
