use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::{SelectionRequest, SelectorError, SelectorResult};

/// Longest accepted data-plane id, in bytes.
pub const MAX_ID_LEN: usize = 256;

/// Identifier of a data-plane instance (the DPS `dataplaneId`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct DataPlaneId(String);

impl DataPlaneId {
    /// Wraps an id; see [`DataPlaneId::validate`] for the rules the API enforces.
    pub fn new(id: impl Into<String>) -> Self {
        Self(id.into())
    }

    /// The id as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Checks that the id is non-blank, at most [`MAX_ID_LEN`] bytes and free of control
    /// characters and `/` (ids appear in URL paths).
    ///
    /// # Errors
    /// [`SelectorError::InvalidInput`] naming the rule that failed.
    pub fn validate(&self) -> SelectorResult<()> {
        let id = &self.0;
        if id.trim().is_empty() {
            return Err(SelectorError::InvalidInput(
                "dataplaneId must not be blank".into(),
            ));
        }
        if id.len() > MAX_ID_LEN {
            return Err(SelectorError::InvalidInput(format!(
                "dataplaneId is longer than {MAX_ID_LEN} bytes"
            )));
        }
        if id.chars().any(|c| c.is_control() || c == '/') {
            return Err(SelectorError::InvalidInput(format!(
                "dataplaneId '{}' contains a control character or '/'",
                id.escape_debug()
            )));
        }
        Ok(())
    }
}

impl fmt::Display for DataPlaneId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&str> for DataPlaneId {
    fn from(value: &str) -> Self {
        Self(value.to_owned())
    }
}

/// Lifecycle of an instance as the selector sees it.
///
/// Only `REGISTERED` and `AVAILABLE` instances are offered by [`DataPlaneInstance::can_handle`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum InstanceState {
    /// Known, not yet confirmed alive; selectable.
    #[default]
    Registered,
    /// Confirmed alive; selectable.
    Available,
    /// Known but currently not reachable; not selectable.
    Unavailable,
    /// Withdrawn by its operator; not selectable.
    Unregistered,
}

impl InstanceState {
    /// The wire name (`REGISTERED`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Registered => "REGISTERED",
            Self::Available => "AVAILABLE",
            Self::Unavailable => "UNAVAILABLE",
            Self::Unregistered => "UNREGISTERED",
        }
    }

    /// Parses a wire name, case-insensitively.
    ///
    /// # Errors
    /// [`SelectorError::InvalidInput`] for an unknown name.
    pub fn parse(value: &str) -> SelectorResult<Self> {
        match value.to_ascii_uppercase().as_str() {
            "REGISTERED" => Ok(Self::Registered),
            "AVAILABLE" => Ok(Self::Available),
            "UNAVAILABLE" => Ok(Self::Unavailable),
            "UNREGISTERED" => Ok(Self::Unregistered),
            _ => Err(SelectorError::InvalidInput(format!(
                "unknown instance state '{value}'; known states: REGISTERED, AVAILABLE, UNAVAILABLE, UNREGISTERED"
            ))),
        }
    }

    /// Whether instances in this state may be selected.
    pub fn is_selectable(self) -> bool {
        matches!(self, Self::Registered | Self::Available)
    }
}

/// The DPS `AuthorizationEntry`: how a control plane authenticates to the data plane.
///
/// Unknown fields are kept, so profiles beyond `oauth2_client_credentials` round-trip.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct AuthorizationEntry {
    /// The authorization profile, e.g. `oauth2_client_credentials` or `none`.
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Token endpoint of the profile.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_endpoint: Option<String>,
    /// Client id of the profile.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// Client secret of the profile.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_secret: Option<String>,
    /// Any other field of the entry.
    #[serde(flatten)]
    pub extra: BTreeMap<String, serde_json::Value>,
}

/// What a field holding a credential shows in API answers instead of its value.
pub const REDACTED: &str = "***";

