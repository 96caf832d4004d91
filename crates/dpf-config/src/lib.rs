//! Layered, EDC-style configuration shared by every dpf launcher.
//!
//! Keys are flat and dotted (`web.http.port`, `edc.dpf.selector.pod1.url`). Values come from,
//! lowest precedence first: built-in defaults, a Java `.properties` file, environment variables
//! and command-line flags. An environment variable names a key by EDC's rule: upper-case, with
//! `.` and `-` turned into `_` (`WEB_HTTP_PORT` ↔ `web.http.port`). The rule is applied to every
//! key, so each layer is indexed by that canonical form and any key can be overridden from the
//! environment — including keys nobody declared in advance, such as seeding aliases.
//!
//! Because the mapping loses information (`_` could have been `.` or `-`), a key that only
//! comes from the environment is shown in lower case with dots (`edc.dpf.selector.pod1.url`).
//! Groups of keys `<prefix><id>.<property>` (datasets, control planes, seeded selector
//! instances) are therefore read with [`Config::group`], which knows the group's property
//! names and matches them without regard to case, `-`, `_` and `.` (`BASEURL`, `base-url` and
//! `base_url` all reach `baseUrl`), and reports the keys that name no known property.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// Errors raised while loading or reading configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The properties file could not be read.
    #[error("cannot read configuration file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A line of a properties file or a flag is not `key=value`.
    #[error("{origin}: expected key=value, got '{line}'")]
    Syntax {
        /// Where the line came from.
        origin: String,
        /// The offending text.
        line: String,
    },
    /// A value does not parse as the type the key needs.
    #[error("invalid value '{value}' for {key}: {reason}")]
    Invalid {
        /// The key.
        key: String,
        /// The value.
        value: String,
        /// Why it was refused.
        reason: String,
    },
    /// A required key has no value.
    #[error("missing required configuration key {0}")]
    Missing(String),
}

/// Where a value came from (shown by `--dump-config`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Source {
    /// Built-in default.
    Default,
    /// The `.properties` file.
    File,
    /// An environment variable.
    Env,
    /// A command-line flag.
    Flag,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Default => "default",
            Self::File => "file",
            Self::Env => "env",
            Self::Flag => "flag",
        })
    }
}

#[derive(Debug, Clone)]
struct Entry {
    key: String,
    value: String,
    source: Source,
    /// Whether `key` is spelled from an environment variable's name (lower case, every `_`
    /// turned into `.`), so that its `.` may have been `_` or `-`.
    env_spelling: bool,
}

/// The canonical form of a key: upper-case with `.` and `-` replaced by `_`.
pub fn canonical_key(key: &str) -> String {
    key.trim()
        .chars()
        .map(|c| match c {
            '.' | '-' => '_',
            c => c.to_ascii_uppercase(),
        })
        .collect()
}

/// Whether `key` is spelled as [`Config::merge_env`] spells a variable's name: lower case,
/// with dots and no `_` or `-`.
fn is_env_spelling(key: &str) -> bool {
    !key.chars()
        .any(|c| c.is_ascii_uppercase() || c == '_' || c == '-')
}

/// The form in which property names of a group are compared ([`Config::group`]): lower case,
/// without `-`, `_` and `.` (`baseUrl`, `BASEURL`, `base-url`, `base_url` → `baseurl`;
/// `authorization.tokenEndpoint` → `authorizationtokenendpoint`).
pub fn canonical_property(name: &str) -> String {
    name.trim()
        .chars()
        .filter(|c| !matches!(c, '-' | '_' | '.'))
        .map(|c| c.to_ascii_lowercase())
        .collect()
}

/// The environment variable that sets `key` (same as [`canonical_key`]).
pub fn env_var_name(key: &str) -> String {
    canonical_key(key)
}

/// Effective configuration: the merge of every layer.
#[derive(Debug, Clone, Default)]
pub struct Config {
    entries: BTreeMap<String, Entry>,
}

impl Config {
    /// An empty configuration.
    pub fn new() -> Self {
        Self::default()
    }

