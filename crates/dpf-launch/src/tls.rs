//! Serving TLS from `dpf.tls.cert` and `dpf.tls.key`.

use std::sync::Arc;

use anyhow::Context;
use dpf_config::Config;

/// The rustls server configuration from `dpf.tls.cert` and `dpf.tls.key` (PEM), if both are set.
pub fn server_tls(config: &Config) -> anyhow::Result<Option<rustls::ServerConfig>> {
    use rustls_pki_types::pem::PemObject;
    let (Some(cert), Some(key)) = (config.get("dpf.tls.cert"), config.get("dpf.tls.key")) else {
        anyhow::ensure!(
            config.get("dpf.tls.cert").is_none() && config.get("dpf.tls.key").is_none(),
            "dpf.tls.cert and dpf.tls.key go together"
        );
        return Ok(None);
    };
    let chain = rustls_pki_types::CertificateDer::pem_file_iter(cert)
        .with_context(|| format!("cannot read dpf.tls.cert {cert}"))?
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("dpf.tls.cert {cert} is not PEM"))?;
    let key = rustls_pki_types::PrivateKeyDer::from_pem_file(key)
        .with_context(|| format!("cannot read the key dpf.tls.key {key}"))?;
    let tls = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .context("TLS protocol versions")?
    .with_no_client_auth()
    .with_single_cert(chain, key)
    .context("dpf.tls.cert and dpf.tls.key do not form a usable pair")?;
    Ok(Some(tls))
}
