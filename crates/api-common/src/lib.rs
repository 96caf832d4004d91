//! What every dpf HTTP API shares, so that all of them answer errors the same way:
//! `{"error": "<message>", "code": "<CODE>"}` with the right status.
//!
//! - [`error_response`]: builds such a response;
//! - [`json_config`]: the JSON extractor's body limit and its decoding errors as JSON
//!   (413 too large, 415 not JSON, 400 malformed or missing fields);
//! - [`not_found_handler`]: the default service, a JSON 404 for unknown routes;
//! - [`require_api_key`]: the key middleware of a protected scope (open routes are mounted
//!   outside it, so authentication is decided by route, never by matching the path), which
//!   puts the caller's [`Role`] into the request; [`require_admin`] for admin-only routes;
//! - [`access_log`]: the request id, the access-log line and the per-route request histogram
//!   of every request ([`metrics_text`] renders the histogram for `/metrics`).

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::{HttpMessage, HttpRequest};

mod access;
mod error;

pub use access::{
    access_log, metrics_text, observed_requests, valid_request_id, RequestId, ACCESS_LOG_TARGET,
    DURATION_METRIC, MAX_REQUEST_ID_LEN, REQUEST_ID_HEADER, UNMATCHED_ROUTE,
};
pub use error::{
    error_response, forbidden_for, json_config, not_found_handler, path_config, query_config,
    ErrorBody,
};

/// Largest accepted JSON body, in bytes, on every dpf API.
pub const MAX_JSON_BODY: usize = 64 * 1024;

/// The key every protected request must present (`Authorization: Bearer <key>` or
/// `X-Api-Key: <key>`); `None` disables the check. Register as app data and wrap the
/// **protected** scope with `actix_web::middleware::from_fn(require_api_key)`. A caller with
/// this key is an [`Role::Admin`]. [`AuthConfig`] adds per-control-plane keys and the `Host`
/// check.
#[derive(Debug, Clone, Default)]
pub struct ApiKey(pub Option<std::sync::Arc<str>>);

/// Who a caller of a protected route is, as decided by [`require_api_key`] and put into the
/// request's extensions (read it with [`role_of`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    /// The administrator key (`dpf.api.auth.key`), or no key configured at all: everything.
    Admin,
    /// A per-control-plane key (`dpf.api.auth.controlplane.<participantId>.key`): only that
    /// participant's flows and its own control-plane registration.
    ControlPlane(std::sync::Arc<str>),
}

impl Role {
    /// The participant a control-plane caller is restricted to; `None` for an admin.
    pub fn participant(&self) -> Option<&str> {
        match self {
            Self::Admin => None,
            Self::ControlPlane(participant) => Some(participant),
        }
    }
}

/// The caller's role; [`Role::Admin`] when no [`require_api_key`] ran (an unprotected
/// embedding). Never panics.
pub fn role_of(req: &HttpRequest) -> Role {
    req.extensions()
        .get::<Role>()
        .cloned()
        .unwrap_or(Role::Admin)
}

/// Keys and roles of an API. Register as app data (`web::Data<AuthConfig>`); it takes
/// precedence over [`ApiKey`]. Its `Debug` never shows a key.
#[derive(Clone, Default)]
pub struct AuthConfig {
    admin: Option<std::sync::Arc<str>>,
    control_planes: Vec<(std::sync::Arc<str>, std::sync::Arc<str>)>,
    /// With no key configured: the hosts (lower case, no port) a request's `Host` may name
    /// besides loopback; `None` turns the check off.
    allowed_hosts: Option<Vec<String>>,
}

impl std::fmt::Debug for AuthConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthConfig")
            .field("admin", &self.admin.as_ref().map(|_| "***"))
            .field(
                "control_planes",
                &self
                    .control_planes
                    .iter()
                    .map(|(participant, _)| participant.as_ref())
                    .collect::<Vec<_>>(),
            )
            .field("allowed_hosts", &self.allowed_hosts)
            .finish()
    }
}

impl AuthConfig {
    /// Only an administrator key (or none).
    pub fn admin(key: Option<&str>) -> Self {
        Self {
            admin: key.filter(|k| !k.is_empty()).map(Into::into),
            ..Self::default()
        }
    }