    /// Builds the usual stack: `defaults`, then `file` (if any), then the process environment,
    /// then `flags` (`key=value` strings).
    ///
    /// # Errors
    /// Unreadable file, malformed line or flag.
    pub fn load(
        defaults: &[(&str, &str)],
        file: Option<&Path>,
        flags: &[String],
    ) -> Result<Self, ConfigError> {
        let mut config = Self::new();
        for (key, value) in defaults {
            config.set(key, value, Source::Default);
        }
        if let Some(path) = file {
            let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
                path: path.to_owned(),
                source,
            })?;
            config.merge_properties(&text, &path.display().to_string())?;
        }
        config.merge_env(std::env::vars());
        for flag in flags {
            let (key, value) = flag.split_once('=').ok_or_else(|| ConfigError::Syntax {
                origin: "command line".into(),
                line: flag.clone(),
            })?;
            config.set(key.trim(), value.trim(), Source::Flag);
        }
        Ok(config)
    }

    /// Sets one value, overriding any lower or equal layer. The key's spelling is kept unless
    /// it came from the environment and a spelled-out key already exists.
    pub fn set(&mut self, key: &str, value: &str, source: Source) {
        let canonical = canonical_key(key);
        if canonical.is_empty() {
            return;
        }
        let (spelled, env_spelling) = match (self.entries.get(&canonical), source) {
            (Some(existing), Source::Env) => (existing.key.clone(), existing.env_spelling),
            (None, Source::Env) => (key.trim().to_owned(), is_env_spelling(key.trim())),
            _ => (key.trim().to_owned(), false),
        };
        self.entries.insert(
            canonical,
            Entry {
                key: spelled,
                value: value.to_owned(),
                source,
                env_spelling,
            },
        );
    }

    /// Merges the text of a Java `.properties` file: `key=value` or `key: value` lines, `#`
    /// and `!` comments, blank lines, and lines continued with a trailing `\`.
    ///
    /// # Errors
    /// [`ConfigError::Syntax`] for a line without a separator.
    pub fn merge_properties(&mut self, text: &str, origin: &str) -> Result<(), ConfigError> {
        let mut pending = String::new();
        for raw in text.lines() {
            let line = raw.trim_start();
            if pending.is_empty()
                && (line.is_empty() || line.starts_with('#') || line.starts_with('!'))
            {
                continue;
            }
            if let Some(stripped) = line.strip_suffix('\\') {
                pending.push_str(stripped);
                continue;
            }
            pending.push_str(line);
            let logical = std::mem::take(&mut pending);
            let split = logical
                .find(['=', ':'])
                .ok_or_else(|| ConfigError::Syntax {
                    origin: origin.to_owned(),
                    line: logical.clone(),
                })?;
            let (key, value) = (&logical[..split], &logical[split + 1..]);
            self.set(key.trim(), value.trim(), Source::File);
        }
        Ok(())
    }

    /// Merges environment variables. Every variable is taken: a variable that names no key in
    /// use is harmless, and this is what lets `EDC_DPF_SELECTOR_POD1_URL` seed an instance.
    pub fn merge_env<I: IntoIterator<Item = (String, String)>>(&mut self, vars: I) {
        for (name, value) in vars {
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                continue;
            }
            let key = name.to_ascii_lowercase().replace('_', ".");
            self.set(&key, &value, Source::Env);
        }
    }

    /// The value of `key`, if set in any layer.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.entries
            .get(&canonical_key(key))
            .map(|e| e.value.as_str())
            .filter(|v| !v.is_empty())
    }

    /// The value of `key` as set, including an explicitly empty value (`-D key=`), which
    /// [`Config::get`] treats as unset: for keys where empty means "none" rather than "the
    /// default" (e.g. an empty deny-list).
    pub fn get_raw(&self, key: &str) -> Option<&str> {
        self.entries
            .get(&canonical_key(key))
            .map(|e| e.value.as_str())
    }

    /// The value of `key` or `default`.
    pub fn get_or<'a>(&'a self, key: &str, default: &'a str) -> &'a str {
        self.get(key).unwrap_or(default)
    }

    /// The value of `key` parsed as `T`, if set.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] when it does not parse.
    pub fn parse<T>(&self, key: &str) -> Result<Option<T>, ConfigError>
    where
        T: FromStr,
        T::Err: fmt::Display,
    {
        match self.get(key) {
            None => Ok(None),
            Some(value) => value
                .parse::<T>()
                .map(Some)
                .map_err(|e| ConfigError::Invalid {
                    key: key.to_owned(),
                    value: value.to_owned(),
                    reason: e.to_string(),
                }),
        }
    }

    /// The value of `key` parsed as `T`, or `default` when unset.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] when it does not parse.
    pub fn parse_or<T>(&self, key: &str, default: T) -> Result<T, ConfigError>
    where
        T: FromStr,
        T::Err: fmt::Display,
    {
        Ok(self.parse(key)?.unwrap_or(default))
    }

    /// Every key set in any layer, as spelled (see [`Config::set`]), in canonical order: for
    /// checking keys against the ones a program knows. Values are left out on purpose.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.entries.values().map(|entry| entry.key.as_str())
    }

    /// Every `(key, value)` whose key starts with `prefix` (compared in canonical form), with
    /// the prefix removed from the returned key. Keys keep their spelling.
    pub fn with_prefix(&self, prefix: &str) -> Vec<(String, String)> {
        let canonical_prefix = canonical_key(prefix);
        self.entries
            .iter()
            .filter(|(canonical, _)| canonical.starts_with(&canonical_prefix))
            .map(|(_, entry)| {
                let rest = entry.key.get(prefix.len()..).unwrap_or_default();
                (rest.to_owned(), entry.value.clone())
            })
            .collect()
    }

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

    /// The values that must never be shown, for masking them wherever they appear in a log
    /// line ([`mask_secrets`]): those of keys [`is_secret_key`] names secret, and the passwords
    /// inside URL values (see [`url_password`]). Values that cannot be secrets and would mask
    /// ordinary words are left out: shorter than 4 characters, numbers, `true`, `false`, `none`
    /// (e.g. `dpf.api.auth.disabled=true`, `….authorization.type=none`).
    pub fn secret_values(&self) -> Vec<String> {
        let mut secrets: Vec<String> = self
            .entries
            .values()
            .flat_map(|entry| {
                let whole = is_secret_key(&entry.key).then(|| entry.value.clone());
                whole.into_iter().chain(url_password(&entry.value))
            })
            .filter(|value| {
                let v = value.trim().to_ascii_lowercase();
                v.chars().count() >= 4
                    && !matches!(v.as_str(), "true" | "false" | "none")
                    && v.parse::<f64>().is_err()
            })
            .collect();
        // Longest first, so that masking a secret never leaves the tail of a longer one.
        secrets.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
        secrets.dedup();
        secrets
    }

    /// Renders the effective configuration as `key=value  # source`, one per line, sorted.
    /// Values are shown through [`redact_value`]: those of secret-looking keys are masked, and
    /// passwords in URLs. Only keys starting with one of `prefixes` are shown (all when empty),
    /// so the dump does not list the whole process environment.
    pub fn dump(&self, prefixes: &[&str]) -> String {
        let canonical_prefixes: Vec<String> = prefixes.iter().map(|p| canonical_key(p)).collect();
        let mut lines: Vec<String> = self
            .entries
            .iter()
            .filter(|(canonical, _)| {
                canonical_prefixes.is_empty()
                    || canonical_prefixes.iter().any(|p| canonical.starts_with(p))
            })
            .map(|(_, entry)| {
                format!(
                    "{}={}  # {}",
                    entry.key,
                    redact_value(&entry.key, &entry.value),
                    entry.source
                )
            })
            .collect();
        lines.sort();
        lines.join("\n")
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

/// What a masked value is shown as.
pub const MASK: &str = "***";

/// Parts of a key name that mark its value as secret (compared ignoring case).
pub const SECRET_KEY_PARTS: [&str; 6] =
    ["key", "secret", "password", "token", "credential", "auth"];

/// Whether the value of `key` is a secret: its name contains `key`, `secret`, `password`,
/// `token`, `credential` or `auth`, ignoring case (`dpf.api.auth.key`, `DB_PASSWORD`,
/// `edc.dpf.selector.api-key`, `…authorization.type`).
pub fn is_secret_key(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    SECRET_KEY_PARTS.iter().any(|part| key.contains(part))
}

/// The password in the userinfo of a URL value (`scheme://user:password@host…`), if any.
pub fn url_password(value: &str) -> Option<String> {
    let (start, end) = url_password_span(value)?;
    Some(value[start..end].to_owned())
}

/// Byte range of the password in `scheme://user:password@host…`, when there is a non-empty one.
fn url_password_span(value: &str) -> Option<(usize, usize)> {
    let scheme_end = value.find("://")?;
    let scheme = &value[..scheme_end];
    if scheme.is_empty()
        || !scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
    {
        return None;
    }
    let authority_start = scheme_end + 3;
    let rest = &value[authority_start..];
    let authority_len = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..authority_len];
    // The last `@` ends the userinfo (a password may itself contain `@`).
    let at = authority.rfind('@')?;
    let colon = authority[..at].find(':')?;
    (colon + 1 < at).then_some((authority_start + colon + 1, authority_start + at))
}

