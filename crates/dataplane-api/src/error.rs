//! The one place where the data plane's errors meet HTTP status codes: every status an error
//! response of this API carries is chosen here.

use actix_web::http::{header, StatusCode};
use actix_web::{HttpResponse, ResponseError};
use dataplane_manager::DataPlaneError;
use dataplane_spi::{CoordinationError, TransferError};

/// An error on its way to an HTTP response: what the data plane answered, or a refusal decided
/// by the API layer itself.
#[derive(Debug)]
pub enum ApiError {
    /// What the data plane answered.
    Plane(DataPlaneError),
    /// A role may not do this (403).
    Forbidden(String),
    /// The replica's watch-stream budget is used up (429).
    TooManyWatchers(String),
    /// A request body of the wrong media type (415).
    UnsupportedMediaType(String),
    /// A `Range` no representation satisfies (416, with `Content-Range: bytes */<size>` when
    /// the size is known).
    RangeNotSatisfiable {
        /// The size of the data, when known.
        size: Option<u64>,
    },
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Plane(error) => error.fmt(f),
            Self::Forbidden(message)
            | Self::TooManyWatchers(message)
            | Self::UnsupportedMediaType(message) => f.write_str(message),
            Self::RangeNotSatisfiable { size: Some(size) } => write!(
                f,
                "the requested range is not satisfiable: the data has {size} bytes"
            ),
            Self::RangeNotSatisfiable { size: None } => {
                f.write_str("the requested range is not satisfiable")
            }
        }
    }
}

impl From<DataPlaneError> for ApiError {
    fn from(error: DataPlaneError) -> Self {
        Self::Plane(error)
    }
}

/// The cluster services' failures take the data plane's mapping of them (today's wording).
impl From<cluster::ClusterError> for ApiError {
    fn from(error: cluster::ClusterError) -> Self {
        Self::Plane(error.into())
    }
}

/// Coordination (KV, leader) failures take the data plane's one mapping of them.
impl From<CoordinationError> for ApiError {
    fn from(error: CoordinationError) -> Self {
        Self::Plane(error.into())
    }
}

/// The status of each data-plane error.
fn plane_status(error: &DataPlaneError) -> StatusCode {
    match error {
        DataPlaneError::InvalidInput(_) => StatusCode::BAD_REQUEST,
        DataPlaneError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
        DataPlaneError::NotFound(_) => StatusCode::NOT_FOUND,
        DataPlaneError::Conflict(_) => StatusCode::CONFLICT,
        DataPlaneError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
        DataPlaneError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        DataPlaneError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl ApiError {
    /// The stable `code` of the error body.
    fn code(&self) -> &'static str {
        match self {
            Self::Plane(error) => error.code(),
            Self::Forbidden(_) => "FORBIDDEN",
            Self::TooManyWatchers(_) => "TOO_MANY_REQUESTS",
            Self::UnsupportedMediaType(_) => "UNSUPPORTED_MEDIA_TYPE",
            Self::RangeNotSatisfiable { .. } => "RANGE_NOT_SATISFIABLE",
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            Self::Plane(error) => plane_status(error),
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::TooManyWatchers(_) => StatusCode::TOO_MANY_REQUESTS,
            Self::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::RangeNotSatisfiable { .. } => StatusCode::RANGE_NOT_SATISFIABLE,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let status = self.status_code();
        if status.is_server_error() {
            tracing::warn!(error = %self, "data-plane request failed");
        }
        let mut response = api_common::error_response(status, self.to_string(), self.code());
        if let Self::RangeNotSatisfiable { size: Some(size) } = self {
            if let Ok(value) = header::HeaderValue::from_str(&format!("bytes */{size}")) {
                response.headers_mut().insert(header::CONTENT_RANGE, value);
            }
        }
        response
    }
}

/// `GET /ready` when the replica is not ready: 503 with the readiness body (not an error body).
pub(crate) fn not_ready(reason: impl serde::Serialize) -> HttpResponse {
    HttpResponse::build(StatusCode::SERVICE_UNAVAILABLE)
        .json(serde_json::json!({"status": "NOT_READY", "reason": reason}))
}

/// What the stand-in server answers while the store is unreachable at start: 503.
pub(crate) fn store_unreachable(reason: String) -> HttpResponse {
    HttpResponse::build(StatusCode::SERVICE_UNAVAILABLE)
        .json(serde_json::json!({"status": "NOT_READY", "error": reason, "code": "UNAVAILABLE"}))
}

/// A failure in the middle of a streamed body (the status line is already sent: this ends
/// the connection).
pub(crate) fn stream_error(error: TransferError) -> actix_web::Error {
    actix_web::error::ErrorInternalServerError(error.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_plane_error_has_its_status() {
        let cases = [
            (DataPlaneError::InvalidInput("x".into()), 400),
            (DataPlaneError::Unauthorized("x".into()), 401),
            (DataPlaneError::NotFound("x".into()), 404),
            (DataPlaneError::Conflict("x".into()), 409),
            (DataPlaneError::TooLarge("x".into()), 413),
            (DataPlaneError::Unavailable("x".into()), 503),
            (DataPlaneError::Internal("x".into()), 500),
        ];
        for (error, status) in cases {
            assert_eq!(ApiError::from(error).status_code().as_u16(), status);
        }
    }

    #[test]
    fn coordination_errors_map_once() {
        let compacted = CoordinationError::Compacted {
            requested: 1,
            compacted: 5,
        };
        assert_eq!(
            ApiError::from(compacted).status_code(),
            StatusCode::BAD_REQUEST
        );
        let gone = CoordinationError::NotFound("k".into());
        assert_eq!(ApiError::from(gone).status_code(), StatusCode::NOT_FOUND);
    }

    #[test]
    fn unsatisfiable_range_names_the_size() {
        let response = ApiError::RangeNotSatisfiable { size: Some(7) }.error_response();
        assert_eq!(response.status(), StatusCode::RANGE_NOT_SATISFIABLE);
        assert_eq!(
            response.headers().get(header::CONTENT_RANGE).unwrap(),
            "bytes */7"
        );
    }
}