    /// Adds a per-control-plane key for `participant`.
    ///
    /// # Errors
    /// A blank participant or key, or a key already used by the admin or another participant
    /// (a key must name exactly one role). The message never contains a key.
    pub fn with_control_plane(mut self, participant: &str, key: &str) -> Result<Self, String> {
        if participant.trim().is_empty() {
            return Err("a control-plane key needs a participant id".into());
        }
        if key.is_empty() {
            return Err(format!("the key of control plane '{participant}' is empty"));
        }
        let clash = self
            .admin
            .iter()
            .chain(self.control_planes.iter().map(|(_, k)| k))
            .any(|other| constant_time_eq(other.as_bytes(), key.as_bytes()));
        if clash {
            return Err(format!(
                "the key of control plane '{participant}' is also the admin key or another control plane's key"
            ));
        }
        if self
            .control_planes
            .iter()
            .any(|(p, _)| p.as_ref() == participant)
        {
            return Err(format!("control plane '{participant}' has two keys"));
        }
        self.control_planes.push((participant.into(), key.into()));
        Ok(self)
    }

    /// Turns on the `Host` check that applies while no key is configured: besides loopback
    /// names (`localhost`, `127.0.0.1`, `[::1]`, any port), only `hosts` are accepted.
    pub fn with_host_check(mut self, hosts: impl IntoIterator<Item = String>) -> Self {
        self.allowed_hosts = Some(
            hosts
                .into_iter()
                .map(|h| h.trim().to_ascii_lowercase())
                .filter(|h| !h.is_empty())
                .collect(),
        );
        self
    }

    /// Whether any key (admin or control plane) is configured.
    pub fn has_keys(&self) -> bool {
        self.admin.is_some() || !self.control_planes.is_empty()
    }

    /// The participants that have a key, in configuration order.
    pub fn participants(&self) -> Vec<String> {
        self.control_planes
            .iter()
            .map(|(p, _)| p.to_string())
            .collect()
    }

    /// The role a presented key grants, compared in constant time against every key.
    fn role_for(&self, presented: &str) -> Option<Role> {
        let mut role = None;
        if let Some(admin) = &self.admin {
            if constant_time_eq(presented.as_bytes(), admin.as_bytes()) {
                role = Some(Role::Admin);
            }
        }
        for (participant, key) in &self.control_planes {
            if constant_time_eq(presented.as_bytes(), key.as_bytes()) && role.is_none() {
                role = Some(Role::ControlPlane(participant.clone()));
            }
        }
        role
    }

    /// Whether the `Host` of a request passes the no-key check.
    fn host_allowed(&self, host: Option<&str>) -> bool {
        let Some(allowed) = &self.allowed_hosts else {
            return true;
        };
        let Some(name) = host.and_then(host_name) else {
            return false;
        };
        is_loopback_name(&name) || allowed.contains(&name)
    }
}

/// The host name of a `Host` header value, lower case, without port (`[::1]:80` → `[::1]`);
/// `None` when malformed.
pub fn host_name(host: &str) -> Option<String> {
    let host = host.trim();
    let name = if host.starts_with('[') {
        let end = host.find(']')?;
        let rest = &host[end + 1..];
        if !(rest.is_empty() || rest.strip_prefix(':').is_some_and(is_port)) {
            return None;
        }
        &host[..=end]
    } else {
        match host.rsplit_once(':') {
            Some((name, port)) if is_port(port) => name,
            Some(_) => return None,
            None => host,
        }
    };
    (!name.is_empty()).then(|| name.to_ascii_lowercase())
}

fn is_port(port: &str) -> bool {
    !port.is_empty() && port.len() <= 5 && port.bytes().all(|b| b.is_ascii_digit())
}

/// Whether a host name (as [`host_name`] returns it) is a loopback name: `localhost`,
/// `127.0.0.1` or `[::1]`.
pub fn is_loopback_name(name: &str) -> bool {
    matches!(name, "localhost" | "127.0.0.1" | "[::1]")
}

/// Compares without revealing, through timing, where two secrets differ.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn presented_key(req: &ServiceRequest) -> Option<String> {
    let headers = req.headers();
    if let Some(key) = headers.get("x-api-key").and_then(|v| v.to_str().ok()) {
        return Some(key.trim().to_owned());
    }
    let value = headers
        .get(actix_web::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim().to_owned())
}

