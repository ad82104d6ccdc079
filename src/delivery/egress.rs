//! The SSRF guard: which addresses delivery may connect to. `EgressPolicy::check_url`
//! judges a URL before its request (an IP-literal host never reaches a resolver), and
//! `GuardedResolver`, installed as the delivery client's DNS resolver, judges every
//! address a name resolves to at connect time, so a name that rebinds to a private
//! address after it was saved is still refused.

use std::{
    fmt, io,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    sync::Arc,
};

use ipnet::IpNet;
use reqwest::{
    Url,
    dns::{Addrs, Name, Resolve, Resolving},
};

use super::lookups::SharedLookups;
use crate::{
    config::DeliveryConfig,
    field_error::FieldError,
    subscriptions::{model::Subscription, template::is_template},
};

/// Cloud metadata and credential endpoints. One request to them can hand out the
/// host's cloud credentials, so no setting opens them.
const METADATA_V4: [Ipv4Addr; 5] = [
    Ipv4Addr::new(169, 254, 169, 254), // AWS, GCP, Azure, OpenStack, Oracle instance metadata
    Ipv4Addr::new(169, 254, 170, 2),   // AWS ECS task credentials
    Ipv4Addr::new(169, 254, 170, 23),  // AWS EKS Pod Identity agent
    Ipv4Addr::new(100, 100, 100, 200), // Alibaba Cloud metadata
    Ipv4Addr::new(168, 63, 129, 16),   // Azure WireServer: looks public, so list it by name
];
const METADATA_V6: [Ipv6Addr; 2] = [
    Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254), // AWS instance metadata over IPv6
    Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x23),  // AWS EKS Pod Identity over IPv6
];

/// Which destinations delivery may connect to.
///
/// An address is judged in this order:
/// 1. a cloud metadata address (169.254.169.254, 169.254.170.2, 169.254.170.23,
///    100.100.100.200, 168.63.129.16, fd00:ec2::254, fd00:ec2::23, also when embedded in
///    IPv6) is refused under every policy;
/// 2. an address inside `delivery.allowed_cidrs` is allowed;
/// 3. an IPv6 address that carries an IPv4 one (IPv4-mapped `::ffff:0:0/96`, NAT64
///    `64:ff9b::/96`, 6to4 `2002::/16`, Teredo `2001::/32`) is judged as that IPv4 address;
/// 4. loopback, RFC 1918 private, CGNAT, link-local, unique-local and site-local
///    addresses are refused unless `allow_private` is set;
/// 5. unspecified, broadcast, multicast, documentation, benchmarking and reserved
///    addresses (IPv4-compatible `::a.b.c.d`, `64:ff9b:1::/48`, `100::/64`, IPv6 outside
///    `2000::/3`, ...) are refused even with `allow_private`: none is a webhook endpoint,
///    and `0.0.0.0` reaches the local host. Only an explicit `allowed_cidrs` entry opens one.
#[derive(Debug, Clone)]
pub struct EgressPolicy {
    /// Loopback, private, CGNAT, link-local and unique-local targets are allowed.
    pub allow_private: bool,
    /// Networks allowed whatever else holds, metadata addresses excepted.
    pub allowed: Vec<IpNet>,
    /// Plain `http` URLs are refused.
    pub https_only: bool,
}

/// Why a destination is refused; its `Display` is `forbidden target 127.0.0.1 (loopback)`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("forbidden target {address} ({reason})")]
pub struct Refusal {
    /// The range the address falls in (`loopback`, `private`, `cgnat`, `link-local`,
    /// `unique-local`, `site-local`, `metadata`, `unspecified`, `broadcast`, `multicast`,
    /// `documentation`, `benchmarking`, `reserved`) or the part of the URL refused
    /// (`scheme`, `https-only`, `userinfo`, `host`).
    pub reason: &'static str,
    /// The refused address; for a URL refusal, `scheme://host[:port]` only, because
    /// userinfo, path and query may carry credentials.
    pub address: String,
}

