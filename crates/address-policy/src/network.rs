//! Networks and URLs: denied networks, the allow-list, strict URL parsing, the resolver that
//! checks resolved addresses, and the client builder.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use ipnet::IpNet;
use url::Url;

use crate::{refuse, AddressPolicy, PolicyError};

/// Networks `dataplane-launcher` denies by default: loopback, unspecified, link-local (cloud
/// metadata services), RFC 1918, CGNAT, IPv6 unique-local, multicast and broadcast.
pub const SERVER_DENIED_NETWORKS: &str = "127.0.0.0/8,::1/128,0.0.0.0/8,::/128,169.254.0.0/16,\
fe80::/10,10.0.0.0/8,172.16.0.0/12,192.168.0.0/16,100.64.0.0/10,fc00::/7,224.0.0.0/4,ff00::/8,\
255.255.255.255/32";

/// Networks `embedded-launcher` (the local quick start) denies by default: link-local (cloud
/// metadata services) and multicast; loopback and private networks stay reachable.
pub const LOCAL_DENIED_NETWORKS: &str = "169.254.0.0/16,fe80::/10,224.0.0.0/4,ff00::/8";

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
pub(crate) enum HostRule {
    Exact(String),
    Subdomains(String),
    Network(IpNet),
}

impl HostRule {
    pub(crate) fn parse(rule: &str) -> Option<Self> {
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

    pub(crate) fn admits_name(&self, host: &str) -> bool {
        match self {
            Self::Exact(name) => name == host,
            Self::Subdomains(domain) => host
                .strip_suffix(domain.as_str())
                .is_some_and(|prefix| prefix.ends_with('.') && prefix.len() > 1),
            Self::Network(_) => false,
        }
    }

    pub(crate) fn admits_ip(&self, ip: IpAddr) -> bool {
        matches!(self, Self::Network(net) if net.contains(&ip))
    }
}

impl AddressPolicy {
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
    pub(crate) fn admits_resolved(&self, host: &str, ip: IpAddr) -> bool {
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
}

/// Parses a URL, refusing what a lenient parser would silently repair.
pub(crate) fn parse_strict(raw: &str) -> Result<Url, PolicyError> {
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
