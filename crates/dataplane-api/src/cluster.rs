//! The cluster surface (administrators only): members, leader, baseline and the raw key-value
//! store. `?watch=true` on members and KV hands over to [`crate::sse`].

use actix_web::{web, HttpRequest, HttpResponse};
use dataplane_manager::live::{validate_setting, CONFIG_PREFIX, SETTINGS};
use dataplane_manager::registry::redact_kv_value;
use dataplane_manager::{DataPlaneError, Entity};
use dataplane_spi::{Expected, Member};
use serde::Deserialize;

use crate::{sse, ApiError, ApiResult, Options, Plane};

#[derive(Deserialize)]
pub(crate) struct MembersQuery {
    #[serde(default)]
    watch: bool,
}

/// A member as the API shows it; `revisions` are the live-config revisions members applied.
pub(crate) fn member_json(member: &Member, revisions: &[(String, i64)]) -> serde_json::Value {
    let revision = revisions
        .iter()
        .find(|(name, _)| *name == member.runtime_id)
        .map(|(_, r)| *r);
    serde_json::json!({
        "configRevision": revision,
        "name": member.runtime_id,
        "incarnation": member.incarnation,
        "state": member.state,
        "startedAt": member.started_at,
        "heartbeatAt": member.heartbeat_at,
        "leaseExpiresAt": member.lease_expires_at,
    })
}

/// The live members and the config revisions they applied (none when unknown).
pub(crate) async fn members_with_revisions(
    plane: &Plane,
) -> Result<(Vec<Member>, Vec<(String, i64)>), ApiError> {
    let current = plane.live_members().await?;
    let revisions = plane.config_revisions().await.unwrap_or_default();
    Ok((current, revisions))
}

/// `GET /cluster/members`: live members (valid lease); `?watch=true` streams their changes
/// ([`sse::members`]).
pub(crate) async fn members(
    plane: Plane,
    options: Options,
    query: web::Query<MembersQuery>,
) -> ApiResult {
    if query.watch {
        return sse::members(plane, &options).await;
    }
    let (current, revisions) = members_with_revisions(&plane).await?;
    let listing: Vec<serde_json::Value> =
        current.iter().map(|m| member_json(m, &revisions)).collect();
    Ok(HttpResponse::Ok().json(listing))
}

/// `GET /cluster/leader`: `{"leader": "<runtime name>", "term": n, "expiresAt": …}`, 404 when
/// no replica leads right now.
pub(crate) async fn leader(plane: Plane) -> ApiResult {
    match plane.current_leader().await? {
        Some(leader) => Ok(HttpResponse::Ok().json(serde_json::json!({
            "leader": leader.leader,
            "term": leader.term,
            "incarnation": leader.incarnation,
            "expiresAt": leader.expires_at,
        }))),
        None => Err(DataPlaneError::NotFound(
            "no replica leads right now (an election is due)".into(),
        )
        .into()),
    }
}

/// Body of baseline changes.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct BaselineChange {
    members: Vec<String>,
    /// Compare-and-set on the baseline version.
    expected_version: Option<u64>,
}

/// `GET /cluster/baseline`: state, version, members online/offline, replicas outside it.
pub(crate) async fn baseline_show(plane: Plane) -> ApiResult {
    Ok(HttpResponse::Ok().json(plane.baseline().view().await?))
}

/// `GET /cluster/baseline/version`.
pub(crate) async fn baseline_version(plane: Plane) -> ApiResult {
    let view = plane.baseline().view().await?;
    Ok(HttpResponse::Ok()
        .json(serde_json::json!({"version": view.version, "history": view.history})))
}

async fn change_baseline(plane: Plane, op: &str, body: web::Json<BaselineChange>) -> ApiResult {
    let view = plane
        .baseline()
        .change(op, &body.members, body.expected_version)
        .await?;
    Ok(HttpResponse::Ok().json(view))
}

/// `PUT /cluster/baseline`.
pub(crate) async fn baseline_set(plane: Plane, body: web::Json<BaselineChange>) -> ApiResult {
    change_baseline(plane, "set", body).await
}

/// `POST /cluster/baseline/add`.
pub(crate) async fn baseline_add(plane: Plane, body: web::Json<BaselineChange>) -> ApiResult {
    change_baseline(plane, "add", body).await
}

/// `POST /cluster/baseline/remove`.
pub(crate) async fn baseline_remove(plane: Plane, body: web::Json<BaselineChange>) -> ApiResult {
    change_baseline(plane, "remove", body).await
}

/// `POST /cluster/baseline/activate`.
pub(crate) async fn baseline_activate(plane: Plane) -> ApiResult {
    Ok(HttpResponse::Ok().json(plane.baseline().set_state(true).await?))
}

/// `POST /cluster/baseline/deactivate`.
pub(crate) async fn baseline_deactivate(plane: Plane) -> ApiResult {
    Ok(HttpResponse::Ok().json(plane.baseline().set_state(false).await?))
}