fn request_host(req: &ServiceRequest) -> Option<String> {
    match req.headers().get(actix_web::http::header::HOST) {
        Some(value) => value.to_str().ok().map(str::to_owned),
        // HTTP/2 carries the host in the URI's authority.
        None => req.uri().authority().map(|a| a.as_str().to_owned()),
    }
}

/// Middleware for a **protected** scope: decides the caller's [`Role`] from its key
/// (`Authorization: Bearer <key>` or `X-Api-Key: <key>`, compared in constant time) and puts it
/// into the request's extensions; 401 JSON without a valid key. With no key configured at all,
/// every caller is an admin, except that a request whose `Host` is neither loopback nor an
/// allowed host is refused with 403 JSON when [`AuthConfig::with_host_check`] is on (DNS
/// rebinding). Configuration comes from `web::Data<AuthConfig>`, else `web::Data<ApiKey>`.
/// Keys are never logged.
///
/// # Errors
/// Whatever the inner service returns.
pub async fn require_api_key(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, actix_web::Error> {
    let config = match req.app_data::<actix_web::web::Data<AuthConfig>>() {
        Some(config) => config.get_ref().clone(),
        None => AuthConfig::admin(
            req.app_data::<actix_web::web::Data<ApiKey>>()
                .and_then(|k| k.0.as_deref()),
        ),
    };
    if !config.has_keys() {
        if !config.host_allowed(request_host(&req).as_deref()) {
            let response = error::host_refused();
            return Ok(req.into_response(response).map_into_right_body());
        }
        req.extensions_mut().insert(Role::Admin);
        return Ok(next.call(req).await?.map_into_left_body());
    }
    let presented = presented_key(&req);
    match presented.as_deref().and_then(|key| config.role_for(key)) {
        Some(role) => {
            req.extensions_mut().insert(role);
            Ok(next.call(req).await?.map_into_left_body())
        }
        None => {
            let message = if presented.is_some() {
                "wrong API key"
            } else {
                "missing API key: send Authorization: Bearer <key> or X-Api-Key: <key>"
            };
            let response = error::unauthorized(message);
            Ok(req.into_response(response).map_into_right_body())
        }
    }
}

/// Middleware for routes only an administrator may use (wrap it inside a scope already
/// protected by [`require_api_key`]): 403 JSON for a control-plane caller.
///
/// # Errors
/// Whatever the inner service returns.
pub async fn require_admin(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, actix_web::Error> {
    let role = req.extensions().get::<Role>().cloned();
    match role {
        Some(Role::ControlPlane(participant)) => {
            let response = forbidden_for(&participant);
            Ok(req.into_response(response).map_into_right_body())
        }
        _ => Ok(next.call(req).await?.map_into_left_body()),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use actix_web::{test as atest, web, App, HttpResponse};

    #[test]
    fn host_names() {
        assert_eq!(host_name("LocalHost:8080").as_deref(), Some("localhost"));
        assert_eq!(host_name("127.0.0.1").as_deref(), Some("127.0.0.1"));
        assert_eq!(host_name("[::1]:9").as_deref(), Some("[::1]"));
        assert_eq!(host_name("[::1]").as_deref(), Some("[::1]"));
        assert_eq!(
            host_name("evil.example:80").as_deref(),
            Some("evil.example")
        );
        assert_eq!(host_name("localhost:abc"), None);
        assert_eq!(host_name("[::1]x"), None);
        assert_eq!(host_name(""), None);
        assert!(is_loopback_name("[::1]") && !is_loopback_name("localhost.evil"));
    }

    #[test]
    fn a_key_names_one_role_and_debug_hides_keys() {
        let config = AuthConfig::admin(Some("admin-key"))
            .with_control_plane("p1", "cp-key-1")
            .unwrap();
        assert!(config
            .clone()
            .with_control_plane("p2", "admin-key")
            .is_err());
        assert!(config.clone().with_control_plane("p2", "cp-key-1").is_err());
        assert!(config.clone().with_control_plane("p1", "other").is_err());
        assert!(config.clone().with_control_plane(" ", "other").is_err());
        assert_eq!(config.role_for("admin-key"), Some(Role::Admin));
        assert_eq!(
            config.role_for("cp-key-1"),
            Some(Role::ControlPlane("p1".into()))
        );
        assert_eq!(config.role_for("cp-key-2"), None);
        let debug = format!("{config:?}");
        assert!(
            !debug.contains("admin-key") && !debug.contains("cp-key-1"),
            "{debug}"
        );
    }

    async fn whoami(req: HttpRequest) -> HttpResponse {
        HttpResponse::Ok().body(format!("{:?}", role_of(&req)))
    }

    fn app(
        config: AuthConfig,
    ) -> App<
        impl actix_web::dev::ServiceFactory<
            ServiceRequest,
            Config = (),
            Response = ServiceResponse<impl MessageBody>,
            Error = actix_web::Error,
            InitError = (),
        >,
    > {
        App::new().app_data(web::Data::new(config)).service(
            web::scope("/api")
                .route("/open", web::get().to(whoami))
                .service(
                    web::scope("")
                        .wrap(actix_web::middleware::from_fn(require_api_key))
                        .route("/who", web::get().to(whoami))
                        .service(
                            web::scope("/admin")
                                .wrap(actix_web::middleware::from_fn(require_admin))
                                .route("/x", web::get().to(whoami)),
                        ),
                ),
        )
    }

    async fn status_and_body(
        config: &AuthConfig,
        path: &str,
        headers: &[(&str, &str)],
    ) -> (u16, String) {
        let service = atest::init_service(app(config.clone())).await;
        let mut request = atest::TestRequest::get().uri(path);
        for (name, value) in headers {
            request = request.insert_header((*name, *value));
        }
        let response = atest::call_service(&service, request.to_request()).await;
        let status = response.status().as_u16();
        let body = atest::read_body(response).await;
        (status, String::from_utf8_lossy(&body).into_owned())
    }

    #[actix_web::test]
    async fn roles_by_route_and_key() {
        let config = AuthConfig::admin(Some("admin-key"))
            .with_control_plane("p1", "cp-key-1")
            .unwrap();
        assert_eq!(status_and_body(&config, "/api/open", &[]).await.0, 200);
        assert_eq!(status_and_body(&config, "/api/who", &[]).await.0, 401);
        assert_eq!(
            status_and_body(&config, "/api/who", &[("x-api-key", "nope")])
                .await
                .0,
            401
        );
        let (status, body) = status_and_body(
            &config,
            "/api/who",
            &[("authorization", "Bearer admin-key")],
        )
        .await;
        assert_eq!((status, body.as_str()), (200, "Admin"));
        let (status, body) =
            status_and_body(&config, "/api/who", &[("x-api-key", "cp-key-1")]).await;
        assert_eq!((status, body.as_str()), (200, "ControlPlane(\"p1\")"));
        let (status, body) =
            status_and_body(&config, "/api/admin/x", &[("x-api-key", "cp-key-1")]).await;
        assert_eq!(status, 403, "{body}");
        assert!(body.contains("FORBIDDEN"));
        assert_eq!(
            status_and_body(&config, "/api/admin/x", &[("x-api-key", "admin-key")])
                .await
                .0,
            200
        );
    }

    #[actix_web::test]
    async fn without_keys_the_host_decides() {
        let config = AuthConfig::admin(None).with_host_check(["dp.example.com".to_owned()]);
        for host in [
            "localhost:8080",
            "127.0.0.1",
            "[::1]:1",
            "DP.example.com:443",
        ] {
            let (status, body) = status_and_body(&config, "/api/who", &[("host", host)]).await;
            assert_eq!((status, body.as_str()), (200, "Admin"), "{host}");
        }
        for host in [
            "evil.example",
            "evil.example:8080",
            "localhost.evil.example",
            "127.0.0.1:x",
        ] {
            let (status, body) = status_and_body(&config, "/api/who", &[("host", host)]).await;
            assert_eq!(status, 403, "{host}: {body}");
        }
        // Open routes are not behind the check; with the check off, any host passes.
        let (status, _) = status_and_body(&config, "/api/open", &[("host", "evil.example")]).await;
        assert_eq!(status, 200);
        let open = AuthConfig::admin(None);
        let (status, _) = status_and_body(&open, "/api/who", &[("host", "evil.example")]).await;
        assert_eq!(status, 200);
    }
}
