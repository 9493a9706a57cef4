//! HELO/EHLO name checks (checks.md §2, RFC 5321 §4.1.1.1, §2.3.5).

use std::net::IpAddr;

use super::dns::Dns;
use super::names::{hostname_syntax, lower_no_dot, normalize_ip};
use super::ptr::min_ttl;
use super::spf::SpfResult;
use super::{CheckResult, Verdict};

/// Big providers whose names a sender must never claim (§2.2
/// "impersonation"). Exact match only: their own outbound hosts use
/// subdomains such as `*.outbound.protection.outlook.com`.
const PROVIDER_NAMES: &[&str] = &[
    "gmail.com",
    "googlemail.com",
    "google.com",
    "outlook.com",
    "hotmail.com",
    "live.com",
    "yahoo.com",
    "aol.com",
    "icloud.com",
];

/// What the DNS said about the HELO name.
#[derive(Clone, Debug, Default)]
pub struct HeloDns {
    pub v4: Vec<IpAddr>,
    pub v6: Vec<IpAddr>,
    pub mx: Vec<String>,
    /// Transient failures seen (A, AAAA or MX).
    pub temp_errors: Vec<String>,
    pub ttl: Option<u32>,
}

pub enum HeloSyntax {
    Name(String),
    /// `[192.0.2.1]` / `[IPv6:2001:db8::1]` (RFC 5321 §4.1.3).
    Literal(Option<IpAddr>),
    Invalid(String),
}

pub fn parse_helo(helo: &str) -> HeloSyntax {
    let h = helo.trim();
    if let Some(inner) = h.strip_prefix('[').and_then(|s| s.strip_suffix(']')) {
        let inner = inner
            .strip_prefix("IPv6:")
            .or_else(|| inner.strip_prefix("ipv6:"))
            .unwrap_or(inner);
        return HeloSyntax::Literal(inner.parse::<IpAddr>().ok().map(normalize_ip));
    }
    let lower = lower_no_dot(h);
    if lower == "localhost" || lower == "localhost.localdomain" || lower.ends_with(".localhost") {
        return HeloSyntax::Invalid(format!(
            "{h:?} is a loopback name, not the client's fully qualified domain name"
        ));
    }
    if lower.parse::<IpAddr>().is_ok() {
        return HeloSyntax::Invalid(format!(
            "{h:?} is a bare IP address; RFC 5321 requires an FQDN or a bracketed address literal"
        ));
    }
    match hostname_syntax(&lower) {
        Ok(()) => HeloSyntax::Name(lower),
        Err(why) => HeloSyntax::Invalid(why),
    }
}

pub async fn lookup(dns: &Dns, name: &str) -> HeloDns {
    let (a, aaaa, mx) = tokio::join!(dns.a(name), dns.aaaa(name), dns.mx(name));
    let mut out = HeloDns::default();
    for (label, r) in [("A", &a), ("AAAA", &aaaa), ("MX", &mx)] {
        match r {
            Err(e) => out.temp_errors.push(format!("{label}: {e}")),
            Ok(ans) => out.ttl = min_ttl(out.ttl, Some(ans.ttl())),
        }
    }
    if let Ok(a) = &a {
        out.v4 = a.ips();
    }
    if let Ok(a) = &aaaa {
        out.v6 = a.ips();
    }
    if let Ok(m) = &mx {
        out.mx = m.mx().into_iter().map(|(_, h)| h).collect();
    }
    out
}

