//! PTR and forward-confirmed reverse DNS (checks.md §1, RFC 8601 §3 iprev).
//!
//! Implemented here rather than with mail-auth's `verify_iprev`, which looks
//! at only the first two PTR names and calls "forward name NXDOMAIN"
//! `permerror` where RFC 8601 §2.7.3 says `fail` (checks.md §1.5).

use std::net::IpAddr;

use futures::future::join_all;

use super::dns::{Dns, DnsResult};
use super::names::{self, hostname_syntax, normalize_ip, reverse_name};
use super::{CheckResult, Verdict};

/// RFC 7208 §4.6.4 and checks.md §1.3 step 2: use at most 10 PTR names.
pub const MAX_PTR_NAMES: usize = 10;

/// Outcome of the forward lookup of one PTR name.
#[derive(Clone, Debug, PartialEq)]
pub enum Forward {
    Confirmed,
    Elsewhere(Vec<IpAddr>),
    /// NXDOMAIN / NODATA: RFC 8601 §2.7.3 "forward query completed but
    /// produced no result" is `fail`.
    NoAddress,
    TempError(String),
    InvalidName(String),
}

#[derive(Clone, Debug)]
pub struct PtrFindings {
    pub ip: IpAddr,
    pub reverse_name: String,
    /// `Err` = the PTR query itself failed transiently.
    pub lookup: Result<Vec<String>, String>,
    pub forward: Vec<(String, Forward)>,
    pub ttl: Option<u32>,
}

impl PtrFindings {
    /// PTR names seen (for the HELO ≠ rDNS comparison, §2.2).
    pub fn names(&self) -> Vec<String> {
        self.lookup.clone().unwrap_or_default()
    }
}

/// Run the PTR query and the forward confirmations.
pub async fn lookup(dns: &Dns, ip: IpAddr) -> PtrFindings {
    let ip = normalize_ip(ip);
    let rname = reverse_name(ip);
    let mut ttl = None;
    let answer = dns.ptr(&rname).await;
    let names = match &answer {
        Err(e) => Err(e.to_string()),
        Ok(a) => {
            ttl = Some(a.ttl());
            let mut names = a.ptr_names();
            names.sort();
            names.dedup();
            Ok(names)
        }
    };
    let mut forward = Vec::new();
    if let Ok(names) = &names {
        let checked: Vec<&String> = names.iter().take(MAX_PTR_NAMES).collect();
        let lookups = join_all(checked.iter().map(|n| async {
            if let Err(why) = hostname_syntax(n) {
                return (None, Forward::InvalidName(why));
            }
            let r: DnsResult = dns.addr_for(n, ip).await;
            match r {
                Err(e) => (None, Forward::TempError(e.to_string())),
                Ok(a) => {
                    let t = Some(a.ttl());
                    let addrs: Vec<IpAddr> = a.ips().into_iter().map(normalize_ip).collect();
                    if addrs.is_empty() {
                        (t, Forward::NoAddress)
                    } else if addrs.contains(&ip) {
                        (t, Forward::Confirmed)
                    } else {
                        (t, Forward::Elsewhere(addrs))
                    }
                }
            }
        }))
        .await;
        for (name, (t, f)) in checked.into_iter().zip(lookups) {
            ttl = min_ttl(ttl, t);
            forward.push((name.clone(), f));
        }
    }
    PtrFindings {
        ip,
        reverse_name: rname,
        lookup: names,
        forward,
        ttl,
    }
}

pub(crate) fn min_ttl(a: Option<u32>, b: Option<u32>) -> Option<u32> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x.min(y)),
        (x, None) => x,
        (None, y) => y,
    }
}

