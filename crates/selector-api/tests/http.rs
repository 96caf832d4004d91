//! HTTP-level behaviour of the selector API: status codes, JSON errors, and that refused
//! requests change nothing.

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

use std::sync::Arc;

use actix_web::http::StatusCode;
use actix_web::{test, App};
use selector_core::{default_registry_builder, DefaultDataPlaneSelector, InMemoryInstanceStore};
use selector_spi::DataPlaneSelector;
use serde_json::{json, Value};

const PUSH: &str = "https://w3id.org/dspace-sig/profile/http-push";

fn selector() -> Arc<dyn DataPlaneSelector> {
    Arc::new(DefaultDataPlaneSelector::new(
        Arc::new(InMemoryInstanceStore::new()),
        default_registry_builder().build().unwrap(),
    ))
}

macro_rules! app {
    ($selector:expr) => {
        test::init_service(
            App::new()
                .configure(selector_api::configure($selector.clone()))
                .default_service(actix_web::web::to(selector_api::not_found_handler)),
        )
        .await
    };
}

fn registration(id: &str) -> Value {
    json!({
        "dataplaneId": id,
        "endpoint": format!("http://{id}.example/api/v1/signaling"),
        "profiles": [PUSH],
        "authorization": {"type": "none"},
        "labels": ["eu"]
    })
}

async fn error_of<S, B>(app: &S, req: test::TestRequest) -> (StatusCode, Value)
where
    S: actix_web::dev::Service<
        actix_http::Request,
        Response = actix_web::dev::ServiceResponse<B>,
        Error = actix_web::Error,
    >,
    B: actix_web::body::MessageBody,
{
    let response = test::call_service(app, req.to_request()).await;
    let status = response.status();
    let body: Value = test::read_body_json(response).await;
    (status, body)
}

