//! The widest scope: when the same sending IP is deferred by several destinations at
//! once, or the sending MTA reports its own failures towards several of them, the
//! problem is on the sender's side (DESIGN.md: "every destination: a sender-side
//! outage → check the MTA itself").

use super::model::{Incident, UNKNOWN_IP};
use super::phase::Phase;
use serde::Serialize;
use std::collections::BTreeMap;

/// Destinations deferring one IP at once before the sender side is suspected.
pub const SENDER_WIDE_DESTINATIONS: usize = 3;

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SenderWideIp {
    pub ip: String,
    pub destinations: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Overview {
    pub open_incidents: usize,
    pub open_by_phase: BTreeMap<Phase, usize>,
    pub destinations: Vec<String>,
    /// IPs deferred by several destinations at once.
    pub sender_wide_ips: Vec<SenderWideIp>,
    /// Destinations towards which the sending MTA reports its own failures.
    pub local_failure_destinations: Vec<String>,
    pub sender_side_suspected: bool,
    pub summary: String,
}

/// Looks across the open incidents.
pub fn overview(open: &[Incident]) -> Overview {
    let mut by_phase: BTreeMap<Phase, usize> = BTreeMap::new();
    let mut by_ip: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    let mut destinations: Vec<String> = Vec::new();
    let mut local: Vec<String> = Vec::new();
    for inc in open.iter().filter(|i| i.is_open()) {
        *by_phase.entry(inc.phase).or_default() += 1;
        destinations.push(inc.destination.clone());
        for (ip, r) in &inc.routes {
            if ip != UNKNOWN_IP && r.counts.deferred > 0 {
                by_ip.entry(ip).or_default().push(&inc.destination);
            }
        }
        let local_n = inc.origins.get("local").copied().unwrap_or(0);
        if local_n * 2 > inc.counts.deferred {
            local.push(inc.destination.clone());
        }
    }
    destinations.sort();
    destinations.dedup();
    local.sort();
    let mut sender_wide: Vec<SenderWideIp> = by_ip
        .into_iter()
        .filter_map(|(ip, mut d)| {
            d.sort();
            d.dedup();
            (d.len() >= SENDER_WIDE_DESTINATIONS).then(|| SenderWideIp {
                ip: ip.to_string(),
                destinations: d.into_iter().map(str::to_string).collect(),
            })
        })
        .collect();
    sender_wide.sort_by(|a, b| {
        b.destinations
            .len()
            .cmp(&a.destinations.len())
            .then(a.ip.cmp(&b.ip))
    });
    let local_wide = local.len() >= SENDER_WIDE_DESTINATIONS;
    let mut parts = Vec::new();
    if let Some(top) = sender_wide.first() {
        parts.push(format!(
            "{} is deferred by {} destinations at once ({}): look at the sender side first (reputation, blocklists, PTR, volume)",
            top.ip,
            top.destinations.len(),
            top.destinations.join(", ")
        ));
    }
    if local_wide {
        parts.push(format!(
            "the sending MTA reports its own failures towards {} destinations ({}): check the MTA, its network and DNS",
            local.len(),
            local.join(", ")
        ));
    }
    let open_count = by_phase.values().sum();
    let summary = if parts.is_empty() {
        match destinations.len() {
            0 => "no open incidents".to_string(),
            1 => {
                "one destination deferring; the sender side looks unaffected elsewhere".to_string()
            }
            n => format!(
                "{n} destinations deferring, no sending IP shared by {SENDER_WIDE_DESTINATIONS} or more"
            ),
        }
    } else {
        parts.join("; ")
    };
    Overview {
        open_incidents: open_count,
        open_by_phase: by_phase,
        destinations,
        sender_side_suspected: !sender_wide.is_empty() || local_wide,
        sender_wide_ips: sender_wide,
        local_failure_destinations: local,
        summary,
    }
}
