//! Name helpers: reverse names, host-name syntax, organizational domains.

use std::net::IpAddr;

/// IPv4-mapped IPv6 (`::ffff:a.b.c.d`) is the IPv4 client (checks.md §1.2,
/// RFC 7208 §5).
pub fn normalize_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => ip,
        },
        v4 => v4,
    }
}

/// Reversed labels without a suffix: `d.c.b.a` for IPv4, 32 nibbles for IPv6
/// (RFC 1035 §3.5, RFC 3596 §2.5, RFC 5782 §2).
pub fn reversed_labels(ip: IpAddr) -> String {
    match normalize_ip(ip) {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            format!("{}.{}.{}.{}", o[3], o[2], o[1], o[0])
        }
        IpAddr::V6(v6) => {
            let mut out = String::with_capacity(64);
            for byte in v6.octets().iter().rev() {
                for nibble in [byte & 0x0f, byte >> 4] {
                    if !out.is_empty() {
                        out.push('.');
                    }
                    out.push(char::from_digit(u32::from(nibble), 16).unwrap_or('0'));
                }
            }
            out
        }
    }
}

/// `d.c.b.a.in-addr.arpa` / `…ip6.arpa`.
pub fn reverse_name(ip: IpAddr) -> String {
    let suffix = match normalize_ip(ip) {
        IpAddr::V4(_) => "in-addr.arpa",
        IpAddr::V6(_) => "ip6.arpa",
    };
    format!("{}.{suffix}", reversed_labels(ip))
}

/// Host name syntax per checks.md §2.2 (RFC 5321 §2.3.5, RFC 1123 §2.1):
/// at least two labels, LDH labels of 1–63 characters not starting or ending
/// with `-`, at most 253 characters, TLD not all-numeric. The TLD does not
/// have to be on the Public Suffix List (`test.` must pass, RFC 6761).
pub fn hostname_syntax(name: &str) -> Result<(), String> {
    let name = name.strip_suffix('.').unwrap_or(name);
    if name.is_empty() {
        return Err("the name is empty".into());
    }
    if name.len() > 253 {
        return Err("the name is longer than 253 characters".into());
    }
    let labels: Vec<&str> = name.split('.').collect();
    if labels.len() < 2 {
        return Err(format!(
            "{name:?} is a single label, not a fully qualified domain name"
        ));
    }
    for label in &labels {
        if label.is_empty() {
            return Err(format!("{name:?} has an empty label"));
        }
        if label.len() > 63 {
            return Err(format!("{name:?} has a label longer than 63 characters"));
        }
        if !label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            return Err(format!(
                "{name:?} contains characters other than letters, digits and hyphens"
            ));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(format!(
                "{name:?} has a label starting or ending with a hyphen"
            ));
        }
    }
    if labels
        .last()
        .is_some_and(|tld| tld.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err(format!(
            "{name:?} has an all-numeric top-level label (an IP address is not a host name)"
        ));
    }
    Ok(())
}

/// RFC 7208 §4.3 domain check: multi-label, no empty label, labels ≤63,
/// total ≤253. Underscores and other characters are allowed (SPF targets
/// are DNS names, not host names).
pub fn dns_domain_ok(name: &str) -> bool {
    let name = name.strip_suffix('.').unwrap_or(name);
    if name.is_empty() || name.len() > 253 {
        return false;
    }
    let labels: Vec<&str> = name.split('.').collect();
    labels.len() >= 2 && labels.iter().all(|l| !l.is_empty() && l.len() <= 63)
}

/// Organizational domain per RFC 7489 §3.2 ("public suffix + 1 label") with
/// the Public Suffix List; names under a TLD the list does not know (such as
/// `test.`, RFC 6761) follow the PSL's implicit `*` rule.
pub fn org_domain(domain: &str) -> String {
    let d = domain.trim_end_matches('.').to_ascii_lowercase();
    match psl::domain_str(&d) {
        Some(org) => org.to_string(),
        None => d,
    }
}

/// ASCII case-insensitive prefix test that cannot panic on multi-byte
/// text from DNS.
pub fn starts_with_ci(s: &str, prefix: &str) -> bool {
    s.as_bytes()
        .get(..prefix.len())
        .is_some_and(|head| head.eq_ignore_ascii_case(prefix.as_bytes()))
}

pub fn lower_no_dot(name: &str) -> String {
    name.trim().trim_end_matches('.').to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv6_reverse_matches_rfc3596_vector() {
        let ip: IpAddr = "2001:db8::cb01".parse().unwrap_or(IpAddr::from([0u8; 16]));
        assert_eq!(
            reverse_name(ip),
            "1.0.b.c.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa"
        );
    }

    #[test]
    fn mapped_ipv4_is_ipv4() {
        let ip: IpAddr = "::ffff:192.0.2.10"
            .parse()
            .unwrap_or(IpAddr::from([0u8; 4]));
        assert_eq!(reverse_name(ip), "10.2.0.192.in-addr.arpa");
    }

    #[test]
    fn org_domain_uses_psl() {
        assert_eq!(org_domain("a.b.example.co.uk"), "example.co.uk");
        assert_eq!(org_domain("mail.example.test"), "example.test");
    }
}
