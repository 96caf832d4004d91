//! How `dpfctl` connects, for every HTTP client it builds: which certificates it trusts
//! (`--cacert FILE` / `DPF_CACERT` besides the system's trust store, or nothing at all with
//! `--insecure-skip-tls-verify`) and which API key it sends (`--api-key-file FILE`, else
//! `DPF_API_KEY`). Set once from the command line before any request.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use anyhow::{bail, Context, Result};

/// The connection settings of this run.
#[derive(Default)]
pub struct Connection {
    /// The PEM bundle of `--cacert` and the certificates in it.
    ca: Option<(Vec<u8>, Vec<reqwest::Certificate>)>,
    /// `--insecure-skip-tls-verify`.
    insecure: bool,
    /// The API key, sent as `Authorization: Bearer`.
    api_key: Option<String>,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("ca", &self.ca.as_ref().map(|(_, certs)| certs.len()))
            .field("insecure", &self.insecure)
            .field("api_key", &self.api_key.as_ref().map(|_| "***"))
            .finish()
    }
}

/// What the command line says about connecting.
#[derive(Debug, Default)]
pub struct ConnectionArgs {
    /// `--cacert FILE` (or `DPF_CACERT`).
    pub cacert: Option<PathBuf>,
    /// `--insecure-skip-tls-verify`.
    pub insecure: bool,
    /// `--api-key-file FILE` (or `DPF_API_KEY_FILE`).
    pub api_key_file: Option<PathBuf>,
}

static CONNECTION: OnceLock<Connection> = OnceLock::new();

/// Reads the files the command line names and keeps the settings for [`current`].
///
/// # Errors
/// An unreadable `--cacert` or `--api-key-file`, a `--cacert` without a PEM certificate, an
/// empty key file, or a key that cannot be an HTTP header.
pub fn init(args: &ConnectionArgs) -> Result<()> {
    let connection = Connection::from_args(args, std::env::var("DPF_API_KEY").ok())?;
    // Set once, by main; a second call keeps the first settings.
    let _ = CONNECTION.set(connection);
    Ok(())
}

/// The settings of this run ([`init`]); without it (unit tests) no CA, verification on, the key
/// from `DPF_API_KEY`.
pub fn current() -> &'static Connection {
    CONNECTION.get_or_init(|| Connection {
        api_key: std::env::var("DPF_API_KEY").ok(),
        ..Connection::default()
    })
}

impl Connection {
    fn from_args(args: &ConnectionArgs, env_key: Option<String>) -> Result<Self> {
        let ca = args.cacert.as_deref().map(read_ca).transpose()?;
        let api_key = match &args.api_key_file {
            Some(path) => Some(read_key(path)?),
            None => env_key,
        };
        if let Some(key) = &api_key {
            reqwest::header::HeaderValue::from_str(&format!("Bearer {key}"))
                .context("the API key is not a valid header value")?;
        }
        Ok(Self {
            ca,
            insecure: args.insecure,
            api_key,
        })
    }

    /// A client builder that trusts what this run trusts.
    pub fn client_builder(&self) -> reqwest::ClientBuilder {
        let mut builder = reqwest::Client::builder();
        if let Some((_, certs)) = &self.ca {
            for cert in certs {
                builder = builder.add_root_certificate(cert.clone());
            }
        }
        if self.insecure {
            builder = builder.danger_accept_invalid_certs(true);
        }
        builder
    }

    /// `Authorization: Bearer <key>` when there is a key.
    ///
    /// # Errors
    /// A key that cannot be a header value (checked at [`init`] already).
    pub fn auth_headers(&self) -> Result<reqwest::header::HeaderMap> {
        let mut headers = reqwest::header::HeaderMap::new();
        if let Some(key) = &self.api_key {
            let mut value = reqwest::header::HeaderValue::from_str(&format!("Bearer {key}"))
                .context("the API key is not a valid header value")?;
            value.set_sensitive(true);
            headers.insert(reqwest::header::AUTHORIZATION, value);
        }
        Ok(headers)
    }

    /// Settings of a selector client at `url` with this run's key and trust.
    pub fn selector_settings(&self, url: &str) -> selector_client::RemoteSelectorClientConfig {
        let mut settings = selector_client::RemoteSelectorClientConfig::new(url);
        settings.api_key = self.api_key.clone();
        settings.ca_pem = self.ca.as_ref().map(|(pem, _)| pem.clone());
        settings.danger_accept_invalid_certs = self.insecure;
        settings
    }
}

fn read_ca(path: &Path) -> Result<(Vec<u8>, Vec<reqwest::Certificate>)> {
    let pem =
        std::fs::read(path).with_context(|| format!("cannot read --cacert {}", path.display()))?;
    let certs = reqwest::Certificate::from_pem_bundle(&pem)
        .with_context(|| format!("--cacert {} is not a PEM certificate", path.display()))?;
    if certs.is_empty() {
        bail!(
            "--cacert {} holds no PEM certificate (-----BEGIN CERTIFICATE-----)",
            path.display()
        );
    }
    Ok((pem, certs))
}

fn read_key(path: &Path) -> Result<String> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read --api-key-file {}", path.display()))?;
    let key = text.trim();
    if key.is_empty() {
        bail!("--api-key-file {} is empty", path.display());
    }
    Ok(key.to_owned())
}

/// A hint for a TLS failure whose cause is `cause` (the innermost error), if it is one.
pub fn tls_hint(cause: &str) -> Option<&'static str> {
    let lower = cause.to_ascii_lowercase();
    (lower.contains("certificate") || lower.contains("unknownissuer")).then_some(
        "the server's certificate is not trusted: pass the CA that signed it with --cacert FILE \
         (or DPF_CACERT)",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_file_wins_over_the_environment_and_is_trimmed() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("key");
        std::fs::write(&file, "s3cret\n").unwrap();
        let args = ConnectionArgs {
            api_key_file: Some(file),
            ..ConnectionArgs::default()
        };
        let connection = Connection::from_args(&args, Some("env".into())).unwrap();
        assert_eq!(connection.api_key.as_deref(), Some("s3cret"));
        let connection =
            Connection::from_args(&ConnectionArgs::default(), Some("env".into())).unwrap();
        assert_eq!(connection.api_key.as_deref(), Some("env"));
        assert!(!format!("{connection:?}").contains("env\""));
    }

    #[test]
    fn bad_files_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty");
        std::fs::write(&empty, "\n").unwrap();
        let args = ConnectionArgs {
            api_key_file: Some(empty),
            ..ConnectionArgs::default()
        };
        let error = Connection::from_args(&args, None).unwrap_err().to_string();
        assert!(error.contains("is empty"), "{error}");
        let args = ConnectionArgs {
            cacert: Some(dir.path().join("missing.pem")),
            ..ConnectionArgs::default()
        };
        let error = format!("{:#}", Connection::from_args(&args, None).unwrap_err());
        assert!(error.contains("cannot read --cacert"), "{error}");
        let garbage = dir.path().join("garbage.pem");
        std::fs::write(&garbage, "not a certificate").unwrap();
        let args = ConnectionArgs {
            cacert: Some(garbage),
            ..ConnectionArgs::default()
        };
        assert!(Connection::from_args(&args, None).is_err());
    }

    #[test]
    fn certificate_failures_get_a_hint() {
        assert!(tls_hint("invalid peer certificate: UnknownIssuer").is_some());
        assert!(tls_hint("Connection refused (os error 111)").is_none());
    }
}
