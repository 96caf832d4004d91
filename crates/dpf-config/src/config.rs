//! [`Config`]: the merge of every layer, and reading values from it.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;
use std::str::FromStr;

use crate::keys::is_env_spelling;
use crate::{canonical_key, is_secret_key, redact_value, url_password, ConfigError, Source};

#[derive(Debug, Clone)]
pub(crate) struct Entry {
    pub(crate) key: String,
    pub(crate) value: String,
    pub(crate) source: Source,
    /// Whether `key` is spelled from an environment variable's name (lower case, every `_`
    /// turned into `.`), so that its `.` may have been `_` or `-`.
    pub(crate) env_spelling: bool,
}

/// Effective configuration: the merge of every layer.
#[derive(Debug, Clone, Default)]
pub struct Config {
    pub(crate) entries: BTreeMap<String, Entry>,
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

    /// The values that must never be shown, for masking them wherever they appear in a log
    /// line ([`mask_secrets`](crate::mask_secrets)): those of keys [`is_secret_key`] names secret, and the passwords
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