impl Refusal {
    /// The refusal somewhere in `err`'s source chain, e.g. inside the `reqwest::Error` of
    /// a request whose name resolved only to refused addresses: how a failed attempt is
    /// recognised as `forbidden_target` without matching message text.
    pub fn find<'a>(err: &'a (dyn std::error::Error + 'static)) -> Option<&'a Refusal> {
        let mut current = Some(err);
        while let Some(err) = current {
            if let Some(refusal) = err.downcast_ref::<Refusal>() {
                return Some(refusal);
            }
            current = err.source();
        }
        None
    }
}

impl EgressPolicy {
    /// The policy `delivery.allow_private_targets`, `allowed_cidrs` and `https_only` set.
    pub fn from_config(config: &DeliveryConfig) -> Self {
        Self {
            allow_private: config.allow_private_targets,
            allowed: config.allowed_cidrs.clone(),
            https_only: config.https_only,
        }
    }

    /// Why `ip` is refused, or `None` when it is allowed (see the type for the order of
    /// rules). Metadata addresses (169.254.169.254, fd00:ec2::254, 100.100.100.200, ...)
    /// are refused even when `allow_private` or `allowed_cidrs` say otherwise.
    pub fn refuse(&self, ip: IpAddr) -> Option<Refusal> {
        let reason = match ip {
            IpAddr::V4(v4) => self.judge_v4(v4),
            IpAddr::V6(v6) => self.judge_v6(v6),
        }?;
        Some(Refusal {
            reason,
            address: ip.to_string(),
        })
    }

    /// Checks a URL before any connection: scheme `http` or `https` (`https` only with
    /// `https_only`), no userinfo, and a host that is a literal IP judged by
    /// [`refuse`](Self::refuse). Decimal, octal, hex and short IPv4 forms arrive here
    /// already normalised by `Url::parse`. A host name passes: `GuardedResolver` judges
    /// what it resolves to when the connection is made.
    pub fn check_url(&self, url: &Url) -> Result<(), Refusal> {
        let refusal = |reason| Refusal {
            reason,
            address: origin(url),
        };
        match url.scheme() {
            "https" => {}
            "http" if self.https_only => return Err(refusal("https-only")),
            "http" => {}
            _ => return Err(refusal("scheme")),
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(refusal("userinfo"));
        }
        let Some(host) = url.host_str() else {
            return Err(refusal("host"));
        };
        let ip = match host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
            Some(v6) => match v6.parse::<Ipv6Addr>() {
                Ok(v6) => IpAddr::V6(v6),
                // `Url::parse` only brackets valid IPv6, so this is never a name.
                Err(_) => return Err(refusal("host")),
            },
            // `Url::parse` turns every host that ends in a number into dotted IPv4,
            // so anything else here is a name.
            None => match host.parse::<Ipv4Addr>() {
                Ok(v4) => IpAddr::V4(v4),
                Err(_) => return Ok(()),
            },
        };
        self.refuse(ip).map_or(Ok(()), Err)
    }

    /// A subscription's URL as saved: a literal forbidden address (or scheme) is
    /// refused now; a host name is judged again at every connect, where DNS may
    /// answer differently, and a templated URL after rendering, at every attempt.
    pub fn check_subscription(&self, sub: &Subscription) -> Result<(), FieldError> {
        if is_template(&sub.url) {
            return Ok(());
        }
        let url =
            Url::parse(&sub.url).map_err(|e| FieldError::new("url", format!("not a URL: {e}")))?;
        self.check_url(&url)
            .map_err(|refusal| FieldError::new("url", refusal))
    }

    fn judge_v4(&self, ip: Ipv4Addr) -> Option<&'static str> {
        if METADATA_V4.contains(&ip) {
            return Some("metadata");
        }
        if self.is_listed(IpAddr::V4(ip)) {
            return None;
        }
        self.judge_class(classify_v4(ip))
    }

    fn judge_v6(&self, ip: Ipv6Addr) -> Option<&'static str> {
        let inner = embedded_v4(ip);
        if METADATA_V6.contains(&ip) || inner.is_some_and(|v4| METADATA_V4.contains(&v4)) {
            return Some("metadata");
        }
        if self.is_listed(IpAddr::V6(ip)) {
            return None;
        }
        match inner {
            Some(v4) => self.judge_v4(v4),
            None => self.judge_class(classify_v6(ip)),
        }
    }

    fn judge_class(&self, class: Class) -> Option<&'static str> {
        match class {
            Class::Public => None,
            Class::Private(_) if self.allow_private => None,
            Class::Private(reason) | Class::Never(reason) => Some(reason),
        }
    }

    fn is_listed(&self, ip: IpAddr) -> bool {
        self.allowed.iter().any(|cidr| cidr.contains(&ip))
    }

    /// The addresses a name resolved to, or the first refusal among them. A mixed
    /// answer fails as a whole: a name that answers with a private address is not a
    /// public endpoint, whichever address the connector would have tried first.
    fn vet(&self, ips: Vec<IpAddr>) -> Result<Vec<IpAddr>, Refusal> {
        match ips.iter().find_map(|ip| self.refuse(*ip)) {
            Some(refusal) => Err(refusal),
            None => Ok(ips),
        }
    }
}

