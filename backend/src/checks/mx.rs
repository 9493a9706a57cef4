//! MX of a destination domain (checks.md §7.1, §7.2; RFC 5321 §5.1,
//! RFC 7505 null MX, RFC 2181 §10.3).

use std::net::IpAddr;

use futures::future::join_all;

use super::dns::{Answer, Dns, DnsResult};
use super::names::{hostname_syntax, lower_no_dot};
use super::ptr::min_ttl;
use super::{CheckResult, Verdict};

#[derive(Clone, Debug)]
pub struct MxHost {
    pub preference: u16,
    pub exchange: String,
    pub a: DnsResult,
    pub aaaa: DnsResult,
}

#[derive(Clone, Debug)]
pub struct MxFindings {
    pub domain: String,
    pub mx: DnsResult,
    pub hosts: Vec<MxHost>,
    /// A/AAAA of the domain itself, looked up only for the implicit MX case.
    pub implicit: Option<(DnsResult, DnsResult)>,
}

impl MxFindings {
    /// Exchange names, for MTA-STS `mx:` matching (§7.3).
    pub fn exchanges(&self) -> Vec<String> {
        self.hosts
            .iter()
            .filter(|h| !h.exchange.is_empty())
            .map(|h| h.exchange.clone())
            .collect()
    }
}

pub async fn lookup(dns: &Dns, domain: &str) -> MxFindings {
    let domain = lower_no_dot(domain);
    let mx = dns.mx(&domain).await;
    let mut hosts = Vec::new();
    let mut implicit = None;
    match &mx {
        Ok(Answer::Records { .. }) => {
            let mut list = mx.as_ref().map(|a| a.mx()).unwrap_or_default();
            list.sort();
            let looked = join_all(list.iter().map(|(_, ex)| async move {
                if ex.is_empty() || ex.parse::<IpAddr>().is_ok() {
                    return None;
                }
                Some(tokio::join!(dns.a(ex), dns.aaaa(ex)))
            }))
            .await;
            for ((pref, ex), res) in list.into_iter().zip(looked) {
                let (a, aaaa) = match res {
                    Some(pair) => pair,
                    None => (Ok(Answer::NoData { ttl: 0 }), Ok(Answer::NoData { ttl: 0 })),
                };
                hosts.push(MxHost {
                    preference: pref,
                    exchange: ex,
                    a,
                    aaaa,
                });
            }
        }
        Ok(Answer::NoData { .. }) => {
            implicit = Some(tokio::join!(dns.a(&domain), dns.aaaa(&domain)));
        }
        _ => {}
    }
    MxFindings {
        domain,
        mx,
        hosts,
        implicit,
    }
}

/// Addresses no public MX may use (§7.1; documentation ranges are allowed
/// on purpose so test zones stay realistic).
fn unroutable(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => {
            if v4.is_loopback() {
                Some("loopback")
            } else if v4.is_private() {
                Some("private (RFC 1918)")
            } else if v4.is_link_local() {
                Some("link-local")
            } else if v4.is_unspecified() {
                Some("unspecified")
            } else {
                None
            }
        }
        IpAddr::V6(v6) => {
            let seg0 = v6.segments()[0];
            if v6.is_loopback() {
                Some("loopback")
            } else if v6.is_unspecified() {
                Some("unspecified")
            } else if seg0 & 0xffc0 == 0xfe80 {
                Some("link-local")
            } else if seg0 & 0xfe00 == 0xfc00 {
                Some("unique-local")
            } else {
                None
            }
        }
    }
}

