//! Retry-threshold phases and the windows that separate them (DESIGN.md, "The
//! operator's runbook").

use chrono::TimeDelta;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    Deferred,
    NormalRetry,
    Persistent,
    Cooling,
    CoolingExtended,
    Escalate,
    Recovered,
    Stale,
}

impl Phase {
    pub const ALL: [Phase; 8] = [
        Phase::Deferred,
        Phase::NormalRetry,
        Phase::Persistent,
        Phase::Cooling,
        Phase::CoolingExtended,
        Phase::Escalate,
        Phase::Recovered,
        Phase::Stale,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Deferred => "deferred",
            Phase::NormalRetry => "normal_retry",
            Phase::Persistent => "persistent",
            Phase::Cooling => "cooling",
            Phase::CoolingExtended => "cooling_extended",
            Phase::Escalate => "escalate",
            Phase::Recovered => "recovered",
            Phase::Stale => "stale",
        }
    }

    /// What the runbook tells the operator to do in this phase.
    pub fn guidance(self) -> &'static str {
        match self {
            Phase::Deferred => "Nothing yet: the queue retries on its own.",
            Phase::NormalRetry => "Normal deferral window: let automatic retries work.",
            Phase::Persistent => {
                "Lower pressure (concurrency, hourly volume) towards this destination and confirm the scope."
            }
            Phase::Cooling => {
                "Pause the affected route (one IP, one pool) and let the queue retry slowly."
            }
            Phase::CoolingExtended => {
                "Keep a 12 h cooling window on stubborn deferrals before escalating."
            }
            Phase::Escalate => "Send the evidence to the receiving postmaster or the ESP.",
            Phase::Recovered => "Deliveries succeed again; watch for a reopen.",
            Phase::Stale => "No event for a day; the incident was closed without a recovery.",
        }
    }
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Phase {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        Phase::ALL.into_iter().find(|p| p.as_str() == s).ok_or(())
    }
}

/// The window boundaries and timers of the incident engine. All configurable.
#[derive(Clone, Debug, PartialEq)]
pub struct Thresholds {
    /// Age at which `deferred` becomes `normal_retry`.
    pub normal_retry: TimeDelta,
    pub persistent: TimeDelta,
    pub cooling: TimeDelta,
    pub cooling_extended: TimeDelta,
    pub escalate: TimeDelta,
    /// Affected routes delivering this long without a deferral: `recovered`.
    pub quiet_period: TimeDelta,
    /// A deferral this soon after recovery reopens the same incident.
    pub reopen_window: TimeDelta,
    /// No event at all for this long: closed as `stale`.
    pub stale_after: TimeDelta,
    /// Width of the two windows compared to judge a recovery trend.
    pub trend_window: TimeDelta,
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds {
            normal_retry: TimeDelta::minutes(15),
            persistent: TimeDelta::hours(1),
            cooling: TimeDelta::hours(6),
            cooling_extended: TimeDelta::hours(12),
            escalate: TimeDelta::hours(24),
            quiet_period: TimeDelta::hours(2),
            reopen_window: TimeDelta::hours(6),
            stale_after: TimeDelta::hours(24),
            trend_window: TimeDelta::hours(3),
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq)]
#[error(
    "window thresholds must increase: normal_retry < persistent < cooling < cooling_extended < escalate, and every timer must be positive"
)]
pub struct ThresholdsError;

impl Thresholds {
    pub fn validate(&self) -> Result<(), ThresholdsError> {
        let ordered = TimeDelta::zero() < self.normal_retry
            && self.normal_retry < self.persistent
            && self.persistent < self.cooling
            && self.cooling < self.cooling_extended
            && self.cooling_extended < self.escalate;
        let positive = [
            self.quiet_period,
            self.reopen_window,
            self.stale_after,
            self.trend_window,
        ]
        .iter()
        .all(|d| *d > TimeDelta::zero());
        if ordered && positive {
            Ok(())
        } else {
            Err(ThresholdsError)
        }
    }

    /// The phase for an incident whose first deferral is `age` before its latest event.
    pub fn phase_for_age(&self, age: TimeDelta) -> Phase {
        if age >= self.escalate {
            Phase::Escalate
        } else if age >= self.cooling_extended {
            Phase::CoolingExtended
        } else if age >= self.cooling {
            Phase::Cooling
        } else if age >= self.persistent {
            Phase::Persistent
        } else if age >= self.normal_retry {
            Phase::NormalRetry
        } else {
            Phase::Deferred
        }
    }

    /// Where the next window starts, for an open incident of this age.
    pub fn next_boundary(&self, age: TimeDelta) -> Option<(Phase, TimeDelta)> {
        [
            (Phase::NormalRetry, self.normal_retry),
            (Phase::Persistent, self.persistent),
            (Phase::Cooling, self.cooling),
            (Phase::CoolingExtended, self.cooling_extended),
            (Phase::Escalate, self.escalate),
        ]
        .into_iter()
        .find(|(_, at)| *at > age)
        .map(|(p, at)| (p, at - age))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phase_for_age_follows_the_runbook_windows() {
        let t = Thresholds::default();
        let cases = [
            (0, Phase::Deferred),
            (14 * 60 + 59, Phase::Deferred),
            (15 * 60, Phase::NormalRetry),
            (59 * 60, Phase::NormalRetry),
            (3600, Phase::Persistent),
            (6 * 3600 - 1, Phase::Persistent),
            (6 * 3600, Phase::Cooling),
            (12 * 3600, Phase::CoolingExtended),
            (24 * 3600 - 1, Phase::CoolingExtended),
            (24 * 3600, Phase::Escalate),
            (30 * 24 * 3600, Phase::Escalate),
        ];
        for (secs, want) in cases {
            assert_eq!(
                t.phase_for_age(TimeDelta::seconds(secs)),
                want,
                "age {secs}s"
            );
        }
    }

    #[test]
    fn next_boundary_counts_down_to_the_following_window() {
        let t = Thresholds::default();
        assert_eq!(
            t.next_boundary(TimeDelta::minutes(50)),
            Some((Phase::Persistent, TimeDelta::minutes(10)))
        );
        assert_eq!(t.next_boundary(TimeDelta::hours(25)), None);
    }

    #[test]
    fn thresholds_must_increase() {
        let mut t = Thresholds::default();
        assert_eq!(t.validate(), Ok(()));
        t.cooling = TimeDelta::hours(13);
        assert_eq!(t.validate(), Err(ThresholdsError));
    }
}