/// A name lookup for `GuardedResolver::with_lookup`: the addresses a host name resolves to.
pub type Lookup = Arc<dyn Fn(&str) -> Vec<IpAddr> + Send + Sync>;

/// A reqwest DNS resolver that resolves with the system resolver and vets every
/// address against an `EgressPolicy`. When any address is refused the whole answer
/// fails with the [`Refusal`] as the error (message `forbidden target <ip> (<reason>)`,
/// found again with [`Refusal::find`]), so the attempt dead-letters as
/// `forbidden_target`. reqwest never calls a resolver for an IP-literal host: run
/// [`EgressPolicy::check_url`] before each request as well.
#[derive(Clone)]
pub struct GuardedResolver {
    policy: Arc<EgressPolicy>,
    // `None` resolves through the system resolver.
    lookup: Option<Lookup>,
    /// System lookups under way, shared by the connects that ask meanwhile.
    system: SharedLookups,
}

impl GuardedResolver {
    /// Resolves through the system resolver (`getaddrinfo` on tokio's blocking pool),
    /// one lookup for all the connects to a name that ask while it runs.
    pub fn new(policy: Arc<EgressPolicy>) -> Self {
        Self {
            policy,
            lookup: None,
            system: SharedLookups::default(),
        }
    }

    /// Resolves through `lookup` instead, so tests can answer as a rebinding DNS server would.
    pub fn with_lookup(policy: Arc<EgressPolicy>, lookup: Lookup) -> Self {
        Self {
            policy,
            lookup: Some(lookup),
            system: SharedLookups::default(),
        }
    }
}

impl fmt::Debug for GuardedResolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GuardedResolver")
            .field("policy", &self.policy)
            .field(
                "lookup",
                &self.lookup.as_ref().map_or("system", |_| "injected"),
            )
            .finish()
    }
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let policy = Arc::clone(&self.policy);
        let lookup = self.lookup.clone();
        let system = self.system.clone();
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let ips: Vec<IpAddr> = match lookup {
                Some(lookup) => lookup(&host),
                None => {
                    system
                        .resolve(&host, |host| async move {
                            // Port 0: reqwest puts the URL's port (or the scheme's) on each address.
                            let addrs = tokio::net::lookup_host((host.as_str(), 0)).await?;
                            Ok(addrs.map(|addr| addr.ip()).collect())
                        })
                        .await?
                }
            };
            if ips.is_empty() {
                return Err(io::Error::new(
                    io::ErrorKind::NotFound,
                    format!("{host} resolved to no addresses"),
                )
                .into());
            }
            let ips = policy.vet(ips)?;
            let addrs: Addrs = Box::new(ips.into_iter().map(|ip| SocketAddr::new(ip, 0)));
            Ok(addrs)
        })
    }
}

/// `scheme://host[:port]` of a URL, for refusals: never userinfo, path or query.
fn origin(url: &Url) -> String {
    let host = url.host_str().unwrap_or_default();
    match url.port() {
        Some(port) => format!("{}://{host}:{port}", url.scheme()),
        None => format!("{}://{host}", url.scheme()),
    }
}

