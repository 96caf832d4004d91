//! The API in process (`actix_web::test`) over a `MemoryStore`: every refusal is the JSON error
//! body with the status `error.rs` chose, and the routes keep their authentication.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use actix_web::http::{header, Method};
use actix_web::{test, web, App};
use api_common::AuthConfig;
use dataplane_api::{configure_with, ApiOptions, BASE_PATH};
use dataplane_manager::{
    CallbackDispatcher, ControlPlaneRegistry, DataPlane, DataPlaneConfig, DatasetRegistry,
};
use dataplane_spi::TransferRegistry;
use dataplane_store_memory::MemoryStore;

const ADMIN: &str = "admin-key";
const CONTROL_PLANE: &str = "cp-key";

fn plane() -> Arc<DataPlane> {
    let store = Arc::new(MemoryStore::new());
    let control_planes = Arc::new(ControlPlaneRegistry::new());
    let callbacks = CallbackDispatcher::new(
        control_planes.clone(),
        1,
        std::time::Duration::from_millis(1),
    );
    DataPlane::new(
        store.clone(),
        store,
        TransferRegistry::builder().build(),
        Arc::new(DatasetRegistry::new()),
        control_planes,
        callbacks,
        DataPlaneConfig::new("r0", "http://localhost:8080"),
    )
    .0
}

/// Sends one request with `key` (if any) and returns the status and the JSON body (`Null` when
/// the body is not JSON).
async fn call(
    options: ApiOptions,
    method: Method,
    path: &str,
    key: Option<&str>,
    headers: &[(&str, &str)],
    body: Option<serde_json::Value>,
) -> (u16, serde_json::Value, actix_web::http::header::HeaderMap) {
    let auth = AuthConfig::admin(Some(ADMIN))
        .with_control_plane("participant-1", CONTROL_PLANE)
        .unwrap();
    let app = test::init_service(
        App::new()
            .app_data(web::Data::new(auth))
            .configure(configure_with(plane(), options)),
    )
    .await;
    let mut request = test::TestRequest::default()
        .method(method)
        .uri(&format!("{BASE_PATH}{path}"));
    if let Some(key) = key {
        request = request.insert_header((header::AUTHORIZATION, format!("Bearer {key}")));
    }
    for (name, value) in headers {
        request = request.insert_header((*name, *value));
    }
    if let Some(body) = body {
        request = request.set_json(body);
    }
    let response = test::call_service(&app, request.to_request()).await;
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let bytes = test::read_body(response).await;
    let json = serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
    (status, json, headers)
}

async fn admin(
    method: Method,
    path: &str,
    body: Option<serde_json::Value>,
) -> (u16, serde_json::Value) {
    let (status, json, _) = call(ApiOptions::default(), method, path, Some(ADMIN), &[], body).await;
    (status, json)
}

fn assert_error(actual: (u16, serde_json::Value), status: u16, code: &str, says: &str) {
    let (got, body) = actual;
    assert_eq!(got, status, "{body}");
    assert_eq!(body["code"], code, "{body}");
    let message = body["error"].as_str().unwrap();
    assert!(message.contains(says), "{message}");
}

#[actix_web::test]
async fn unknown_entities_are_404_naming_them() {
    assert_error(
        admin(Method::GET, "/signaling/dataflows/nope/status", None).await,
        404,
        "NOT_FOUND",
        "data flow 'nope' not found",
    );
    assert_error(
        admin(Method::GET, "/datasets/ds-x", None).await,
        404,
        "NOT_FOUND",
        "dataset 'ds-x' not found",
    );
    assert_error(
        admin(Method::DELETE, "/signaling/controlplanes/cp-x", None).await,
        404,
        "NOT_FOUND",
        "control plane 'cp-x' not found",
    );
    assert_error(
        admin(Method::GET, "/cluster/kv/app/missing", None).await,
        404,
        "NOT_FOUND",
        "key 'app/missing' not found",
    );
    assert_error(
        admin(Method::GET, "/no/such/route", None).await,
        404,
        "NOT_FOUND",
        "no route",
    );
}

