//! Translation of HTTP outcomes to [`TransferError`]s, and bounded reads of response bodies.

use std::error::Error as StdError;
use std::time::Duration;

use dataplane_spi::TransferError;
use reqwest::{Response, StatusCode, Url};

use crate::endpoint::display_url;

/// At most this much of an error response body is quoted in the error message.
const ERROR_BODY_LIMIT: usize = 512;
/// At most this much of a success response body is read (and dropped) before releasing it.
const DRAIN_LIMIT: usize = 64 * 1024;
/// Reading an error body or draining a response never takes longer than this.
const BODY_READ_TIMEOUT: Duration = Duration::from_secs(5);

/// An error and its sources, `: `-separated (reqwest's own message is terse).
pub(crate) fn chain(error: &dyn StdError) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !message.contains(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        source = cause.source();
    }
    message
}

/// A failed request: builder problems are the address's fault, too many redirects will not go
/// away, everything else (connect, timeout, I/O, body) may.
pub(crate) fn request_error(what: &str, url: &Url, error: &reqwest::Error) -> TransferError {
    let message = format!("{what} {} failed: {}", display_url(url), chain(error));
    if error.is_builder() {
        TransferError::InvalidAddress(message)
    } else if error.is_redirect() {
        TransferError::Rejected(message)
    } else {
        TransferError::Transient(message)
    }
}

/// Whether a non-success `status` is worth retrying: 5xx, 408 and 429.
pub(crate) fn is_retryable_status(status: StatusCode) -> bool {
    status.is_server_error()
        || status == StatusCode::REQUEST_TIMEOUT
        || status == StatusCode::TOO_MANY_REQUESTS
}

/// The error for a non-success response, quoting the start of its body.
pub(crate) async fn status_error(what: &str, url: &Url, response: Response) -> TransferError {
    let status = response.status();
    let body = read_prefix(response, ERROR_BODY_LIMIT).await;
    let mut message = format!("{what} {} answered {status}", display_url(url));
    let text = String::from_utf8_lossy(&body.bytes);
    let text = text.trim();
    if !text.is_empty() {
        message.push_str(": ");
        message.push_str(text);
        if body.truncated {
            message.push('…');
        }
    }
    if is_retryable_status(status) {
        TransferError::Transient(message)
    } else {
        TransferError::Rejected(message)
    }
}

/// Reads and drops at most [`DRAIN_LIMIT`] bytes of `response`, so that a short body does not
/// keep the connection from being reused; a longer one is simply dropped.
pub(crate) async fn drain(response: Response) {
    let _ = read_prefix(response, DRAIN_LIMIT).await;
}

/// The start of a body.
struct Prefix {
    bytes: Vec<u8>,
    /// Whether the body may go on after `bytes`.
    truncated: bool,
}

/// The first `limit` bytes of the body of `response` (fewer on error or after
/// [`BODY_READ_TIMEOUT`]).
async fn read_prefix(mut response: Response, limit: usize) -> Prefix {
    let mut bytes = Vec::new();
    let read = async {
        while bytes.len() < limit {
            match response.chunk().await {
                Ok(Some(chunk)) => {
                    let take = chunk.len().min(limit - bytes.len());
                    bytes.extend_from_slice(&chunk[..take]);
                }
                Ok(None) | Err(_) => break,
            }
        }
    };
    let _ = tokio::time::timeout(BODY_READ_TIMEOUT, read).await;
    let truncated = bytes.len() >= limit;
    Prefix { bytes, truncated }
}