/// Where an address falls, before the policy has its say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    Public,
    /// Refused unless `allow_private`.
    Private(&'static str),
    /// Refused unless listed in `allowed_cidrs`.
    Never(&'static str),
}

fn classify_v4(ip: Ipv4Addr) -> Class {
    match ip.octets() {
        [255, 255, 255, 255] => Class::Never("broadcast"),
        [0, 0, 0, 0] => Class::Never("unspecified"),
        // "This network": Linux sends some of it to the local host.
        [0, ..] => Class::Never("reserved"),
        [10, ..] | [172, 16..=31, ..] | [192, 168, ..] => Class::Private("private"),
        [100, 64..=127, ..] => Class::Private("cgnat"),
        [127, ..] => Class::Private("loopback"),
        [169, 254, ..] => Class::Private("link-local"),
        [192, 0, 2, _] | [198, 51, 100, _] | [203, 0, 113, _] => Class::Never("documentation"),
        // IETF protocol assignments, and the retired 6to4 relay anycast.
        [192, 0, 0, _] | [192, 88, 99, _] => Class::Never("reserved"),
        [198, 18..=19, ..] => Class::Never("benchmarking"),
        [224..=239, ..] => Class::Never("multicast"),
        [240..=255, ..] => Class::Never("reserved"),
        _ => Class::Public,
    }
}

/// Classifies an IPv6 address that carries no IPv4 one (those are judged as IPv4).
fn classify_v6(ip: Ipv6Addr) -> Class {
    if ip.is_unspecified() {
        return Class::Never("unspecified");
    }
    if ip.is_loopback() {
        return Class::Private("loopback");
    }
    match ip.segments() {
        // The rest of ::/8: IPv4-compatible (::a.b.c.d) and IPv4-translated forms, which
        // some stacks still route to the IPv4 host, and local-use NAT64 64:ff9b:1::/48,
        // where the IPv4 address sits wherever the local prefix length puts it.
        [0x0000..=0x00ff, ..] => Class::Never("reserved"),
        // Discard-only.
        [0x0100, 0, 0, 0, ..] => Class::Never("reserved"),
        [0x2001, 0x0db8, ..] | [0x3fff, 0x0000..=0x0fff, ..] => Class::Never("documentation"),
        [0x2001, 0x0002, 0, ..] => Class::Never("benchmarking"),
        [0xfc00..=0xfdff, ..] => Class::Private("unique-local"),
        [0xfe80..=0xfebf, ..] => Class::Private("link-local"),
        // Deprecated site-local: the private addressing of networks that never moved off it.
        [0xfec0..=0xfeff, ..] => Class::Private("site-local"),
        [0xff00..=0xffff, ..] => Class::Never("multicast"),
        [0x2000..=0x3fff, ..] => Class::Public,
        // Outside global unicast 2000::/3 nothing is assigned to a host on the internet.
        _ => Class::Never("reserved"),
    }
}

/// The IPv4 address an IPv6 address delivers to, for the forms that reach an IPv4
/// host: IPv4-mapped, NAT64 well-known prefix, 6to4 (bits 16..48) and Teredo (the
/// client address, stored inverted in the last 32 bits).
fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let pair = |hi: u16, lo: u16| (u32::from(hi) << 16) | u32::from(lo);
    match ip.segments() {
        [0, 0, 0, 0, 0, 0xffff, hi, lo] | [0x0064, 0xff9b, 0, 0, 0, 0, hi, lo] => {
            Some(Ipv4Addr::from(pair(hi, lo)))
        }
        [0x2002, hi, lo, ..] => Some(Ipv4Addr::from(pair(hi, lo))),
        [0x2001, 0, _, _, _, _, hi, lo] => Some(Ipv4Addr::from(!pair(hi, lo))),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use std::{
        error::Error,
        sync::atomic::{AtomicUsize, Ordering},
    };

    use proptest::prelude::*;

    use super::*;

    fn policy(allow_private: bool, allowed_cidrs: &[&str], https_only: bool) -> EgressPolicy {
        EgressPolicy {
            allow_private,
            allowed: allowed_cidrs.iter().map(|c| c.parse().unwrap()).collect(),
            https_only,
        }
    }

    /// The three policies of the SSRF table: default, private targets allowed, and one
    /// internal subnet opened.
    fn table_policies() -> [EgressPolicy; 3] {
        [
            policy(false, &[], false),
            policy(true, &[], false),
            policy(false, &["10.1.0.0/16"], false),
        ]
    }

    /// `"ok"` when the URL passes, else the refusal's reason.
    fn verdict(policy: &EgressPolicy, url: &str) -> &'static str {
        let url = Url::parse(url).unwrap();
        match policy.check_url(&url) {
            Ok(()) => "ok",
            Err(refusal) => refusal.reason,
        }
    }

    fn reason(policy: &EgressPolicy, ip: IpAddr) -> Option<&'static str> {
        policy.refuse(ip).map(|refusal| refusal.reason)
    }

    fn nat64(v4: Ipv4Addr) -> IpAddr {
        IpAddr::V6(Ipv6Addr::from(
            (0x0064_ff9b_u128 << 96) | u128::from(u32::from(v4)),
        ))
    }

    fn six_to_four(v4: Ipv4Addr) -> IpAddr {
        IpAddr::V6(Ipv6Addr::from(
            (0x2002_u128 << 112) | (u128::from(u32::from(v4)) << 80) | 1,
        ))
    }

    fn teredo(v4: Ipv4Addr) -> IpAddr {
        // Server 65.54.227.120, flags 0x8000, port 0x63bf, then the client inverted.
        IpAddr::V6(Ipv6Addr::from(
            (0x2001_0000_4136_e378_8000_63bf_u128 << 32) | u128::from(!u32::from(v4)),
        ))
    }

    /// The SSRF table. A line of three words is the verdict under the default policy,
    /// with `allow_private`, and with `allowed_cidrs = ["10.1.0.0/16"]`: `ok` or the
    /// refusal's reason. The indented lines under it are the targets that get it.
    const SSRF_TABLE: &str = "
