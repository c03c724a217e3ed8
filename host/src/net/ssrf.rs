//! The SSRF guard: which addresses a webhook may be delivered to.
//!
//! Subscription URLs come from users, so without a guard anyone who can create a subscription
//! could make the host POST to its own admin port, the cloud metadata service
//! (`169.254.169.254`) or anything else on the internal network. Checking the URL's host when
//! the subscription is created is not enough: a name can resolve to a public address then and
//! to `127.0.0.1` a minute later (DNS rebinding). So the policy ([`forbidden_reason`]) is applied
//! to every resolved address at connection time by `GuardedResolver`, the only resolver the
//! delivery client uses, and to IP-literal hosts (which are never resolved) by the client itself.
//!
//! The policy is one table of ranges, matched by longest prefix, so a narrower range (the IPv4
//! broadcast address inside `240.0.0.0/4`) gives its own reason. For IPv6 anything outside
//! global unicast `2000::/3` is refused, so ranges nobody thought of stay closed by default.

use std::error::Error as StdError;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use reqwest::dns::{Addrs, Name, Resolve, Resolving};

/// What the policy does with the addresses of one range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Rule {
    /// Never contact these addresses, for this reason.
    Refuse(&'static str),
    /// Judge by the IPv4 address carried in the low 32 bits (IPv4-mapped, NAT64).
    Embedded,
    /// Global unicast: allowed unless a narrower range refuses it.
    Allow,
}

use Rule::{Allow, Embedded, Refuse};

/// Every special range, IPv4 then IPv6. Matched by longest prefix; an IPv4 address in no range
/// is allowed, an IPv6 address in no narrower range falls back to `::/0` or `2000::/3`.
const RULES: &[(IpNet, Rule)] = &[
    (v4([0, 0, 0, 0], 8), Refuse("this network")),
    (v4([0, 0, 0, 0], 32), Refuse("unspecified")),
    (v4([10, 0, 0, 0], 8), Refuse("private")),
    (v4([100, 64, 0, 0], 10), Refuse("carrier-grade NAT")),
    (v4([127, 0, 0, 0], 8), Refuse("loopback")),
    (v4([169, 254, 0, 0], 16), Refuse("link-local")),
    (v4([172, 16, 0, 0], 12), Refuse("private")),
    (v4([192, 0, 0, 0], 24), Refuse("protocol assignments")),
    (v4([192, 0, 2, 0], 24), Refuse("documentation")),
    (v4([192, 88, 99, 0], 24), Refuse("6to4 relay")),
    (v4([192, 168, 0, 0], 16), Refuse("private")),
    (v4([198, 18, 0, 0], 15), Refuse("benchmarking")),
    (v4([198, 51, 100, 0], 24), Refuse("documentation")),
    (v4([203, 0, 113, 0], 24), Refuse("documentation")),
    (v4([224, 0, 0, 0], 4), Refuse("multicast")),
    (v4([240, 0, 0, 0], 4), Refuse("reserved")),
    (v4([255, 255, 255, 255], 32), Refuse("broadcast")),
    (v6([], 0), Refuse("reserved")),
    (v6([0x2000], 3), Allow),
    (v6([], 128), Refuse("unspecified")),
    (v6([0, 0, 0, 0, 0, 0, 0, 1], 128), Refuse("loopback")),
    (v6([], 96), Refuse("IPv4-compatible")),
    (v6([0, 0, 0, 0, 0, 0xffff], 96), Embedded),
    (v6([0x64, 0xff9b], 96), Embedded),
    (v6([0x64, 0xff9b, 1], 48), Refuse("local-use NAT64")),
    (v6([0x100], 64), Refuse("discard-only")),
    (v6([0x2001], 23), Refuse("protocol assignments")),
    (v6([0x2001], 32), Refuse("Teredo")),
    (v6([0x2001, 0x2], 48), Refuse("benchmarking")),
    (v6([0x2001, 0x10], 28), Refuse("ORCHID")),
    (v6([0x2001, 0xdb8], 32), Refuse("documentation")),
    (v6([0x2002], 16), Refuse("6to4")),
    (v6([0x3fff], 20), Refuse("documentation")),
    (v6([0x5f00], 16), Refuse("segment routing")),
    (v6([0xfc00], 7), Refuse("unique local")),
    (v6([0xfe80], 10), Refuse("link-local")),
    (v6([0xfec0], 10), Refuse("site-local")),
    (v6([0xff00], 8), Refuse("multicast")),
];

/// An IPv4 range, for the table.
const fn v4(octets: [u8; 4], prefix_len: u8) -> IpNet {
    let [a, b, c, d] = octets;
    IpNet::V4(Ipv4Net::new_assert(Ipv4Addr::new(a, b, c, d), prefix_len))
}

/// An IPv6 range from its leading segments (the rest are zero), for the table.
const fn v6<const N: usize>(head: [u16; N], prefix_len: u8) -> IpNet {
    let mut segments = [0u16; 8];
    let mut i = 0;
    while i < N {
        segments[i] = head[i];
        i += 1;
    }
    let [a, b, c, d, e, f, g, h] = segments;
    IpNet::V6(Ipv6Net::new_assert(
        Ipv6Addr::new(a, b, c, d, e, f, g, h),
        prefix_len,
    ))
}