/// `fcrdns`: the forward confirmation alone (pass / fail / error, §0.1).
pub fn evaluate_fcrdns(f: &PtrFindings) -> CheckResult {
    let records: Vec<String> = f
        .forward
        .iter()
        .map(|(n, fw)| match fw {
            Forward::Confirmed => format!("{n} -> {}", f.ip),
            Forward::Elsewhere(a) => format!(
                "{n} -> {}",
                a.iter()
                    .map(|x| x.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            Forward::NoAddress => format!("{n} -> (no address)"),
            Forward::TempError(e) => format!("{n} -> (lookup failed: {e})"),
            Forward::InvalidName(_) => format!("{n} -> (not a host name)"),
        })
        .collect();
    let (verdict, detail) = match &f.lookup {
        Err(e) => (
            Verdict::Error,
            format!(
                "The PTR lookup for {} failed ({e}), so forward confirmation could not be checked; receivers defer on this too.",
                f.ip
            ),
        ),
        Ok(names) if names.is_empty() => (
            Verdict::Fail,
            format!(
                "{} has no PTR record, so there is no name to confirm forward.",
                f.ip
            ),
        ),
        Ok(_) => {
            if let Some((n, _)) = f.forward.iter().find(|(_, fw)| *fw == Forward::Confirmed) {
                (
                    Verdict::Pass,
                    format!("Forward-confirmed: {n} resolves back to {}.", f.ip),
                )
            } else if let Some((n, Forward::TempError(e))) = f
                .forward
                .iter()
                .find(|(_, fw)| matches!(fw, Forward::TempError(_)))
            {
                // RFC 8601 §2.7.3: no match and a transient failure is temperror.
                (
                    Verdict::Error,
                    format!(
                        "No PTR name confirmed {} yet and the lookup of {n} failed ({e}).",
                        f.ip
                    ),
                )
            } else {
                (
                    Verdict::Fail,
                    format!(
                        "None of the PTR names of {} resolves back to it (Gmail defers this with 4.7.23).",
                        f.ip
                    ),
                )
            }
        }
    };
    CheckResult::new("fcrdns", verdict, detail, records).with_ttl(f.ttl)
}

/// `ptr`: the PTR findings (§1.4): no PTR → fail, no confirmation → fail,
/// several names / generic name / several organisations → warn.
pub fn evaluate_ptr(f: &PtrFindings) -> CheckResult {
    let names = match &f.lookup {
        Err(e) => {
            return CheckResult::new(
                "ptr",
                Verdict::Error,
                format!(
                    "The PTR lookup for {} ({}) failed: {e}; receivers defer mail on this as well.",
                    f.ip, f.reverse_name
                ),
                vec![],
            )
            .with_ttl(f.ttl);
        }
        Ok(n) => n.clone(),
    };
    if names.is_empty() {
        return CheckResult::new(
            "ptr",
            Verdict::Fail,
            format!(
                "{} has no PTR record ({} is empty); Gmail and Yahoo require one (Gmail 421-4.7.23).",
                f.ip, f.reverse_name
            ),
            vec![],
        )
        .with_ttl(f.ttl);
    }
    let valid: Vec<&String> = names
        .iter()
        .filter(|n| hostname_syntax(n).is_ok())
        .collect();
    if valid.is_empty() {
        let why = hostname_syntax(&names[0]).err().unwrap_or_default();
        return CheckResult::new(
            "ptr",
            Verdict::Fail,
            format!("The PTR of {} is not a usable host name: {why}.", f.ip),
            names,
        )
        .with_ttl(f.ttl);
    }
    let confirmed = f.forward.iter().any(|(_, fw)| *fw == Forward::Confirmed);
    let temp = f
        .forward
        .iter()
        .any(|(_, fw)| matches!(fw, Forward::TempError(_)));
    if !confirmed {
        let (verdict, detail) = if temp {
            (
                Verdict::Error,
                format!(
                    "{} has PTR {}, but its forward lookup failed transiently.",
                    f.ip,
                    names.join(", ")
                ),
            )
        } else {
            (
                Verdict::Fail,
                format!(
                    "{} has PTR {}, but no PTR name resolves back to {} (not forward-confirmed).",
                    f.ip,
                    names.join(", "),
                    f.ip
                ),
            )
        };
        return CheckResult::new("ptr", verdict, detail, names).with_ttl(f.ttl);
    }
    let mut warnings = Vec::new();
    if names.len() > 1 {
        warnings.push(format!(
            "{} PTR names are published; publish exactly one per sending IP",
            names.len()
        ));
        let mut orgs: Vec<String> = valid.iter().map(|n| names::org_domain(n)).collect();
        orgs.sort();
        orgs.dedup();
        if orgs.len() > 1 {
            warnings.push(format!(
                "the PTR names belong to different organisations ({})",
                orgs.join(", ")
            ));
        }
    }
    for n in &valid {
        if let Some(why) = generic_name(n, f.ip) {
            warnings.push(format!(
                "{n} looks like a generic/dynamic-pool name ({why})"
            ));
        }
    }
    if warnings.is_empty() {
        CheckResult::new(
            "ptr",
            Verdict::Pass,
            format!(
                "{} has PTR {} and it is forward-confirmed.",
                f.ip,
                names.join(", ")
            ),
            names,
        )
        .with_ttl(f.ttl)
    } else {
        CheckResult::new(
            "ptr",
            Verdict::Warn,
            format!(
                "{} has a forward-confirmed PTR, but {}.",
                f.ip,
                warnings.join("; ")
            ),
            names,
        )
        .with_ttl(f.ttl)
    }
}

/// Keywords of dynamic/consumer pools (checks.md §1.6: Haraka, fqrdns.pcre,
/// pymilter `dynip`). Matched against whole alphabetic tokens, so
/// `generaldynamics.com` does not match `dyn`.
const GENERIC_WORDS: &[&str] = &[
    "dyn",
    "dynamic",
    "dhcp",
    "dsl",
    "adsl",
    "vdsl",
    "xdsl",
    "cable",
    "pool",
    "ppp",
    "pppoe",
    "dial",
    "dialup",
    "dialin",
    "client",
    "clients",
    "cust",
    "customer",
    "broadband",
    "unassigned",
    "nat",
    "dynip",
];

/// Why `name` looks generic, or `None`. Warn-only heuristics (§1.6).
pub fn generic_name(name: &str, ip: IpAddr) -> Option<String> {
    let name = names::lower_no_dot(name);
    let org = names::org_domain(&name);
    let host = name
        .strip_suffix(&org)
        .map(|h| h.trim_end_matches('.'))
        .unwrap_or(&name);
    if host.is_empty() {
        return None;
    }
    if name.ends_with(".compute.amazonaws.com") || name.ends_with(".compute-1.amazonaws.com") {
        return Some("cloud provider default name (EC2)".into());
    }
    if name.ends_with(".bc.googleusercontent.com") {
        return Some("cloud provider default name (Google Cloud)".into());
    }
    // Haraka exempts names that say they are static or business lines.
    let exempt = host.contains("static") || host.contains("business");
    if !exempt && let Some(p) = embedded_ip(host, ip) {
        return Some(format!("contains the address as {p}"));
    }
    if host.contains("no-reverse") {
        return Some("contains \"no-reverse\"".into());
    }
    for label in host.split('.') {
        for prefix in ["host-", "ip-"] {
            if label.starts_with(prefix)
                && label[prefix.len()..].starts_with(|c: char| c.is_ascii_digit())
            {
                return Some(format!("label starts with \"{prefix}\" and a number"));
            }
        }
    }
    if exempt {
        return None;
    }
    for token in host.split(|c: char| !c.is_ascii_alphabetic()) {
        if GENERIC_WORDS.contains(&token) {
            return Some(format!("keyword \"{token}\""));
        }
    }
    None
}

fn embedded_ip(host: &str, ip: IpAddr) -> Option<String> {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            let hex = format!("{:02x}{:02x}{:02x}{:02x}", o[0], o[1], o[2], o[3]);
            if host.contains(&hex) {
                return Some(format!("hex {hex}"));
            }
            let orders = [[o[0], o[1], o[2], o[3]], [o[3], o[2], o[1], o[0]]];
            for order in orders {
                for sep in ['-', '.', '_'] {
                    let plain = order.map(|x| x.to_string()).join(&sep.to_string());
                    let padded = order.map(|x| format!("{x:03}")).join(&sep.to_string());
                    for p in [plain, padded] {
                        if contains_token(host, &p) {
                            return Some(p);
                        }
                    }
                }
            }
            let padded = order_concat(&o);
            if host.contains(&padded) {
                return Some(padded);
            }
            None
        }
        IpAddr::V6(v6) => {
            let full: String = v6.segments().iter().map(|s| format!("{s:04x}")).collect();
            if host.replace(['-', '.'], "").contains(&full) {
                return Some("the full IPv6 address".into());
            }
            let dashed = v6.to_string().replace(':', "-");
            if host.contains(&dashed) {
                return Some(dashed);
            }
            None
        }
    }
}