#[actix_web::test]
async fn kv_refusals_are_403_and_400() {
    let put = |value: &str| Some(serde_json::json!({ "value": value }));
    assert_error(
        admin(Method::PUT, "/cluster/kv/dpf/cluster/id", put("x")).await,
        403,
        "FORBIDDEN",
        "reserved",
    );
    assert_error(
        admin(Method::PUT, "/cluster/kv/dpf/config/no.such", put("1")).await,
        400,
        "INVALID_INPUT",
        "unknown setting",
    );
    assert_error(
        admin(
            Method::PUT,
            "/cluster/kv/app/x",
            Some(serde_json::json!({"value": "v", "expectedVersion": -1})),
        )
        .await,
        400,
        "INVALID_INPUT",
        "expectedVersion",
    );
    let (status, entry) = admin(Method::PUT, "/cluster/kv/app/x", put("v")).await;
    assert_eq!(status, 200, "{entry}");
}

#[actix_web::test]
async fn routes_keep_their_authentication() {
    let missing = call(
        ApiOptions::default(),
        Method::GET,
        "/dataflows",
        None,
        &[],
        None,
    )
    .await;
    assert_error(
        (missing.0, missing.1),
        401,
        "UNAUTHORIZED",
        "missing API key",
    );
    for path in [
        "/cluster/members",
        "/cluster/leader",
        "/cluster/kv",
        "/datasets",
    ] {
        let refused = call(
            ApiOptions::default(),
            Method::GET,
            path,
            Some(CONTROL_PLANE),
            &[],
            None,
        )
        .await;
        assert_error(
            (refused.0, refused.1),
            403,
            "FORBIDDEN",
            "administrator key",
        );
    }
    let other = call(
        ApiOptions::default(),
        Method::PUT,
        "/signaling/controlplanes",
        Some(CONTROL_PLANE),
        &[],
        Some(serde_json::json!({
            "controlplaneId": "participant-2",
            "endpoint": "https://cp.example.com/callbacks",
            "authorization": {"type": "none"}
        })),
    )
    .await;
    assert_error((other.0, other.1), 403, "FORBIDDEN", "may only register");
    // Open routes need no key.
    for path in ["/health", "/openapi.json"] {
        let (status, _, _) = call(ApiOptions::default(), Method::GET, path, None, &[], None).await;
        assert_eq!(status, 200, "{path}");
    }
    let (status, body, _) = call(
        ApiOptions::default(),
        Method::GET,
        "/public/f1",
        None,
        &[],
        None,
    )
    .await;
    // Past the key middleware, refused by the flow's own token check (first, so that flow ids
    // cannot be probed).
    assert_error(
        (status, body),
        401,
        "UNAUTHORIZED",
        "bearer token for this data flow",
    );
}

#[actix_web::test]
async fn watch_streams_beyond_the_budget_are_429() {
    let (status, body, _) = call(
        ApiOptions::new(0),
        Method::GET,
        "/cluster/kv?watch=true&prefix=app/",
        Some(ADMIN),
        &[],
        None,
    )
    .await;
    assert_error((status, body), 429, "TOO_MANY_REQUESTS", "max-watchers");
    let (status, body, _) = call(
        ApiOptions::new(0),
        Method::GET,
        "/cluster/members?watch=true",
        Some(ADMIN),
        &[],
        None,
    )
    .await;
    assert_error((status, body), 429, "TOO_MANY_REQUESTS", "max-watchers");
}

#[actix_web::test]
async fn public_and_ingest_refusals() {
    let (status, body, _) = call(
        ApiOptions::default(),
        Method::GET,
        "/public/f1",
        None,
        &[("Range", "items=0-1")],
        None,
    )
    .await;
    assert_error((status, body), 400, "INVALID_INPUT", "Range");
    let (status, body, _) = call(
        ApiOptions::default(),
        Method::PATCH,
        "/ingest/f1",
        None,
        &[("Content-Type", "application/octet-stream")],
        None,
    )
    .await;
    assert_error(
        (status, body),
        415,
        "UNSUPPORTED_MEDIA_TYPE",
        "application/offset+octet-stream",
    );
}
