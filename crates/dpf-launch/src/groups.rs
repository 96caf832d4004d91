//! Groups of configuration keys `<prefix><id>.<property>`: datasets, control planes,
//! per-control-plane API keys and seeded selector instances.
//!
//! Each group is read with [`Config::group`] against the property names its consumer knows,
//! so a property matches without regard to case, `-`, `_` and `.` (what a Kubernetes operator
//! writes as `DPF_DATASET_DS1_BASEURL` reaches `baseUrl`), and the keys that name no known
//! property are warned about at start, by name, never with their value.

use anyhow::Context;
use dataplane_spi::ControlPlaneRegistration;
use dpf_config::{canonical_key, Config, Group};
use selector_spi::DataPlaneRegistration;

/// Prefix of the dataset keys `dpf.dataset.<id>.<property>`.
pub const DATASET_PREFIX: &str = "dpf.dataset.";

/// The properties of a dataset: its `type` and those of the `File` and `HttpData` addresses.
pub const DATASET_PROPERTIES: &[&str] = &[
    "type",
    transfer_fs::PATH_PROPERTY,
    transfer_fs::CONTENT_TYPE_PROPERTY,
    transfer_http::BASE_URL_PROPERTY,
    transfer_http::PATH_PROPERTY,
    transfer_http::AUTHORIZATION_PROPERTY,
    transfer_http::AUTH_TYPE_PROPERTY,
    transfer_http::HEADERS_PROPERTY,
    transfer_http::METHOD_PROPERTY,
    transfer_http::CONTENT_TYPE_PROPERTY,
    transfer_http::RESUMABLE_PROPERTY,
    transfer_http::EVENT_STREAM_PROPERTY,
    transfer_http::CURSOR_PARAM_PROPERTY,
    transfer_http::ID_FIELD_PROPERTY,
];

/// Prefix of the control-plane keys `dpf.controlplane.<id>.<property>`.
pub const CONTROL_PLANE_PREFIX: &str = "dpf.controlplane.";

/// Where a configured control plane's callbacks go.
const ENDPOINT: &str = "endpoint";

/// The prefix of the properties that make up its DPS authorization object.
const AUTHORIZATION: &str = "authorization.";

/// The properties of a configured control plane: its `endpoint` and the properties of its
/// authorization object that the callbacks read.
pub const CONTROL_PLANE_PROPERTIES: &[&str] = &[
    ENDPOINT,
    "authorization.type",
    "authorization.token",
    "authorization.key",
    "authorization.header",
    "authorization.tokenEndpoint",
    "authorization.clientId",
    "authorization.clientSecret",
];

/// The properties of a seeded selector instance that seeding interprets; any other property
/// is kept as a free property of the instance (see `selector_core::seed`).
pub const SEED_PROPERTIES: &[&str] = &[
    "url",
    "endpoint",
    "id",
    "profiles",
    "labels",
    "sourceTypes",
    "allowedSourceTypes",
    "state",
    "authorization.type",
];

/// Keys below the seeding prefix that are the selector's own settings, not instances.
pub const SELECTOR_SETTINGS: &[&str] = &["url", "strategy", "api-key"];

/// Logs one warning per key of `group` that names no known property (the key, never its
/// value).
fn warn_unknown(group: &Group, pattern: &str, properties: &[&str]) {
    let mut names: Vec<&str> = Vec::with_capacity(properties.len());
    for property in properties {
        if !names.contains(property) {
            names.push(property);
        }
    }
    for key in group.unknown_keys() {
        tracing::warn!(
            key,
            "unknown configuration key {key}: {pattern} knows the properties {} (matched \
             ignoring case, '-', '_' and '.')",
            names.join(", ")
        );
    }
}

/// The dataset keys as `(<id>.<property>, value)` pairs with the declared property names
/// (`baseUrl`), for `DatasetRegistry::from_entries`. Unknown properties are warned about and
/// passed on as spelled (an address may carry properties of its own).
pub fn dataset_entries(config: &Config) -> Vec<(String, String)> {
    let group = config.group(DATASET_PREFIX, DATASET_PROPERTIES, &[]);
    warn_unknown(&group, "dpf.dataset.<id>.<property>", DATASET_PROPERTIES);
    group.entries()
}