# Loopback in every spelling `Url::parse` normalises.
loopback ok loopback
    http://127.0.0.1/ http://2130706433/ http://0177.0.0.1/ http://0x7f.0.0.1/
    http://0x7f000001/ http://127.1/ http://127.0.0.1./ http://%31%32%37.0.0.1/
    http://127.255.255.254:8080/ http://[::1]/ http://[::ffff:127.0.0.1]/
    http://[::ffff:7f00:1]/ http://[64:ff9b::7f00:1]/ http://[2002:7f00:1::]/
    http://[2001:0:4136:e378:8000:63bf:80ff:fffe]/
# Unspecified: reaches the local host, never opened by allow_private.
unspecified unspecified unspecified
    http://0.0.0.0/ http://0/ http://[::]/ http://[::ffff:0.0.0.0]/
# Metadata: refused under every policy, in every embedding.
metadata metadata metadata
    http://169.254.169.254/ http://2852039166/ http://[::ffff:a9fe:a9fe]/
    http://[64:ff9b::a9fe:a9fe]/ http://[2002:a9fe:a9fe::1]/ http://[fd00:ec2::254]/
    http://[fd00:ec2::23]/ http://100.100.100.200/ http://169.254.170.2/
    http://168.63.129.16/
# Private ranges: opened by allow_private, and by allowed_cidrs where listed.
private ok private
    http://10.0.0.1/ http://10.2.0.1/ http://172.16.0.1/ http://172.31.255.255/
    http://192.168.1.1/
private ok ok
    http://10.1.2.3/ http://10.1.255.255/ http://[::ffff:10.1.2.3]/
    http://[64:ff9b::a01:203]/
cgnat ok cgnat
    http://100.64.0.1/ http://100.127.255.255/
link-local ok link-local
    http://169.254.1.1/ http://[fe80::1]/
unique-local ok unique-local
    http://[fc00::1]/ http://[fd12:3456::1]/
site-local ok site-local
    http://[fec0::1]/
# Never a webhook endpoint, even with allow_private.
reserved reserved reserved
    http://0.1.2.3/ http://192.0.0.8/ http://192.88.99.1/ http://240.0.0.1/ http://[100::1]/
    http://[64:ff9b:1::a00:1]/ http://[::127.0.0.1]/ http://[::8.8.8.8]/ http://[4000::1]/
documentation documentation documentation
    http://192.0.2.1/ http://198.51.100.7/ http://203.0.113.9/ http://[2001:db8::1]/
    http://[3fff::1]/
benchmarking benchmarking benchmarking
    http://198.18.0.1/ http://198.19.255.255/ http://[2001:2::1]/
multicast multicast multicast
    http://224.0.0.1/ http://239.255.255.250/ http://[ff02::1]/
broadcast broadcast broadcast
    http://255.255.255.255/
