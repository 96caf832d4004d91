//! The canonical forms of keys and property names.

#[cfg(doc)]
use crate::Config;

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
pub(crate) fn is_env_spelling(key: &str) -> bool {
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