/// Why `ip` may not be contacted, or None when it is a global unicast address.
///
/// An IPv4-mapped (`::ffff:a.b.c.d`) or NAT64 (`64:ff9b::a.b.c.d`) address is judged by the
/// IPv4 address it carries, and a refusal gives that address's reason.
pub fn forbidden_reason(ip: IpAddr) -> Option<&'static str> {
    match rule_for(ip) {
        Allow => None,
        Refuse(reason) => Some(reason),
        Embedded => forbidden_reason(IpAddr::V4(low_32_bits(ip))),
    }
}

/// The rule of the narrowest range holding `ip`.
fn rule_for(ip: IpAddr) -> Rule {
    RULES
        .iter()
        .filter(|(net, _)| net.contains(&ip))
        .max_by_key(|(net, _)| net.prefix_len())
        .map_or(Allow, |(_, rule)| *rule)
}

/// The IPv4 address in the low 32 bits of an IPv6 address (an IPv4 address is itself).
fn low_32_bits(ip: IpAddr) -> Ipv4Addr {
    match ip {
        IpAddr::V4(v4) => v4,
        IpAddr::V6(v6) => {
            let [.., a, b, c, d] = v6.octets();
            Ipv4Addr::new(a, b, c, d)
        }
    }
}

/// A name resolved to an address the policy refuses. The client finds it in a failed request's
/// error chain and reports it as [`super::NetError::Forbidden`].
#[derive(Debug, thiserror::Error)]
#[error("{host} resolves to {ip}, which is forbidden ({reason})")]
pub(crate) struct ForbiddenAddress {
    /// The name that was looked up.
    pub(crate) host: String,
    /// The first refused address among the results.
    pub(crate) ip: IpAddr,
    /// Why that address is refused.
    pub(crate) reason: &'static str,
}

/// The delivery client's DNS resolver: the system resolver, then the address policy on every
/// result. One refused address fails the whole lookup, so the connection can never be made to
/// it, whichever address the connector would have tried first.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct GuardedResolver;

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let addrs: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            check_resolved(&host, &addrs)?;
            Ok(Box::new(addrs.into_iter()) as Addrs)
        })
    }
}

/// Refuses the lookup result of `host` if any of `addrs` is forbidden.
fn check_resolved(host: &str, addrs: &[SocketAddr]) -> Result<(), ForbiddenAddress> {
    let refused = addrs
        .iter()
        .find_map(|addr| forbidden_reason(addr.ip()).map(|reason| (addr.ip(), reason)));
    match refused {
        Some((ip, reason)) => Err(ForbiddenAddress {
            host: host.to_owned(),
            ip,
            reason,
        }),
        None => Ok(()),
    }
}

