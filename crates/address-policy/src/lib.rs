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

use std::net::{IpAddr, SocketAddr};
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use dataplane_spi::{ResourceAddress, FILE_TYPE, HTTP_DATA_TYPE};
use ipnet::IpNet;
use url::Url;

/// Networks `dataplane-launcher` denies by default: loopback, unspecified, link-local (cloud
/// metadata services), RFC 1918, CGNAT, IPv6 unique-local, multicast and broadcast.
pub const SERVER_DENIED_NETWORKS: &str = "127.0.0.0/8,::1/128,0.0.0.0/8,::/128,169.254.0.0/16,\
fe80::/10,10.0.0.0/8,172.16.0.0/12,192.168.0.0/16,100.64.0.0/10,fc00::/7,224.0.0.0/4,ff00::/8,\
255.255.255.255/32";

/// Networks `embedded-launcher` (the local quick start) denies by default: link-local (cloud
/// metadata services) and multicast; loopback and private networks stay reachable.
pub const LOCAL_DENIED_NETWORKS: &str = "169.254.0.0/16,fe80::/10,224.0.0.0/4,ff00::/8";

/// Why an address was refused. The message names the address (without credentials) and the
/// rule, so a control plane can tell what to change.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct PolicyError(pub String);

fn refuse(message: impl Into<String>) -> PolicyError {
    PolicyError(message.into())
}

/// Parses a comma-separated list of networks (`10.0.0.0/8`, `fe80::/10`) or single addresses
/// (`192.0.2.7` = `/32`). An empty or blank list is no network.
///
/// # Errors
/// The first entry that is neither.
pub fn parse_networks(list: &str) -> Result<Vec<IpNet>, PolicyError> {
    list.split(',')
        .map(str::trim)
        .filter(|entry| !entry.is_empty())
        .map(|entry| {
            entry
                .parse::<IpNet>()
                .or_else(|_| entry.parse::<IpAddr>().map(IpNet::from))
                .map_err(|_| refuse(format!("'{entry}' is not a network (a.b.c.d/n or x::/n)")))
        })
        .collect()
}

/// An IPv4 address written as IPv6 (`::ffff:a.b.c.d`) is judged as the IPv4 address.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// One entry of an allow-list: an exact host, `*.domain` (the domain's subdomains), or a
/// network (matched against IP literals and resolved addresses).
#[derive(Debug, Clone, PartialEq, Eq)]
enum HostRule {
    Exact(String),
    Subdomains(String),
    Network(IpNet),
}

impl HostRule {
    fn parse(rule: &str) -> Option<Self> {
        let rule = rule.trim().to_ascii_lowercase();
        if rule.is_empty() {
            return None;
        }
        if let Ok(net) = rule.parse::<IpNet>() {
            return Some(Self::Network(net));
        }
        if let Ok(ip) = rule.trim_matches(['[', ']']).parse::<IpAddr>() {
            return Some(Self::Network(IpNet::from(ip)));
        }
        Some(match rule.strip_prefix("*.") {
            Some(domain) => Self::Subdomains(domain.to_owned()),
            None => Self::Exact(rule),
        })
    }

    fn admits_name(&self, host: &str) -> bool {
        match self {
            Self::Exact(name) => name == host,
            Self::Subdomains(domain) => host
                .strip_suffix(domain.as_str())
                .is_some_and(|prefix| prefix.ends_with('.') && prefix.len() > 1),
            Self::Network(_) => false,
        }
    }

