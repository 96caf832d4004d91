//! One behaviour suite, run against the in-process client and against the HTTP client talking
//! to a real selector server on port 0. Both must behave identically.

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::sync::Arc;

use async_trait::async_trait;
use selector_client::{LocalSelectorClient, RemoteSelectorClient, SelectorClient};
use selector_core::{default_registry_builder, DefaultDataPlaneSelector, InMemoryInstanceStore};
use selector_spi::{
    DataPlaneId, DataPlaneInstance, DataPlaneRegistration, DataPlaneSelector, SelectionContext,
    SelectionRequest, SelectionStrategy, SelectorError, SelectorResult,
};

const PUSH: &str = "https://w3id.org/dspace-sig/profile/http-push";
const PULL: &str = "https://w3id.org/dspace-sig/profile/http-pull";

/// A custom strategy an embedding program registers: always the last candidate by id.
#[derive(Debug)]
struct LastByIdStrategy;

#[async_trait]
impl SelectionStrategy for LastByIdStrategy {
    fn name(&self) -> &str {
        "last-by-id"
    }

    async fn select(
        &self,
        candidates: &[DataPlaneInstance],
        _request: &SelectionRequest,
        _context: SelectionContext<'_>,
    ) -> SelectorResult<Option<DataPlaneId>> {
        Ok(candidates.last().map(|c| c.id.clone()))
    }
}

fn selector() -> Arc<dyn DataPlaneSelector> {
    let registry = default_registry_builder()
        .register(Arc::new(LastByIdStrategy))
        .unwrap()
        .build()
        .unwrap();
    Arc::new(DefaultDataPlaneSelector::new(
        Arc::new(InMemoryInstanceStore::new()),
        registry,
    ))
}

async fn local_client() -> Box<dyn SelectorClient> {
    Box::new(LocalSelectorClient::new(selector()))
}

async fn remote_client() -> Box<dyn SelectorClient> {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = selector_api::serve(listener, selector(), 1).unwrap();
    tokio::spawn(server);
    Box::new(RemoteSelectorClient::for_url(format!("http://127.0.0.1:{port}/api/v1")).unwrap())
}

fn registration(id: &str) -> DataPlaneRegistration {
    let mut reg = DataPlaneRegistration::new(
        id,
        format!("http://{id}.example:8080/api/v1/signaling"),
        vec![PUSH.into()],
    );
    reg.authorization = Some(DataPlaneRegistration::no_authorization());
    reg
}

async fn register_three(client: &dyn SelectorClient) {
    for id in ["dp-a", "dp-b", "dp-c"] {
        client.register(&registration(id)).await.unwrap();
    }
}

async fn select_id(client: &dyn SelectorClient, strategy: &str) -> String {
    client
        .select(&SelectionRequest::for_profile(PUSH).with_strategy(strategy))
        .await
        .unwrap()
        .id
        .to_string()
}

pub async fn round_robin_visits_each_once_before_repeating(client: Box<dyn SelectorClient>) {
    register_three(client.as_ref()).await;
    let mut picks = Vec::new();
    for _ in 0..4 {
        picks.push(select_id(client.as_ref(), "round-robin").await);
    }
    let first_three: std::collections::BTreeSet<_> = picks[..3].iter().cloned().collect();
    assert_eq!(
        first_three.len(),
        3,
        "first three picks {picks:?} must be distinct"
    );
    assert_eq!(
        picks[3], picks[0],
        "the fourth pick starts the rotation again: {picks:?}"
    );
}

pub async fn oldest_next_picks_the_longest_idle(client: Box<dyn SelectorClient>) {
    register_three(client.as_ref()).await;
    // dp-c is used first; dp-a and dp-b are never used yet.
    client
        .select(&SelectionRequest::for_profile(PUSH).with_strategy("last-by-id"))
        .await
        .unwrap();
    let oldest = SelectionRequest::for_profile(PUSH).with_strategy("oldest-next");
    // Never-selected instances come first, so dp-a then dp-b.
    assert_eq!(client.select(&oldest).await.unwrap().id.as_str(), "dp-a");
    assert_eq!(client.select(&oldest).await.unwrap().id.as_str(), "dp-b");
    // Now dp-c was selected first (by last-by-id), so it has been idle the longest.
    assert_eq!(client.select(&oldest).await.unwrap().id.as_str(), "dp-c");
    assert_eq!(client.select(&oldest).await.unwrap().id.as_str(), "dp-a");
    let instance = client.get("dp-a").await.unwrap();
    assert_eq!(instance.turn_count, 2);
    assert!(instance.last_active.is_some());
}

