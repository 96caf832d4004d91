//! The real app (`actix_web::test` over a `MemoryStore`) answers every request with an
//! `X-Request-Id` and `/metrics` shows the per-route request histogram, labelled by route
//! pattern (never the path with its ids or tokens), next to the data plane's own metrics.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use actix_web::{test, web, App};
use api_common::{AuthConfig, REQUEST_ID_HEADER};
use dataplane_api::{configure_with, ApiOptions};
use dataplane_manager::{
    CallbackDispatcher, ControlPlaneRegistry, DataPlane, DataPlaneConfig, DatasetRegistry,
};
use dataplane_spi::TransferRegistry;
use dataplane_store_memory::MemoryStore;

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

#[actix_web::test]
async fn requests_get_an_id_and_metrics_show_the_histogram_by_route_pattern() {
    let app = test::init_service(
        App::new()
            .app_data(web::Data::new(AuthConfig::admin(Some("admin-key"))))
            .configure(configure_with(plane(), ApiOptions::default())),
    )
    .await;

    // Open, with the caller's id: echoed.
    let req = test::TestRequest::get()
        .uri("/api/v1/health")
        .insert_header((REQUEST_ID_HEADER, "trace-me-1"))
        .to_request();
    let res = test::call_service(&app, req).await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers().get(REQUEST_ID_HEADER).unwrap(), "trace-me-1");

    // Protected, without a key: refused, still with a (generated) id, still counted.
    let req = test::TestRequest::get()
        .uri("/api/v1/dataflows/flow-secret-42?state=QUERYLEAK")
        .to_request();
    let res = test::call_service(&app, req).await;
    assert_eq!(res.status(), 401);
    let id = res
        .headers()
        .get(REQUEST_ID_HEADER)
        .unwrap()
        .to_str()
        .unwrap();
    assert_eq!(id.len(), 36, "{id}");

    // A per-flow endpoint with a token in the path's place and the query.
    let req = test::TestRequest::get()
        .uri("/api/v1/public/tok-en-77?access_token=t0ken")
        .insert_header(("authorization", "Bearer b3arer"))
        .to_request();
    let res = test::call_service(&app, req).await;
    assert!(res.headers().contains_key(REQUEST_ID_HEADER));

    let req = test::TestRequest::get().uri("/api/v1/metrics").to_request();
    let res = test::call_service(&app, req).await;
    assert_eq!(res.status(), 200);
    assert!(res.headers().contains_key(REQUEST_ID_HEADER));
    let text = String::from_utf8(test::read_body(res).await.to_vec()).unwrap();
    assert!(
        text.contains("# TYPE dpf_http_request_duration_seconds histogram"),
        "{text}"
    );
    for series in [
        r#"dpf_http_request_duration_seconds_count{method="GET",route="/api/v1/health",status="200"}"#,
        r#"route="/api/v1/dataflows/{id}",status="401""#,
        r#"route="/api/v1/public/{id}""#,
    ] {
        assert!(text.contains(series), "{series} not in {text}");
    }
    for leak in [
        "flow-secret-42",
        "QUERYLEAK",
        "tok-en-77",
        "t0ken",
        "b3arer",
        "trace-me-1",
    ] {
        assert!(!text.contains(leak), "{leak} in {text}");
    }
}
