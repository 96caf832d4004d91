#![allow(clippy::unwrap_used)]

// The access-log line itself is checked in `tests/access_log.rs`, a binary of its own (a
// thread-local subscriber races with other tests' threads over tracing's callsite cache).

use actix_web::middleware::from_fn;
use actix_web::{test, web, App, HttpRequest, HttpResponse};

use super::*;

/// A handler that logs a line of its own (to see the request id reach it).
async fn flow(path: web::Path<String>) -> HttpResponse {
    tracing::info!(flow = %path, "handling the flow");
    HttpResponse::Ok().body("hello")
}

async fn echo_extension(req: HttpRequest) -> HttpResponse {
    let id = req.extensions().get::<RequestId>().cloned();
    HttpResponse::Ok().body(id.map(|id| id.0.to_string()).unwrap_or_default())
}

/// The app of one test: its routes live under `/{prefix}` so that tests sharing the
/// process-wide histogram never count each other's requests.
macro_rules! app {
    ($prefix:expr) => {
        test::init_service(
            App::new()
                .app_data(web::Data::new(crate::ApiKey(Some("k".into()))))
                .service(
                    web::scope($prefix)
                        .wrap(from_fn(access_log))
                        .route("/flows/{id}", web::get().to(flow))
                        .route("/id", web::get().to(echo_extension))
                        .service(
                            web::scope("")
                                .wrap(from_fn(crate::require_api_key))
                                .route("/secret/{id}", web::get().to(flow)),
                        ),
                ),
        )
        .await
    };
}

fn request_id(res: &ServiceResponse<impl MessageBody>) -> String {
    res.headers()
        .get(REQUEST_ID_HEADER)
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned()
}

#[actix_web::test]
async fn a_valid_request_id_is_echoed_and_reaches_the_handler() {
    let app = app!("/echo");
    let req = test::TestRequest::get()
        .uri("/echo/id")
        .insert_header((REQUEST_ID_HEADER, "abc-123_XYZ.42"))
        .to_request();
    let res = test::call_service(&app, req).await;
    assert_eq!(request_id(&res), "abc-123_XYZ.42");
    assert_eq!(test::read_body(res).await, "abc-123_XYZ.42");
}

#[actix_web::test]
async fn a_missing_request_id_is_generated() {
    let app = app!("/gen");
    let res = test::call_service(&app, test::TestRequest::get().uri("/gen/id").to_request()).await;
    let id = request_id(&res);
    assert!(uuid::Uuid::parse_str(&id).is_ok(), "{id}");
    let other =
        test::call_service(&app, test::TestRequest::get().uri("/gen/id").to_request()).await;
    assert_ne!(request_id(&other), id);
}

#[actix_web::test]
async fn an_invalid_request_id_is_replaced() {
    let app = app!("/bad");
    for bad in ["a b", "tab\there", &"x".repeat(MAX_REQUEST_ID_LEN + 1), ""] {
        let req = test::TestRequest::get()
            .uri("/bad/id")
            .insert_header((REQUEST_ID_HEADER, bad))
            .to_request();
        let res = test::call_service(&app, req).await;
        let id = request_id(&res);
        assert_ne!(id, bad);
        assert!(uuid::Uuid::parse_str(&id).is_ok(), "{id}");
    }
    assert!(valid_request_id(&"x".repeat(MAX_REQUEST_ID_LEN)));
    assert!(!valid_request_id("é"));
}

#[actix_web::test]
async fn the_histogram_counts_by_route_pattern_without_ids_or_query() {
    let app = app!("/hist");
    for id in ["one", "two"] {
        let req = test::TestRequest::get()
            .uri(&format!("/hist/flows/{id}?token=s3cr3t"))
            .to_request();
        assert_eq!(test::call_service(&app, req).await.status(), 200);
    }
    // Behind the key, unknown: 401, counted as `unmatched`.
    let req = test::TestRequest::get().uri("/hist/nowhere/x").to_request();
    assert_eq!(test::call_service(&app, req).await.status(), 401);

    assert_eq!(observed_requests("GET", "/hist/flows/{id}", 200), 2);
    let text = metrics_text();
    assert!(text.contains(DURATION_METRIC), "{text}");
    assert!(
        text.contains(r#"method="GET",route="/hist/flows/{id}",status="200""#),
        "{text}"
    );
    assert!(text.contains(r#"route="unmatched""#), "{text}");
    for leak in ["one", "two", "s3cr3t", "token", "nowhere"] {
        assert!(!text.contains(leak), "{leak} in {text}");
    }
}

#[actix_web::test]
async fn a_refused_request_is_counted_and_unusual_methods_are_bounded() {
    let app = app!("/auth");
    let req = test::TestRequest::get()
        .uri("/auth/secret/abc")
        .to_request();
    let res = test::call_service(&app, req).await;
    assert_eq!(res.status(), 401);
    assert!(res.headers().contains_key(REQUEST_ID_HEADER));
    assert_eq!(observed_requests("GET", "/auth/secret/{id}", 401), 1);

    let req = test::TestRequest::default()
        .method(Method::from_bytes(b"FROBNICATE").unwrap())
        .uri("/auth/flows/x")
        .to_request();
    test::call_service(&app, req).await;
    assert!(!metrics_text().contains("FROBNICATE"));
}