pub async fn random_is_roughly_uniform(client: Box<dyn SelectorClient>) {
    register_three(client.as_ref()).await;
    let mut counts: BTreeMap<String, u32> = BTreeMap::new();
    for _ in 0..3000 {
        *counts
            .entry(select_id(client.as_ref(), "random").await)
            .or_default() += 1;
    }
    assert_eq!(counts.len(), 3, "{counts:?}");
    for (id, count) in &counts {
        let share = f64::from(*count) / 3000.0;
        assert!(
            (0.25..=0.42).contains(&share),
            "{id} got {share:.3} of selections: {counts:?}"
        );
    }
    // The default strategy is random too.
    let default = client
        .select(&SelectionRequest::for_profile(PUSH))
        .await
        .unwrap();
    assert!(counts.contains_key(default.id.as_str()));
}

pub async fn filters_by_profile_source_type_and_labels(client: Box<dyn SelectorClient>) {
    let mut eu = registration("eu-files")
        .with_labels(["eu", "gpu"])
        .with_source_types(["File"]);
    eu.profiles = vec![PUSH.into(), PULL.into()];
    client.register(&eu).await.unwrap();
    client
        .register(
            &registration("us-http")
                .with_labels(["us"])
                .with_source_types(["HttpData"]),
        )
        .await
        .unwrap();
    let pick = |req: SelectionRequest| {
        let client = &client;
        async move { client.select(&req.with_strategy("round-robin")).await }
    };
    for _ in 0..3 {
        assert_eq!(
            pick(SelectionRequest::for_profile(PULL))
                .await
                .unwrap()
                .id
                .as_str(),
            "eu-files"
        );
        assert_eq!(
            pick(SelectionRequest::for_profile(PUSH).with_source_type("HttpData"))
                .await
                .unwrap()
                .id
                .as_str(),
            "us-http"
        );
        assert_eq!(
            pick(SelectionRequest::for_profile(PUSH).with_labels(["eu"]))
                .await
                .unwrap()
                .id
                .as_str(),
            "eu-files"
        );
    }
    let error = pick(SelectionRequest::for_profile(PULL).with_labels(["us", "gpu"]))
        .await
        .unwrap_err();
    let SelectorError::NoMatch(what) = &error else {
        panic!("expected NoMatch, got {error:?}");
    };
    let message = error.to_string();
    assert!(
        message.starts_with("no data plane can handle profile"),
        "{message}"
    );
    assert!(
        what.contains(PULL) && what.contains("gpu") && what.contains("us"),
        "{message}"
    );
    let error = pick(SelectionRequest::for_profile(PUSH).with_source_type("S3"))
        .await
        .unwrap_err();
    assert!(
        matches!(&error, SelectorError::NoMatch(w) if w.contains("S3")),
        "{error:?}"
    );
}

pub async fn unknown_strategy_lists_known_names(client: Box<dyn SelectorClient>) {
    register_three(client.as_ref()).await;
    let error = client
        .select(&SelectionRequest::for_profile(PUSH).with_strategy("fastest"))
        .await
        .unwrap_err();
    match error {
        SelectorError::UnknownStrategy { name, known } => {
            assert_eq!(name, "fastest");
            assert_eq!(
                known,
                vec![
                    "last-by-id",
                    "least-loaded",
                    "oldest-next",
                    "random",
                    "round-robin"
                ]
            );
        }
        other => panic!("expected UnknownStrategy, got {other:?}"),
    }
    let strategies = client.strategies().await.unwrap();
    assert_eq!(
        strategies,
        vec![
            "last-by-id",
            "least-loaded",
            "oldest-next",
            "random",
            "round-robin"
        ]
    );
}

pub async fn invalid_registrations_change_nothing(client: Box<dyn SelectorClient>) {
    register_three(client.as_ref()).await;
    let before = client.list().await.unwrap();
    let mut bad_url = registration("dp-a");
    bad_url.endpoint = "not a url".into();
    let mut ftp = registration("dp-new");
    ftp.endpoint = "ftp://files.example/".into();
    let mut blank_id = registration("x");
    blank_id.dataplane_id = DataPlaneId::new("  ");
    let mut no_auth = registration("dp-b");
    no_auth.authorization = None;
    for bad in [&bad_url, &ftp, &blank_id, &no_auth] {
        let error = client.register(bad).await.unwrap_err();
        assert!(matches!(error, SelectorError::InvalidInput(_)), "{error:?}");
    }
    let error = client.add(&bad_url).await.unwrap_err();
    assert!(
        matches!(error, SelectorError::InvalidInput(ref m) if m.contains("not a URL")),
        "{error:?}"
    );
    assert_eq!(client.list().await.unwrap(), before);
    let error = client
        .select(&SelectionRequest::for_profile(" "))
        .await
        .unwrap_err();
    assert!(matches!(error, SelectorError::InvalidInput(_)), "{error:?}");
}