/// The [`ForbiddenAddress`] somewhere in `err`'s source chain, if any.
pub(crate) fn find_forbidden<'e>(
    err: &'e (dyn StdError + 'static),
) -> Option<&'e ForbiddenAddress> {
    let mut current = Some(err);
    while let Some(e) = current {
        if let Some(found) = e.downcast_ref::<ForbiddenAddress>() {
            return Some(found);
        }
        current = e.source();
    }
    None
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;
    use std::str::FromStr;

    /// Asserts that `ip` is refused for `reason`.
    #[track_caller]
    fn refused(ip: &str, reason: &str) {
        let addr: IpAddr = ip.parse().unwrap();
        assert_eq!(forbidden_reason(addr), Some(reason), "{ip}");
    }

    /// Asserts that `ip` is allowed.
    #[track_caller]
    fn allowed(ip: &str) {
        let addr: IpAddr = ip.parse().unwrap();
        assert_eq!(forbidden_reason(addr), None, "{ip}");
    }

    #[test]
    fn public_addresses_are_allowed() {
        allowed("93.184.216.34");
        allowed("8.8.8.8");
        allowed("1.1.1.1");
        allowed("2606:4700::1111");
        allowed("2a00:1450:4001:80b::200e");
    }

    #[test]
    fn ipv4_special_ranges_are_refused_and_their_neighbours_are_not() {
        refused("0.0.0.0", "unspecified");
        refused("0.1.2.3", "this network");
        refused("0.255.255.255", "this network");
        allowed("1.0.0.0");
        refused("10.0.0.0", "private");
        refused("10.255.255.255", "private");
        allowed("9.255.255.255");
        allowed("11.0.0.0");
        refused("100.64.0.0", "carrier-grade NAT");
        refused("100.127.255.255", "carrier-grade NAT");
        allowed("100.63.255.255");
        allowed("100.128.0.0");
        refused("127.0.0.1", "loopback");
        refused("127.255.255.254", "loopback");
        allowed("128.0.0.0");
        refused("169.254.169.254", "link-local");
        allowed("169.253.255.255");
        allowed("169.255.0.0");
        refused("172.16.0.0", "private");
        refused("172.31.255.255", "private");
        allowed("172.15.255.255");
        allowed("172.32.0.0");
        refused("192.0.0.8", "protocol assignments");
        allowed("192.0.1.0");
        refused("192.0.2.1", "documentation");
        allowed("192.0.3.0");
        refused("192.88.99.1", "6to4 relay");
        allowed("192.88.98.255");
        allowed("192.88.100.0");
        refused("192.168.1.1", "private");
        allowed("192.167.255.255");
        allowed("192.169.0.0");
        refused("198.18.0.1", "benchmarking");
        refused("198.19.255.255", "benchmarking");
        allowed("198.17.255.255");
        allowed("198.20.0.0");
        refused("198.51.100.7", "documentation");
        allowed("198.51.101.0");
        refused("203.0.113.9", "documentation");
        allowed("203.0.114.0");
        allowed("203.0.112.255");
        refused("224.0.0.1", "multicast");
        refused("239.255.255.255", "multicast");
        allowed("223.255.255.255");
        refused("240.0.0.1", "reserved");
        refused("255.255.255.254", "reserved");
        refused("255.255.255.255", "broadcast");
    }

    #[test]
    fn ipv6_special_ranges_are_refused() {
        refused("::", "unspecified");
        refused("::1", "loopback");
        refused("::2", "IPv4-compatible");
        refused("::7f00:1", "IPv4-compatible");
        refused("::808:808", "IPv4-compatible");
        refused("100::1", "discard-only");
        refused("100::ffff:ffff:ffff:ffff", "discard-only");
        refused("100:0:0:1::", "reserved");
        refused("2001::1", "Teredo");
        refused("2001:0:ffff:ffff::", "Teredo");
        refused("2001:2::1", "benchmarking");
        refused("2001:2:0:ffff::1", "benchmarking");
        refused("2001:10::1", "ORCHID");
        refused("2001:1f:ffff::1", "ORCHID");
        refused("2001:20::1", "protocol assignments");
        refused("2001:db8::1", "documentation");
        refused("2001:db8:ffff::1", "documentation");
        allowed("2001:db9::1");
        allowed("2001:200::1");
        refused("2002:7f00:1::", "6to4");
        refused("2002:5db8:d822::1", "6to4");
        allowed("2003::1");
        refused("3fff::1", "documentation");
        allowed("3ffe:ffff::1");
        refused("5f00::1", "segment routing");
        refused("fc00::1", "unique local");
        refused("fdff:ffff::1", "unique local");
        refused("fe80::1", "link-local");
        refused("febf::1", "link-local");
        refused("fec0::1", "site-local");
        refused("feff::1", "site-local");
        refused("ff02::1", "multicast");
        refused("ff0e::1", "multicast");
        refused("fbff::1", "reserved");
        refused("4000::1", "reserved");
        refused("1fff:ffff::1", "reserved");
        refused("::ffff:0:0:1", "reserved");
    }

    #[test]
    fn ipv4_mapped_addresses_are_judged_by_the_embedded_address() {
        allowed("::ffff:93.184.216.34");
        refused("::ffff:127.0.0.1", "loopback");
        refused("::ffff:10.1.2.3", "private");
        refused("::ffff:169.254.169.254", "link-local");
        refused("::ffff:0.0.0.0", "unspecified");
    }

    #[test]
    fn nat64_addresses_are_judged_by_the_embedded_address() {
        allowed("64:ff9b::93.184.216.34");
        refused("64:ff9b::10.0.0.1", "private");
        refused("64:ff9b::127.0.0.1", "loopback");
        refused("64:ff9b::169.254.169.254", "link-local");
        refused("64:ff9b:1::93.184.216.34", "local-use NAT64");
        refused("64:ff9b:1:ffff::1", "local-use NAT64");
        refused("64:ff9b:2::1", "reserved");
    }

    #[test]
    fn one_refused_address_fails_the_whole_lookup() {
        let public: SocketAddr = "93.184.216.34:0".parse().unwrap();
        let private: SocketAddr = "[fd00::1]:0".parse().unwrap();
        assert!(check_resolved("example.com", &[public]).is_ok());
        let err = check_resolved("example.com", &[public, private]).unwrap_err();
        assert_eq!(err.ip, private.ip());
        assert_eq!(err.reason, "unique local");
        assert_eq!(
            err.to_string(),
            "example.com resolves to fd00::1, which is forbidden (unique local)"
        );
    }

    #[tokio::test]
    async fn the_resolver_refuses_localhost() {
        let name = Name::from_str("localhost").unwrap();
        let Err(err) = GuardedResolver.resolve(name).await else {
            panic!("localhost resolved");
        };
        let found = find_forbidden(&*err).unwrap();
        assert_eq!(found.host, "localhost");
        assert_eq!(found.reason, "loopback");
        assert!(err.to_string().contains("loopback"), "{err}");
    }

    #[test]
    fn the_table_has_no_duplicate_ranges() {
        for (i, (net, _)) in RULES.iter().enumerate() {
            assert!(
                RULES[i + 1..].iter().all(|(other, _)| other != net),
                "{net} is listed twice"
            );
        }
    }
}