/// `PUT /cluster/baseline/auto-adjust`.
pub(crate) async fn baseline_auto_adjust(
    plane: Plane,
    body: web::Json<dataplane_manager::baseline::AutoAdjust>,
) -> ApiResult {
    Ok(HttpResponse::Ok().json(plane.baseline().set_auto_adjust(body.into_inner()).await?))
}

/// `GET /cluster/kv/{key}`.
pub(crate) async fn kv_get(plane: Plane, key: web::Path<String>) -> ApiResult {
    match plane.kv().get(&key).await? {
        Some(mut entry) => {
            // Registry entries hold credentials: shown redacted, as in their own views.
            entry.value = redact_kv_value(&entry.key, entry.value);
            Ok(HttpResponse::Ok().json(entry))
        }
        None => Err(DataPlaneError::not_found(Entity::Key, key.as_str()).into()),
    }
}

/// Body of `PUT /cluster/kv/{key}`.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct KvPut {
    value: String,
    /// Compare-and-set: the version the key must have (0: must not exist).
    expected_version: Option<i64>,
}

fn expected(version: Option<i64>) -> Result<Expected, ApiError> {
    Ok(match version {
        None => Expected::Any,
        Some(0) => Expected::Absent,
        Some(v) if v > 0 => Expected::Version(v),
        Some(v) => {
            return Err(DataPlaneError::InvalidInput(format!(
                "expectedVersion must be ≥ 0, got {v}"
            ))
            .into())
        }
    })
}

/// Where dpf keeps its own state in the key-value store.
const RESERVED_PREFIX: &str = "dpf/";

/// Writes and deletes under `dpf/` are refused through the raw KV API (cluster id, baseline,
/// cluster state, heartbeats…), for administrators too: those keys change only through their
/// own routes. The one exception is a known live setting `dpf/config/<setting>` (its value is
/// validated by the caller; an unknown setting is a 400).
fn check_writable(key: &str) -> Result<(), ApiError> {
    if key.starts_with(CONFIG_PREFIX) {
        if SETTINGS.contains(&key) {
            return Ok(());
        }
        return Err(DataPlaneError::InvalidInput(format!(
            "unknown setting '{key}'; settings under {CONFIG_PREFIX}: {}",
            SETTINGS.join(", ")
        ))
        .into());
    }
    if key.starts_with(RESERVED_PREFIX) {
        return Err(ApiError::Forbidden(format!(
            "key '{key}' is reserved: keys under {RESERVED_PREFIX} are written by dpf itself; only the settings under {CONFIG_PREFIX} can be changed here"
        )));
    }
    Ok(())
}

/// `PUT /cluster/kv/{key}`.
pub(crate) async fn kv_put(
    plane: Plane,
    key: web::Path<String>,
    body: web::Json<KvPut>,
) -> ApiResult {
    let body = body.into_inner();
    check_writable(&key)?;
    if key.starts_with(CONFIG_PREFIX) {
        validate_setting(&key, &body.value)?;
    }
    let entry = plane
        .kv()
        .put(&key, &body.value, expected(body.expected_version)?)
        .await?;
    Ok(HttpResponse::Ok().json(entry))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct KvDeleteQuery {
    expected_version: Option<i64>,
}

/// `DELETE /cluster/kv/{key}`.
pub(crate) async fn kv_delete(
    plane: Plane,
    key: web::Path<String>,
    query: web::Query<KvDeleteQuery>,
) -> ApiResult {
    check_writable(&key)?;
    let event = plane
        .kv()
        .delete(&key, expected(query.expected_version)?)
        .await?;
    Ok(HttpResponse::Ok().json(event))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct KvQuery {
    #[serde(default)]
    prefix: String,
    #[serde(default)]
    watch: bool,
    from_revision: Option<i64>,
}

/// `GET /cluster/kv?prefix=…`: the keys and the revision of the listing; `?watch=true`
/// streams the changes ([`sse::kv`]).
pub(crate) async fn kv_list(
    plane: Plane,
    options: Options,
    req: HttpRequest,
    query: web::Query<KvQuery>,
) -> ApiResult {
    let query = query.into_inner();
    if query.watch {
        return sse::kv(plane, &options, &req, query.prefix, query.from_revision).await;
    }
    let (mut entries, revision) = plane.kv().list(&query.prefix).await?;
    for entry in &mut entries {
        entry.value = redact_kv_value(&entry.key, std::mem::take(&mut entry.value));
    }
    Ok(HttpResponse::Ok().json(serde_json::json!({"revision": revision, "entries": entries})))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn reserved_kv_keys() {
        assert!(check_writable("app/x").is_ok());
        assert!(check_writable("dpfx/y").is_ok());
        assert!(check_writable(dataplane_manager::live::CHECKPOINT_BYTES).is_ok());
        for key in [
            "dpf/cluster/id",
            "dpf/cluster/baseline",
            "dpf/heartbeat/r0",
            "dpf/x",
        ] {
            let error = check_writable(key).unwrap_err();
            assert!(matches!(error, ApiError::Forbidden(_)), "{key}");
        }
        let unknown = check_writable("dpf/config/no.such").unwrap_err();
        assert!(matches!(
            unknown,
            ApiError::Plane(DataPlaneError::InvalidInput(_))
        ));
    }
}
