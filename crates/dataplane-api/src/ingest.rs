//! `/ingest/{id}`: the consumer-push endpoint. Open; authorised by the flow's own bearer token.
//! `POST`/`PUT` replace the destination's content; `HEAD` and `PATCH` are tus 1.0 core
//! (resumable uploads).

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use dataplane_manager::DataPlaneError;
use dataplane_spi::TransferError;
use futures::StreamExt;

use crate::{bearer, ApiError, ApiResult, Plane};

/// tus 1.0 core: the version every tus response carries.
const TUS_VERSION: &str = "1.0.0";

/// The media type of a tus `PATCH`.
const TUS_MEDIA_TYPE: &str = "application/offset+octet-stream";

/// `HEAD /ingest/{id}` (tus): how many bytes the destination holds.
pub(crate) async fn offset(plane: Plane, req: HttpRequest, id: web::Path<String>) -> ApiResult {
    let offset = plane.ingest_offset(&id, bearer(&req).as_deref()).await?;
    Ok(HttpResponse::Ok()
        .insert_header(("Upload-Offset", offset.to_string()))
        .insert_header(("Tus-Resumable", TUS_VERSION))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .finish())
}

/// `PATCH /ingest/{id}` (tus): appends the body at `Upload-Offset`, which must be the current
/// offset (409 otherwise).
pub(crate) async fn append(
    plane: Plane,
    req: HttpRequest,
    id: web::Path<String>,
    payload: web::Payload,
) -> ApiResult {
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if content_type != TUS_MEDIA_TYPE {
        return Err(ApiError::UnsupportedMediaType(format!(
            "a PATCH upload needs Content-Type: {TUS_MEDIA_TYPE}"
        )));
    }
    let offset: u64 = req
        .headers()
        .get("Upload-Offset")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| {
            DataPlaneError::InvalidInput("a PATCH upload needs an Upload-Offset header".into())
        })?;
    let end = receive(&plane, &req, &id, payload, Some(offset)).await?;
    Ok(HttpResponse::NoContent()
        .insert_header(("Upload-Offset", end.to_string()))
        .insert_header(("Tus-Resumable", TUS_VERSION))
        .finish())
}

/// `POST|PUT /ingest/{id}`: the body replaces the destination's content.
pub(crate) async fn replace(
    plane: Plane,
    req: HttpRequest,
    id: web::Path<String>,
    payload: web::Payload,
) -> ApiResult {
    let bytes = receive(&plane, &req, &id, payload, None).await?;
    Ok(HttpResponse::Ok().json(serde_json::json!({"bytes": bytes})))
}

fn stopped(id: &str) -> DataPlaneError {
    DataPlaneError::Conflict(format!(
        "data flow '{id}' stopped accepting data (suspended or terminated)"
    ))
}

/// Streams a request body into the flow's destination; returns the offset reached.
async fn receive(
    plane: &Plane,
    req: &HttpRequest,
    id: &str,
    mut payload: web::Payload,
    offset: Option<u64>,
) -> Result<u64, ApiError> {
    let length = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    let (sender, done) = plane
        .begin_ingest(id, bearer(req).as_deref(), length, offset)
        .await?;
    while let Some(chunk) = payload.next().await {
        let chunk = match chunk {
            Ok(chunk) => chunk,
            Err(error) => {
                let _ = sender
                    .send(Err(TransferError::Transient(format!(
                        "upload interrupted: {error}"
                    ))))
                    .await;
                break;
            }
        };
        if sender.send(Ok(chunk)).await.is_err() {
            // The writer is gone: it failed (e.g. dpf.transfer.max-bytes, 413), or the flow was
            // suspended or terminated meanwhile.
            if let Ok(Err(error)) = done.await {
                return Err(error.into());
            }
            return Err(stopped(id).into());
        }
    }
    drop(sender);
    let reached = done.await.map_err(|_| stopped(id))??;
    Ok(reached)
}
