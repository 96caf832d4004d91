//! The one address policy of dpf: every address the data plane reads from, writes to or calls
//! — whatever its origin (a DPS `dataAddress`, a consumer's `metadata.destination`, a dataset
//! from the API or from configuration, a control plane's callback endpoint, the selector, a
//! resumed flow) — passes through an [`AddressPolicy`].
//!
//! # Files
//!
//! `File` addresses and `file://` URLs resolve **beneath one root directory**
//! ([`AddressPolicyBuilder::file_root`], `dpf.transfer.file.root`): a relative path is relative
//! to the root; an absolute path is accepted only when it lies beneath the root; `..` is
//! refused, and so is a symbolic link that leaves the root. [`AddressPolicy::check_file`]
//! checks a path when an address is accepted (a clear 4xx at the API); the transfer layer then
//! opens the file through [`AddressPolicy::open_root`], a `cap-std` directory capability that
//! resolves every path beneath the root without following links out of it, so a link planted
//! after the check cannot redirect the write either. Paths that are the data plane's own
//! ([`AddressPolicyBuilder::protect`]: the store's SQLite file, the data directory, TLS keys)
//! are never a target, even when the root contains them.
//!
//! # URLs
//!
//! URLs are parsed once ([`AddressPolicy::check_url`]), the scheme is decided on the parsed URL
//! (`http`/`https` only; `https` only when [`AddressPolicyBuilder::require_https`]), and the
//! normalised string is what is stored and fetched. Leading or trailing blanks and control
//! characters are refused rather than silently trimmed.
//!
//! # Outbound connections
//!
//! The network rule is checked **at connect time on the resolved IP**: clients built from
//! [`AddressPolicy::client_builder`] resolve names through [`PolicyResolver`], which drops every
//! address in a denied network ([`AddressPolicyBuilder::denied_networks`],
//! `dpf.transfer.denied-networks`) and, when an allow-list is configured
//! ([`AddressPolicyBuilder::allowed_hosts`], `dpf.transfer.allowed-hosts`), every address the
//! allow-list does not admit; a name with nothing left fails to connect. IP literals never
//! reach a resolver, so [`AddressPolicy::check_url`] checks them; every user of a policy
//! client checks its URLs first. Redirects are never followed (`Policy::none`): a redirect is a
//! transfer error, so an allowed host cannot bounce the data plane to an internal address.
//! Proxies from the environment are ignored (a proxy would connect on the data plane's behalf,
//! out of the policy's sight).
//!
//! ```
//! use address_policy::{AddressPolicy, SERVER_DENIED_NETWORKS};
//!
//! let root = tempfile::tempdir().unwrap();
//! let policy = AddressPolicy::builder()
//!     .file_root(root.path())
//!     .require_https(true)
//!     .denied_networks(address_policy::parse_networks(SERVER_DENIED_NETWORKS).unwrap())
//!     .build()
//!     .unwrap();
//! assert!(policy.check_url("https://example.com/data").is_ok());
//! assert!(policy.check_url("http://example.com/data").is_err());
//! assert!(policy.check_url("https://169.254.169.254/latest").is_err());
//! assert!(policy.check_file("/etc/shadow").is_err());
//! assert!(policy.check_file("in/data.csv").is_ok());
//! ```

use std::path::{Path, PathBuf};
use std::sync::Arc;

use dataplane_spi::{ResourceAddress, FILE_TYPE, HTTP_DATA_TYPE};
use ipnet::IpNet;

mod files;
mod network;

use files::{absolute, create_root, resolve_existing_prefix};
use network::HostRule;
pub use network::{
    display, parse_networks, PolicyResolver, LOCAL_DENIED_NETWORKS, SERVER_DENIED_NETWORKS,
};

/// Why an address was refused. The message names the address (without credentials) and the
/// rule, so a control plane can tell what to change.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct PolicyError(pub String);

fn refuse(message: impl Into<String>) -> PolicyError {
    PolicyError(message.into())
}

