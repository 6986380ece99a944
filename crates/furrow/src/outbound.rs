//! Where furrow may send the requests an API owner asks for (alert webhooks). By default not
//! into the network furrow runs in: loopback, private (RFC 1918, unique-local IPv6), link-local
//! (the cloud metadata address 169.254.169.254 among them), multicast, unspecified and other
//! special-purpose addresses are refused — at registration, and again at delivery, after DNS
//! resolution, by the resolver the HTTP client connects through, so a name that changes its
//! answer in between (DNS rebinding) cannot lead the request elsewhere. Redirects stay off.
//! `FURROW_ALERT_ALLOW_PRIVATE_NETWORKS` lifts the rule; `FURROW_ALERT_ALLOWED_NETWORKS` opens
//! chosen ranges only.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use ipnet::IpNet;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};

use crate::config::Settings;

const HINT: &str =
    "furrow does not call into its own network (see FURROW_ALERT_ALLOW_PRIVATE_NETWORKS)";

/// How long a registration waits for DNS; a name that does not resolve in time is accepted
/// (the delivery records what happens then), so registration never depends on DNS being up.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Debug, Clone, Default)]
pub struct OutboundPolicy {
    allow_private: bool,
    allowed: Arc<Vec<IpNet>>,
}

#[derive(Debug, thiserror::Error)]
#[error("FURROW_ALERT_ALLOWED_NETWORKS: {0} is not a CIDR range (e.g. 10.1.0.0/16)")]
pub struct PolicyError(String);

/// Why an address is refused, if it is.
fn special_purpose(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => special_v4(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return special_v4(v4);
            }
            let s = v6.segments();
            if v6.is_loopback() {
                Some("a loopback address")
            } else if v6.is_unspecified() {
                Some("the unspecified address")
            } else if v6.is_multicast() {
                Some("a multicast address")
            } else if v6.is_unicast_link_local() {
                Some("a link-local address")
            } else if v6.is_unique_local() {
                Some("a private (unique-local) address")
            } else if s[0] == 0x2001 && s[1] == 0x0db8 {
                Some("a documentation address")
            } else if s[0] == 0x64 && s[1] == 0xff9b && s[2..6] == [0, 0, 0, 0] {
                // NAT64: the IPv4 address it stands for decides.
                special_v4(Ipv4Addr::new(
                    (s[6] >> 8) as u8,
                    s[6] as u8,
                    (s[7] >> 8) as u8,
                    s[7] as u8,
                ))
            } else if s[..6] == [0, 0, 0, 0, 0, 0] {
                Some("an IPv4-compatible address")
            } else {
                None
            }
        }
    }
}

fn special_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, c, _] = ip.octets();
    if ip.is_loopback() {
        Some("a loopback address")
    } else if ip.is_private() {
        Some("a private (RFC 1918) address")
    } else if ip.is_link_local() {
        Some("a link-local address (cloud metadata lives there)")
    } else if ip.is_unspecified() || a == 0 {
        Some("an unspecified (\"this network\") address")
    } else if ip.is_multicast() {
        Some("a multicast address")
    } else if ip.is_broadcast() {
        Some("the broadcast address")
    } else if a == 100 && (64..128).contains(&b) {
        Some("a shared (carrier-grade NAT) address")
    } else if a == 192 && b == 0 && c == 0 {
        Some("an IETF protocol assignment address")
    } else if ip.is_documentation() {
        Some("a documentation address")
    } else if a == 198 && (b == 18 || b == 19) {
        Some("a benchmarking address")
    } else if a >= 240 {
        Some("a reserved address")
    } else {
        None
    }
}

