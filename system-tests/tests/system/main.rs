//! The black-box system tests of dpf, in one test binary: real launcher processes, real HTTP
//! sources and sinks, a fake control plane. One module per area.
//!
//! One binary rather than one per file: each test binary links the whole HTTP and database
//! stack, and a binary per area made the test build many gigabytes larger.
//! `cargo test -p system-tests --test system <module>::` runs one area.

mod attacks;
mod bad_input;
mod baseline;
mod callbacks;
mod cluster;
mod control;
mod coordination;
mod database_outage;
mod dpfctl_tls;
mod env_config;
mod interop;
mod limits;
mod members;
mod memory;
mod object_storage;
mod registries;
mod resume;
mod roles;
mod rolling;
mod security;
mod selector_down;
mod selector_load;
mod tls;