#[derive(Debug)]
struct Inner {
    /// [`AddressPolicy::unrestricted`]: relative paths are relative to the working directory.
    unrestricted: bool,
    file_root: Option<PathBuf>,
    allow_file_urls: bool,
    require_https: bool,
    denied: Vec<IpNet>,
    allowed: Vec<HostRule>,
    protected: Vec<PathBuf>,
}

/// The address policy; cheap to clone (one shared set of rules). See the [crate docs](crate).
#[derive(Debug, Clone)]
pub struct AddressPolicy {
    inner: Arc<Inner>,
}

/// Builds an [`AddressPolicy`].
#[derive(Debug, Default)]
pub struct AddressPolicyBuilder {
    file_root: Option<PathBuf>,
    allow_file_urls: bool,
    require_https: bool,
    denied: Vec<IpNet>,
    allowed: Vec<String>,
    protected: Vec<PathBuf>,
}

impl AddressPolicyBuilder {
    /// The directory every `File` address resolves beneath; created (mode 0700) by
    /// [`build`](Self::build) when missing. Without a root, `File` addresses are refused.
    #[must_use]
    pub fn file_root(mut self, root: impl Into<PathBuf>) -> Self {
        self.file_root = Some(root.into());
        self
    }

    /// Whether `file://` URLs in DPS data addresses are accepted (they still resolve beneath
    /// the root). Off by default.
    #[must_use]
    pub fn allow_file_urls(mut self, allow: bool) -> Self {
        self.allow_file_urls = allow;
        self
    }

    /// Whether only `https://` URLs are accepted.
    #[must_use]
    pub fn require_https(mut self, require: bool) -> Self {
        self.require_https = require;
        self
    }

    /// Networks no outbound connection may reach.
    #[must_use]
    pub fn denied_networks(mut self, networks: Vec<IpNet>) -> Self {
        self.denied = networks;
        self
    }

    /// When not empty, the only hosts outbound connections may reach: `host`, `*.domain` or a
    /// network `a.b.c.d/n`. Names are resolved and the denied networks still apply.
    #[must_use]
    pub fn allowed_hosts(mut self, hosts: Vec<String>) -> Self {
        self.allowed = hosts;
        self
    }

    /// A file or directory that is never a transfer target or source, even beneath the root.
    #[must_use]
    pub fn protect(mut self, path: impl Into<PathBuf>) -> Self {
        self.protected.push(path.into());
        self
    }

    /// The policy; creates the file root (0700) when missing.
    ///
    /// # Errors
    /// When the root cannot be created or resolved.
    pub fn build(self) -> Result<AddressPolicy, PolicyError> {
        let file_root = match self.file_root {
            Some(root) => Some(create_root(&root)?),
            None => None,
        };
        let protected = self
            .protected
            .iter()
            .map(|p| resolve_existing_prefix(p).unwrap_or_else(|| absolute(p)))
            .collect();
        Ok(AddressPolicy {
            inner: Arc::new(Inner {
                unrestricted: false,
                file_root,
                allow_file_urls: self.allow_file_urls,
                require_https: self.require_https,
                denied: self.denied,
                allowed: self
                    .allowed
                    .iter()
                    .filter_map(|r| HostRule::parse(r))
                    .collect(),
                protected,
            }),
        })
    }
}

impl AddressPolicy {
    /// A builder with nothing allowed for files, nothing denied for networks, plain HTTP
    /// accepted.
    pub fn builder() -> AddressPolicyBuilder {
        AddressPolicyBuilder::default()
    }

    /// A policy that restricts nothing: files anywhere (root `/`), every network, plain HTTP.
    /// For tests and embedding programs that apply their own rules; the launchers never use it.
    pub fn unrestricted() -> Self {
        Self {
            inner: Arc::new(Inner {
                unrestricted: true,
                file_root: Some(PathBuf::from("/")),
                allow_file_urls: true,
                require_https: false,
                denied: Vec::new(),
                allowed: Vec::new(),
                protected: Vec::new(),
            }),
        }
    }

