//! `GET /public/{id}`: the provider-pull endpoint. Open; authorised by the flow's own bearer
//! token; honours `Range: bytes=N-` and `bytes=N-M` with checked arithmetic throughout.

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use dataplane_manager::DataPlaneError;
use futures::StreamExt;

use crate::error::stream_error;
use crate::{bearer, ApiError, ApiResult, Plane};

/// What a `Range` header asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Requested {
    /// `bytes=N-` (`end` None) or `bytes=N-M` (`end` the inclusive last byte, ≥ N, < u64::MAX).
    Bytes { start: u64, end: Option<u64> },
    /// A range no representation can satisfy: numbers beyond 64 bits, a last byte of
    /// 2⁶⁴ − 1 (its exclusive end overflows) or a last byte before the first.
    Unsatisfiable,
}

/// `Range: bytes=N-` or `bytes=N-M`. A malformed header is a 400; an overflowing or reversed
/// range is [`Requested::Unsatisfiable`] (416). Never panics, whatever the numbers.
fn parse_range(req: &HttpRequest) -> Result<Option<Requested>, DataPlaneError> {
    let Some(value) = req.headers().get(header::RANGE) else {
        return Ok(None);
    };
    let bad =
        || DataPlaneError::InvalidInput("unsupported Range: use bytes=N- or bytes=N-M".into());
    let spec = value.to_str().map_err(|_| bad())?.trim();
    let spec = spec.strip_prefix("bytes=").ok_or_else(bad)?;
    let (start, end) = spec.split_once('-').ok_or_else(bad)?;
    let (start, end) = (start.trim(), end.trim());
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(start) || !(end.is_empty() || digits(end)) {
        return Err(bad());
    }
    // Only digits are left: a parse failure is an overflow.
    let Ok(start) = start.parse::<u64>() else {
        return Ok(Some(Requested::Unsatisfiable));
    };
    if end.is_empty() {
        return Ok(Some(Requested::Bytes { start, end: None }));
    }
    match end.parse::<u64>() {
        Ok(end) if end >= start && end.checked_add(1).is_some() => Ok(Some(Requested::Bytes {
            start,
            end: Some(end),
        })),
        _ => Ok(Some(Requested::Unsatisfiable)),
    }
}

fn unsatisfiable(size: Option<u64>) -> ApiError {
    ApiError::RangeNotSatisfiable { size }
}

/// `GET /public/{id}`: the flow's data, from a `Range` start when one is asked for (206), with
/// checked arithmetic throughout: an unsatisfiable range is a 416, never a panic or a wrong
/// `Content-Length`.
pub(crate) async fn pull(plane: Plane, req: HttpRequest, id: web::Path<String>) -> ApiResult {
    let requested = parse_range(&req)?;
    let (range, offset) = match requested {
        Some(Requested::Bytes { start, end }) => (Some((start, end)), start),
        // Opened (after the token check) only to learn the size for the 416.
        Some(Requested::Unsatisfiable) | None => (None, 0),
    };
    let token = bearer(&req);
    let grant = match plane.open_pull(&id, token.as_deref(), offset).await {
        Ok(grant) => grant,
        // A source refuses to open past its end: when that is why, the range is a 416.
        Err(error @ DataPlaneError::Conflict(_)) if offset > 0 => {
            return match plane.open_pull(&id, token.as_deref(), 0).await {
                Ok(grant) if grant.stream.size.is_some_and(|size| offset >= size) => {
                    Err(unsatisfiable(grant.stream.size))
                }
                _ => Err(error.into()),
            };
        }
        Err(error) => return Err(error.into()),
    };
    let input = grant.stream;
    let total = input.size;
    if requested == Some(Requested::Unsatisfiable) {
        return Err(unsatisfiable(total));
    }
    let honoured = range.is_some() && input.offset == offset;
    if let (true, Some(size)) = (honoured, total) {
        if offset >= size {
            return Err(unsatisfiable(Some(size)));
        }
    }
    // Inclusive last byte served (when known).
    let end = match (range, total) {
        (Some((_, Some(end))), Some(size)) => size.checked_sub(1).map(|last| end.min(last)),
        (Some((_, Some(end))), None) => Some(end),
        (_, Some(size)) => size.checked_sub(1),
        _ => None,
    };
    let length = if honoured {
        match end {
            Some(end) => match end.checked_sub(offset).and_then(|n| n.checked_add(1)) {
                Some(length) => Some(length),
                None => return Err(unsatisfiable(total)),
            },
            None => None,
        }
    } else {
        total
    };
    let mut remaining = length;
    let body = input.stream.map(move |chunk| {
        let mut chunk = chunk.map_err(stream_error)?;
        if let Some(left) = remaining.as_mut() {
            let take = usize::try_from(*left)
                .unwrap_or(usize::MAX)
                .min(chunk.len());
            chunk.truncate(take);
            *left -= take as u64;
        }
        Ok::<_, actix_web::Error>(chunk)
    });
    let body =
        body.take_while(|chunk| futures::future::ready(!matches!(chunk, Ok(c) if c.is_empty())));
    let mut response = if honoured {
        HttpResponse::PartialContent()
    } else {
        HttpResponse::Ok()
    };
    response.insert_header((header::ACCEPT_RANGES, "bytes"));
    response.content_type(
        input
            .content_type
            .unwrap_or_else(|| "application/octet-stream".into()),
    );
    if honoured {
        let total = total.map_or_else(|| "*".to_owned(), |t| t.to_string());
        let last = end.map_or_else(String::new, |e| e.to_string());
        response.insert_header((
            header::CONTENT_RANGE,
            format!("bytes {offset}-{last}/{total}"),
        ));
    }
    if let Some(length) = length {
        response.no_chunking(length);
    }
    Ok(response.streaming(body))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(value: &str) -> Result<Option<Requested>, DataPlaneError> {
        let req = actix_web::test::TestRequest::default()
            .insert_header((header::RANGE, value))
            .to_http_request();
        parse_range(&req)
    }

    #[test]
    fn ranges_parse_with_checked_arithmetic() {
        let bytes = |start, end| Ok(Some(Requested::Bytes { start, end }));
        assert_eq!(range("bytes=0-"), bytes(0, None));
        assert_eq!(range("bytes= 10 - 19 "), bytes(10, Some(19)));
        assert_eq!(range("bytes=5-5"), bytes(5, Some(5)));
        assert_eq!(
            range("bytes=0-18446744073709551614"),
            bytes(0, Some(u64::MAX - 1))
        );
        assert_eq!(range("bytes=18446744073709551615-"), bytes(u64::MAX, None));
        for unsatisfiable in [
            "bytes=0-18446744073709551615",
            "bytes=10-5",
            "bytes=18446744073709551616-",
            "bytes=0-99999999999999999999999",
        ] {
            assert_eq!(
                range(unsatisfiable),
                Ok(Some(Requested::Unsatisfiable)),
                "{unsatisfiable}"
            );
        }
        for malformed in [
            "bytes=-5",
            "bytes=a-",
            "items=0-1",
            "bytes=0-1,3-4",
            "bytes=+1-",
            "bytes=1",
        ] {
            assert!(range(malformed).is_err(), "{malformed}");
        }
        let none = actix_web::test::TestRequest::default().to_http_request();
        assert_eq!(parse_range(&none), Ok(None));
    }
}