/// The control planes configured with `dpf.controlplane.<id>.endpoint` and
/// `dpf.controlplane.<id>.authorization.<property>`, sorted by id. Unknown properties are
/// warned about; unknown `authorization.<property>` keys are still put in the authorization
/// object, as spelled (it is the DPS object, open to further properties).
///
/// # Errors
/// A control plane with properties but no `endpoint`.
pub fn control_planes(config: &Config) -> anyhow::Result<Vec<ControlPlaneRegistration>> {
    let group = config.group(CONTROL_PLANE_PREFIX, CONTROL_PLANE_PROPERTIES, &[]);
    warn_unknown(
        &group,
        "dpf.controlplane.<id>.<property>",
        CONTROL_PLANE_PROPERTIES,
    );
    let mut registrations = Vec::with_capacity(group.members.len());
    for (id, properties) in &group.members {
        let endpoint = properties.get(ENDPOINT).cloned().with_context(|| {
            format!("{CONTROL_PLANE_PREFIX}{id}.{ENDPOINT} is required to configure control plane '{id}'")
        })?;
        let mut authorization = serde_json::Map::new();
        for (property, value) in properties {
            if let Some(name) = property.strip_prefix(AUTHORIZATION) {
                authorization.insert(name.to_owned(), value.clone().into());
            }
        }
        for unknown in group.unknown.iter().filter(|u| &u.id == id) {
            if let Some(name) = unknown
                .property
                .get(..AUTHORIZATION.len())
                .filter(|p| p.eq_ignore_ascii_case(AUTHORIZATION))
                .and_then(|_| unknown.property.get(AUTHORIZATION.len()..))
                .filter(|name| !name.is_empty())
            {
                authorization.insert(name.to_owned(), unknown.value.clone().into());
            }
        }
        let authorization = if authorization.is_empty() {
            serde_json::json!({"type": "none"})
        } else {
            serde_json::Value::Object(authorization)
        };
        registrations.push(ControlPlaneRegistration {
            controlplane_id: id.clone(),
            endpoint,
            authorization,
        });
    }
    Ok(registrations)
}

/// The per-control-plane API keys `dpf.api.auth.controlplane.<participantId>.key` as
/// `(participantId, key)`, sorted by participant.
///
/// # Errors
/// A key under the prefix that is not `<participantId>.key` (names the key, not the value).
pub fn control_plane_keys(config: &Config, prefix: &str) -> anyhow::Result<Vec<(String, String)>> {
    let group = config.group(prefix, &["key"], &[]);
    if let Some(unknown) = group.unknown.first() {
        anyhow::bail!(
            "unknown setting {}: per-control-plane keys are {prefix}<participantId>.key",
            unknown.key
        );
    }
    Ok(group
        .members
        .into_iter()
        .filter_map(|(participant, mut properties)| {
            properties.remove("key").map(|key| (participant, key))
        })
        .collect())
}

/// The selector instances seeded by `edc.dpf.selector.<alias>.<property>` (the selector's own
/// settings `edc.dpf.selector.url`, `.strategy`, `.api-key` are not aliases). Properties
/// seeding does not interpret are free properties of the instance; a key with no property
/// (`edc.dpf.selector.<word>`) is warned about.
///
/// # Errors
/// An alias without `url`, or an invalid registration.
pub fn seed_registrations(config: &Config) -> anyhow::Result<Vec<DataPlaneRegistration>> {
    let prefix = selector_core::seed::SEED_PREFIX;
    let group = config.group(prefix, SEED_PROPERTIES, SELECTOR_SETTINGS);
    for unknown in group.unknown.iter().filter(|u| u.property.is_empty()) {
        tracing::warn!(
            key = %unknown.key,
            "unknown configuration key {}: neither a selector setting ({prefix}url, \
             {prefix}strategy, {prefix}api-key) nor {prefix}<alias>.<property>",
            unknown.key
        );
    }
    Ok(selector_core::seed::registrations_from_entries(
        &group.entries(),
    )?)
}

/// The configuration reference: the first column of its tables lists every key the launchers
/// read (a test of this crate, `documented_keys`, checks that each is read by the code).
const REFERENCE: &str = include_str!("../../../docs/configuration.md");

/// Variables of the `dpf.` namespace that are not launcher settings but may well be in a
/// launcher's environment: `dpfctl`'s (`DPF_API_KEY`, `DPF_API_KEY_FILE`, `DPF_CACERT`,
/// `DPF_DATAPLANE_URL`, `DPF_SELECTOR_URL`).
const FOREIGN_KEYS: &[&str] = &[
    "dpf.api.key",
    "dpf.api.key.file",
    "dpf.cacert",
    "dpf.dataplane.url",
    "dpf.selector.url",
];

