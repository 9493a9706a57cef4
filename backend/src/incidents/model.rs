//! The incident record: aggregates kept up to date event by event, so that reading an
//! incident never has to scan its events (which retention prunes anyway).

use super::phase::Phase;
use crate::time_format;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Open,
    Recovered,
    Stale,
}

impl Status {
    pub const ALL: [Status; 3] = [Status::Open, Status::Recovered, Status::Stale];
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Open => "open",
            Status::Recovered => "recovered",
            Status::Stale => "stale",
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Status {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        Status::ALL.into_iter().find(|p| p.as_str() == s).ok_or(())
    }
}

/// Label used for events whose source did not say which IP sent them: shown as
/// unknown, never guessed.
pub const UNKNOWN_IP: &str = "unknown";

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Counts {
    pub deferred: u64,
    pub delivered: u64,
    pub bounced: u64,
}

/// One sending route (a source IP) towards the incident's destination.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RouteStats {
    #[serde(flatten)]
    pub counts: Counts,
    #[serde(with = "time_format::option", default)]
    pub first_deferral: Option<DateTime<Utc>>,
    #[serde(with = "time_format::option", default)]
    pub last_deferral: Option<DateTime<Utc>>,
    #[serde(with = "time_format::option", default)]
    pub last_delivery: Option<DateTime<Utc>>,
    /// HELO names seen on this route.
    #[serde(default)]
    pub helos: Vec<String>,
}

/// A distinct SMTP reply with how often it came; replies that differ only in queue
/// ids, addresses or numbers count as one.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ReplySample {
    pub key: String,
    pub text: String,
    pub code: Option<u16>,
    pub enhanced: Option<String>,
    pub cause: Option<String>,
    pub stage: String,
    pub count: u64,
    #[serde(with = "time_format")]
    pub first_seen: DateTime<Utc>,
    #[serde(with = "time_format")]
    pub last_seen: DateTime<Utc>,
    /// Dedupe key of the first event with this reply, to fetch its raw payload.
    pub example_event: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PhaseChange {
    #[serde(with = "time_format")]
    pub at: DateTime<Utc>,
    pub from: Option<Phase>,
    pub to: Phase,
    pub reason: String,
}

/// Attempts in one time bucket.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Bucket {
    #[serde(default, skip_serializing_if = "is_zero")]
    pub d: u32,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub s: u32,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub b: u32,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// A count map that stops growing at a cap and counts the rest as `other`, so that one
/// incident towards a provider hosting a million domains stays small.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Tally {
    pub items: BTreeMap<String, u64>,
    #[serde(default)]
    pub other: u64,
}

impl Tally {
    pub fn add(&mut self, key: &str, cap: usize) {
        if let Some(n) = self.items.get_mut(key) {
            *n += 1;
        } else if self.items.len() < cap {
            self.items.insert(key.to_string(), 1);
        } else {
            self.other += 1;
        }
    }

    /// Distinct keys, a lower bound once the cap was hit.
    pub fn distinct(&self) -> usize {
        self.items.len()
    }

    pub fn sorted(&self) -> Vec<(&str, u64)> {
        let mut v: Vec<_> = self.items.iter().map(|(k, n)| (k.as_str(), *n)).collect();
        v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
        v
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Incident {
    /// 0 until the store assigns one.
    pub id: i64,
    pub destination: String,
    pub status: Status,
    pub phase: Phase,
    /// The first deferral.
    #[serde(with = "time_format")]
    pub first_seen: DateTime<Utc>,
    /// The latest event attached to the incident, whatever its type.
    #[serde(with = "time_format")]
    pub last_seen: DateTime<Utc>,
    #[serde(with = "time_format")]
    pub last_deferral: DateTime<Utc>,
    #[serde(with = "time_format::option", default)]
    pub closed_at: Option<DateTime<Utc>>,
    pub counts: Counts,
    /// By source IP (`unknown` when the source did not say).
    pub routes: BTreeMap<String, RouteStats>,
    pub mx_hosts: BTreeMap<String, Counts>,
    pub recipient_domains: Tally,
    /// Envelope-sender domains of the deferred messages.
    #[serde(default)]
    pub sender_domains: Tally,
    /// DKIM selectors reported with the events, per sender domain.
    #[serde(default)]
    pub dkim_selectors: BTreeMap<String, Vec<String>>,
    pub causes: BTreeMap<String, u64>,
    /// `remote` (the receiver said it) or `local` (the sending MTA made it up, e.g. a
    /// connect timeout): local deferrals never make the receiver look guilty.
    #[serde(default)]
    pub origins: BTreeMap<String, u64>,
    pub stages: BTreeMap<String, u64>,
    pub replies: Vec<ReplySample>,
    #[serde(default)]
    pub replies_other: u64,
    /// Hour start (unix seconds) → attempts, over the whole incident.
    pub hourly: BTreeMap<i64, Bucket>,
    /// 15-minute slot (unix seconds) → source IP → attempts; only the last two trend
    /// windows are kept, for judging a recovery trend per route.
    pub recent: BTreeMap<i64, BTreeMap<String, Bucket>>,
    /// First delivery on an affected route after the last deferral.
    #[serde(with = "time_format::option", default)]
    pub recovering_since: Option<DateTime<Utc>>,
    #[serde(with = "time_format::option", default)]
    pub last_affected_delivery: Option<DateTime<Utc>>,
    pub recovery_trend: bool,
    pub phase_history: Vec<PhaseChange>,
    #[serde(default)]
    pub reopens: Vec<ReopenRecord>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ReopenRecord {
    #[serde(with = "time_format")]
    pub at: DateTime<Utc>,
    #[serde(with = "time_format")]
    pub recovered_at: DateTime<Utc>,
}

impl Incident {
    pub fn is_open(&self) -> bool {
        self.status == Status::Open
    }

    /// Age as the phase sees it: first deferral to latest event.
    pub fn age(&self) -> chrono::TimeDelta {
        self.last_seen - self.first_seen
    }

    pub fn top_causes(&self) -> Vec<(String, u64)> {
        let mut v: Vec<_> = self.causes.iter().map(|(k, n)| (k.clone(), *n)).collect();
        v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        v
    }

    /// A reclassified deferral moves from one cause to another in the breakdowns.
    pub fn reassign_cause(&mut self, old: &str, new: &str, reply_key: &str) {
        if let Some(n) = self.causes.get_mut(old) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.causes.remove(old);
            }
        }
        *self.causes.entry(new.to_string()).or_default() += 1;
        for r in self.replies.iter_mut().filter(|r| r.key == reply_key) {
            r.cause = Some(new.to_string());
        }
    }

    pub fn dominant_stage(&self) -> Option<&str> {
        self.stages
            .iter()
            .max_by(|a, b| a.1.cmp(b.1).then(b.0.cmp(a.0)))
            .map(|(k, _)| k.as_str())
    }
}