    fn admits_ip(&self, ip: IpAddr) -> bool {
        matches!(self, Self::Network(net) if net.contains(&ip))
    }
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

fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

fn create_root(root: &Path) -> Result<PathBuf, PolicyError> {
    if !root.exists() {
        let mut builder = std::fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
        builder.create(root).map_err(|e| {
            refuse(format!(
                "cannot create the file root '{}' (dpf.transfer.file.root): {e}",
                root.display()
            ))
        })?;
    }
    let canonical = root.canonicalize().map_err(|e| {
        refuse(format!(
            "cannot resolve the file root '{}' (dpf.transfer.file.root): {e}",
            root.display()
        ))
    })?;
    if !canonical.is_dir() {
        return Err(refuse(format!(
            "the file root '{}' (dpf.transfer.file.root) is not a directory",
            root.display()
        )));
    }
    Ok(canonical)
}

/// The canonical form of `path`: its longest existing prefix canonicalised, the rest appended.
fn resolve_existing_prefix(path: &Path) -> Option<PathBuf> {
    let path = absolute(path);
    let mut existing = path.as_path();
    let mut rest = Vec::new();
    loop {
        if let Ok(canonical) = existing.canonicalize() {
            let mut full = canonical;
            for part in rest.iter().rev() {
                full.push(part);
            }
            return Some(full);
        }
        rest.push(existing.file_name()?.to_owned());
        existing = existing.parent()?;
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

    /// Opens the file root as a directory capability: every path opened through it resolves
    /// beneath the root, never following a link out of it.
    ///
    /// # Errors
    /// No root configured, or it cannot be opened.
    pub fn open_root(&self) -> std::io::Result<cap_std::fs::Dir> {
        let root = self.file_root().ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::PermissionDenied,
                "File addresses are disabled (no dpf.transfer.file.root)",
            )
        })?;
        cap_std::fs::Dir::open_ambient_dir(root, cap_std::ambient_authority())
    }

    /// Checks a file path and returns it relative to the root (normalised: no `.`, no empty
    /// components), ready for [`open_root`](Self::open_root).
    ///
    /// # Errors
    /// No root; an empty path or one with a NUL; an absolute path not beneath the root; a
    /// `..` component; an existing symbolic link on the way that leaves the root; a protected
    /// path.
    pub fn check_file(&self, raw: &str) -> Result<PathBuf, PolicyError> {
        let Some(root) = self.file_root() else {
            return Err(refuse(
                "File addresses are disabled on this data plane (no dpf.transfer.file.root)",
            ));
        };
        if raw.trim().is_empty() || raw.contains('\0') {
            return Err(refuse("a file path must be non-blank and contain no NUL"));
        }
        let absolute_form;
        let mut path = Path::new(raw);
        if self.inner.unrestricted && path.is_relative() {
            absolute_form = absolute(path);
            path = &absolute_form;
        }
        let relative = if path.is_absolute() {
            path.strip_prefix(root).map_err(|_| {
                refuse(format!(
                    "file path '{raw}' is outside this data plane's file root (dpf.transfer.file.root); give a path relative to the root"
                ))
            })?
        } else {
            path
        };
        let mut normalised = PathBuf::new();
        for component in relative.components() {
            match component {
                Component::Normal(part) => normalised.push(part),
                Component::CurDir => {}
                Component::ParentDir => {
                    return Err(refuse(format!("file path '{raw}' must not contain '..'")))
                }
                Component::RootDir | Component::Prefix(_) => {
                    return Err(refuse(format!("file path '{raw}' is not beneath the root")))
                }
            }
        }
        if normalised.as_os_str().is_empty() {
            return Err(refuse(format!("file path '{raw}' names the root itself")));
        }
        let full = root.join(&normalised);
        // Links already on the way must stay beneath the root (the capability enforces it
        // again when the file is opened; this gives a clear 4xx up front).
        let resolved = resolve_existing_prefix(&full).unwrap_or_else(|| full.clone());
        if !resolved.starts_with(root) {
            return Err(refuse(format!(
                "file path '{raw}' leads outside the file root through a symbolic link"
            )));
        }
        if self
            .inner
            .protected
            .iter()
            .any(|p| resolved.starts_with(p) || p.starts_with(&resolved) && resolved != root)
        {
            return Err(refuse(format!(
                "file path '{raw}' is one of the data plane's own files"
            )));
        }
        Ok(normalised)
    }

    /// Checks a `file://` URL (DPS data addresses only: refused unless
    /// [`AddressPolicyBuilder::allow_file_urls`]) and returns its path relative to the root.
    ///
    /// # Errors
    /// As [`check_file`](Self::check_file), or file URLs disabled, or not a local file URL.
    pub fn check_file_url(&self, raw: &str) -> Result<PathBuf, PolicyError> {
        if !self.inner.allow_file_urls {
            return Err(refuse(
                "file:// data addresses are disabled on this data plane (dpf.transfer.allow-file-addresses)",
            ));
        }
        let url = parse_strict(raw)?;
        if url.scheme() != "file" {
            return Err(refuse(format!("'{}' is not a file:// URL", display(&url))));
        }
        let path = url
            .to_file_path()
            .map_err(|()| refuse(format!("'{}' is not a local file URL", display(&url))))?;
        self.check_file(&path.to_string_lossy())
    }

    /// Parses an outbound URL once and checks it: `http`/`https` (only `https` when required),
    /// a host, an IP literal outside the denied networks, a host the allow-list admits (names
    /// the allow-list admits only by network are checked again when resolved).
    ///
    /// # Errors
    /// What is wrong, naming the URL without credentials or query.
    pub fn check_url(&self, raw: &str) -> Result<Url, PolicyError> {
        let url = parse_strict(raw)?;
        match url.scheme() {
            "https" => {}
            "http" if !self.inner.require_https => {}
            "http" => {
                return Err(refuse(format!(
                    "address '{}' is plain HTTP: the DPS HTTP profile requires HTTPS (dpf.http.insecure=true allows it for development)",
                    display(&url)
                )))
            }
            other => {
                return Err(refuse(format!(
                    "address '{}' has scheme '{other}': only http and https are allowed",
                    display(&url)
                )))
            }
        }
        match url.host() {
            None => return Err(refuse(format!("address '{}' has no host", display(&url)))),
            Some(url::Host::Ipv4(v4)) => self.check_ip_literal(IpAddr::V4(v4), &url)?,
            Some(url::Host::Ipv6(v6)) => self.check_ip_literal(IpAddr::V6(v6), &url)?,
            Some(url::Host::Domain(name)) => {
                let name = name.to_ascii_lowercase();
                let allowed = &self.inner.allowed;
                if !allowed.is_empty()
                    && !allowed.iter().any(|r| r.admits_name(&name))
                    && !allowed.iter().any(|r| matches!(r, HostRule::Network(_)))
                {
                    return Err(refuse(format!(
                        "host '{name}' is not in this data plane's allow-list (dpf.transfer.allowed-hosts)"
                    )));
                }
            }
        }
        Ok(url)
    }

    fn check_ip_literal(&self, ip: IpAddr, url: &Url) -> Result<(), PolicyError> {
        self.check_ip(ip)
            .map_err(|e| refuse(format!("address '{}' refused: {e}", display(url))))?;
        let allowed = &self.inner.allowed;
        if !allowed.is_empty() && !allowed.iter().any(|r| r.admits_ip(canonical(ip))) {
            return Err(refuse(format!(
                "host '{ip}' is not in this data plane's allow-list (dpf.transfer.allowed-hosts)"
            )));
        }
        Ok(())
    }

    /// Whether an outbound connection may reach `ip`.
    ///
    /// # Errors
    /// The denied network `ip` lies in.
    pub fn check_ip(&self, ip: IpAddr) -> Result<(), PolicyError> {
        let ip = canonical(ip);
        match self.inner.denied.iter().find(|net| net.contains(&ip)) {
            Some(net) => Err(refuse(format!(
                "{ip} is in the denied network {net} (dpf.transfer.denied-networks)"
            ))),
            None => Ok(()),
        }
    }

    /// Whether a resolved address of `host` may be connected to: outside the denied
    /// networks, and admitted by the allow-list (by name or by network) when there is one.
    fn admits_resolved(&self, host: &str, ip: IpAddr) -> bool {
        if self.check_ip(ip).is_err() {
            return false;
        }
        let allowed = &self.inner.allowed;
        allowed.is_empty()
            || allowed
                .iter()
                .any(|r| r.admits_name(host) || r.admits_ip(canonical(ip)))
    }

    /// The resolver enforcing the network rule at connect time.
    pub fn resolver(&self) -> PolicyResolver {
        PolicyResolver {
            policy: self.clone(),
        }
    }

    /// A client builder with the policy's resolver, no redirects and no environment proxies.
    /// Add timeouts, TLS roots and the like, then `build()`.
    pub fn client_builder(&self) -> reqwest::ClientBuilder {
        reqwest::Client::builder()
            .dns_resolver(Arc::new(self.resolver()))
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
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

/// Parses a URL, refusing what a lenient parser would silently repair.
fn parse_strict(raw: &str) -> Result<Url, PolicyError> {
    if raw.is_empty() {
        return Err(refuse("the address is empty"));
    }
    if raw.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(refuse(
            "the address contains blanks or control characters; send the URL alone",
        ));
    }
    let url = Url::parse(raw).map_err(|e| refuse(format!("the address is not a URL: {e}")))?;
    // `http:/host` and `http:host` parse as `http://host/`: a sender that means something else
    // by them must not be second-guessed.
    if matches!(url.scheme(), "http" | "https") {
        let after_scheme = &raw[url.scheme().len()..];
        if !after_scheme.starts_with("://") {
            return Err(refuse(format!(
                "the address '{}' must start with {}://",
                display(&url),
                url.scheme()
            )));
        }
    }
    Ok(url)
}