impl OutboundPolicy {
    pub fn from_settings(settings: &Settings) -> Result<Self, PolicyError> {
        let allowed = settings
            .alert_allowed_networks
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| s.parse::<IpNet>().map_err(|_| PolicyError(s.to_string())))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            allow_private: settings.alert_allow_private_networks,
            allowed: Arc::new(allowed),
        })
    }

    /// Why furrow may not connect to `ip`, if it may not.
    fn refusal(&self, ip: IpAddr) -> Option<&'static str> {
        if self.allow_private || self.allowed.iter().any(|net| net.contains(&ip)) {
            return None;
        }
        special_purpose(ip)
    }

    /// `Err(why)` when furrow may not connect to the address literal `ip`.
    pub fn permits(&self, ip: IpAddr) -> Result<(), String> {
        match self.refusal(ip) {
            Some(why) => Err(format!("{ip} is {why}; {HINT}")),
            None => Ok(()),
        }
    }

    /// `Err(why)` when `name` resolved to `ip` and furrow may not connect there.
    fn permits_resolved(&self, name: &str, ip: IpAddr) -> Result<(), String> {
        match self.refusal(ip) {
            Some(why) => Err(format!("{name} resolves to {ip}, {why}; {HINT}")),
            None => Ok(()),
        }
    }

    /// The registration check: an http(s) URL whose host is, or resolves to, only addresses
    /// furrow may call. A name that does not resolve is accepted.
    pub async fn check_url(&self, url: &url::Url) -> Result<(), String> {
        let port = url.port_or_known_default().unwrap_or(80);
        match url.host() {
            None => Err("must have a host".into()),
            Some(url::Host::Ipv4(ip)) => self.permits(IpAddr::V4(ip)),
            Some(url::Host::Ipv6(ip)) => self.permits(IpAddr::V6(ip)),
            Some(url::Host::Domain(name)) => {
                let lookup = tokio::net::lookup_host((name, port));
                match tokio::time::timeout(LOOKUP_TIMEOUT, lookup).await {
                    Ok(Ok(addrs)) => {
                        for addr in addrs {
                            self.permits_resolved(name, addr.ip())?;
                        }
                        Ok(())
                    }
                    // Not resolvable now: the delivery will say what happens.
                    Ok(Err(_)) | Err(_) => Ok(()),
                }
            }
        }
    }

    /// The delivery check for a URL whose host is an address literal (names are checked by
    /// the client's resolver, on the addresses it then connects to).
    pub fn check_literal(&self, url: &url::Url) -> Result<(), String> {
        match url.host() {
            Some(url::Host::Ipv4(ip)) => self.permits(IpAddr::V4(ip)),
            Some(url::Host::Ipv6(ip)) => self.permits(IpAddr::V6(ip)),
            _ => Ok(()),
        }
    }

    /// The client for owner-supplied URLs: it resolves names through this policy (refused
    /// addresses are never connected to), follows no redirects and gives up after 10 s.
    pub fn http_client(&self) -> reqwest::Client {
        reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .redirect(reqwest::redirect::Policy::none())
            .dns_resolver(Arc::new(PolicyResolver(self.clone())))
            .build()
            .expect("static HTTP client configuration")
    }
}

/// Whether a URL John Deere handed us (a pre-signed export's `Location`) may be fetched: when
/// the configured API host is public, a target that is an address inside furrow's network (or
/// `localhost`) is refused — a public service has no business sending us there. A simulator or
/// proxy on a private address may point at private addresses.
pub fn provider_redirect_allowed(api_base: &url::Url, target: &url::Url) -> Result<(), String> {
    let inside = |url: &url::Url| match url.host() {
        Some(url::Host::Ipv4(ip)) => special_purpose(IpAddr::V4(ip)).is_some(),
        Some(url::Host::Ipv6(ip)) => special_purpose(IpAddr::V6(ip)).is_some(),
        Some(url::Host::Domain(name)) => {
            name.eq_ignore_ascii_case("localhost")
                || name.to_ascii_lowercase().ends_with(".localhost")
        }
        None => true,
    };
    if !matches!(target.scheme(), "http" | "https") {
        return Err(format!("{target}: not an http(s) URL"));
    }
    if !inside(api_base) && inside(target) {
        return Err(format!(
            "John Deere ({}) sent a URL into furrow's own network ({}); not fetched",
            api_base.host_str().unwrap_or_default(),
            target.host_str().unwrap_or_default()
        ));
    }
    Ok(())
}