/// Whether a field name names a credential (compared ignoring case, `-`, `_` and `.`):
/// it contains `secret`, `password`, `passwd`, `credential`, `apikey` or `privatekey`, ends
/// with `token` or `key`, or is `authorization`. `tokenEndpoint` and `clientId` are not.
pub fn is_credential_name(name: &str) -> bool {
    let name: String = name
        .chars()
        .filter(|c| !matches!(c, '-' | '_' | '.'))
        .map(|c| c.to_ascii_lowercase())
        .collect();
    [
        "secret",
        "password",
        "passwd",
        "credential",
        "apikey",
        "privatekey",
    ]
    .iter()
    .any(|word| name.contains(word))
        || name.ends_with("token")
        || name.ends_with("key")
        || name == "authorization"
}

/// Replaces, at any depth, the value of every object field named like a credential
/// ([`is_credential_name`]) with [`REDACTED`].
fn redact_value(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::Object(map) => {
            for (name, value) in map.iter_mut() {
                if is_credential_name(name) {
                    *value = serde_json::Value::String(REDACTED.to_owned());
                } else {
                    redact_value(value);
                }
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(redact_value),
        _ => {}
    }
}

fn redact_map(map: &mut BTreeMap<String, serde_json::Value>) {
    for (name, value) in map.iter_mut() {
        if is_credential_name(name) {
            *value = serde_json::Value::String(REDACTED.to_owned());
        } else {
            redact_value(value);
        }
    }
}

impl AuthorizationEntry {
    /// This entry without its credentials, as the API shows it: `clientSecret` is omitted and
    /// every other field named like a credential ([`is_credential_name`]) shows [`REDACTED`].
    #[must_use]
    pub fn redacted(mut self) -> Self {
        self.client_secret = None;
        redact_map(&mut self.extra);
        self
    }
}

/// One data-plane instance known to the selector.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DataPlaneInstance {
    /// Unique id (the DPS `dataplaneId`).
    pub id: DataPlaneId,
    /// Base URL of the instance's DPS signaling API.
    pub endpoint: String,
    /// DPS transfer profiles it supports. Empty means "any profile".
    #[serde(default)]
    pub profiles: Vec<String>,
    /// Source types it can read. Empty means "any source type".
    #[serde(default)]
    pub allowed_source_types: Vec<String>,
    /// Labels; a request's labels must all be present.
    #[serde(default)]
    pub labels: BTreeSet<String>,
    /// Free, extensible properties.
    #[serde(default)]
    pub properties: BTreeMap<String, serde_json::Value>,
    /// How a control plane authenticates to this instance.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authorization: Option<AuthorizationEntry>,
    /// How often it was selected.
    #[serde(default)]
    pub turn_count: u64,
    /// When it was last selected (store clock); absent when never.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_active: Option<DateTime<Utc>>,
    /// Lifecycle state.
    #[serde(default)]
    pub state: InstanceState,
    /// When it was first registered (store clock).
    pub created_at: DateTime<Utc>,
    /// When its definition or state last changed (store clock).
    pub updated_at: DateTime<Utc>,
    /// Seconds after its last registration (or state change) at which an instance that did
    /// not register again is UNAVAILABLE; none = no expiry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl_seconds: Option<u64>,
    /// Its last load report with its age, when the selector knows one (a selector on the
    /// cluster's store reads them from the members table).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load: Option<crate::InstanceLoad>,
}

impl DataPlaneInstance {
    /// Builds a fresh instance (never selected) from a validated registration.
    pub fn from_registration(registration: &DataPlaneRegistration, now: DateTime<Utc>) -> Self {
        Self {
            id: registration.dataplane_id.clone(),
            endpoint: registration.endpoint.clone(),
            profiles: registration.profiles.clone(),
            allowed_source_types: registration.allowed_source_types.clone(),
            labels: registration.labels.iter().cloned().collect(),
            properties: registration.properties.clone(),
            authorization: registration.authorization.clone(),
            turn_count: 0,
            last_active: None,
            state: registration.state.unwrap_or_default(),
            created_at: now,
            updated_at: now,
            ttl_seconds: registration.ttl_seconds,
            load: registration
                .load
                .map(|load| load.at(now, now, registration.ttl_seconds)),
        }
    }