# Public: allowed under every policy, next to the edges of blocked ranges.
ok ok ok
    http://8.8.8.8/ https://1.1.1.1/ http://172.32.0.1/ http://100.128.0.1/
    http://198.20.0.1/ http://[2606:4700::1111]/ http://[64:ff9b::808:808]/
    http://[::ffff:8.8.8.8]/ http://[2002:808:808::1]/
    http://[2001:0:4136:e378:8000:63bf:f7f7:f7f7]/
# A name passes here; the resolver judges what it resolves to.
ok ok ok
    https://hooks.example.com/x?y=1 http://localhost/
# The URL itself.
scheme scheme scheme
    ftp://example.com/ file:///etc/passwd gopher://127.0.0.1:6379/_
userinfo userinfo userinfo
    http://user:pw@example.com/ http://user@example.com/ http://:pw@example.com/
";

    /// `(verdicts, targets)` rows of [`SSRF_TABLE`].
    fn ssrf_table() -> Vec<([&'static str; 3], Vec<&'static str>)> {
        let mut rows: Vec<([&str; 3], Vec<&str>)> = Vec::new();
        for line in SSRF_TABLE.lines().filter(|l| !l.trim().is_empty()) {
            if line.trim_start().starts_with('#') {
                continue;
            }
            if line.starts_with(' ') {
                let (_, targets) = rows.last_mut().expect("targets follow their verdicts");
                targets.extend(line.split_whitespace());
            } else {
                let verdicts: Vec<&str> = line.split_whitespace().collect();
                rows.push((verdicts.try_into().expect("three verdicts"), Vec::new()));
            }
        }
        rows
    }

    #[test]
    fn every_target_in_the_ssrf_table_gets_its_verdict_under_each_policy() {
        let table = ssrf_table();
        let targets: usize = table.iter().map(|(_, urls)| urls.len()).sum();
        assert!(targets >= 45, "the issue asks for at least 45 targets");
        let policies = table_policies();
        let mut wrong = Vec::new();
        for (want, urls) in &table {
            for url in urls {
                let got = policies.each_ref().map(|p| verdict(p, url));
                if got != *want {
                    wrong.push(format!("{url}: want {want:?}, got {got:?}"));
                }
            }
        }
        assert!(wrong.is_empty(), "wrong verdicts:\n{}", wrong.join("\n"));
    }

    #[test]
    fn https_only_refuses_plain_http_and_passes_https() {
        let policy = policy(false, &[], true);
        assert_eq!(verdict(&policy, "http://8.8.8.8/"), "https-only");
        assert_eq!(verdict(&policy, "https://8.8.8.8/"), "ok");
    }

    #[test]
    fn a_refusal_reads_as_forbidden_target_with_the_address_and_reason() {
        let refusal = policy(false, &[], false)
            .refuse("127.0.0.1".parse().unwrap())
            .unwrap();
        assert_eq!(refusal.to_string(), "forbidden target 127.0.0.1 (loopback)");
    }

    #[test]
    fn a_literal_host_refusal_names_the_normalised_address() {
        let url = Url::parse("http://0x7f.1:8080/hook").unwrap();
        let refusal = policy(false, &[], false).check_url(&url).unwrap_err();
        assert_eq!(refusal.address, "127.0.0.1");
    }

    #[test]
    fn a_url_refusal_leaves_out_userinfo_path_and_query() {
        let url = Url::parse("http://user:hunter2@example.com:8080/p?token=s3cret").unwrap();
        let refusal = policy(false, &[], false).check_url(&url).unwrap_err();
        assert_eq!(
            refusal.to_string(),
            "forbidden target http://example.com:8080 (userinfo)"
        );
    }

    #[test]
    fn metadata_stays_refused_under_the_most_open_policy() {
        let open = policy(true, &["0.0.0.0/0", "::/0"], false);
        for v4 in METADATA_V4 {
            for ip in [
                IpAddr::V4(v4),
                IpAddr::V6(v4.to_ipv6_mapped()),
                nat64(v4),
                six_to_four(v4),
                teredo(v4),
            ] {
                assert_eq!(reason(&open, ip), Some("metadata"), "{ip}");
            }
        }
        for v6 in METADATA_V6 {
            assert_eq!(reason(&open, IpAddr::V6(v6)), Some("metadata"), "{v6}");
        }
        // Everything else is open under it, reserved ranges included.
        assert_eq!(reason(&open, "0.0.0.0".parse().unwrap()), None);
        assert_eq!(reason(&open, "ff02::1".parse().unwrap()), None);
    }

    #[test]
    fn an_ipv6_cidr_opens_ipv6_addresses_inside_it_only() {
        let policy = policy(false, &["fd12:3456::/32"], false);
        assert_eq!(reason(&policy, "fd12:3456::1".parse().unwrap()), None);
        assert_eq!(
            reason(&policy, "fd12:3457::1".parse().unwrap()),
            Some("unique-local")
        );
        assert_eq!(
            reason(&policy, "10.0.0.1".parse().unwrap()),
            Some("private")
        );
    }

    #[test]
    fn an_allowed_cidr_opens_exactly_its_range_at_every_prefix_edge() {
        let cases = [
            ("0.0.0.0/0", "255.255.255.255", true),
            ("10.1.2.3/32", "10.1.2.3", true),
            ("10.1.2.3/32", "10.1.2.4", false),
            ("172.16.0.0/12", "172.31.255.255", true),
            ("172.16.0.0/12", "172.32.0.0", false),
            ("::/0", "ffff::1", true),
            ("::1/128", "::1", true),
            ("::1/128", "::2", false),
            ("2001:db8::/32", "2001:db9::", false),
        ];
        for (cidr, ip, inside) in cases {
            let policy = policy(false, &[cidr], false);
            assert_eq!(policy.is_listed(ip.parse().unwrap()), inside, "{cidr} {ip}");
        }
    }

    async fn resolve(
        resolver: &GuardedResolver,
        host: &str,
    ) -> Result<Vec<IpAddr>, Box<dyn Error>> {
        match resolver.resolve(host.parse().unwrap()).await {
            Ok(addrs) => Ok(addrs.map(|addr| addr.ip()).collect()),
            Err(err) => Err(err),
        }
    }

    fn answering(ips: &'static [&'static str]) -> Lookup {
        Arc::new(move |_| ips.iter().map(|ip| ip.parse().unwrap()).collect())
    }

    /// A resolver under the default policy whose every lookup answers `ips`.
    fn resolver_answering(ips: &'static [&'static str]) -> GuardedResolver {
        GuardedResolver::with_lookup(Arc::new(policy(false, &[], false)), answering(ips))
    }

    #[tokio::test]
    async fn a_mixed_public_and_private_answer_is_refused_whole() {
        let resolver = resolver_answering(&["93.184.216.34", "10.0.0.7"]);
        let err = resolve(&resolver, "mixed.test").await.unwrap_err();
        assert_eq!(err.to_string(), "forbidden target 10.0.0.7 (private)");
        assert_eq!(Refusal::find(&*err).unwrap().reason, "private");
    }

    #[tokio::test]
    async fn a_public_answer_resolves_to_every_address() {
        let resolver = resolver_answering(&["93.184.216.34", "2606:2800:220:1::1"]);
        let ips = resolve(&resolver, "public.test").await.unwrap();
        assert_eq!(
            ips,
            [
                "93.184.216.34".parse::<IpAddr>().unwrap(),
                "2606:2800:220:1::1".parse().unwrap()
            ]
        );
    }

    #[tokio::test]
    async fn a_name_that_rebinds_to_loopback_is_refused_on_the_second_lookup() {
        let calls = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&calls);
        let rebinding: Lookup = Arc::new(move |_| {
            let ip = match counter.fetch_add(1, Ordering::SeqCst) {
                0 => Ipv4Addr::new(93, 184, 216, 34),
                _ => Ipv4Addr::LOCALHOST,
            };
            vec![IpAddr::V4(ip)]
        });
        let resolver = GuardedResolver::with_lookup(Arc::new(policy(false, &[], false)), rebinding);
        assert!(resolve(&resolver, "rebind.test").await.is_ok());
        let err = resolve(&resolver, "rebind.test").await.unwrap_err();
        assert_eq!(err.to_string(), "forbidden target 127.0.0.1 (loopback)");
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn an_empty_answer_is_an_error_rather_than_no_addresses() {
        let resolver = resolver_answering(&[]);
        let err = resolve(&resolver, "empty.test").await.unwrap_err();
        assert_eq!(err.to_string(), "empty.test resolved to no addresses");
    }

    #[tokio::test]
    async fn localhost_through_the_system_resolver_is_refused_by_default() {
        let resolver = GuardedResolver::new(Arc::new(policy(false, &[], false)));
        let err = resolve(&resolver, "localhost").await.unwrap_err();
        assert_eq!(Refusal::find(&*err).unwrap().reason, "loopback");

        let resolver = GuardedResolver::new(Arc::new(policy(true, &[], false)));
        let ips = resolve(&resolver, "localhost").await.unwrap();
        assert!(ips.iter().all(IpAddr::is_loopback), "{ips:?}");
    }

    /// A one-shot HTTP server on 127.0.0.1 answering 204 to each connection.
    async fn answer_204() -> u16 {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let mut buf = [0; 1024];
                let _ = stream.read(&mut buf).await;
                let _ = stream
                    .write_all(b"HTTP/1.1 204 No Content\r\nconnection: close\r\n\r\n")
                    .await;
            }
        });
        port
    }

    fn guarded_client(policy: EgressPolicy) -> reqwest::Client {
        // reqwest is built without a default TLS provider; herald's main installs ring.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let resolver = GuardedResolver::with_lookup(Arc::new(policy), answering(&["127.0.0.1"]));
        reqwest::Client::builder()
            .no_proxy()
            .dns_resolver(Arc::new(resolver))
            .build()
            .unwrap()
    }

    #[tokio::test]
    async fn a_client_with_the_guarded_resolver_refuses_a_name_that_resolves_to_loopback() {
        let port = answer_204().await;
        let url = format!("http://hook.test:{port}/");

        let err = guarded_client(policy(false, &[], false))
            .get(&url)
            .send()
            .await
            .unwrap_err();
        let refusal = Refusal::find(&err).expect("the refusal survives reqwest's error chain");
        assert_eq!(refusal.to_string(), "forbidden target 127.0.0.1 (loopback)");

        let response = guarded_client(policy(false, &["127.0.0.1/32"], false))
            .get(&url)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 204);
    }

    #[tokio::test]
    async fn an_ip_literal_url_never_reaches_the_resolver_so_check_url_must_come_first() {
        let port = answer_204().await;
        let url = Url::parse(&format!("http://127.0.0.1:{port}/")).unwrap();
        let policy = policy(false, &[], false);
        assert_eq!(policy.check_url(&url).unwrap_err().reason, "loopback");
        // The resolver alone lets it through: reqwest dials IP literals directly.
        let response = guarded_client(policy).get(url).send().await.unwrap();
        assert_eq!(response.status(), 204);
    }

    proptest! {
        #[test]
        fn an_embedded_ipv4_is_judged_like_the_ipv4_itself(bits: u32) {
            let v4 = Ipv4Addr::from(bits);
            for policy in table_policies() {
                let want = reason(&policy, IpAddr::V4(v4));
                prop_assert_eq!(reason(&policy, IpAddr::V6(v4.to_ipv6_mapped())), want);
                prop_assert_eq!(reason(&policy, nat64(v4)), want);
                prop_assert_eq!(reason(&policy, six_to_four(v4)), want);
                prop_assert_eq!(reason(&policy, teredo(v4)), want);
            }
        }

        #[test]
        fn a_decimal_ipv4_host_is_judged_like_its_dotted_form(bits: u32) {
            let policy = policy(false, &[], false);
            let url = Url::parse(&format!("http://{bits}/")).unwrap();
            let got = policy.check_url(&url).err().map(|refusal| refusal.reason);
            prop_assert_eq!(got, reason(&policy, IpAddr::V4(Ipv4Addr::from(bits))));
        }

        #[test]
        fn refuse_never_panics_on_any_ipv6_address(bits: u128) {
            for policy in table_policies() {
                let _ = policy.refuse(IpAddr::V6(Ipv6Addr::from(bits)));
            }
        }

        #[test]
        fn check_url_never_panics_on_any_host(host in "\\PC{0,40}") {
            if let Ok(url) = Url::parse(&format!("http://{host}/")) {
                for policy in table_policies() {
                    let _ = policy.check_url(&url);
                }
            }
        }
    }
}
