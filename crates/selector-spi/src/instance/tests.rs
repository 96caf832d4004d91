#![allow(clippy::unwrap_used)]

use super::*;

#[test]
fn credential_names_are_recognised_and_ordinary_names_are_not() {
    for name in [
        "clientSecret",
        "client_secret",
        "password",
        "apiKey",
        "X-Api-Key",
        "accessToken",
        "token",
        "authorization",
        "credentials",
        "privateKey",
    ] {
        assert!(is_credential_name(name), "{name}");
    }
    for name in [
        "tokenEndpoint",
        "clientId",
        "type",
        "scope",
        "region",
        "url",
    ] {
        assert!(!is_credential_name(name), "{name}");
    }
}

#[test]
fn a_redacted_instance_shows_no_credential() {
    let mut registration = DataPlaneRegistration::new("a", "https://a/x", Vec::new());
    registration.authorization = Some(AuthorizationEntry {
        kind: Some("oauth2_client_credentials".into()),
        token_endpoint: Some("https://auth/token".into()),
        client_id: Some("cid".into()),
        client_secret: Some("s3cret-one".into()),
        extra: [
            ("scope".to_owned(), serde_json::json!("read")),
            ("refreshToken".to_owned(), serde_json::json!("s3cret-two")),
        ]
        .into(),
    });
    registration.properties = [
        ("region".to_owned(), serde_json::json!("eu")),
        (
            "sink".to_owned(),
            serde_json::json!({"url": "https://x", "apiKey": "s3cret-three"}),
        ),
    ]
    .into();
    let instance = DataPlaneInstance::from_registration(&registration, Utc::now());
    let shown = serde_json::to_string(&instance.clone().redacted()).unwrap();
    assert!(!shown.contains("s3cret"), "{shown}");
    assert!(!shown.contains("clientSecret"), "{shown}");
    let redacted = instance.redacted();
    let auth = redacted.authorization.unwrap();
    assert_eq!(auth.client_id.as_deref(), Some("cid"));
    assert_eq!(auth.token_endpoint.as_deref(), Some("https://auth/token"));
    assert_eq!(auth.extra["scope"], "read");
    assert_eq!(auth.extra["refreshToken"], REDACTED);
    assert_eq!(redacted.properties["region"], "eu");
    assert_eq!(redacted.properties["sink"]["apiKey"], REDACTED);
    assert_eq!(redacted.properties["sink"]["url"], "https://x");
}
