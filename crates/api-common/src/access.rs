//! The access log and the per-route request histograms of every dpf HTTP API: one middleware,
//! [`access_log`], mounted around the open routes and the protected scope alike (outside the
//! key check, so a refused request is logged and counted too).
//!
//! - **Request id**: taken from the request's `X-Request-Id` when it is 1 to 128 visible ASCII
//!   characters (`!`..`~`, no spaces or control characters), else a new UUID v4; echoed in the
//!   response's `X-Request-Id`, put into the request's extensions as [`RequestId`], and entered
//!   as the field `request_id` of a `request` span around the handler, so that every line
//!   logged while handling the request carries it.
//! - **Access log**: one line per request at INFO, target [`ACCESS_LOG_TARGET`], with the
//!   method, the route *pattern* (`/api/v1/public/{id}`, never the path, so no id, token or
//!   query string), the status, the duration in milliseconds (until the response head: a
//!   streamed body may flow longer), the body size when known, and the request id.
//! - **Histogram**: `dpf_http_request_duration_seconds{method,route,status}` in a process-wide
//!   Prometheus registry, rendered by [`metrics_text`]. Labels are bounded: the method is one
//!   of the standard ones or `OTHER`, the route a registered pattern or `unmatched`, the status
//!   the numeric code.

use std::sync::{Arc, LazyLock};
use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::http::{Method, StatusCode};
use actix_web::middleware::Next;
use actix_web::HttpMessage;
use prometheus::{Encoder, HistogramOpts, HistogramVec, Registry, TextEncoder};
use tracing::Instrument;

/// The header carrying the request id, in and out.
pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// The tracing target of the access-log lines (filter with `dpf::access=warn` to silence them).
pub const ACCESS_LOG_TARGET: &str = "dpf::access";

/// The route label (and logged route) of a request that matched no registered route.
pub const UNMATCHED_ROUTE: &str = "unmatched";

/// The histogram's name.
pub const DURATION_METRIC: &str = "dpf_http_request_duration_seconds";

/// Longest request id taken from a caller.
pub const MAX_REQUEST_ID_LEN: usize = 128;

/// Bucket bounds of the histogram, in seconds.
const BUCKETS: &[f64] = &[
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// The id of the request being handled, in the request's extensions (set by [`access_log`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestId(pub Arc<str>);

/// Whether a caller's `X-Request-Id` is used as is: 1 to [`MAX_REQUEST_ID_LEN`] visible ASCII
/// characters.
pub fn valid_request_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= MAX_REQUEST_ID_LEN && id.bytes().all(|b| b.is_ascii_graphic())
}

struct HttpMetrics {
    registry: Registry,
    durations: HistogramVec,
}

impl HttpMetrics {
    fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        let durations = HistogramVec::new(
            HistogramOpts::new(
                DURATION_METRIC,
                "Duration of HTTP requests until the response head, by method, route pattern and status.",
            )
            .buckets(BUCKETS.to_vec()),
            &["method", "route", "status"],
        )?;
        registry.register(Box::new(durations.clone()))?;
        Ok(Self {
            registry,
            durations,
        })
    }
}

static METRICS: LazyLock<Option<HttpMetrics>> = LazyLock::new(|| match HttpMetrics::new() {
    Ok(metrics) => Some(metrics),
    Err(error) => {
        tracing::warn!(%error, "HTTP request histograms unavailable");
        None
    }
});

/// The Prometheus text exposition of the HTTP request histograms of this process (empty until
/// a request was observed). Append it to what `/metrics` serves.
pub fn metrics_text() -> String {
    let Some(metrics) = METRICS.as_ref() else {
        return String::new();
    };
    let mut out = Vec::new();
    if let Err(error) = TextEncoder::new().encode(&metrics.registry.gather(), &mut out) {
        tracing::warn!(%error, "cannot encode the HTTP request histograms");
        return String::new();
    }
    String::from_utf8(out).unwrap_or_default()
}

/// How many requests the histogram counted for `method`, `route` and `status` (tests, checks).
pub fn observed_requests(method: &str, route: &str, status: u16) -> u64 {
    METRICS
        .as_ref()
        .and_then(|m| {
            m.durations
                .get_metric_with_label_values(&[method, route, &status.to_string()])
                .ok()
        })
        .map_or(0, |h| h.get_sample_count())
}

/// The method as a bounded label: a standard method, else `OTHER`.
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        Method::TRACE => "TRACE",
        Method::CONNECT => "CONNECT",
        _ => "OTHER",
    }
}

/// The middleware: request id, access-log line and histogram sample for every request. Wrap
/// each open resource and the protected scope (outside [`crate::require_api_key`]) with
/// `actix_web::middleware::from_fn(api_common::access_log)`.
///
/// # Errors
/// The wrapped service's, logged and counted with its status.
pub async fn access_log(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let started = Instant::now();
    let id: Arc<str> = req
        .headers()
        .get(REQUEST_ID_HEADER)
        .and_then(|value| value.to_str().ok())
        .filter(|id| valid_request_id(id))
        .map_or_else(|| uuid::Uuid::new_v4().to_string().into(), Into::into);
    req.extensions_mut().insert(RequestId(id.clone()));
    let method = method_label(req.method());
    // The pattern, from the application's routes and the path: no id, token or query.
    let route = req
        .resource_map()
        .match_pattern(req.path())
        .unwrap_or_else(|| UNMATCHED_ROUTE.to_owned());
    let span = tracing::info_span!("request", request_id = %id);
    let outcome = next.call(req).instrument(span).await;
    let elapsed = started.elapsed();
    let mut res = match outcome {
        Ok(res) => res,
        Err(error) => {
            // Rare (handler and extractor errors are responses already): the error is
            // answered by actix further out, without the request id header.
            let status = error.as_response_error().status_code();
            record(&id, method, &route, status, elapsed, None);
            return Err(error);
        }
    };
    let status = res.status();
    let bytes = match res.response().body().size() {
        actix_web::body::BodySize::Sized(n) => Some(n),
        actix_web::body::BodySize::None => Some(0),
        actix_web::body::BodySize::Stream => None,
    };
    if let Ok(value) = HeaderValue::from_str(&id) {
        res.headers_mut()
            .insert(HeaderName::from_static(REQUEST_ID_HEADER), value);
    }
    record(&id, method, &route, status, elapsed, bytes);
    Ok(res)
}

/// The histogram sample and the access-log line of one request.
fn record(
    id: &str,
    method: &'static str,
    route: &str,
    status: StatusCode,
    elapsed: std::time::Duration,
    bytes: Option<u64>,
) {
    if let Some(metrics) = METRICS.as_ref() {
        if let Ok(histogram) =
            metrics
                .durations
                .get_metric_with_label_values(&[method, route, status.as_str()])
        {
            histogram.observe(elapsed.as_secs_f64());
        }
    }
    tracing::info!(
        target: ACCESS_LOG_TARGET,
        request_id = %id,
        method,
        route = %route,
        status = status.as_u16(),
        duration_ms = elapsed.as_secs_f64() * 1000.0,
        bytes,
        "request"
    );
}

#[cfg(test)]
#[path = "access_tests.rs"]
mod tests;