    /// Whether its registration outlived its `ttlSeconds` at `now` without being renewed.
    pub fn ttl_expired(&self, now: DateTime<Utc>) -> bool {
        self.ttl_seconds.is_some_and(|ttl| {
            let ttl = chrono::Duration::seconds(i64::try_from(ttl).unwrap_or(i64::MAX / 1_000_000));
            self.updated_at + ttl <= now
        })
    }

    /// This instance as seen at `now`: a selectable instance whose TTL expired is UNAVAILABLE,
    /// and the load it registered with is aged (and stale once older than its TTL).
    #[must_use]
    pub fn with_ttl_applied(mut self, now: DateTime<Utc>) -> Self {
        if self.state.is_selectable() && self.ttl_expired(now) {
            self.state = InstanceState::Unavailable;
        }
        self.load = self.load.map(|load| {
            load.registered()
                .at(load.reported_at, now, self.ttl_seconds)
        });
        self
    }

    /// Replaces the definition (endpoint, profiles, labels, ...) with a new registration,
    /// keeping the selection statistics and creation time.
    ///
    /// A re-registration revives an `UNREGISTERED` instance; otherwise the state is kept unless
    /// the registration names one.
    pub fn apply_registration(&mut self, registration: &DataPlaneRegistration, now: DateTime<Utc>) {
        let created_at = self.created_at;
        let turn_count = self.turn_count;
        let last_active = self.last_active;
        let state = match (registration.state, self.state) {
            (Some(state), _) => state,
            (None, InstanceState::Unregistered) => InstanceState::Registered,
            (None, state) => state,
        };
        *self = Self::from_registration(registration, now);
        self.created_at = created_at;
        self.turn_count = turn_count;
        self.last_active = last_active;
        self.state = state;
    }

    /// This instance as the API shows it: its authorization entry without credentials
    /// ([`AuthorizationEntry::redacted`]) and every property named like a credential
    /// ([`is_credential_name`], at any depth) showing [`REDACTED`]. The stored instance keeps
    /// them.
    #[must_use]
    pub fn redacted(mut self) -> Self {
        self.authorization = self.authorization.map(AuthorizationEntry::redacted);
        redact_map(&mut self.properties);
        self
    }

    /// Whether this instance can run a transfer described by `request`: it is selectable,
    /// supports the profile, accepts the source type and carries every requested label.
    pub fn can_handle(&self, request: &SelectionRequest) -> bool {
        if !self.state.is_selectable() {
            return false;
        }
        if !self.profiles.is_empty() && !self.profiles.iter().any(|p| p == &request.profile) {
            return false;
        }
        if let Some(source_type) = &request.source_type {
            if !self.allowed_source_types.is_empty()
                && !self.allowed_source_types.iter().any(|t| t == source_type)
            {
                return false;
            }
        }
        request.labels.is_subset(&self.labels)
    }
}

/// The DPS `DataPlaneRegistrationMessage` (`PUT /dataplanes`), plus dpf's optional extensions
/// (`allowedSourceTypes`, `properties`, `state`, `ttlSeconds`, `load`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DataPlaneRegistration {
    /// Unique id of the data plane (`id` is accepted as an alias).
    #[serde(alias = "id")]
    pub dataplane_id: DataPlaneId,
    /// Base URL of the data plane's signaling API; must be an absolute http(s) URL.
    pub endpoint: String,
    /// Supported transfer profiles.
    pub profiles: Vec<String>,
    /// Authorization entry (required by DPS for `PUT`, optional for `POST`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authorization: Option<AuthorizationEntry>,
    /// Labels of the data plane.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub labels: Vec<String>,
    /// dpf extension: accepted source types (empty = any).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_source_types: Vec<String>,
    /// dpf extension: free properties.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub properties: BTreeMap<String, serde_json::Value>,
    /// dpf extension: initial or new state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<InstanceState>,
    /// dpf extension: seconds after which the instance is UNAVAILABLE unless it registers
    /// again (a registration renews it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl_seconds: Option<u64>,
    /// dpf extension: the data plane's current load (a data plane registering with a remote
    /// selector sends it with every renewal); shown as the instance's `load`, aged from this
    /// registration and stale after `ttlSeconds`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load: Option<crate::RegisteredLoad>,
}