/// Combine syntax, DNS, PTR and HELO-SPF findings (table of §2.2).
pub fn evaluate(
    helo: &str,
    ip: IpAddr,
    syntax: &HeloSyntax,
    dns: Option<&HeloDns>,
    ptr_names: &[String],
    helo_spf: Option<SpfResult>,
) -> CheckResult {
    let ip = normalize_ip(ip);
    let name = match syntax {
        HeloSyntax::Invalid(why) => {
            // §0.1: a syntax failure is final; later DNS trouble cannot
            // turn it into `error`.
            return CheckResult::new(
                "helo",
                Verdict::Fail,
                format!(
                    "HELO {helo:?} is invalid: {why} (Postfix rejects with reject_invalid/non_fqdn_helo_hostname)."
                ),
                vec![helo.to_string()],
            );
        }
        HeloSyntax::Literal(lit) => {
            return match lit {
                Some(lit_ip) if *lit_ip == ip => CheckResult::new(
                    "helo",
                    Verdict::Warn,
                    format!(
                        "HELO is the address literal {helo}; it matches {ip}, but receivers treat literals as low-trust; use the host's FQDN."
                    ),
                    vec![helo.to_string()],
                ),
                Some(other) => CheckResult::new(
                    "helo",
                    Verdict::Fail,
                    format!("HELO address literal {helo} is {other}, not the sending IP {ip}."),
                    vec![helo.to_string()],
                ),
                None => CheckResult::new(
                    "helo",
                    Verdict::Fail,
                    format!("HELO {helo:?} is not a valid address literal."),
                    vec![helo.to_string()],
                ),
            };
        }
        HeloSyntax::Name(n) => n.clone(),
    };
    if PROVIDER_NAMES.contains(&name.as_str()) {
        return CheckResult::new(
            "helo",
            Verdict::Fail,
            format!(
                "HELO {name} claims to be a large mailbox provider; receivers reject this as impersonation."
            ),
            vec![name],
        );
    }
    let Some(d) = dns else {
        return CheckResult::new(
            "helo",
            Verdict::Error,
            "HELO DNS lookups were not run.",
            vec![name],
        );
    };
    let mut records = vec![name.clone()];
    records.extend(
        d.v4.iter()
            .chain(d.v6.iter())
            .map(|a| format!("{name} -> {a}")),
    );
    records.extend(d.mx.iter().map(|m| format!("{name} MX {m}")));
    let has_addr = !d.v4.is_empty() || !d.v6.is_empty();
    let mut findings: Vec<(Verdict, String)> = Vec::new();
    if !has_addr && d.mx.is_empty() {
        if !d.temp_errors.is_empty() {
            findings.push((
                Verdict::Error,
                format!(
                    "looking up {name} failed ({}); Postfix answers 450 on this",
                    d.temp_errors.join(", ")
                ),
            ));
        } else {
            findings.push((
                Verdict::Fail,
                format!("{name} has no A, AAAA or MX record (Postfix: \"450 4.7.1 Helo command rejected: Host not found\")"),
            ));
        }
    } else if !has_addr {
        findings.push((
            Verdict::Warn,
            format!("{name} has only an MX record, no address"),
        ));
    } else {
        let same_family: &[IpAddr] = if ip.is_ipv4() { &d.v4 } else { &d.v6 };
        if same_family
            .iter()
            .map(|a| normalize_ip(*a))
            .any(|a| a == ip)
        {
            findings.push((Verdict::Pass, format!("{name} resolves to {ip}")));
        } else if !d.temp_errors.is_empty() {
            findings.push((
                Verdict::Error,
                format!("{name} does not resolve to {ip} in the answers received, and a lookup failed ({})", d.temp_errors.join(", ")),
            ));
        } else {
            findings.push((
                Verdict::Warn,
                format!("{name} resolves elsewhere, not to {ip}"),
            ));
        }
    }
    if !ptr_names.is_empty() && !ptr_names.iter().any(|p| lower_no_dot(p) == name) {
        findings.push((
            Verdict::Warn,
            format!("HELO differs from the PTR name ({})", ptr_names.join(", ")),
        ));
    }
    match helo_spf {
        Some(SpfResult::Fail) | Some(SpfResult::SoftFail) | Some(SpfResult::PermError) => {
            let r = helo_spf.map(|r| r.as_str()).unwrap_or_default();
            findings.push((Verdict::Warn, format!("SPF for the HELO identity is {r}")));
        }
        Some(SpfResult::TempError) => {
            findings.push((
                Verdict::Error,
                "SPF for the HELO identity hit a DNS error".into(),
            ));
        }
        _ => {}
    }
    let verdict = findings
        .iter()
        .fold(Verdict::Pass, |acc, (v, _)| acc.worst(*v));
    let texts: Vec<&str> = findings.iter().map(|(_, t)| t.as_str()).collect();
    let detail = match verdict {
        Verdict::Pass => format!("HELO {name} is a valid FQDN and {}.", texts.join("; ")),
        _ => format!("HELO {name}: {}.", texts.join("; ")),
    };
    CheckResult::new("helo", verdict, detail, records).with_ttl(d.ttl)
}