pub fn evaluate(f: &MxFindings) -> CheckResult {
    let d = &f.domain;
    let name = "mx";
    let answer = match &f.mx {
        Err(e) => {
            return CheckResult::new(
                name,
                Verdict::Error,
                format!("The MX lookup for {d} failed ({e}); sending MTAs defer while this lasts."),
                vec![],
            );
        }
        Ok(a) => a,
    };
    let mut ttl = Some(answer.ttl());
    match answer {
        Answer::NxDomain { .. } => {
            return CheckResult::new(
                name,
                Verdict::Fail,
                format!("{d} does not exist (NXDOMAIN); mail to it cannot be delivered."),
                vec![],
            )
            .with_ttl(ttl);
        }
        Answer::NoData { .. } => {
            let (a, aaaa) = match &f.implicit {
                Some((a, aaaa)) => (a, aaaa),
                None => {
                    return CheckResult::new(
                        name,
                        Verdict::Error,
                        "implicit MX not looked up",
                        vec![],
                    );
                }
            };
            let addrs: Vec<IpAddr> = [a, aaaa]
                .iter()
                .filter_map(|r| r.as_ref().ok())
                .flat_map(|r| r.ips())
                .collect();
            let records: Vec<String> = addrs.iter().map(|x| format!("{d} -> {x}")).collect();
            if !addrs.is_empty() {
                return CheckResult::new(
                    name,
                    Verdict::Warn,
                    format!("{d} publishes no MX; senders fall back to its address (implicit MX, RFC 5321 §5.1)."),
                    records,
                )
                .with_ttl(ttl);
            }
            if a.is_err() || aaaa.is_err() {
                return CheckResult::new(
                    name,
                    Verdict::Error,
                    format!("{d} publishes no MX and its address lookup failed."),
                    records,
                )
                .with_ttl(ttl);
            }
            return CheckResult::new(
                name,
                Verdict::Fail,
                format!("{d} publishes neither MX nor an address; it cannot receive mail."),
                records,
            )
            .with_ttl(ttl);
        }
        Answer::Records { .. } => {}
    }
    let mut records: Vec<String> = f
        .hosts
        .iter()
        .map(|h| {
            let ex = if h.exchange.is_empty() {
                "."
            } else {
                &h.exchange
            };
            format!("{} {ex}", h.preference)
        })
        .collect();
    let null_mx = f.hosts.iter().any(|h| h.exchange.is_empty());
    if null_mx {
        if f.hosts.len() == 1 && f.hosts[0].preference == 0 {
            return CheckResult::new(
                name,
                Verdict::Fail,
                format!("{d} publishes a null MX (RFC 7505): it accepts no mail; receivers answer 550 5.1.10 and sending from it is refused with 5.7.27."),
                records,
            )
            .with_ttl(ttl);
        }
        return CheckResult::new(
            name,
            Verdict::Fail,
            format!("{d} mixes a null MX with other MX records, which RFC 7505 §3 forbids."),
            records,
        )
        .with_ttl(ttl);
    }
    let mut findings: Vec<(Verdict, String)> = Vec::new();
    let mut good_hosts = 0usize;
    for h in &f.hosts {
        let ex = &h.exchange;
        if ex.parse::<IpAddr>().is_ok() || hostname_syntax(ex).is_err() {
            findings.push((
                Verdict::Fail,
                format!("MX {ex} is not a host name (IP literals are not allowed in MX)"),
            ));
            continue;
        }
        let mut addrs = Vec::new();
        let mut temp = Vec::new();
        let mut cname = false;
        for r in [&h.a, &h.aaaa] {
            match r {
                Ok(a) => {
                    ttl = min_ttl(ttl, Some(a.ttl()));
                    addrs.extend(a.ips());
                    cname |= !a.cname_chain().is_empty();
                }
                Err(e) => temp.push(e.to_string()),
            }
        }
        for a in &addrs {
            records.push(format!("{ex} -> {a}"));
        }
        if addrs.is_empty() {
            if temp.is_empty() {
                findings.push((Verdict::Fail, format!("MX {ex} has no address (A/AAAA)")));
            } else {
                findings.push((
                    Verdict::Error,
                    format!("address lookup of MX {ex} failed ({})", temp.join(", ")),
                ));
            }
            continue;
        }
        if let Some((bad, why)) = addrs.iter().find_map(|a| unroutable(*a).map(|w| (a, w))) {
            findings.push((
                Verdict::Fail,
                format!("MX {ex} resolves to {why} address {bad}"),
            ));
            continue;
        }
        if cname {
            findings.push((
                Verdict::Warn,
                format!("MX {ex} is an alias (CNAME), which RFC 2181 §10.3 forbids"),
            ));
        }
        good_hosts += 1;
    }
    let mut exchanges: Vec<&str> = f.hosts.iter().map(|h| h.exchange.as_str()).collect();
    exchanges.sort();
    let before = exchanges.len();
    exchanges.dedup();
    if exchanges.len() < before {
        findings.push((Verdict::Pass, "duplicate MX host names".into()));
    }
    let prefs: Vec<u16> = f.hosts.iter().map(|h| h.preference).collect();
    let summary = f
        .hosts
        .iter()
        .map(|h| format!("{} (pref {})", h.exchange, h.preference))
        .collect::<Vec<_>>()
        .join(", ");
    if f.hosts.len() == 1 {
        findings.push((Verdict::Pass, "only one MX host, no backup MX".into()));
    } else if prefs.iter().any(|p| *p != prefs[0]) {
        findings.push((
            Verdict::Pass,
            "higher-numbered hosts act as backup MX".into(),
        ));
    }
    let verdict = if good_hosts == 0 {
        findings
            .iter()
            .fold(Verdict::Pass, |acc, (v, _)| acc.worst(*v))
    } else {
        // A usable MX exists: broken extra hosts slow delivery but do not
        // stop it, so they warn.
        findings.iter().fold(Verdict::Pass, |acc, (v, _)| {
            acc.worst(match v {
                Verdict::Fail | Verdict::Error => Verdict::Warn,
                other => *other,
            })
        })
    };
    let notes: Vec<&str> = findings.iter().map(|(_, t)| t.as_str()).collect();
    let detail = if notes.is_empty() {
        format!("{d} has MX {summary}.")
    } else {
        format!("{d} has MX {summary}; {}.", notes.join("; "))
    };
    CheckResult::new(name, verdict, detail, records).with_ttl(ttl)
}
