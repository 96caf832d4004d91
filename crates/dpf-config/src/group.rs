//! [`Config::group`]: reading groups of keys `<prefix><id>.<property>`.

use std::collections::BTreeMap;
use std::fmt;

use crate::config::Entry;
use crate::{canonical_key, canonical_property, Config, Source};

impl Config {
    /// Reads the group of keys `<prefix><id>.<property>` whose properties are `properties`
    /// (their declared names, e.g. `baseUrl` or `authorization.tokenEndpoint`).
    ///
    /// A property is matched without regard to case, `-`, `_` and `.`
    /// ([`canonical_property`]) and returned under its declared name, so
    /// `DPF_DATASET_DS1_BASEURL`, `dpf.dataset.ds1.base-url` and `dpf.dataset.ds1.baseUrl` all
    /// give member `ds1` the property `baseUrl`. Where the id and the property are not
    /// separated unambiguously (an environment variable's `_` may be part of either), the
    /// property is the **longest** known property name that matches the key's tail:
    /// `DPF_DATASET_MY_DS_BASEURL` is member `my_ds` with `baseUrl`. An id spelled by an
    /// environment variable keeps `_` between its words and is lower case; when a key from
    /// another layer spells the same id (`dpf.dataset.my-ds.type` in a file), that spelling is
    /// used. Ids that no environment variable can express (upper case, `-`, `.`) are set with
    /// `-D` or a properties file.
    ///
    /// Keys under `prefix` equal to one of `reserved` (compared as properties are: settings
    /// that share the prefix, such as `edc.dpf.selector.strategy`) are skipped. Every other key
    /// that names no known property is listed in [`Group::unknown`], for the caller to warn
    /// about (or to accept as a free property). When two spellings of one property are set,
    /// the higher layer wins.
    pub fn group(&self, prefix: &str, properties: &[&str], reserved: &[&str]) -> Group {
        let canonical_prefix = canonical_key(prefix);
        let known: Vec<(String, &str)> = properties
            .iter()
            .map(|p| (canonical_property(p), *p))
            .collect();
        let reserved: Vec<String> = reserved.iter().map(|r| canonical_property(r)).collect();
        // (id, env-spelled id, declared property) → (source, value)
        let mut found: Vec<(String, bool, String, Source, String)> = Vec::new();
        let mut unknown: Vec<(&Entry, String)> = Vec::new();
        for (canonical, entry) in &self.entries {
            if !canonical.starts_with(&canonical_prefix) {
                continue;
            }
            let rest = entry.key.get(canonical_prefix.len()..).unwrap_or_default();
            if rest.is_empty() || reserved.contains(&canonical_property(rest)) {
                continue;
            }
            let segments: Vec<&str> = rest.split('.').collect();
            // The smallest id, i.e. the longest property, that is a known property.
            let matched = (1..segments.len()).find_map(|at| {
                let tail = canonical_property(&segments[at..].concat());
                known
                    .iter()
                    .find(|(canonical, _)| *canonical == tail)
                    .map(|(_, declared)| (at, *declared))
            });
            match matched {
                Some((at, declared)) => {
                    let separator = if entry.env_spelling { "_" } else { "." };
                    found.push((
                        segments[..at].join(separator),
                        entry.env_spelling,
                        declared.to_owned(),
                        entry.source,
                        entry.value.clone(),
                    ));
                }
                None => unknown.push((entry, rest.to_owned())),
            }
        }
        // An id spelled by the environment takes the spelling another layer gives it.
        let spelled: BTreeMap<String, String> = found
            .iter()
            .filter(|(_, env, ..)| !env)
            .map(|(id, ..)| (canonical_key(id), id.clone()))
            .collect();
        let mut members: BTreeMap<String, BTreeMap<String, (Source, String)>> = BTreeMap::new();
        for (id, env, property, source, value) in found {
            let id = if env {
                spelled.get(&canonical_key(&id)).cloned().unwrap_or(id)
            } else {
                id
            };
            let slot = members.entry(id).or_default().entry(property);
            match slot {
                std::collections::btree_map::Entry::Occupied(mut held) => {
                    if source >= held.get().0 {
                        held.insert((source, value));
                    }
                }
                std::collections::btree_map::Entry::Vacant(free) => {
                    free.insert((source, value));
                }
            }
        }
        // An unknown key belongs to the longest member id its start spells, else to its
        // first segment.
        let unknown = unknown
            .into_iter()
            .map(|(entry, rest)| {
                let segments: Vec<&str> = rest.split('.').collect();
                let at = (1..segments.len())
                    .rev()
                    .find(|&at| {
                        let id = canonical_key(&segments[..at].join("."));
                        members.keys().any(|m| canonical_key(m) == id)
                    })
                    .unwrap_or(1);
                let id_spelled = segments[..at].join(".");
                let id = members
                    .keys()
                    .find(|m| canonical_key(m) == canonical_key(&id_spelled))
                    .cloned()
                    .unwrap_or(id_spelled);
                UnknownKey {
                    key: entry.key.clone(),
                    id,
                    property: segments.get(at..).unwrap_or_default().join("."),
                    value: entry.value.clone(),
                }
            })
            .collect();
        Group {
            members: members
                .into_iter()
                .map(|(id, props)| (id, props.into_iter().map(|(p, (_, v))| (p, v)).collect()))
                .collect(),
            unknown,
        }
    }
}

