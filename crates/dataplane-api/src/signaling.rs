//! The Data Plane Signaling endpoints (`/signaling/dataflows/…`) and control-plane
//! registration (`/signaling/controlplanes`). A control-plane key only signals its own
//! participant's flows.

use std::future::Future;
use std::sync::Arc;

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use api_common::Role;
use dataplane_manager::{DataPlane, DataPlaneError, Entity, Outcome};
use dataplane_spi::{
    ControlPlaneRegistration, DataFlowAddressMessage, DataFlowMessage, DataFlowReasonMessage,
    DataFlowStatusResponseMessage,
};

use crate::{visible_flow_id, ApiError, ApiResult, Plane, BASE_PATH};

/// A control plane may only send messages for its own participant.
fn check_participant(req: &HttpRequest, participant_id: &str) -> Result<(), ApiError> {
    match api_common::role_of(req) {
        Role::ControlPlane(participant) if participant.as_ref() != participant_id => {
            Err(ApiError::Forbidden(format!(
                "the key of control plane '{participant}' may only send messages with participantId '{participant}'"
            )))
        }
        _ => Ok(()),
    }
}

/// A control plane may only register or remove itself.
fn check_control_plane(req: &HttpRequest, id: &str, action: &str) -> Result<(), ApiError> {
    match api_common::role_of(req) {
        Role::ControlPlane(participant) if participant.as_ref() != id => {
            Err(ApiError::Forbidden(format!(
                "the key of control plane '{participant}' may only {action} controlplaneId '{participant}'"
            )))
        }
        _ => Ok(()),
    }
}

fn status_location(id: &str) -> String {
    format!("{BASE_PATH}/signaling/dataflows/{id}/status")
}

pub(crate) async fn prepare(
    plane: Plane,
    req: HttpRequest,
    msg: web::Json<DataFlowMessage>,
) -> ApiResult {
    check_participant(&req, &msg.participant_id)?;
    let outcome = plane.prepare(msg.into_inner()).await?;
    Ok(HttpResponse::Ok().json(outcome.message))
}

pub(crate) async fn start(
    plane: Plane,
    req: HttpRequest,
    msg: web::Json<DataFlowMessage>,
) -> ApiResult {
    check_participant(&req, &msg.participant_id)?;
    let outcome = plane.start(msg.into_inner()).await?;
    Ok(HttpResponse::Ok()
        .insert_header((
            header::CONTENT_LOCATION,
            status_location(&outcome.message.data_flow_id),
        ))
        .json(outcome.message))
}

/// An operation on one flow the caller may see, answered with the DPS message it returns.
async fn on_visible_flow<F, Fut>(
    plane: &Plane,
    req: &HttpRequest,
    id: &str,
    operation: F,
) -> ApiResult
where
    F: FnOnce(Arc<DataPlane>, String) -> Fut,
    Fut: Future<Output = Result<Outcome, DataPlaneError>>,
{
    let id = visible_flow_id(plane, req, id).await?;
    let outcome = operation(plane.get_ref().clone(), id).await?;
    Ok(HttpResponse::Ok().json(outcome.message))
}

pub(crate) async fn started(
    plane: Plane,
    req: HttpRequest,
    id: web::Path<String>,
    msg: web::Json<DataFlowAddressMessage>,
) -> ApiResult {
    let address = msg.into_inner().data_address;
    on_visible_flow(&plane, &req, &id, |plane, id| async move {
        plane.started(&id, address).await
    })
    .await
}

pub(crate) async fn suspend(
    plane: Plane,
    req: HttpRequest,
    id: web::Path<String>,
    msg: web::Json<DataFlowReasonMessage>,
) -> ApiResult {
    let reason = msg.into_inner().reason;
    on_visible_flow(&plane, &req, &id, |plane, id| async move {
        plane.suspend(&id, reason).await
    })
    .await
}

pub(crate) async fn resume(
    plane: Plane,
    req: HttpRequest,
    id: web::Path<String>,
    msg: web::Json<DataFlowAddressMessage>,
) -> ApiResult {
    let address = msg.into_inner().data_address;
    on_visible_flow(&plane, &req, &id, |plane, id| async move {
        plane.resume(&id, address).await
    })
    .await
}

pub(crate) async fn terminate(
    plane: Plane,
    req: HttpRequest,
    id: web::Path<String>,
    msg: web::Json<DataFlowReasonMessage>,
) -> ApiResult {
    let reason = msg.into_inner().reason;
    on_visible_flow(&plane, &req, &id, |plane, id| async move {
        plane.terminate(&id, reason).await
    })
    .await
}

/// `completed` carries an empty body (DPS) or `{}`; anything else must at least be JSON.
pub(crate) async fn completed(
    plane: Plane,
    req: HttpRequest,
    id: web::Path<String>,
    body: web::Bytes,
) -> ApiResult {
    if !body.iter().all(u8::is_ascii_whitespace)
        && serde_json::from_slice::<serde_json::Value>(&body).is_err()
    {
        return Err(DataPlaneError::InvalidInput(
            "completed takes an empty body or a JSON object".into(),
        )
        .into());
    }
    on_visible_flow(&plane, &req, &id, |plane, id| async move {
        plane.completed(&id).await
    })
    .await
}

pub(crate) async fn status(plane: Plane, req: HttpRequest, id: web::Path<String>) -> ApiResult {
    let id = visible_flow_id(&plane, &req, &id).await?;
    let flow = plane.status(&id).await?;
    Ok(HttpResponse::Ok().json(DataFlowStatusResponseMessage {
        data_flow_id: flow.id,
        state: flow.state.dps_name().to_owned(),
    }))
}

pub(crate) async fn put_control_plane(
    plane: Plane,
    req: HttpRequest,
    msg: web::Json<ControlPlaneRegistration>,
) -> ApiResult {
    check_control_plane(&req, &msg.controlplane_id, "register")?;
    plane.control_planes().put(msg.into_inner()).await?;
    Ok(HttpResponse::Ok().finish())
}

pub(crate) async fn delete_control_plane(
    plane: Plane,
    req: HttpRequest,
    id: web::Path<String>,
) -> ApiResult {
    check_control_plane(&req, &id, "remove")?;
    if plane.control_planes().remove(&id).await? {
        Ok(HttpResponse::NoContent().finish())
    } else {
        Err(DataPlaneError::not_found(Entity::ControlPlane, id.as_str()).into())
    }
}
