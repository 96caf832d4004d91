//! Seeding instances from configuration, as the selector design asks:
//!
//! ```properties
//! edc.dpf.selector.pod1.url=http://pod1:8080/api/v1/signaling
//! edc.dpf.selector.pod1.profiles=https://w3id.org/dspace-sig/profile/http-push
//! edc.dpf.selector.pod1.labels=eu,gpu
//! edc.dpf.selector.pod1.sourceTypes=HttpData,File
//! edc.dpf.selector.pod1.region=eu-west        # any other property is kept as a free property
//! ```
//!
//! Recognised properties (names compared ignoring case, `-`, `_` and `.`): `url` (required;
//! `endpoint` is accepted too), `id` (defaults to the alias), `profiles`, `labels`,
//! `sourceTypes`/`allowedSourceTypes` (comma-separated lists), `state` and
//! `authorization.type` (default `none`). Seeding registers
//! (create-or-replace) each instance, so restarting with the same configuration never
//! duplicates anything and keeps selection statistics.

use std::collections::BTreeMap;

use selector_spi::{
    AuthorizationEntry, DataPlaneRegistration, DataPlaneSelector, InstanceState, SelectorError,
    SelectorResult,
};

/// The configuration prefix of seeded instances.
pub const SEED_PREFIX: &str = "edc.dpf.selector.";

fn normalise(property: &str) -> String {
    property
        .chars()
        .filter(|c| !matches!(c, '-' | '_' | '.'))
        .map(|c| c.to_ascii_lowercase())
        .collect()
}

fn list(value: &str) -> Vec<String> {
    value
        .split(',')
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Turns `(alias.property, value)` pairs (the keys below [`SEED_PREFIX`]) into registrations,
/// sorted by alias. Keys that are not `<alias>.<property>` are ignored; properties of the
/// selector itself (`edc.dpf.selector.strategy`) are not aliases and are skipped.
///
/// # Errors
/// [`SelectorError::InvalidInput`] naming the key when an alias has no `url`, or when a
/// registration is invalid (e.g. the URL does not parse).
pub fn registrations_from_entries(
    entries: &[(String, String)],
) -> SelectorResult<Vec<DataPlaneRegistration>> {
    let mut by_alias: BTreeMap<String, BTreeMap<String, (String, String)>> = BTreeMap::new();
    for (key, value) in entries {
        let Some((alias, property)) = key.split_once('.') else {
            continue;
        };
        if alias.is_empty() || property.is_empty() {
            continue;
        }
        by_alias
            .entry(alias.to_owned())
            .or_default()
            .insert(normalise(property), (property.to_owned(), value.clone()));
    }
    let mut registrations = Vec::with_capacity(by_alias.len());
    for (alias, properties) in by_alias {
        let url = properties
            .get("url")
            .or_else(|| properties.get("endpoint"))
            .map(|(_, v)| v.clone())
            .ok_or_else(|| {
                SelectorError::InvalidInput(format!(
                    "{SEED_PREFIX}{alias}.url is required to seed data plane '{alias}'"
                ))
            })?;
        let id = properties
            .get("id")
            .map(|(_, v)| v.clone())
            .unwrap_or_else(|| alias.clone());
        let mut registration = DataPlaneRegistration::new(id, url, Vec::new());
        registration.authorization = Some(DataPlaneRegistration::no_authorization());
        for (normalised, (property, value)) in properties {
            match normalised.as_str() {
                "url" | "endpoint" | "id" => {}
                "profiles" => registration.profiles = list(&value),
                "labels" => registration.labels = list(&value),
                "sourcetypes" | "allowedsourcetypes" => {
                    registration.allowed_source_types = list(&value);
                }
                "state" => registration.state = Some(InstanceState::parse(&value)?),
                "authorizationtype" => {
                    registration.authorization = Some(AuthorizationEntry {
                        kind: Some(value),
                        ..AuthorizationEntry::default()
                    });
                }
                _ => {
                    registration
                        .properties
                        .insert(property, serde_json::Value::String(value));
                }
            }
        }
        registration.validate().map_err(|error| {
            SelectorError::InvalidInput(format!("{SEED_PREFIX}{alias}: {error}"))
        })?;
        registrations.push(registration);
    }
    Ok(registrations)
}

/// Registers every seeded instance (create or replace). Returns how many were new.
///
/// # Errors
/// The first registration failure.
pub async fn apply(
    selector: &dyn DataPlaneSelector,
    registrations: &[DataPlaneRegistration],
) -> SelectorResult<usize> {
    let mut created = 0;
    for registration in registrations {
        let (instance, new) = selector.register(registration).await?;
        tracing::info!(instance = %instance.id, endpoint = %instance.endpoint, new, "seeded data plane");
        created += usize::from(new);
    }
    Ok(created)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn two_aliases_with_lists_and_free_properties() {
        let regs = registrations_from_entries(&entries(&[
            ("pod1.url", "http://pod1:8080/api/v1/signaling"),
            ("pod1.profiles", "p1, p2"),
            ("pod1.labels", "eu"),
            ("pod1.someOtherProperty", "x"),
            ("pod2.url", "http://pod2:8080"),
            ("pod2.allowed-source-types", "File"),
            ("strategy", "round-robin"),
        ]))
        .unwrap();
        assert_eq!(regs.len(), 2);
        assert_eq!(regs[0].dataplane_id.as_str(), "pod1");
        assert_eq!(regs[0].profiles, vec!["p1", "p2"]);
        assert_eq!(regs[0].labels, vec!["eu"]);
        assert_eq!(
            regs[0].properties.get("someOtherProperty"),
            Some(&serde_json::Value::String("x".into()))
        );
        assert_eq!(regs[1].allowed_source_types, vec!["File"]);
    }

    #[test]
    fn missing_or_bad_url_names_the_key() {
        let error = registrations_from_entries(&entries(&[("pod1.profiles", "p")])).unwrap_err();
        assert!(
            error.to_string().contains("edc.dpf.selector.pod1.url"),
            "{error}"
        );
        let error = registrations_from_entries(&entries(&[("pod1.url", "not a url")])).unwrap_err();
        assert!(error.to_string().contains("pod1"), "{error}");
    }

    #[tokio::test]
    async fn applying_the_same_seed_twice_does_not_duplicate() {
        use std::sync::Arc;

        use selector_spi::DataPlaneSelector;

        let selector = crate::DefaultDataPlaneSelector::new(
            Arc::new(crate::InMemoryInstanceStore::new()),
            crate::default_registry_builder().build().unwrap(),
        );
        let regs = registrations_from_entries(&entries(&[
            ("pod1.url", "http://pod1:8080"),
            ("pod2.url", "http://pod2:8080"),
        ]))
        .unwrap();
        assert_eq!(apply(&selector, &regs).await.unwrap(), 2);
        selector
            .select(&selector_spi::SelectionRequest::for_profile("any"))
            .await
            .unwrap();
        assert_eq!(apply(&selector, &regs).await.unwrap(), 0);
        let instances = selector.list().await.unwrap();
        assert_eq!(instances.len(), 2);
        // Statistics survive re-seeding.
        assert_eq!(instances.iter().map(|i| i.turn_count).sum::<u64>(), 1);
    }
}
