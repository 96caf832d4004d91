use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::{SelectorError, SelectorResult};

/// What a transfer needs from a data plane (`POST /dataplanes/select`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SelectionRequest {
    /// DPS transfer profile, e.g. `https://w3id.org/dspace-sig/profile/http-push`.
    pub profile: String,
    /// Type of the source the data plane must read, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_type: Option<String>,
    /// Labels the chosen instance must carry (all of them).
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub labels: BTreeSet<String>,
    /// Dataset being transferred, for strategies that place by data.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dataset_id: Option<String>,
    /// Free properties, for custom strategies.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub properties: BTreeMap<String, serde_json::Value>,
    /// Strategy name; the selector's default when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strategy: Option<String>,
}

impl SelectionRequest {
    /// A request for `profile` with nothing else set.
    pub fn for_profile(profile: impl Into<String>) -> Self {
        Self {
            profile: profile.into(),
            ..Self::default()
        }
    }

    /// Sets the source type (builder style).
    pub fn with_source_type(mut self, source_type: impl Into<String>) -> Self {
        self.source_type = Some(source_type.into());
        self
    }

    /// Adds required labels (builder style).
    pub fn with_labels<I, S>(mut self, labels: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.labels.extend(labels.into_iter().map(Into::into));
        self
    }

    /// Sets the strategy name (builder style).
    pub fn with_strategy(mut self, strategy: impl Into<String>) -> Self {
        self.strategy = Some(strategy.into());
        self
    }

    /// Checks the request: the profile must not be blank.
    ///
    /// # Errors
    /// [`SelectorError::InvalidInput`].
    pub fn validate(&self) -> SelectorResult<()> {
        if self.profile.trim().is_empty() {
            return Err(SelectorError::InvalidInput(
                "profile must not be blank".into(),
            ));
        }
        Ok(())
    }
}

/// Human description used in "no data plane can handle …" errors.
impl fmt::Display for SelectionRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "profile '{}'", self.profile)?;
        if let Some(source_type) = &self.source_type {
            write!(f, " with source type '{source_type}'")?;
        }
        let joiner = if self.source_type.is_some() {
            " and"
        } else {
            " with"
        };
        if self.labels.is_empty() {
            write!(f, "{joiner} no labels")
        } else {
            let labels: Vec<&str> = self.labels.iter().map(String::as_str).collect();
            write!(f, "{joiner} labels [{}]", labels.join(", "))
        }
    }
}
