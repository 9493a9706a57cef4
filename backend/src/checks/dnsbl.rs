//! IP and domain blocklists (checks.md §6, RFC 5782).

use std::net::{IpAddr, Ipv4Addr};

use super::config::{ReturnCodeTable, ZoneSpec};
use super::dns::{Answer, Dns, DnsResult};
use super::names::{self, normalize_ip, reversed_labels};
use super::{CheckResult, Verdict};

/// Pure reading of one blocklist answer (§6.2 steps 1–5).
pub fn interpret(
    table: ReturnCodeTable,
    answer: &DnsResult,
) -> (Verdict, Vec<String>, Vec<String>) {
    match answer {
        Err(e) => (Verdict::Error, vec![format!("query failed: {e}")], vec![]),
        Ok(a) if a.is_void() => (Verdict::Pass, vec![], vec![]),
        Ok(a) => {
            let codes: Vec<Ipv4Addr> = a.ipv4();
            let meanings: Vec<_> = codes.iter().map(|c| table.interpret(*c)).collect();
            // An error code anywhere makes the whole answer an error: the
            // list did not really answer (§6.2 step 4, "never listed").
            let verdict = if meanings.iter().any(|m| m.verdict == Verdict::Error) {
                Verdict::Error
            } else {
                meanings
                    .iter()
                    .fold(Verdict::Pass, |acc, m| acc.worst(m.verdict))
            };
            let texts = meanings.iter().map(|m| m.text.clone()).collect();
            let records = codes.iter().map(|c| c.to_string()).collect();
            (verdict, texts, records)
        }
    }
}

/// RFC 5782 §5 health check of a zone; `Some(reason)` when results from
/// the zone cannot be trusted (§6.2 step 6).
async fn zone_health(dns: &Dns, spec: &ZoneSpec, domain_list: bool) -> Option<String> {
    let (positive, negative) = if domain_list {
        (
            spec.table
                .domain_test_point()
                .map(|p| format!("{p}.{}", spec.zone)),
            format!("invalid.{}", spec.zone),
        )
    } else {
        (
            spec.table
                .has_ipv4_test_point()
                .then(|| format!("2.0.0.127.{}", spec.zone)),
            format!("1.0.0.127.{}", spec.zone),
        )
    };
    let neg = dns.a(&negative).await;
    match &neg {
        Err(e) => {
            return Some(format!(
                "its negative test point {negative} could not be queried ({e})"
            ));
        }
        Ok(a) if !a.is_void() => {
            return Some(format!(
                "it lists its negative test point {negative} ({}): the zone is wildcarded or parked",
                a.ipv4()
                    .iter()
                    .map(|x| x.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        Ok(_) => {}
    }
    if let Some(pos) = positive {
        match dns.a(&pos).await {
            Err(e) => return Some(format!("its test point {pos} could not be queried ({e})")),
            Ok(a) if a.is_void() => {
                return Some(format!(
                    "it does not list its test point {pos}: the resolver is probably blocked by the list"
                ));
            }
            Ok(a) => {
                let codes = a.ipv4();
                if let Some(m) = codes
                    .iter()
                    .map(|c| spec.table.interpret(*c))
                    .find(|m| m.verdict == Verdict::Error)
                {
                    return Some(format!("its test point answered {}", m.text));
                }
            }
        }
    }
    None
}

async fn txt_reasons(dns: &Dns, qname: &str) -> Vec<String> {
    match dns.txt(qname).await {
        Ok(a) => a.txt().into_iter().map(|t| format!("TXT {t}")).collect(),
        Err(_) => vec![],
    }
}

/// `dnsbl:<zone>` for one IP.
pub async fn check_ip(dns: &Dns, ip: IpAddr, spec: &ZoneSpec, health: bool) -> CheckResult {
    let ip = normalize_ip(ip);
    let name = format!("dnsbl:{}", spec.zone);
    if ip.is_ipv6() && spec.table.ipv4_only() {
        return CheckResult::new(
            name,
            Verdict::None,
            format!(
                "{} has no IPv6 data; {ip} cannot be checked there (not the same as clean).",
                spec.zone
            ),
            vec![],
        );
    }
    let qname = format!("{}.{}", reversed_labels(ip), spec.zone);
    let (answer, health) = tokio::join!(dns.a(&qname), async {
        if health {
            zone_health(dns, spec, false).await
        } else {
            None
        }
    });
    finish(dns, name, &ip.to_string(), &qname, spec, &answer, health).await
}

/// `rhsbl:<zone>` for a domain: the organizational domain, and for lists
/// that list host names (DBL, §6.1) the full name too.
pub async fn check_domain(dns: &Dns, domain: &str, spec: &ZoneSpec, health: bool) -> CheckResult {
    let domain = names::lower_no_dot(domain);
    let name = format!("rhsbl:{}", spec.zone);
    if domain.parse::<IpAddr>().is_ok() {
        // Spamhaus answers 127.0.1.255 to IP queries on the DBL (§6.1).
        return CheckResult::new(
            name,
            Verdict::None,
            "Domain lists are never queried with IP addresses.",
            vec![],
        );
    }
    let org = names::org_domain(&domain);
    let mut targets = vec![org.clone()];
    if domain != org && spec.table == ReturnCodeTable::SpamhausDbl {
        targets.push(domain.clone());
    }
    let health = if health {
        zone_health(dns, spec, true).await
    } else {
        None
    };
    let mut worst: Option<CheckResult> = None;
    for t in targets {
        let qname = format!("{t}.{}", spec.zone);
        let answer = dns.a(&qname).await;
        let r = finish(dns, name.clone(), &t, &qname, spec, &answer, health.clone()).await;
        worst = match worst {
            None => Some(r),
            Some(w) if r.verdict.severity() > w.verdict.severity() => Some(r),
            Some(w) => Some(w),
        };
    }
    worst.unwrap_or_else(|| CheckResult::new(name, Verdict::Error, "nothing queried", vec![]))
}

#[allow(clippy::too_many_arguments)]
async fn finish(
    dns: &Dns,
    name: String,
    subject: &str,
    qname: &str,
    spec: &ZoneSpec,
    answer: &DnsResult,
    health: Option<String>,
) -> CheckResult {
    let (mut verdict, texts, mut records) = interpret(spec.table, answer);
    let ttl = answer.as_ref().ok().map(Answer::ttl);
    let listed = matches!(verdict, Verdict::Fail | Verdict::Warn);
    if listed {
        records.extend(txt_reasons(dns, qname).await);
    }
    let mut detail = match verdict {
        Verdict::Pass if texts.is_empty() => format!("{subject} is not listed on {}.", spec.zone),
        Verdict::Pass => format!("{subject} is on {}: {}.", spec.zone, texts.join("; ")),
        Verdict::Fail | Verdict::Warn => format!(
            "{subject} is listed on {}: {}.",
            spec.zone,
            texts.join("; ")
        ),
        _ => format!(
            "{} could not be checked for {subject}: {}.",
            spec.zone,
            texts.join("; ")
        ),
    };
    if let Some(why) = health
        && verdict != Verdict::Error
    {
        verdict = Verdict::Error;
        detail = format!(
            "{} cannot be trusted right now: {why}; the answer for {subject} ({}) is not used.",
            spec.zone,
            if listed { "listed" } else { "not listed" }
        );
    }
    CheckResult::new(name, verdict, detail, records).with_ttl(ttl)
}
