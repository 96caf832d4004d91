//! What the dpf launchers share, so that each `main` only composes: the command line
//! ([`Cli`]), logging, opening the store named by `dpf.store.url`, assembling a data plane from
//! configuration ([`build_data_plane`]) and registering it with a selector
//! ([`spawn_self_registration`]). Launcher support, so it may use `anyhow`.

mod cli;
mod cluster_instances;
mod dataplane;
mod groups;
mod logging;
mod process;
mod selector;
mod store;
mod tls;

pub use cli::*;
pub use cluster_instances::*;
pub use dataplane::*;
pub use logging::*;
pub use process::*;
pub use selector::*;
pub use store::*;
pub use tls::*;

use dataplane::extra_ca;
pub use groups::{
    control_planes, dataset_entries, seed_registrations, unknown_settings, warn_unknown_settings,
    CONTROL_PLANE_PREFIX, CONTROL_PLANE_PROPERTIES, DATASET_PREFIX, DATASET_PROPERTIES,
    SEED_PROPERTIES, SELECTOR_SETTINGS,
};
use store::open_store_patiently;