impl DataPlaneRegistration {
    /// A registration with just an id, an endpoint and profiles.
    pub fn new(id: impl Into<String>, endpoint: impl Into<String>, profiles: Vec<String>) -> Self {
        Self {
            dataplane_id: DataPlaneId::new(id),
            endpoint: endpoint.into(),
            profiles,
            authorization: None,
            labels: Vec::new(),
            allowed_source_types: Vec::new(),
            properties: BTreeMap::new(),
            state: None,
            ttl_seconds: None,
            load: None,
        }
    }

    /// Adds labels (builder style).
    pub fn with_labels<I, S>(mut self, labels: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.labels.extend(labels.into_iter().map(Into::into));
        self
    }

    /// Adds accepted source types (builder style).
    pub fn with_source_types<I, S>(mut self, types: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.allowed_source_types
            .extend(types.into_iter().map(Into::into));
        self
    }

    /// Checks every field rule: a valid id, an absolute `http`/`https` endpoint URL, no blank
    /// profile, label or source type.
    ///
    /// # Errors
    /// [`SelectorError::InvalidInput`] naming the offending field.
    pub fn validate(&self) -> SelectorResult<()> {
        self.dataplane_id.validate()?;
        match url::Url::parse(&self.endpoint) {
            Ok(url) if matches!(url.scheme(), "http" | "https") && url.has_host() => {}
            Ok(url) => {
                return Err(SelectorError::InvalidInput(format!(
                    "endpoint '{}' must be an http or https URL with a host (scheme was '{}')",
                    self.endpoint,
                    url.scheme()
                )))
            }
            Err(error) => {
                return Err(SelectorError::InvalidInput(format!(
                    "endpoint '{}' is not a URL: {error}",
                    self.endpoint
                )))
            }
        }
        if self.ttl_seconds == Some(0) {
            return Err(SelectorError::InvalidInput(
                "ttlSeconds must be positive (omit it for no expiry)".into(),
            ));
        }
        for (field, values) in [
            ("profiles", &self.profiles),
            ("labels", &self.labels),
            ("allowedSourceTypes", &self.allowed_source_types),
        ] {
            if values.iter().any(|v| v.trim().is_empty()) {
                return Err(SelectorError::InvalidInput(format!(
                    "{field} must not contain blank entries"
                )));
            }
        }
        Ok(())
    }

    /// [`validate`](Self::validate) plus the DPS rule for `PUT /dataplanes`: an
    /// `authorization` entry with a `type` is mandatory (`{"type":"none"}` for none).
    ///
    /// # Errors
    /// [`SelectorError::InvalidInput`] naming the offending field.
    pub fn validate_dps(&self) -> SelectorResult<()> {
        self.validate()?;
        match &self.authorization {
            Some(auth) if auth.kind.as_deref().is_some_and(|t| !t.trim().is_empty()) => Ok(()),
            Some(_) => Err(SelectorError::InvalidInput(
                "authorization.type is required (use {\"type\":\"none\"} for none)".into(),
            )),
            None => Err(SelectorError::InvalidInput(
                "missing field `authorization` (a DataPlaneRegistrationMessage requires it; use {\"type\":\"none\"} for none)".into(),
            )),
        }
    }

    /// An authorization entry of type `none`.
    pub fn no_authorization() -> AuthorizationEntry {
        AuthorizationEntry {
            kind: Some("none".into()),
            ..AuthorizationEntry::default()
        }
    }
}

#[cfg(test)]
mod tests;