pub async fn add_get_remove_lifecycle(client: Box<dyn SelectorClient>) {
    let created = client.add(&registration("dp-x")).await.unwrap();
    assert_eq!(created.turn_count, 0);
    assert_eq!(
        client.add(&registration("dp-x")).await.unwrap_err(),
        SelectorError::AlreadyExists { id: "dp-x".into() }
    );
    assert_eq!(client.get("dp-x").await.unwrap(), created);
    let replaced = client
        .register(&registration("dp-x").with_labels(["new"]))
        .await
        .unwrap();
    assert!(replaced.labels.contains("new"));
    assert_eq!(replaced.created_at, created.created_at);
    client.remove("dp-x").await.unwrap();
    assert_eq!(
        client.get("dp-x").await.unwrap_err(),
        SelectorError::NotFound { id: "dp-x".into() }
    );
    assert_eq!(
        client.remove("dp-x").await.unwrap_err(),
        SelectorError::NotFound { id: "dp-x".into() }
    );
    assert!(client.list().await.unwrap().is_empty());
}

pub async fn custom_strategy_is_selectable_by_name(client: Box<dyn SelectorClient>) {
    register_three(client.as_ref()).await;
    for _ in 0..3 {
        assert_eq!(select_id(client.as_ref(), "last-by-id").await, "dp-c");
    }
}

macro_rules! behaviour_suite {
    ($module:ident, $factory:expr) => {
        mod $module {
            behaviour_suite!(@cases $factory;
                round_robin_visits_each_once_before_repeating,
                oldest_next_picks_the_longest_idle,
                random_is_roughly_uniform,
                filters_by_profile_source_type_and_labels,
                unknown_strategy_lists_known_names,
                invalid_registrations_change_nothing,
                add_get_remove_lifecycle,
                custom_strategy_is_selectable_by_name,
            );
        }
    };
    (@cases $factory:expr; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                super::$case($factory.await).await;
            }
        )*
    };
}

behaviour_suite!(local, super::local_client());
behaviour_suite!(remote, super::remote_client());

const KEY: &str = "client-test-key";

async fn protected_server() -> (u16, Arc<dyn DataPlaneSelector>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let selector = selector();
    let server =
        selector_api::serve_with_key(listener, selector.clone(), 1, Some(KEY.into())).unwrap();
    tokio::spawn(server);
    (port, selector)
}

fn client_with_key(port: u16, key: Option<&str>) -> RemoteSelectorClient {
    let mut settings =
        selector_client::RemoteSelectorClientConfig::new(format!("http://127.0.0.1:{port}/api/v1"));
    settings.api_key = key.map(str::to_owned);
    RemoteSelectorClient::new(settings).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_remote_client_sends_its_api_key() {
    let (port, selector) = protected_server().await;
    for key in [None, Some("wrong")] {
        let error = client_with_key(port, key)
            .register(&registration("a"))
            .await
            .unwrap_err();
        assert!(
            matches!(&error, SelectorError::InvalidInput(m) if m.contains("401") && m.contains("API key")),
            "{error:?}"
        );
    }
    assert!(selector.list().await.unwrap().is_empty());
    let client = client_with_key(port, Some(KEY));
    client.register(&registration("a")).await.unwrap();
    assert_eq!(client.list().await.unwrap().len(), 1);
    // The key never shows in Debug output (logs).
    assert!(!format!("{client:?}").contains(KEY));
    let mut settings = selector_client::RemoteSelectorClientConfig::new("http://x/api/v1");
    settings.api_key = Some(KEY.into());
    assert!(!format!("{settings:?}").contains(KEY));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn neither_client_returns_a_client_secret() {
    let mut secret = registration("s");
    secret.authorization = Some(selector_spi::AuthorizationEntry {
        kind: Some("oauth2_client_credentials".into()),
        client_id: Some("cid".into()),
        client_secret: Some("TOP-SECRET".into()),
        ..Default::default()
    });
    for client in [local_client().await, remote_client().await] {
        let registered = client.register(&secret).await.unwrap();
        let listed = client.list().await.unwrap();
        let got = client.get("s").await.unwrap();
        let selected = client
            .select(&SelectionRequest::for_profile(PUSH))
            .await
            .unwrap();
        for instance in [registered, got, selected].into_iter().chain(listed) {
            let auth = instance.authorization.unwrap();
            assert_eq!(auth.client_id.as_deref(), Some("cid"));
            assert_eq!(auth.client_secret, None, "{client:?}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_remote_client_follows_no_redirect() {
    // A server that redirects everything elsewhere.
    let target = TcpListener::bind("127.0.0.1:0").unwrap();
    let target_port = target.local_addr().unwrap().port();
    tokio::spawn(selector_api::serve(target, selector(), 1).unwrap());
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = actix_web::HttpServer::new(move || {
        actix_web::App::new().default_service(actix_web::web::to(move || async move {
            actix_web::HttpResponse::TemporaryRedirect()
                .insert_header((
                    "location",
                    format!("http://127.0.0.1:{target_port}/api/v1/dataplanes"),
                ))
                .finish()
        }))
    })
    .workers(1)
    .listen(listener)
    .unwrap()
    .run();
    tokio::spawn(server);
    let error = client_with_key(port, Some(KEY)).list().await.unwrap_err();
    assert!(!matches!(error, SelectorError::Unavailable(_)), "{error:?}");
    assert!(error.to_string().contains("307"), "{error}");
}
