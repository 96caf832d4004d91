//! The management view: data flows (`/dataflows`, redacted; a control-plane key sees its own
//! participant's flows only) and the dataset registry (`/datasets`, administrators).

use actix_web::{web, HttpRequest, HttpResponse};
use api_common::Role;
use dataplane_manager::{DataPlaneError, Entity};
use dataplane_spi::{DataFlowState, ResourceAddress};
use serde::Deserialize;

use crate::{visible_flow_id, ApiResult, Plane};

#[derive(Deserialize)]
pub(crate) struct FlowQuery {
    state: Option<String>,
    limit: Option<usize>,
}

/// `GET /dataflows?state=STARTED&limit=100`.
pub(crate) async fn list_flows(
    plane: Plane,
    req: HttpRequest,
    query: web::Query<FlowQuery>,
) -> ApiResult {
    let state = match query.state.as_deref() {
        None => None,
        Some(name) => Some(
            DataFlowState::parse(&name.to_ascii_uppercase()).map_err(|_| {
                DataPlaneError::InvalidInput(format!(
                    "unknown state '{name}'; known: {}",
                    DataFlowState::ALL.map(DataFlowState::as_str).join(", ")
                ))
            })?,
        ),
    };
    let limit = query.limit.unwrap_or(100).clamp(1, 10_000);
    let views = match api_common::role_of(&req) {
        Role::Admin => plane.views(state, limit).await?,
        Role::ControlPlane(participant) => {
            plane.participant_views(&participant, state, limit).await?
        }
    };
    Ok(HttpResponse::Ok().json(views))
}

/// `GET /dataflows/{id}`.
pub(crate) async fn get_flow(plane: Plane, req: HttpRequest, id: web::Path<String>) -> ApiResult {
    let id = visible_flow_id(&plane, &req, &id).await?;
    Ok(HttpResponse::Ok().json(plane.view(&id).await?))
}

fn dataset_json(id: &str, address: &ResourceAddress) -> serde_json::Value {
    // Credentials at any depth, URL userinfo and queries masked, as in every management view.
    let mut value = dataplane_manager::redact(address.to_json());
    if let Some(map) = value.as_object_mut() {
        map.insert("id".into(), id.into());
    }
    value
}

/// `GET /datasets`.
pub(crate) async fn list_datasets(plane: Plane) -> ApiResult {
    let datasets: Vec<serde_json::Value> = plane
        .datasets()
        .list()
        .await?
        .iter()
        .map(|(id, address)| dataset_json(id, address))
        .collect();
    Ok(HttpResponse::Ok().json(datasets))
}

/// `PUT /datasets/{id}`: the body is the source address.
pub(crate) async fn put_dataset(
    plane: Plane,
    id: web::Path<String>,
    body: web::Json<serde_json::Value>,
) -> ApiResult {
    let address =
        ResourceAddress::from_json(body.into_inner()).map_err(DataPlaneError::InvalidInput)?;
    let known = plane.known_types();
    plane.datasets().put(&id, address.clone(), &known).await?;
    Ok(HttpResponse::Ok().json(dataset_json(&id, &address)))
}

/// `GET /datasets/{id}`.
pub(crate) async fn get_dataset(plane: Plane, id: web::Path<String>) -> ApiResult {
    let address = plane
        .datasets()
        .get(&id)
        .await?
        .ok_or_else(|| DataPlaneError::not_found(Entity::Dataset, id.as_str()))?;
    Ok(HttpResponse::Ok().json(dataset_json(&id, &address)))
}

/// `DELETE /datasets/{id}`.
pub(crate) async fn delete_dataset(plane: Plane, id: web::Path<String>) -> ApiResult {
    if plane.datasets().remove(&id).await? {
        Ok(HttpResponse::NoContent().finish())
    } else {
        Err(DataPlaneError::not_found(Entity::Dataset, id.as_str()).into())
    }
}