#[actix_web::test]
async fn registration_lifecycle_status_codes() {
    let selector = selector();
    let app = app!(selector);
    let put = test::TestRequest::put()
        .uri("/api/v1/dataplanes")
        .set_json(registration("a"));
    let response = test::call_service(&app, put.to_request()).await;
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = test::read_body_json(response).await;
    assert_eq!(body["id"], "a");
    assert_eq!(body["state"], "REGISTERED");
    assert_eq!(body["turnCount"], 0);

    let post = test::TestRequest::post()
        .uri("/api/v1/dataplanes")
        .set_json(registration("b"));
    let response = test::call_service(&app, post.to_request()).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    assert_eq!(
        response.headers().get("location").unwrap(),
        "/api/v1/dataplanes/b"
    );

    let (status, body) = error_of(
        &app,
        test::TestRequest::post()
            .uri("/api/v1/dataplanes")
            .set_json(registration("b")),
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(body["code"], "ALREADY_EXISTS");

    let response = test::call_service(
        &app,
        test::TestRequest::delete()
            .uri("/api/v1/dataplanes/b")
            .to_request(),
    )
    .await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    let (status, body) = error_of(&app, test::TestRequest::get().uri("/api/v1/dataplanes/b")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["error"], "data plane 'b' not found");
    let (status, _) = error_of(
        &app,
        test::TestRequest::delete().uri("/api/v1/dataplanes/b"),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(selector.list().await.unwrap().len(), 1);
}

#[actix_web::test]
async fn bad_input_is_a_json_4xx_and_changes_nothing() {
    let selector = selector();
    let app = app!(selector);
    test::call_service(
        &app,
        test::TestRequest::put()
            .uri("/api/v1/dataplanes")
            .set_json(registration("a"))
            .to_request(),
    )
    .await;
    let before = selector.list().await.unwrap();

    let cases: Vec<(test::TestRequest, StatusCode, &str)> = vec![
        (
            test::TestRequest::put().uri("/api/v1/dataplanes").insert_header(("content-type", "application/json")).set_payload("{\"dataplaneId\": \"a\", "),
            StatusCode::BAD_REQUEST,
            "invalid JSON body",
        ),
        (
            test::TestRequest::put().uri("/api/v1/dataplanes").set_json(json!({"dataplaneId": "a", "profiles": [], "authorization": {"type": "none"}})),
            StatusCode::BAD_REQUEST,
            "missing field `endpoint`",
        ),
        (
            test::TestRequest::put().uri("/api/v1/dataplanes").set_json(json!({"dataplaneId": "a", "endpoint": "no-url", "profiles": [], "authorization": {"type": "none"}})),
            StatusCode::BAD_REQUEST,
            "is not a URL",
        ),
        (
            test::TestRequest::put().uri("/api/v1/dataplanes").set_json(json!({"dataplaneId": "a", "endpoint": "http://x", "profiles": []})),
            StatusCode::BAD_REQUEST,
            "missing field `authorization`",
        ),
        (
            test::TestRequest::post().uri("/api/v1/dataplanes").set_json(json!({"dataplaneId": "a", "endpoint": "http://x", "profiles": "p"})),
            StatusCode::BAD_REQUEST,
            "invalid type",
        ),
        (
            test::TestRequest::put().uri("/api/v1/dataplanes").insert_header(("content-type", "text/plain")).set_payload("hello"),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "must be JSON",
        ),
        (
            test::TestRequest::put().uri("/api/v1/dataplanes").insert_header(("content-type", "application/json")).set_payload(vec![b' '; selector_api::MAX_JSON_BODY + 1]),
            StatusCode::PAYLOAD_TOO_LARGE,
            "exceeds the limit",
        ),
        (
            test::TestRequest::post().uri("/api/v1/dataplanes/select").set_json(json!({"labels": ["eu"]})),
            StatusCode::BAD_REQUEST,
            "missing field `profile`",
        ),
    ];
    for (request, expected_status, expected_message) in cases {
        let (status, body) = error_of(&app, request).await;
        assert_eq!(status, expected_status, "{body}");
        let message = body["error"].as_str().unwrap();
        assert!(
            message.contains(expected_message),
            "'{message}' should contain '{expected_message}'"
        );
        assert!(body["code"].is_string(), "{body}");
    }
    assert_eq!(selector.list().await.unwrap(), before);
}

#[actix_web::test]
async fn select_errors_name_what_was_asked() {
    let selector = selector();
    let app = app!(selector);
    test::call_service(
        &app,
        test::TestRequest::put()
            .uri("/api/v1/dataplanes")
            .set_json(registration("a"))
            .to_request(),
    )
    .await;

    let (status, body) = error_of(
        &app,
        test::TestRequest::post()
            .uri("/api/v1/dataplanes/select")
            .set_json(json!({"profile": PUSH, "labels": ["us", "gpu"]})),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["code"], "NO_MATCH");
    assert_eq!(
        body["error"],
        format!("no data plane can handle profile '{PUSH}' with labels [gpu, us]")
    );

    let (status, body) = error_of(
        &app,
        test::TestRequest::post()
            .uri("/api/v1/dataplanes/select")
            .set_json(json!({"profile": PUSH, "strategy": "nope"})),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["code"], "UNKNOWN_STRATEGY");
    assert_eq!(
        body["error"],
        "unknown selection strategy 'nope'; known strategies: least-loaded, oldest-next, random, round-robin"
    );

    let response = test::call_service(
        &app,
        test::TestRequest::post()
            .uri("/api/v1/dataplanes/select")
            .set_json(json!({"profile": PUSH, "labels": ["eu"]}))
            .to_request(),
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = test::read_body_json(response).await;
    assert_eq!(body["id"], "a");
    assert_eq!(body["turnCount"], 1);
    assert!(body["lastActive"].is_string());
}

#[actix_web::test]
async fn health_strategies_openapi_and_unknown_routes() {
    let selector = selector();
    let app = app!(selector);
    let response = test::call_service(
        &app,
        test::TestRequest::get().uri("/api/v1/health").to_request(),
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = test::read_body_json(response).await;
    assert_eq!(body, json!({"status": "UP"}));

    let response = test::call_service(
        &app,
        test::TestRequest::get()
            .uri("/api/v1/strategies")
            .to_request(),
    )
    .await;
    let body: Value = test::read_body_json(response).await;
    assert_eq!(
        body,
        json!({"strategies": ["least-loaded", "oldest-next", "random", "round-robin"], "default": "random"})
    );

    let response = test::call_service(
        &app,
        test::TestRequest::get()
            .uri("/api/v1/openapi.json")
            .to_request(),
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = test::read_body_json(response).await;
    assert_eq!(body["openapi"], "3.0.3");
    for path in [
        "/dataplanes",
        "/dataplanes/{id}",
        "/dataplanes/select",
        "/strategies",
        "/health",
    ] {
        assert!(body["paths"].get(path).is_some(), "openapi lacks {path}");
    }

    let (status, body) = error_of(&app, test::TestRequest::get().uri("/api/v2/nothing")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["code"], "NOT_FOUND");
}

const KEY: &str = "selector-test-key";

macro_rules! app_with_key {
    ($selector:expr) => {
        test::init_service(
            App::new()
                .app_data(actix_web::web::Data::new(api_common::ApiKey(Some(
                    KEY.into(),
                ))))
                .configure(selector_api::configure($selector.clone()))
                .default_service(actix_web::web::to(selector_api::not_found_handler)),
        )
        .await
    };
}

#[actix_web::test]
async fn with_a_key_only_health_and_openapi_are_open_whatever_the_path_looks_like() {
    let selector = selector();
    let app = app_with_key!(selector);
    selector
        .register(&serde_json::from_value(registration("health")).unwrap())
        .await
        .unwrap();
    for uri in ["/api/v1/health", "/api/v1/openapi.json"] {
        let response =
            test::call_service(&app, test::TestRequest::get().uri(uri).to_request()).await;
        assert_eq!(response.status(), StatusCode::OK, "{uri}");
    }
    // Paths that merely end like an open route are protected like any other.
    for req in [
        test::TestRequest::delete().uri("/api/v1/dataplanes/health"),
        test::TestRequest::get().uri("/api/v1/dataplanes/health"),
        test::TestRequest::delete().uri("/api/v1/dataplanes/openapi.json"),
        test::TestRequest::put()
            .uri("/api/v1/dataplanes")
            .set_json(registration("intruder")),
        test::TestRequest::get().uri("/api/v1/dataplanes"),
        test::TestRequest::post()
            .uri("/api/v1/dataplanes/select")
            .set_json(json!({"profile": PUSH})),
        test::TestRequest::get().uri("/api/v1/strategies"),
        test::TestRequest::get().uri("/api/v1/no-such-route/health"),
    ] {
        let (status, body) = error_of(&app, req).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
        assert_eq!(body["code"], "UNAUTHORIZED");
    }
    let (status, _) = error_of(
        &app,
        test::TestRequest::delete()
            .uri("/api/v1/dataplanes/health")
            .insert_header(("authorization", "Bearer wrong")),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    // Nothing changed.
    let ids: Vec<String> = selector
        .list()
        .await
        .unwrap()
        .into_iter()
        .map(|i| i.id.to_string())
        .collect();
    assert_eq!(ids, vec!["health"]);

    // With the key (either header), the same routes work.
    let response = test::call_service(
        &app,
        test::TestRequest::get()
            .uri("/api/v1/dataplanes")
            .insert_header(("x-api-key", KEY))
            .to_request(),
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    let response = test::call_service(
        &app,
        test::TestRequest::delete()
            .uri("/api/v1/dataplanes/health")
            .insert_header(("authorization", format!("Bearer {KEY}")))
            .to_request(),
    )
    .await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    assert!(selector.list().await.unwrap().is_empty());
}

#[actix_web::test]
async fn no_answer_carries_the_client_secret() {
    let selector = selector();
    let app = app!(selector);
    let mut secret = registration("s");
    secret["authorization"] = json!({
        "type": "oauth2_client_credentials",
        "tokenEndpoint": "https://auth.example/token",
        "clientId": "cid",
        "clientSecret": "TOP-SECRET-1",
        "apiKey": "TOP-SECRET-2"
    });
    secret["properties"] = json!({"region": "eu", "password": "TOP-SECRET-3"});
    let mut answers = Vec::new();
    for req in [
        test::TestRequest::put()
            .uri("/api/v1/dataplanes")
            .set_json(secret.clone()),
        test::TestRequest::get().uri("/api/v1/dataplanes"),
        test::TestRequest::get().uri("/api/v1/dataplanes/s"),
        test::TestRequest::post()
            .uri("/api/v1/dataplanes/select")
            .set_json(json!({"profile": PUSH})),
    ] {
        let response = test::call_service(&app, req.to_request()).await;
        assert_eq!(response.status(), StatusCode::OK);
        let body = test::read_body(response).await;
        answers.push(String::from_utf8(body.to_vec()).unwrap());
    }
    let mut created = secret.clone();
    created["dataplaneId"] = json!("s2");
    let response = test::call_service(
        &app,
        test::TestRequest::post()
            .uri("/api/v1/dataplanes")
            .set_json(created)
            .to_request(),
    )
    .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    answers.push(String::from_utf8(test::read_body(response).await.to_vec()).unwrap());
    for answer in &answers {
        assert!(!answer.contains("TOP-SECRET"), "{answer}");
        assert!(!answer.contains("clientSecret"), "{answer}");
        assert!(answer.contains("\"clientId\":\"cid\""), "{answer}");
    }
    // The selector itself still holds the credential.
    let stored = selector.get("s").await.unwrap();
    assert_eq!(
        stored.authorization.unwrap().client_secret.as_deref(),
        Some("TOP-SECRET-1")
    );
}

#[actix_web::test]
async fn a_control_plane_key_may_select_but_not_change_the_registry() {
    let selector = selector();
    let auth = api_common::AuthConfig::admin(Some(KEY))
        .with_control_plane("cp1", "cp1-key")
        .unwrap();
    let app = test::init_service(
        App::new()
            .app_data(actix_web::web::Data::new(auth))
            .configure(selector_api::configure(selector.clone()))
            .default_service(actix_web::web::to(selector_api::not_found_handler)),
    )
    .await;
    selector
        .register(&serde_json::from_value(registration("a")).unwrap())
        .await
        .unwrap();
    let cp = ("x-api-key", "cp1-key");
    for req in [
        test::TestRequest::put()
            .uri("/api/v1/dataplanes")
            .set_json(registration("b")),
        test::TestRequest::post()
            .uri("/api/v1/dataplanes")
            .set_json(registration("b")),
        test::TestRequest::delete().uri("/api/v1/dataplanes/a"),
    ] {
        let (status, body) = error_of(&app, req.insert_header(cp)).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
        assert_eq!(body["code"], "FORBIDDEN");
    }
    for req in [
        test::TestRequest::get().uri("/api/v1/dataplanes"),
        test::TestRequest::get().uri("/api/v1/dataplanes/a"),
        test::TestRequest::get().uri("/api/v1/strategies"),
        test::TestRequest::post()
            .uri("/api/v1/dataplanes/select")
            .set_json(json!({"profile": PUSH})),
    ] {
        let response = test::call_service(&app, req.insert_header(cp).to_request()).await;
        assert_eq!(response.status(), StatusCode::OK);
    }
    let ids: Vec<String> = selector
        .list()
        .await
        .unwrap()
        .into_iter()
        .map(|i| i.id.to_string())
        .collect();
    assert_eq!(ids, vec!["a"]);
}
