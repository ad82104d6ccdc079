//! The SSRF guard (`delivery::egress::EgressPolicy`). The first 16 bytes are an IPv6
//! address, the first 4 an IPv4 one, and the input as text is a URL host. Properties:
//! an IPv4 address gets the same verdict in every IPv6 form that carries it (mapped,
//! NAT64, 6to4, Teredo); metadata addresses are refused under every policy, even one
//! that lists every address; allowing private targets never refuses something the
//! default allows; and `check_url` agrees with `refuse` on IP-literal hosts.
#![no_main]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::LazyLock;

use herald::delivery::egress::EgressPolicy;
use libfuzzer_sys::fuzz_target;
use reqwest::Url;

struct Policies {
    default: EgressPolicy,
    allow_private: EgressPolicy,
    /// `allowed_cidrs` covering every address: only metadata is left to refuse.
    everything: EgressPolicy,
    https_only: EgressPolicy,
}

static POLICIES: LazyLock<Policies> = LazyLock::new(|| {
    let policy = |allow_private, cidrs: &[&str], https_only| EgressPolicy {
        allow_private,
        allowed: cidrs.iter().map(|c| c.parse().expect("a valid CIDR")).collect(),
        https_only,
    };
    let policies = Policies {
        default: policy(false, &[], false),
        allow_private: policy(true, &[], false),
        everything: policy(true, &["0.0.0.0/0", "::/0"], false),
        https_only: policy(false, &[], true),
    };
    // Metadata, as given and in every embedding, under every policy: the same on every
    // input, so checked once per process.
    for policy in [
        &policies.default,
        &policies.allow_private,
        &policies.everything,
    ] {
        for meta in METADATA {
            for ip in forms(meta) {
                assert_eq!(
                    reason(policy, ip),
                    Some("metadata"),
                    "{ip} under {policy:?}"
                );
            }
        }
        for meta in METADATA_V6 {
            assert_eq!(reason(policy, IpAddr::V6(meta)), Some("metadata"));
        }
    }
    policies
});

const METADATA: [Ipv4Addr; 5] = [
    Ipv4Addr::new(169, 254, 169, 254),
    Ipv4Addr::new(169, 254, 170, 2),
    Ipv4Addr::new(169, 254, 170, 23),
    Ipv4Addr::new(100, 100, 100, 200),
    Ipv4Addr::new(168, 63, 129, 16),
];
const METADATA_V6: [Ipv6Addr; 2] = [
    Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254),
    Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x23),
];

fuzz_target!(|data: &[u8]| {
    let policies = &*POLICIES;
    let all = [
        &policies.default,
        &policies.allow_private,
        &policies.everything,
    ];

    let mut v6_bytes = [0u8; 16];
    let n = data.len().min(16);
    v6_bytes[..n].copy_from_slice(&data[..n]);
    let v6 = Ipv6Addr::from(v6_bytes);
    let v4 = Ipv4Addr::new(v6_bytes[0], v6_bytes[1], v6_bytes[2], v6_bytes[3]);

    for ip in [IpAddr::V4(v4), IpAddr::V6(v6)] {
        for policy in all {
            if let Some(refusal) = policy.refuse(ip) {
                assert_eq!(refusal.address, ip.to_string());
            }
        }
        // Opening private ranges only ever opens: whatever it still refuses, the
        // default refuses for the same reason.
        if let Some(refused) = reason(&policies.allow_private, ip) {
            assert_eq!(reason(&policies.default, ip), Some(refused), "{ip}");
        }
        let metadata = match ip {
            IpAddr::V4(v4) => METADATA.contains(&v4),
            IpAddr::V6(v6) => {
                METADATA_V6.contains(&v6)
                    || embedded_v4(v6).is_some_and(|v4| METADATA.contains(&v4))
            }
        };
        assert_eq!(
            reason(&policies.everything, ip),
            metadata.then_some("metadata"),
            "{ip} with every address listed"
        );
    }

    // An IPv4 address is judged the same in each IPv6 form that delivers to it.
    for policy in [&policies.default, &policies.allow_private] {
        let expected = reason(policy, IpAddr::V4(v4));
        for ip in forms(v4) {
            assert_eq!(
                reason(policy, ip),
                expected,
                "{v4} as {ip} under {policy:?}"
            );
        }
    }

    // The input as a URL host: no panic, and IP literals judged as `refuse` judges them.
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(url) = Url::parse(&format!("http://{text}/")) else {
        return;
    };
    let verdict = policies.default.check_url(&url);
    assert_eq!(
        policies.https_only.check_url(&url).map_err(|r| r.reason),
        Err("https-only")
    );
    if let Err(refusal) = &verdict {
        assert!(
            !refusal.address.contains('@'),
            "{:?} leaks userinfo",
            refusal.address
        );
    }
    if !url.username().is_empty() || url.password().is_some() {
        assert_eq!(verdict.map_err(|r| r.reason), Err("userinfo"));
        return;
    }
    let literal = match url.host() {
        Some(url::Host::Ipv4(ip)) => Some(IpAddr::V4(ip)),
        Some(url::Host::Ipv6(ip)) => Some(IpAddr::V6(ip)),
        Some(url::Host::Domain(_)) => None,
        None => panic!("an http URL without a host parsed: {url}"),
    };
    match literal {
        Some(ip) => assert_eq!(
            verdict.map_err(|r| r.reason),
            reason(&policies.default, ip).map_or(Ok(()), Err),
            "{url}"
        ),
        None => assert_eq!(
            verdict,
            Ok(()),
            "a host name is left to the resolver: {url}"
        ),
    }
});

fn reason(policy: &EgressPolicy, ip: IpAddr) -> Option<&'static str> {
    policy.refuse(ip).map(|refusal| refusal.reason)
}

/// The IPv4 address inside an IPv6 one that delivers to it, restated from egress.rs's doc:
/// IPv4-mapped, NAT64 well-known prefix, 6to4 and Teredo.
fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let low = u32::from_be_bytes([
        ip.octets()[12],
        ip.octets()[13],
        ip.octets()[14],
        ip.octets()[15],
    ]);
    match ip.segments() {
        [0, 0, 0, 0, 0, 0xffff, ..] | [0x0064, 0xff9b, 0, 0, 0, 0, ..] => Some(Ipv4Addr::from(low)),
        [0x2002, hi, lo, ..] => Some(Ipv4Addr::from((u32::from(hi) << 16) | u32::from(lo))),
        [0x2001, 0, ..] => Some(Ipv4Addr::from(!low)),
        _ => None,
    }
}

/// `v4` as itself and in the IPv6 forms that reach it: IPv4-mapped, NAT64 (64:ff9b::/96),
/// 6to4 (2002:v4::1) and Teredo (client address inverted in the last 32 bits).
fn forms(v4: Ipv4Addr) -> [IpAddr; 5] {
    let bits = u128::from(u32::from(v4));
    let v6 = |addr: u128| IpAddr::V6(Ipv6Addr::from(addr));
    [
        IpAddr::V4(v4),
        IpAddr::V6(v4.to_ipv6_mapped()),
        v6((0x0064_ff9b_u128 << 96) | bits),
        v6((0x2002_u128 << 112) | (bits << 80) | 1),
        v6((0x2001_0000_4136_e378_8000_63bf_u128 << 32) | u128::from(!u32::from(v4))),
    ]
}
