//! Result types shared by every check, and change detection between runs.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

/// checks.md §0.1. `Error` means "could not be evaluated" and must never be
/// folded into `Fail` or `Pass`.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Pass,
    Warn,
    Fail,
    Error,
    None,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Pass => "pass",
            Verdict::Warn => "warn",
            Verdict::Fail => "fail",
            Verdict::Error => "error",
            Verdict::None => "none",
        }
    }

    /// Severity used when several findings feed one verdict: a `Fail` wins
    /// over `Error` (a definite finding beats "could not tell"), which wins
    /// over `Warn`.
    pub(crate) fn severity(self) -> u8 {
        match self {
            Verdict::None => 0,
            Verdict::Pass => 1,
            Verdict::Warn => 2,
            Verdict::Error => 3,
            Verdict::Fail => 4,
        }
    }

    pub(crate) fn worst(self, other: Verdict) -> Verdict {
        if other.severity() > self.severity() {
            other
        } else {
            self
        }
    }
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct CheckResult {
    pub name: String,
    pub verdict: Verdict,
    pub detail: String,
    pub records: Vec<String>,
    /// Smallest TTL of the DNS answers the verdict rests on: the result is
    /// valid for at most this long.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl_seconds: Option<u32>,
}

impl CheckResult {
    pub fn new(
        name: impl Into<String>,
        verdict: Verdict,
        detail: impl Into<String>,
        records: Vec<String>,
    ) -> Self {
        CheckResult {
            name: name.into(),
            verdict,
            detail: detail.into(),
            records,
            ttl_seconds: None,
        }
    }

    pub fn with_ttl(mut self, ttl: Option<u32>) -> Self {
        self.ttl_seconds = ttl;
        self
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct CheckReport {
    pub subject: String,
    pub checks: Vec<CheckResult>,
    pub checked_at: DateTime<Utc>,
}

impl CheckReport {
    pub fn get(&self, name: &str) -> Option<&CheckResult> {
        self.checks.iter().find(|c| c.name == name)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    #[error("invalid zone spec {spec:?}: {reason}")]
    InvalidZoneSpec { spec: String, reason: String },
    #[error("invalid check configuration: {0}")]
    InvalidConfig(String),
    #[error("cannot build DNS resolver: {0}")]
    Resolver(String),
    #[error("cannot build HTTPS client: {0}")]
    Http(String),
}

/// What changed between two results of the same check on the same subject
/// (DESIGN.md: "what changed matters more than what is").
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct CheckChange {
    pub name: String,
    pub previous: Verdict,
    pub current: Verdict,
    pub records_added: Vec<String>,
    pub records_removed: Vec<String>,
    /// One line for the operator, e.g.
    /// `dnsbl:zen.spamhaus.org: pass → fail; added 127.0.0.2`.
    pub description: String,
}

/// Verdict changed, or the set of records changed (DNS does not order
/// RRsets, checks.md §0.3, so order is ignored). Detail wording alone is not a
/// change: it may carry timings or ordering noise.
pub fn detect_change(previous: &CheckResult, current: &CheckResult) -> Option<CheckChange> {
    let before: BTreeSet<&str> = previous.records.iter().map(String::as_str).collect();
    let after: BTreeSet<&str> = current.records.iter().map(String::as_str).collect();
    let added: Vec<String> = after.difference(&before).map(|s| s.to_string()).collect();
    let removed: Vec<String> = before.difference(&after).map(|s| s.to_string()).collect();
    if previous.verdict == current.verdict && added.is_empty() && removed.is_empty() {
        return None;
    }
    let mut parts = Vec::new();
    if previous.verdict != current.verdict {
        parts.push(format!("{} → {}", previous.verdict, current.verdict));
    } else {
        parts.push(format!("still {}", current.verdict));
    }
    if !added.is_empty() {
        parts.push(format!("added {}", added.join(", ")));
    }
    if !removed.is_empty() {
        parts.push(format!("removed {}", removed.join(", ")));
    }
    Some(CheckChange {
        name: current.name.clone(),
        previous: previous.verdict,
        current: current.verdict,
        description: format!("{}: {}", current.name, parts.join("; ")),
        records_added: added,
        records_removed: removed,
    })
}
