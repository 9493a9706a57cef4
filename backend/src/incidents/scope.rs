//! Scope: how far an incident has spread, which says whose problem it is
//! (DESIGN.md, "Scope says whose problem it is").

use super::model::{Incident, UNKNOWN_IP};
use serde::Serialize;

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SourceIpScope {
    /// One IP deferred while others deliver to the same destination: that IP is
    /// treated differently (reputation, per-IP limits, PTR).
    OneIp,
    /// Some but not all of the IPs seen.
    SomeIps,
    /// Every IP seen towards the destination is deferred: the receiver is the centre.
    AllIps,
    /// The source did not say which IP sent.
    Unknown,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StageScope {
    /// Before MAIL FROM: the receiver has not seen the message; connection handling,
    /// IP or TLS policy, not content.
    Connection,
    /// MAIL FROM, RCPT TO or DATA: sender domain, recipient, rate and content count.
    Transaction,
    Mixed,
    Unknown,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct IpScope {
    pub ip: String,
    pub deferred: u64,
    pub delivered: u64,
    pub helos: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Scope {
    pub summary: String,
    pub source_ips: SourceIpScope,
    pub affected_source_ips: Vec<String>,
    pub unaffected_source_ips: Vec<String>,
    pub ips: Vec<IpScope>,
    pub affected_mx_hosts: Vec<String>,
    /// MX hosts of the destination that accepted mail without deferring it.
    pub delivering_mx_hosts: Vec<String>,
    pub recipient_domains: usize,
    pub stage: StageScope,
}

pub fn scope(inc: &Incident) -> Scope {
    let mut affected: Vec<(&String, u64)> = Vec::new();
    let mut unaffected: Vec<(&String, u64)> = Vec::new();
    let mut unknown_deferred = false;
    for (ip, r) in &inc.routes {
        if ip == UNKNOWN_IP {
            unknown_deferred |= r.counts.deferred > 0;
            continue;
        }
        if r.counts.deferred > 0 {
            affected.push((ip, r.counts.deferred));
        } else if r.counts.delivered > 0 {
            unaffected.push((ip, r.counts.delivered));
        }
    }
    affected.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    unaffected.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));

    let source_ips = match (affected.len(), unaffected.len()) {
        (0, _) => SourceIpScope::Unknown,
        (1, u) if u > 0 => SourceIpScope::OneIp,
        (_, 0) => SourceIpScope::AllIps,
        _ => SourceIpScope::SomeIps,
    };

    let mut affected_mx: Vec<(&String, u64)> = inc
        .mx_hosts
        .iter()
        .filter(|(_, c)| c.deferred > 0)
        .map(|(h, c)| (h, c.deferred))
        .collect();
    affected_mx.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    let delivering_mx: Vec<String> = inc
        .mx_hosts
        .iter()
        .filter(|(_, c)| c.deferred == 0 && c.delivered > 0)
        .map(|(h, _)| h.clone())
        .collect();

    let (mut conn, mut txn) = (0u64, 0u64);
    for (stage, n) in &inc.stages {
        match stage.as_str() {
            "connect" | "ehlo" | "starttls" => conn += n,
            "mail" | "rcpt" | "data" | "end_of_data" => txn += n,
            _ => {}
        }
    }
    let stage = match (conn, txn) {
        (0, 0) => StageScope::Unknown,
        (_, 0) => StageScope::Connection,
        (0, _) => StageScope::Transaction,
        _ => StageScope::Mixed,
    };

    let domains = inc.recipient_domains.distinct();
    let mut parts: Vec<String> = Vec::new();
    parts.push(match (affected.len(), unaffected.len()) {
        (0, _) => "source IP unknown".into(),
        (1, _) => "one source IP".into(),
        (n, 0) => format!("all {n} source IPs"),
        (n, u) => format!("{n} of {} source IPs", n + u),
    });
    if unknown_deferred && !affected.is_empty() {
        parts.push("some without a known source IP".into());
    }
    parts.push(match (domains, inc.recipient_domains.other) {
        (1, 0) => "one recipient domain".into(),
        (n, 0) => format!("{n} recipient domains"),
        (n, _) => format!("more than {n} recipient domains"),
    });
    if affected_mx.len() == 1 && !delivering_mx.is_empty() {
        parts.push(format!("one MX host ({})", affected_mx[0].0));
    } else if affected_mx.len() > 1 && delivering_mx.is_empty() {
        parts.push(format!("all {} MX hosts", affected_mx.len()));
    }
    let local = inc.origins.get("local").copied().unwrap_or(0);
    if local > 0 && local == inc.counts.deferred {
        parts.push("all reported by the sending MTA itself (no reply from the receiver)".into());
    } else if local > 0 {
        parts.push(format!("{local} reported by the sending MTA itself"));
    }
    match stage {
        StageScope::Connection => parts.push("at connection (before MAIL FROM)".into()),
        StageScope::Transaction => {
            let dominant = inc.dominant_stage().unwrap_or("rcpt");
            parts.push(format!("after {}", stage_label(dominant)));
        }
        StageScope::Mixed | StageScope::Unknown => {}
    }

    Scope {
        summary: parts.join(", "),
        source_ips,
        affected_source_ips: affected.iter().map(|(ip, _)| (*ip).clone()).collect(),
        unaffected_source_ips: unaffected.iter().map(|(ip, _)| (*ip).clone()).collect(),
        ips: affected
            .iter()
            .chain(unaffected.iter())
            .filter_map(|(ip, _)| {
                inc.routes.get(*ip).map(|r| IpScope {
                    ip: (*ip).clone(),
                    deferred: r.counts.deferred,
                    delivered: r.counts.delivered,
                    helos: r.helos.clone(),
                })
            })
            .collect(),
        affected_mx_hosts: affected_mx.iter().map(|(h, _)| (*h).clone()).collect(),
        delivering_mx_hosts: delivering_mx,
        recipient_domains: domains,
        stage,
    }
}

fn stage_label(stage: &str) -> &'static str {
    match stage {
        "mail" => "MAIL FROM",
        "rcpt" => "RCPT TO",
        "data" => "DATA",
        "end_of_data" => "end of DATA",
        _ => "RCPT TO",
    }
}