/// A URL for messages: scheme, host, port and path; never userinfo or query.
pub fn display(url: &Url) -> String {
    let mut shown = format!("{}://", url.scheme());
    if let Some(host) = url.host_str() {
        shown.push_str(host);
    }
    if let Some(port) = url.port() {
        shown.push_str(&format!(":{port}"));
    }
    shown.push_str(url.path());
    shown
}

/// A reqwest resolver that resolves names with the system resolver and keeps only the
/// addresses the policy admits.
#[derive(Debug, Clone)]
pub struct PolicyResolver {
    policy: AddressPolicy,
}

impl reqwest::dns::Resolve for PolicyResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let policy = self.policy.clone();
        let host = name.as_str().to_ascii_lowercase();
        Box::pin(async move {
            let resolved: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let admitted: Vec<SocketAddr> = resolved
                .iter()
                .copied()
                .filter(|addr| policy.admits_resolved(&host, addr.ip()))
                .collect();
            if admitted.is_empty() {
                let shown: Vec<String> = resolved.iter().map(|a| a.ip().to_string()).collect();
                tracing::warn!(host = %host, addresses = ?shown, "outbound connection refused by the address policy");
                let error: Box<dyn std::error::Error + Send + Sync> = Box::new(refuse(format!(
                    "'{host}' resolves only to addresses this data plane may not reach ({}): dpf.transfer.denied-networks / dpf.transfer.allowed-hosts",
                    shown.join(", ")
                )));
                return Err(error);
            }
            let addrs: reqwest::dns::Addrs = Box::new(admitted.into_iter());
            Ok(addrs)
        })
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
