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
//! comes from the environment is shown in lower case with dots (`edc.dpf.selector.pod1.url`);
//! aliases in such keys should therefore be lower-case alphanumeric.

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
        let spelled = match (self.entries.get(&canonical), source) {
            (Some(existing), Source::Env) => existing.key.clone(),
            _ => key.trim().to_owned(),
        };
        self.entries.insert(
            canonical,
            Entry {
                key: spelled,
                value: value.to_owned(),
                source,
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

    /// Renders the effective configuration as `key=value  # source`, one per line, sorted.
    /// Values of keys that look secret (`password`, `secret`, `token`, `key` in the name) are
    /// masked. Only keys starting with one of `prefixes` are shown (all when empty), so the
    /// dump does not list the whole process environment.
    pub fn dump(&self, prefixes: &[&str]) -> String {
        let canonical_prefixes: Vec<String> = prefixes.iter().map(|p| canonical_key(p)).collect();
        let mut lines: Vec<String> = self
            .entries
            .iter()
            .filter(|(canonical, _)| {
                canonical_prefixes.is_empty()
                    || canonical_prefixes.iter().any(|p| canonical.starts_with(p))
            })
            .map(|(canonical, entry)| {
                let secret = ["PASSWORD", "SECRET", "TOKEN", "APIKEY", "API_KEY"]
                    .iter()
                    .any(|s| canonical.contains(s));
                let value = if secret { "****" } else { entry.value.as_str() };
                format!("{}={}  # {}", entry.key, value, entry.source)
            })
            .collect();
        lines.sort();
        lines.join("\n")
    }
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
        assert!(dump.contains("dpf.api.auth.token=****"));
        assert!(dump.contains("web.http.port=1  # default"));
        assert!(!dump.contains("/bin"));
    }
}
