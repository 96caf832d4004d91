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

mod config;
mod group;
mod keys;
mod redact;

pub use config::Config;
pub use group::{Group, UnknownKey};
pub use keys::{canonical_key, canonical_property, env_var_name};
pub use redact::{
    is_secret_key, mask_secrets, redact_url, redact_urls_in_text, redact_value, url_password, MASK,
    SECRET_KEY_PARTS,
};

use std::fmt;
use std::path::PathBuf;

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

#[cfg(test)]
mod tests;