/// Resolves with the system resolver and keeps only the addresses the policy permits.
struct PolicyResolver(OutboundPolicy);

impl Resolve for PolicyResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let policy = self.0.clone();
        Box::pin(async move {
            let host = name.as_str().to_string();
            let found: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let mut refused = None;
            let permitted: Vec<SocketAddr> = found
                .into_iter()
                .filter(|a| match policy.permits_resolved(&host, a.ip()) {
                    Ok(()) => true,
                    Err(why) => {
                        refused.get_or_insert(why);
                        false
                    }
                })
                .collect();
            if permitted.is_empty() {
                let why = refused.unwrap_or_else(|| format!("{host} resolves to no address"));
                return Err(why.into());
            }
            Ok(Box::new(permitted.into_iter()) as Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(allow_private: bool, allowed: &str) -> OutboundPolicy {
        OutboundPolicy::from_settings(&Settings {
            alert_allow_private_networks: allow_private,
            alert_allowed_networks: allowed.into(),
            ..Settings::default()
        })
        .unwrap()
    }

    #[test]
    fn provider_redirects_into_the_network_are_refused_when_the_provider_is_public() {
        let url = |s: &str| url::Url::parse(s).unwrap();
        let public = url("https://partnerapi.deere.com/platform");
        for inside in [
            "http://169.254.169.254/latest/meta-data",
            "http://127.0.0.1:9090/presigned/x",
            "http://[::1]/x",
            "http://10.1.2.3/x",
            "http://localhost/x",
            "http://0x7f000001/x",
        ] {
            assert!(
                provider_redirect_allowed(&public, &url(inside)).is_err(),
                "{inside}"
            );
        }
        assert!(provider_redirect_allowed(
            &public,
            &url("https://s3.amazonaws.com/b/k?X-Amz-Expires=3600")
        )
        .is_ok());
        assert!(provider_redirect_allowed(&public, &url("file:///etc/passwd")).is_err());
        // A simulator on loopback may hand out loopback URLs.
        let local = url("http://127.0.0.1:9090/platform");
        assert!(
            provider_redirect_allowed(&local, &url("http://127.0.0.1:9090/presigned/x")).is_ok()
        );
    }

    #[test]
    fn special_purpose_addresses_are_refused_and_public_ones_permitted() {
        let p = policy(false, "");
        for refused in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "100.64.0.1",
            "224.0.0.1",
            "255.255.255.255",
            "192.0.0.8",
            "198.18.0.1",
            "240.0.0.1",
            "::1",
            "::",
            "fe80::1",
            "fc00::1",
            "fd12:3456::1",
            "ff02::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "64:ff9b::a9fe:a9fe",
            "2001:db8::1",
        ] {
            assert!(p.permits(refused.parse().unwrap()).is_err(), "{refused}");
        }
        for permitted in [
            "8.8.8.8",
            "93.184.216.34",
            "2606:4700::1111",
            "64:ff9b::808:808",
        ] {
            assert!(p.permits(permitted.parse().unwrap()).is_ok(), "{permitted}");
        }
        assert!(policy(true, "")
            .permits("127.0.0.1".parse().unwrap())
            .is_ok());
        let some = policy(false, "10.1.0.0/16, fd00::/8");
        assert!(some.permits("10.1.9.9".parse().unwrap()).is_ok());
        assert!(some.permits("10.2.0.1".parse().unwrap()).is_err());
        assert!(some.permits("fd00::5".parse().unwrap()).is_ok());
        assert!(OutboundPolicy::from_settings(&Settings {
            alert_allowed_networks: "10.0.0.0/33".into(),
            ..Settings::default()
        })
        .is_err());
    }
}