/// The keys documented in the first column of the tables of `markdown` that start with
/// `namespace`, placeholders included (`dpf.dataset.<id>.type`).
fn documented_keys<'a>(markdown: &'a str, namespace: &str) -> Vec<&'a str> {
    let mut keys = Vec::new();
    for line in markdown.lines() {
        let Some(row) = line.trim().strip_prefix('|') else {
            continue;
        };
        let first = row.split('|').next().unwrap_or_default();
        for (i, part) in first.split('`').enumerate() {
            let part = part.trim();
            if i % 2 == 1 && part.starts_with(namespace) && !part.contains(' ') {
                keys.push(part);
            }
        }
    }
    keys
}

/// The `dpf.*` keys of `config` that no launcher reads: not in the configuration reference,
/// not in a group (those are checked by their readers), not `dpfctl`'s variables and not a
/// Kubernetes service link of a Service named `dpf` (`DPF_SERVICE_HOST`, `DPF_PORT_…`).
/// Compared in canonical form, as [`Config::get`] looks keys up.
pub fn unknown_settings(config: &Config) -> Vec<String> {
    let namespace = "dpf.";
    let mut exact = Vec::new();
    let mut prefixes = Vec::new();
    for key in documented_keys(REFERENCE, namespace) {
        match key.find('<') {
            Some(at) => prefixes.push(canonical_key(&key[..at])),
            None => exact.push(canonical_key(key)),
        }
    }
    exact.extend(FOREIGN_KEYS.iter().map(|k| canonical_key(k)));
    let canonical_namespace = canonical_key(namespace);
    config
        .keys()
        .filter(|key| {
            let canonical = canonical_key(key);
            canonical.starts_with(&canonical_namespace)
                && !exact.contains(&canonical)
                && !prefixes.iter().any(|p| canonical.starts_with(p.as_str()))
                && canonical != "DPF_PORT"
                && !canonical.starts_with("DPF_PORT_")
                && !canonical.starts_with("DPF_SERVICE_")
        })
        .map(str::to_owned)
        .collect()
}