/// The keys of one group `<prefix><id>.<property>`, read by [`Config::group`]. Its `Debug`
/// shows ids and property names, never values.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Group {
    /// Member id → declared property name → value.
    pub members: BTreeMap<String, BTreeMap<String, String>>,
    /// Keys under the prefix that name no known property, in key order.
    pub unknown: Vec<UnknownKey>,
}

impl Group {
    /// Every member's properties as `(<id>.<property>, value)` pairs, the declared property
    /// names, followed by the unknown keys as `(<id>.<property>, value)` as spelled: the form
    /// [`Config::with_prefix`] gives, for readers that take pairs.
    pub fn entries(&self) -> Vec<(String, String)> {
        let known = self.members.iter().flat_map(|(id, properties)| {
            properties
                .iter()
                .map(move |(property, value)| (format!("{id}.{property}"), value.clone()))
        });
        let unknown = self
            .unknown
            .iter()
            .filter(|u| !u.property.is_empty())
            .map(|u| (format!("{}.{}", u.id, u.property), u.value.clone()));
        known.chain(unknown).collect()
    }

    /// The full names of the unknown keys (never their values), for a warning.
    pub fn unknown_keys(&self) -> Vec<&str> {
        self.unknown.iter().map(|u| u.key.as_str()).collect()
    }
}

impl fmt::Debug for Group {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let members: BTreeMap<&str, Vec<&str>> = self
            .members
            .iter()
            .map(|(id, properties)| (id.as_str(), properties.keys().map(String::as_str).collect()))
            .collect();
        f.debug_struct("Group")
            .field("members", &members)
            .field("unknown", &self.unknown)
            .finish()
    }
}

/// A key under a group's prefix that names no known property.
#[derive(Clone, PartialEq, Eq)]
pub struct UnknownKey {
    /// The whole key as spelled (`dpf.dataset.ds1.baseurll`).
    pub key: String,
    /// The member it most likely belongs to (an id the group has, else the first segment).
    pub id: String,
    /// The rest of the key after the id, as spelled (may be empty).
    pub property: String,
    /// Its value (may be a secret: never log it).
    pub value: String,
}

impl fmt::Debug for UnknownKey {
    // The value is left out: it may be a secret.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UnknownKey")
            .field("key", &self.key)
            .field("id", &self.id)
            .field("property", &self.property)
            .finish_non_exhaustive()
    }
}