/// `value` with the password of a URL masked: `postgres://u:pw@h/db` → `postgres://u:***@h/db`.
/// Anything else is returned unchanged.
pub fn redact_url(value: &str) -> String {
    match url_password_span(value) {
        Some((start, end)) => format!("{}{MASK}{}", &value[..start], &value[end..]),
        None => value.to_owned(),
    }
}

/// The one redaction rule of dpf for configuration values, used by `--dump-config`, logs,
/// `migrate` and error messages: the whole value of a secret key ([`is_secret_key`]) is masked
/// (an empty value stays empty), and the password of a URL value is masked in any key.
pub fn redact_value(key: &str, value: &str) -> String {
    if is_secret_key(key) {
        if value.is_empty() {
            String::new()
        } else {
            MASK.to_owned()
        }
    } else {
        redact_url(value)
    }
}

/// `text` with the password of every URL in it masked (`… postgres://u:***@h/db …`).
pub fn redact_urls_in_text(text: &str) -> String {
    if !text.contains("://") {
        return text.to_owned();
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(found) = rest.find("://") {
        // The URL starts after the last character that cannot belong to a scheme.
        let start = rest[..found]
            .rfind(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.')))
            .map_or(0, |i| i + 1);
        let end = rest[found..]
            .find(|c: char| c.is_whitespace() || matches!(c, '"' | '\'' | '<' | '>' | ','))
            .map_or(rest.len(), |i| found + i);
        out.push_str(&rest[..start]);
        out.push_str(&redact_url(&rest[start..end]));
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

/// `text` with the password of every URL in it masked ([`redact_urls_in_text`]) and every
/// occurrence of each of `secrets` replaced by [`MASK`]: for log lines and messages that may
/// quote configuration values (see [`Config::secret_values`]).
pub fn mask_secrets(text: &str, secrets: &[String]) -> String {
    let mut masked = redact_urls_in_text(text);
    for secret in secrets.iter().filter(|s| !s.is_empty()) {
        if masked.contains(secret.as_str()) {
            masked = masked.replace(secret.as_str(), MASK);
        }
    }
    masked
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_overrides_file_for_the_same_key() {
        let mut config = Config::new();
        config.set("web.http.port", "8181", Source::Default);
        config
            .merge_properties("web.http.port = 9000\n# comment\n", "test")
            .unwrap();
        assert_eq!(config.get("web.http.port"), Some("9000"));
        config.merge_env([("WEB_HTTP_PORT".to_owned(), "9100".to_owned())]);
        assert_eq!(config.get("web.http.port"), Some("9100"));
        config.set("web.http.port", "9200", Source::Flag);
        assert_eq!(config.parse::<u16>("web.http.port").unwrap(), Some(9200));
    }

    #[test]
    fn dashes_and_dots_map_to_underscores() {
        let mut config = Config::new();
        config.merge_env([(
            "EDC_DATAPLANE_STATE_MACHINE_FLOW_LEASE_TIME".to_owned(),
            "500".to_owned(),
        )]);
        assert_eq!(
            config.get("edc.dataplane.state-machine.flow.lease.time"),
            Some("500")
        );
        assert_eq!(
            env_var_name("edc.dataplane.state-machine.flow.lease.time"),
            "EDC_DATAPLANE_STATE_MACHINE_FLOW_LEASE_TIME"
        );
    }

    #[test]
    fn prefix_listing_keeps_file_spelling_and_sees_env_keys() {
        let mut config = Config::new();
        config
            .merge_properties(
                "edc.dpf.selector.pod1.url=http://a\nedc.dpf.selector.pod1.someOtherProperty=x\n",
                "test",
            )
            .unwrap();
        config.merge_env([
            (
                "EDC_DPF_SELECTOR_POD2_URL".to_owned(),
                "http://b".to_owned(),
            ),
            (
                "EDC_DPF_SELECTOR_POD1_URL".to_owned(),
                "http://c".to_owned(),
            ),
        ]);
        let mut entries = config.with_prefix("edc.dpf.selector.");
        entries.sort();
        assert_eq!(
            entries,
            vec![
                ("pod1.someOtherProperty".to_owned(), "x".to_owned()),
                ("pod1.url".to_owned(), "http://c".to_owned()),
                ("pod2.url".to_owned(), "http://b".to_owned()),
            ]
        );
    }

    #[test]
    fn continuation_lines_and_colon_separator() {
        let mut config = Config::new();
        config
            .merge_properties("a.b: one,\\\n   two\n! bang comment\n", "test")
            .unwrap();
        assert_eq!(config.get("a.b"), Some("one,two"));
    }

    #[test]
    fn malformed_line_and_bad_value_are_errors() {
        let mut config = Config::new();
        assert!(matches!(
            config.merge_properties("no separator here", "f.properties"),
            Err(ConfigError::Syntax { .. })
        ));
        config.set("web.http.port", "eighty", Source::Flag);
        let error = config.parse::<u16>("web.http.port").unwrap_err();
        assert!(error.to_string().contains("web.http.port"), "{error}");
    }

    #[test]
    fn dump_masks_secrets_and_filters_by_prefix() {
        let mut config = Config::new();
        config.set("dpf.api.auth.token", "hunter2", Source::File);
        config.set("web.http.port", "1", Source::Default);
        config.set("PATH", "/bin", Source::Env);
        let dump = config.dump(&["dpf.", "web."]);
        assert!(dump.contains("dpf.api.auth.token=***"));
        assert!(!dump.contains("hunter2"));
        assert!(dump.contains("web.http.port=1  # default"));
        assert!(!dump.contains("/bin"));
    }

    #[test]
    fn an_explicitly_empty_value_is_seen_by_get_raw_only() {
        let mut config = Config::new();
        config.set(
            "dpf.transfer.denied-networks",
            "10.0.0.0/8",
            Source::Default,
        );
        config.set("dpf.transfer.denied-networks", "", Source::Flag);
        assert_eq!(config.get("dpf.transfer.denied-networks"), None);
        assert_eq!(config.get_raw("dpf.transfer.denied-networks"), Some(""));
        assert_eq!(config.get_raw("unset.key"), None);
    }

    #[test]
    fn secret_key_names_are_recognised_ignoring_case() {
        for key in [
            "dpf.api.auth.key",
            "edc.dpf.selector.api-key",
            "DB_PASSWORD",
            "x.ClientSecret",
            "my.Token",
            "aws.credentials",
            "edc.dpf.selector.pod1.authorization.type",
        ] {
            assert!(is_secret_key(key), "{key}");
        }
        for key in ["web.http.port", "dpf.store.url", "dpf.log.level"] {
            assert!(!is_secret_key(key), "{key}");
        }
    }

    #[test]
    fn url_passwords_are_masked_and_nothing_else() {
        assert_eq!(redact_url("postgres://u:pw@h/db"), "postgres://u:***@h/db");
        assert_eq!(
            redact_url("postgres://u:p@ss:w@h:5432/db?sslmode=require"),
            "postgres://u:***@h:5432/db?sslmode=require"
        );
        assert_eq!(redact_url("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(redact_url("http://h/a@b:c"), "http://h/a@b:c");
        assert_eq!(
            redact_url("sqlite:./dpf-data/dpf.db"),
            "sqlite:./dpf-data/dpf.db"
        );
        assert_eq!(url_password("https://a:s3cret@x"), Some("s3cret".into()));
        assert_eq!(
            redact_value("dpf.store.url", "postgres://u:pw@h/db"),
            "postgres://u:***@h/db"
        );
        assert_eq!(redact_value("dpf.api.auth.key", "k"), MASK);
    }

    #[test]
    fn dump_masks_keys_and_url_passwords() {
        let mut config = Config::new();
        config.set("dpf.api.auth.key", "admin-key-123", Source::Flag);
        config.set(
            "dpf.store.url",
            "postgres://dpf:pg-pass-456@db/dpf",
            Source::Flag,
        );
        config.set("edc.dpf.selector.api-key", "sel-key-789", Source::Env);
        config.set(
            "dpf.dataset.a.baseUrl",
            "https://u:ds-pass@x/y",
            Source::File,
        );
        let dump = config.dump(&["dpf.", "edc."]);
        for secret in ["admin-key-123", "pg-pass-456", "sel-key-789", "ds-pass"] {
            assert!(!dump.contains(secret), "{secret} in {dump}");
        }
        assert!(
            dump.contains("dpf.store.url=postgres://dpf:***@db/dpf  # flag"),
            "{dump}"
        );
        assert!(dump.contains("dpf.api.auth.key=***"), "{dump}");
        let secrets = config.secret_values();
        let line = "starting with key admin-key-123 on postgres://dpf:pg-pass-456@db/dpf";
        let masked = mask_secrets(line, &secrets);
        assert!(
            !masked.contains("admin-key-123") && !masked.contains("pg-pass-456"),
            "{masked}"
        );
        assert!(masked.contains("postgres://dpf:***@db/dpf"), "{masked}");
        config.set("dpf.api.auth.disabled", "true", Source::Flag);
        assert!(!config.secret_values().contains(&"true".to_owned()));
        assert_eq!(
            redact_urls_in_text("error=\"x\" url=postgres://a:b@h/d, then https://u:v@w ok"),
            "error=\"x\" url=postgres://a:***@h/d, then https://u:***@w ok"
        );
    }

    const DATASET: [&str; 5] = ["type", "baseUrl", "path", "authType", "contentType"];

    fn props(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn group_properties_match_ignoring_case_and_separators() {
        let mut config = Config::new();
        config.merge_env([
            ("DPF_DATASET_DS1_TYPE".to_owned(), "HttpData".to_owned()),
            ("DPF_DATASET_DS1_BASEURL".to_owned(), "http://a/".to_owned()),
        ]);
        config.set("dpf.dataset.ds2.base-url", "http://b/", Source::Flag);
        config.set("dpf.dataset.ds3.base_url", "http://c/", Source::File);
        config.set("dpf.dataset.ds4.BaseURL", "http://d/", Source::File);
        config.set("dpf.dataset.ds4.Content-Type", "text/plain", Source::File);
        let group = config.group("dpf.dataset.", &DATASET, &[]);
        assert_eq!(
            group.members["ds1"],
            props(&[("type", "HttpData"), ("baseUrl", "http://a/")])
        );
        assert_eq!(group.members["ds2"], props(&[("baseUrl", "http://b/")]));
        assert_eq!(group.members["ds3"], props(&[("baseUrl", "http://c/")]));
        assert_eq!(
            group.members["ds4"],
            props(&[("baseUrl", "http://d/"), ("contentType", "text/plain")])
        );
        assert!(group.unknown.is_empty(), "{group:?}");
    }

    #[test]
    fn an_env_id_with_underscores_takes_the_longest_known_property() {
        let mut config = Config::new();
        config.merge_env([
            (
                "DPF_DATASET_MY_DS_BASEURL".to_owned(),
                "http://a/".to_owned(),
            ),
            ("DPF_DATASET_MY_DS_AUTH_TYPE".to_owned(), "raw".to_owned()),
            (
                "DPF_DATASET_X_CONTENT_TYPE".to_owned(),
                "text/csv".to_owned(),
            ),
        ]);
        let group = config.group("dpf.dataset.", &DATASET, &[]);
        assert_eq!(
            group.members["my_ds"],
            props(&[("baseUrl", "http://a/"), ("authType", "raw")])
        );
        // `contentType` is longer than `type`: the id is `x`, not `x_content`.
        assert_eq!(group.members["x"], props(&[("contentType", "text/csv")]));
        assert_eq!(group.members.len(), 2, "{group:?}");
    }

    #[test]
    fn an_env_id_takes_the_spelling_of_another_layer() {
        let mut config = Config::new();
        config
            .merge_properties("dpf.dataset.my-ds.type=HttpData\n", "test")
            .unwrap();
        config.merge_env([(
            "DPF_DATASET_MY_DS_BASEURL".to_owned(),
            "http://a/".to_owned(),
        )]);
        let group = config.group("dpf.dataset.", &DATASET, &[]);
        assert_eq!(
            group.members["my-ds"],
            props(&[("type", "HttpData"), ("baseUrl", "http://a/")])
        );
        assert_eq!(group.members.len(), 1, "{group:?}");
    }

    #[test]
    fn the_higher_layer_wins_between_two_spellings_of_one_property() {
        let mut config = Config::new();
        config.set("dpf.dataset.a.baseUrl", "http://file/", Source::File);
        config.set("dpf.dataset.a.base-url", "http://flag/", Source::Flag);
        config.set("dpf.dataset.b.base-url", "http://default/", Source::Default);
        config.set("dpf.dataset.b.baseUrl", "http://file/", Source::File);
        let group = config.group("dpf.dataset.", &DATASET, &[]);
        assert_eq!(group.members["a"]["baseUrl"], "http://flag/");
        assert_eq!(group.members["b"]["baseUrl"], "http://file/");
    }

    #[test]
    fn nested_properties_and_unknown_keys_are_reported_without_values() {
        let mut config = Config::new();
        config.merge_env([
            (
                "DPF_CONTROLPLANE_CP1_ENDPOINT".to_owned(),
                "http://cp/".to_owned(),
            ),
            (
                "DPF_CONTROLPLANE_CP1_AUTHORIZATION_TOKEN_ENDPOINT".to_owned(),
                "http://t/".to_owned(),
            ),
            (
                "DPF_CONTROLPLANE_CP1_AUTHORIZATION_CLIENTSECRET".to_owned(),
                "s3cr3t-value".to_owned(),
            ),
            ("DPF_CONTROLPLANE_CP1_ENDPOINTT".to_owned(), "x".to_owned()),
        ]);
        config.set("dpf.controlplane.cp2", "y", Source::File);
        let group = config.group(
            "dpf.controlplane.",
            &[
                "endpoint",
                "authorization.tokenEndpoint",
                "authorization.clientSecret",
            ],
            &[],
        );
        assert_eq!(
            group.members["cp1"],
            props(&[
                ("endpoint", "http://cp/"),
                ("authorization.tokenEndpoint", "http://t/"),
                ("authorization.clientSecret", "s3cr3t-value"),
            ])
        );
        assert_eq!(
            group.unknown_keys(),
            vec!["dpf.controlplane.cp1.endpointt", "dpf.controlplane.cp2"]
        );
        assert_eq!(group.unknown[0].id, "cp1");
        assert_eq!(group.unknown[0].property, "endpointt");
        assert!(!format!("{group:?}").contains("s3cr3t"), "{group:?}");
    }

    #[test]
    fn reserved_keys_are_not_members_and_entries_keep_free_properties() {
        let mut config = Config::new();
        config.set("edc.dpf.selector.strategy", "random", Source::Default);
        config.merge_env([
            ("EDC_DPF_SELECTOR_API_KEY".to_owned(), "k".to_owned()),
            (
                "EDC_DPF_SELECTOR_MY_POD_URL".to_owned(),
                "http://p/".to_owned(),
            ),
            ("EDC_DPF_SELECTOR_MY_POD_REGION".to_owned(), "eu".to_owned()),
        ]);
        let group = config.group(
            "edc.dpf.selector.",
            &["url", "labels"],
            &["strategy", "api-key", "url"],
        );
        assert_eq!(group.members.len(), 1, "{group:?}");
        assert_eq!(group.members["my_pod"], props(&[("url", "http://p/")]));
        assert_eq!(group.unknown_keys(), vec!["edc.dpf.selector.my.pod.region"]);
        assert_eq!(
            group.entries(),
            vec![
                ("my_pod.url".to_owned(), "http://p/".to_owned()),
                ("my_pod.region".to_owned(), "eu".to_owned()),
            ]
        );
    }
}
