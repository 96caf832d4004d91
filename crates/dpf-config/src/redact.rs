//! Redaction of secret configuration values: masking secret keys and URL passwords.

#[cfg(doc)]
use crate::Config;

/// What a masked value is shown as.
pub const MASK: &str = "***";

/// Parts of a key name that mark its value as secret (compared ignoring case).
pub const SECRET_KEY_PARTS: [&str; 7] = [
    "key",
    "secret",
    "password",
    "token",
    "credential",
    "auth",
    "signature",
];

/// Names that contain a secret part but name no secret: the object keys of object-storage
/// addresses (`keyName`, `keyPrefix` of EDC's `AmazonS3`), compared ignoring case with the
/// key's last segment (after the last `.`, `/`, `:` or `#`).
pub const NOT_SECRET_NAMES: [&str; 2] = ["keyname", "keyprefix"];

/// Whether the value of `key` is a secret: its name contains `key`, `secret`, `password`,
/// `token`, `credential`, `auth` or `signature`, ignoring case (`dpf.api.auth.key`,
/// `DB_PASSWORD`, `edc.dpf.selector.api-key`, `…authorization.type`, `accessKeyId`,
/// `secretAccessKey`, `accountKey`, `sasToken`, `sharedAccessSignature`) — except the object
/// locators of [`NOT_SECRET_NAMES`] (`keyName`, `keyPrefix`, also as
/// `dpf.dataset.<id>.keyName` or `https://w3id.org/edc/v0.0.1/ns/keyName`).
pub fn is_secret_key(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    let last = key.rsplit(['.', '/', ':', '#']).next().unwrap_or(&key);
    if NOT_SECRET_NAMES.contains(&last) {
        return false;
    }
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
