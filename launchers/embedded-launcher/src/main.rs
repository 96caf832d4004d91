//! dpf in one process: selector and data plane, local selector client, SQLite by default.
//!
//! ```text
//! cargo run -p embedded-launcher -- [--config FILE] [-D key=value]... [--dump-config] [migrate]
//! ```
//!
//! Keys are listed in `docs/configuration.md`; every key can also be set from the environment
//! (`WEB_HTTP_PORT=0`, `EDC_RUNTIME_ID=dp-1`, ...).

use dpf_launch::{run_data_plane_process, SelectorMode};

/// Defaults of this launcher (on top of the shared data-plane defaults).
const DEFAULTS: &[(&str, &str)] = &[
    ("web.http.host", "127.0.0.1"),
    ("web.http.port", "8080"),
    ("web.http.workers", "2"),
    // The quick start: plain HTTP on localhost. Production deployments set dpf.tls.cert/key
    // and dpf.http.insecure=false (docs/operations.md).
    ("dpf.http.insecure", "true"),
    // Local peers (loopback, the LAN) are what a quick start talks to; cloud metadata services
    // and multicast stay out of reach (docs/security.md).
    (
        "dpf.transfer.denied-networks",
        address_policy::LOCAL_DENIED_NETWORKS,
    ),
];

#[actix_web::main]
async fn main() -> anyhow::Result<()> {
    run_data_plane_process(SelectorMode::Embedded, DEFAULTS).await
}