/// Logs a warning for each of [`unknown_settings`] (the key, never its value): a misspelt
/// `dpf.transfer.fileroot` would otherwise leave the default in force without a word.
pub fn warn_unknown_settings(config: &Config) {
    for key in unknown_settings(config) {
        tracing::warn!(
            key,
            "unknown configuration key {key}: no dpf launcher reads it (misspelt? keys are \
             listed in docs/configuration.md); ignored"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dpf_config::Source;

    fn env(vars: &[(&str, &str)]) -> Config {
        let mut config = Config::new();
        config.merge_env(vars.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
        config
    }

    #[test]
    fn dataset_keys_from_the_environment_reach_the_declared_names() {
        let config = env(&[
            ("DPF_DATASET_DS1_TYPE", "HttpData"),
            ("DPF_DATASET_DS1_BASEURL", "http://a/"),
            ("DPF_DATASET_DS1_AUTH_TYPE", "raw"),
            ("DPF_DATASET_DS1_BASEURLL", "typo"),
        ]);
        let mut entries = dataset_entries(&config);
        entries.sort();
        let expected: Vec<(String, String)> = [
            ("ds1.authType", "raw"),
            ("ds1.baseUrl", "http://a/"),
            ("ds1.baseurll", "typo"),
            ("ds1.type", "HttpData"),
        ]
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
        assert_eq!(entries, expected);
    }

    #[test]
    fn control_planes_from_the_environment_get_their_authorization() {
        let config = env(&[
            ("DPF_CONTROLPLANE_CP1_ENDPOINT", "https://cp/"),
            (
                "DPF_CONTROLPLANE_CP1_AUTHORIZATION_TYPE",
                "oauth2_client_credentials",
            ),
            (
                "DPF_CONTROLPLANE_CP1_AUTHORIZATION_TOKEN_ENDPOINT",
                "https://t/",
            ),
            ("DPF_CONTROLPLANE_CP1_AUTHORIZATION_CLIENTID", "c"),
            ("DPF_CONTROLPLANE_CP1_AUTHORIZATION_CLIENT_SECRET", "s"),
            ("DPF_CONTROLPLANE_CP1_AUTHORIZATION_AUDIENCE", "aud"),
            ("DPF_CONTROLPLANE_CP2_ENDPOINT", "https://cp2/"),
        ]);
        let planes = control_planes(&config).unwrap();
        assert_eq!(planes.len(), 2);
        assert_eq!(planes[0].controlplane_id, "cp1");
        assert_eq!(planes[0].endpoint, "https://cp/");
        assert_eq!(
            planes[0].authorization,
            serde_json::json!({
                "type": "oauth2_client_credentials",
                "tokenEndpoint": "https://t/",
                "clientId": "c",
                "clientSecret": "s",
                "audience": "aud",
            })
        );
        assert_eq!(planes[1].authorization, serde_json::json!({"type": "none"}));
    }

    #[test]
    fn a_control_plane_without_endpoint_is_refused_by_name() {
        let config = env(&[("DPF_CONTROLPLANE_CP1_AUTHORIZATION_TYPE", "none")]);
        let error = control_planes(&config).unwrap_err().to_string();
        assert!(
            error.contains("dpf.controlplane.cp1.endpoint is required"),
            "{error}"
        );
    }

    #[test]
    fn control_plane_keys_keep_dotted_participants_and_refuse_other_keys() {
        let prefix = "dpf.api.auth.controlplane.";
        let mut config = Config::new();
        config.set(
            "dpf.api.auth.controlplane.did:web:example.com.key",
            "k1",
            Source::Flag,
        );
        config.merge_env([(
            "DPF_API_AUTH_CONTROLPLANE_BPN1_KEY".to_owned(),
            "k2".to_owned(),
        )]);
        assert_eq!(
            control_plane_keys(&config, prefix).unwrap(),
            vec![
                ("bpn1".to_owned(), "k2".to_owned()),
                ("did:web:example.com".to_owned(), "k1".to_owned()),
            ]
        );
        config.set(
            "dpf.api.auth.controlplane.bpn2.kye",
            "secret-k3",
            Source::Flag,
        );
        let error = control_plane_keys(&config, prefix).unwrap_err().to_string();
        assert!(
            error.contains("dpf.api.auth.controlplane.bpn2.kye"),
            "{error}"
        );
        assert!(!error.contains("secret-k3"), "{error}");
    }

    #[test]
    fn seeds_from_the_environment_skip_the_selector_settings() {
        let config = env(&[
            ("EDC_DPF_SELECTOR_URL", "http://selector/"),
            ("EDC_DPF_SELECTOR_STRATEGY", "random"),
            ("EDC_DPF_SELECTOR_API_KEY", "sel-key"),
            (
                "EDC_DPF_SELECTOR_POD_1_URL",
                "http://pod1:8080/api/v1/signaling",
            ),
            ("EDC_DPF_SELECTOR_POD_1_SOURCE_TYPES", "HttpData,File"),
            ("EDC_DPF_SELECTOR_POD_1_REGION", "eu"),
        ]);
        let seeds = seed_registrations(&config).unwrap();
        assert_eq!(seeds.len(), 1, "{seeds:?}");
        assert_eq!(seeds[0].dataplane_id.to_string(), "pod_1");
        assert_eq!(seeds[0].endpoint, "http://pod1:8080/api/v1/signaling");
        assert_eq!(seeds[0].allowed_source_types, vec!["HttpData", "File"]);
        assert_eq!(
            seeds[0].properties.get("region"),
            Some(&serde_json::json!("eu"))
        );
    }

    #[test]
    fn misspelt_settings_are_found_and_known_ones_are_not() {
        let mut config = env(&[
            ("DPF_TRANSFER_FILEROOT", "/x"),
            ("DPF_TRANSFER_FILE_ROOT", "/y"),
            ("DPF_API_KEY", "dpfctl-key"),
            ("DPF_SERVICE_HOST", "10.0.0.1"),
            ("DPF_PORT_8282_TCP_ADDR", "10.0.0.1"),
            ("DPF_DATASET_DS1_TYPE", "File"),
            ("DPF_API_AUTH_CONTROLPLANE_CP1_KEY", "k"),
            ("PATH", "/bin"),
        ]);
        config.set("dpf.store.url", "memory:", Source::Flag);
        config.set("dpf.cluster.baseline.min-live", "1", Source::File);
        config.set("dpf.checkpoint.byte", "1", Source::File);
        config.set("web.http.port", "0", Source::Flag);
        assert_eq!(
            unknown_settings(&config),
            vec!["dpf.checkpoint.byte", "dpf.transfer.fileroot"]
        );
    }

    #[test]
    fn the_reference_lists_the_settings_and_the_groups() {
        let keys = documented_keys(REFERENCE, "dpf.");
        for key in [
            "dpf.store.url",
            "dpf.transfer.file.root",
            "dpf.dataset.<id>.type",
            "dpf.controlplane.<id>.endpoint",
        ] {
            assert!(keys.contains(&key), "{key} not in {keys:?}");
        }
    }
}