    /// The canonical file root, if `File` addresses are accepted.
    pub fn file_root(&self) -> Option<&Path> {
        self.inner.file_root.as_deref()
    }

    /// Whether only `https://` URLs are accepted.
    pub fn requires_https(&self) -> bool {
        self.inner.require_https
    }

    /// Checks a transfer address and returns it normalised: `File` paths relative to the root,
    /// `HttpData` `baseUrl`s parsed and re-serialised. Other types pass unchanged (their own
    /// transfer crates check them with [`check_url`](Self::check_url)).
    ///
    /// # Errors
    /// The property and what is wrong with it.
    pub fn check_resource(
        &self,
        address: &ResourceAddress,
    ) -> Result<ResourceAddress, PolicyError> {
        let mut checked = address.clone();
        match address.type_name() {
            Some(FILE_TYPE) => {
                let raw = address
                    .get("path")
                    .ok_or_else(|| refuse("a File address needs a string \"path\""))?;
                let relative = self.check_file(raw)?;
                checked.set("path", &relative.to_string_lossy());
            }
            Some(HTTP_DATA_TYPE) => {
                let raw = address
                    .get("baseUrl")
                    .ok_or_else(|| refuse("an HttpData address needs a string \"baseUrl\""))?;
                let url = self
                    .check_url(raw)
                    .map_err(|e| refuse(format!("baseUrl: {e}")))?;
                checked.set("baseUrl", url.as_str());
            }
            _ => {}
        }
        Ok(checked)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn server(root: &Path) -> AddressPolicy {
        AddressPolicy::builder()
            .file_root(root)
            .require_https(true)
            .denied_networks(parse_networks(SERVER_DENIED_NETWORKS).unwrap())
            .build()
            .unwrap()
    }

    #[test]
    fn urls_are_parsed_once_and_the_scheme_decided_on_the_parsed_url() {
        let dir = tempfile::tempdir().unwrap();
        let policy = server(dir.path());
        assert_eq!(
            policy.check_url("HTTPS://Example.com/a").unwrap().as_str(),
            "https://example.com/a"
        );
        for bad in [
            " http://example.com/",
            "http://example.com/",
            "http:/example.com/",
            "ht\ttp://example.com/",
            "https:/example.com/",
            "https://exa mple.com/",
            "ftp://example.com/",
            "file:///etc/passwd",
            "https://",
            "",
        ] {
            assert!(policy.check_url(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn ip_literals_in_denied_networks_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let policy = server(dir.path());
        for bad in [
            "https://127.0.0.1/",
            "https://169.254.169.254/latest/meta-data",
            "https://10.1.2.3/",
            "https://[::1]/",
            "https://[::ffff:127.0.0.1]/",
            "https://[fd00::1]/",
            "https://0.0.0.0/",
            "https://100.64.0.1/",
            "https://2130706433/",
        ] {
            assert!(policy.check_url(bad).is_err(), "{bad} accepted");
        }
        assert!(policy.check_url("https://93.184.216.34/").is_ok());
        let open = AddressPolicy::builder().build().unwrap();
        assert!(open.check_url("http://127.0.0.1:8080/x").is_ok());
    }

    #[test]
    fn allow_list_admits_names_suffixes_and_networks() {
        let policy = AddressPolicy::builder()
            .allowed_hosts(vec!["sink.example".into(), "*.corp.example".into()])
            .build()
            .unwrap();
        assert!(policy.check_url("http://sink.example/").is_ok());
        assert!(policy.check_url("http://a.corp.example/").is_ok());
        assert!(policy.check_url("http://corp.example/").is_err());
        assert!(policy.check_url("http://evilcorp.example/").is_err());
        assert!(policy.check_url("http://1.2.3.4/").is_err());
        let nets = AddressPolicy::builder()
            .allowed_hosts(vec!["192.0.2.0/24".into()])
            .build()
            .unwrap();
        assert!(nets.check_url("http://192.0.2.9/").is_ok());
        assert!(nets.check_url("http://198.51.100.1/").is_err());
        // A name is admitted only if it resolves into the network (checked by the resolver).
        assert!(nets.admits_resolved("x.example", "192.0.2.4".parse().unwrap()));
        assert!(!nets.admits_resolved("x.example", "198.51.100.4".parse().unwrap()));
    }

    #[test]
    fn files_resolve_beneath_the_root() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("files");
        let policy = AddressPolicy::builder().file_root(&root).build().unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&root).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o700);
        }
        let canonical = root.canonicalize().unwrap();
        assert_eq!(
            policy.check_file("a/./b.bin").unwrap(),
            Path::new("a/b.bin")
        );
        assert_eq!(
            policy
                .check_file(&canonical.join("c.bin").to_string_lossy())
                .unwrap(),
            Path::new("c.bin")
        );
        for bad in ["/etc/shadow", "../x", "a/../../x", "", " ", "."] {
            assert!(policy.check_file(bad).is_err(), "{bad:?} accepted");
        }
        let outside = dir.path().join("outside");
        std::fs::create_dir(&outside).unwrap();
        #[cfg(unix)]
        {
            std::os::unix::fs::symlink(&outside, root.join("escape")).unwrap();
            assert!(policy.check_file("escape/x").is_err());
            std::os::unix::fs::symlink(root.join("inner"), root.join("inside")).unwrap();
            std::fs::create_dir(root.join("inner")).unwrap();
            assert!(policy.check_file("inside/x").is_ok());
            // The capability refuses the escape even without the check.
            let cap = policy.open_root().unwrap();
            assert!(cap.create("escape/y").is_err());
            assert!(!outside.join("y").exists());
        }
    }

