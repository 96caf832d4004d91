//! object_store errors as transfer errors: what retrying cannot fix is `Rejected`.

use dataplane_spi::TransferError;

/// Translates `error` of `what` on `shown` (an address without credentials).
pub(crate) fn translate(what: &str, shown: &str, error: &object_store::Error) -> TransferError {
    use object_store::Error as E;
    let message = format!("{what} {shown}: {}", full(error));
    match error {
        E::NotFound { .. } => TransferError::Rejected(format!(
            "{what} {shown}: not found (a missing bucket, container or object)"
        )),
        E::PermissionDenied { .. } | E::Unauthenticated { .. } => TransferError::Rejected(format!(
            "{what} {shown}: the store refused the credentials ({})",
            full(error)
        )),
        E::InvalidPath { .. }
        | E::NotSupported { .. }
        | E::AlreadyExists { .. }
        | E::Precondition { .. }
        | E::NotImplemented { .. }
        | E::UnknownConfigurationKey { .. } => TransferError::Rejected(message),
        _ if permanent(&message) => TransferError::Rejected(message),
        _ => TransferError::Transient(message),
    }
}

/// The error and its sources, joined.
fn full(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let next = cause.to_string();
        if !text.contains(&next) {
            text.push_str(": ");
            text.push_str(&next);
        }
        source = cause.source();
    }
    text
}

/// A 4xx answer or a refusal of the address policy: retrying will not help.
fn permanent(message: &str) -> bool {
    let lower = message.to_ascii_lowercase();
    lower.contains("refused by the address policy")
        || lower.contains("denied network")
        || lower.contains("allow-list")
        || lower.contains("nosuchbucket")
        || lower.contains("nosuchupload")
        || lower.contains("invalidaccesskeyid")
        || lower.contains("signaturedoesnotmatch")
        || lower.contains("authenticationfailed")
        || lower.contains("containernotfound")
        || (400..500).any(|code| lower.contains(&format!("status code: {code}")))
}