fn order_concat(o: &[u8; 4]) -> String {
    o.iter().map(|x| format!("{x:03}")).collect()
}

/// `p` occurs in `host` not glued to further digits on either side.
fn contains_token(host: &str, p: &str) -> bool {
    let bytes = host.as_bytes();
    let mut start = 0;
    while let Some(pos) = host[start..].find(p) {
        let i = start + pos;
        let j = i + p.len();
        let before_ok = i == 0 || !bytes[i - 1].is_ascii_digit();
        let after_ok = j >= bytes.len() || !bytes[j].is_ascii_digit();
        if before_ok && after_ok {
            return true;
        }
        start = i + 1;
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4(s: &str) -> IpAddr {
        s.parse().unwrap_or(IpAddr::from([0u8; 4]))
    }

    #[test]
    fn generic_heuristics() {
        assert!(generic_name("c-67-171-0-90.hsd1.wa.comcast.net", v4("67.171.0.90")).is_some());
        assert!(generic_name("192-0-2-16.dyn.example.net", v4("192.0.2.16")).is_some());
        assert!(generic_name("mail.generaldynamics.com", v4("192.0.2.16")).is_none());
        assert!(generic_name("static-192-0-2-16.example.net", v4("192.0.2.16")).is_none());
        assert!(generic_name("mx1.example.net", v4("192.0.2.16")).is_none());
    }
}