    #[test]
    fn protected_paths_are_never_targets() {
        let dir = tempfile::tempdir().unwrap();
        let policy = AddressPolicy::builder()
            .file_root(dir.path())
            .protect(dir.path().join("dpf-data"))
            .build()
            .unwrap();
        assert!(policy.check_file("dpf-data/dpf.db").is_err());
        assert!(policy.check_file("dpf-data").is_err());
        assert!(policy.check_file("other/dpf.db").is_ok());
    }

    #[test]
    fn file_urls_only_when_allowed() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().canonicalize().unwrap();
        let url = format!("file://{}/x.bin", root.display());
        let off = AddressPolicy::builder().file_root(&root).build().unwrap();
        assert!(off.check_file_url(&url).is_err());
        let on = AddressPolicy::builder()
            .file_root(&root)
            .allow_file_urls(true)
            .build()
            .unwrap();
        assert_eq!(on.check_file_url(&url).unwrap(), Path::new("x.bin"));
        assert!(on.check_file_url("file:///etc/passwd").is_err());
    }

    #[test]
    fn networks_parse() {
        assert!(parse_networks("").unwrap().is_empty());
        assert_eq!(parse_networks("10.0.0.0/8, 192.0.2.1").unwrap().len(), 2);
        assert!(parse_networks("10.0.0.0/33").is_err());
        assert!(parse_networks(SERVER_DENIED_NETWORKS).is_ok());
        assert!(parse_networks(LOCAL_DENIED_NETWORKS).is_ok());
    }

    #[tokio::test]
    async fn the_resolver_refuses_names_that_resolve_to_denied_networks() {
        let dir = tempfile::tempdir().unwrap();
        let policy = server(dir.path());
        let result =
            reqwest::dns::Resolve::resolve(&policy.resolver(), "localhost".parse().unwrap()).await;
        assert!(result.is_err());
        let open = AddressPolicy::builder().build().unwrap();
        let addrs: Vec<_> =
            reqwest::dns::Resolve::resolve(&open.resolver(), "localhost".parse().unwrap())
                .await
                .unwrap()
                .collect();
        assert!(!addrs.is_empty());
    }
}
