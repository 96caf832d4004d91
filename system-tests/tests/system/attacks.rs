//! Each attack of the security model (docs/security.md) tried against real launcher processes,
//! and shown refused with nothing written, read or changed.
//!
//! One module per area; they share the process-level helpers of `system-tests`.

#![allow(clippy::unwrap_used, clippy::disallowed_methods)] // tests: small bodies, failed unwraps are failures

mod addresses;
mod auth;
mod secrets;
mod selector;
