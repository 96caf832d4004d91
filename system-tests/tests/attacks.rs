//! Each attack of the security model (docs/security.md) tried against real launcher processes,
//! and shown refused with nothing written, read or changed.
//!
//! One module per area; they share the process-level helpers of `system-tests`.

#![allow(clippy::unwrap_used, clippy::disallowed_methods)] // tests: small bodies, failed unwraps are failures

#[path = "attacks/addresses.rs"]
mod addresses;
#[path = "attacks/auth.rs"]
mod auth;
#[path = "attacks/secrets.rs"]
mod secrets;
#[path = "attacks/selector.rs"]
mod selector;
