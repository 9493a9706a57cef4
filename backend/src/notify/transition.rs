//! Which notifiable transitions an incident went through, read off its phase history.
//! Pure: the same incident always gives the same transitions with the same keys, which
//! is what lets the store deduplicate them.

use super::config::{Event, Webhook};
use crate::incidents::{Incident, Phase};
use chrono::{DateTime, Utc};
use serde::Serialize;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "phase")]
pub enum Kind {
    Opened,
    Reopened,
    /// Entered (or passed on the way up) this phase.
    EnteredPhase(Phase),
    Recovered,
}

impl Kind {
    /// The `event` of the payload and the delivery log.
    pub fn event(self) -> &'static str {
        match self {
            Kind::Opened => "opened",
            Kind::Reopened => "reopened",
            Kind::EnteredPhase(_) => "entered_phase",
            Kind::Recovered => "recovered",
        }
    }

    /// The phase the transition leads into.
    pub fn phase(self) -> Option<Phase> {
        match self {
            Kind::EnteredPhase(p) => Some(p),
            Kind::Recovered => Some(Phase::Recovered),
            Kind::Opened | Kind::Reopened => None,
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Transition {
    pub incident_id: i64,
    pub kind: Kind,
    /// Event time of the change, as the phase history has it.
    pub at: DateTime<Utc>,
    pub from: Option<Phase>,
    pub to: Phase,
    pub reason: String,
}

impl Transition {
    /// Stable across runs and instances: incident, kind, phase and time in ms.
    pub fn key(&self) -> String {
        format!(
            "{}:{}:{}:{}",
            self.incident_id,
            self.kind.event(),
            self.kind.phase().map_or("-", |p| p.as_str()),
            self.at.timestamp_millis()
        )
    }

    /// Whether the webhook asked for this kind of transition.
    pub fn wanted_by(&self, w: &Webhook) -> bool {
        match self.kind {
            Kind::Opened => w.events.contains(&Event::Opened),
            Kind::Reopened => w.events.contains(&Event::Reopened),
            Kind::Recovered => w.events.contains(&Event::Recovered),
            Kind::EnteredPhase(p) => w.phases.contains(&p),
        }
    }
}

/// Rank on the retry-threshold ladder; none for the closing phases.
fn ladder(p: Phase) -> Option<u8> {
    match p {
        Phase::Deferred => Some(0),
        Phase::NormalRetry => Some(1),
        Phase::Persistent => Some(2),
        Phase::Cooling => Some(3),
        Phase::CoolingExtended => Some(4),
        Phase::Escalate => Some(5),
        Phase::Recovered | Phase::Stale => None,
    }
}

const LADDER: [Phase; 6] = [
    Phase::Deferred,
    Phase::NormalRetry,
    Phase::Persistent,
    Phase::Cooling,
    Phase::CoolingExtended,
    Phase::Escalate,
];

/// The incident's transitions at or after `not_before`, oldest first.
///
/// - `opened`: the first phase-history entry (the first deferral);
/// - `reopened`: an entry leaving `recovered`, which starts a new episode;
/// - `entered_phase P`: the first entry of an episode reaching P. A jump over P on the
///   way up (normal_retry → cooling after a gap in the events) counts as reaching P,
///   since the operator asked to hear once it is at least that bad; falling back and
///   climbing again (escalate held back by a recovery trend, then escalate again)
///   does not repeat it within the episode;
/// - `recovered`: an entry into `recovered` (its time is the incident's `closed_at`);
///   a `stale` close is `entered_phase stale`.
///
/// Earlier transitions still count for "already reached" before the cut-off applies.
pub fn transitions(inc: &Incident, not_before: Option<DateTime<Utc>>) -> Vec<Transition> {
    let mut out = Vec::new();
    let mut reached = [false; LADDER.len()];
    for (i, ch) in inc.phase_history.iter().enumerate() {
        let mut push = |kind: Kind| {
            out.push(Transition {
                incident_id: inc.id,
                kind,
                at: ch.at,
                from: ch.from,
                to: ch.to,
                reason: ch.reason.clone(),
            })
        };
        if i == 0 && ch.from.is_none() {
            push(Kind::Opened);
        } else if ch.from == Some(Phase::Recovered) && ch.to != Phase::Recovered {
            reached = [false; LADDER.len()];
            push(Kind::Reopened);
        }
        match (ch.to, ladder(ch.to)) {
            (Phase::Recovered, _) => push(Kind::Recovered),
            (Phase::Stale, _) => push(Kind::EnteredPhase(Phase::Stale)),
            (_, Some(to)) => {
                // Passing over only counts upwards from a ladder phase; after an
                // opening or a reopen only the phase actually entered does.
                let from = ch.from.and_then(ladder).map_or(to, |f| f + 1);
                for r in from.min(to)..=to {
                    let r = usize::from(r);
                    if !reached[r] {
                        reached[r] = true;
                        push(Kind::EnteredPhase(LADDER[r]));
                    }
                }
            }
            (_, None) => {}
        }
    }
    if let Some(cut) = not_before {
        out.retain(|t| t.at >= cut);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::incidents::PhaseChange;
    use crate::incidents::Status;

    fn t(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    fn incident(history: &[(&str, Option<Phase>, Phase)]) -> Incident {
        let mut inc: Incident = serde_json::from_value(serde_json::json!({
            "id": 7, "destination": "google", "status": "open", "phase": "deferred",
            "first_seen": "2026-11-20T04:00:00.000Z", "last_seen": "2026-11-20T04:00:00.000Z",
            "last_deferral": "2026-11-20T04:00:00.000Z",
            "counts": {"deferred": 1, "delivered": 0, "bounced": 0},
            "routes": {}, "mx_hosts": {}, "recipient_domains": {"items": {}},
            "causes": {}, "stages": {}, "replies": [], "hourly": {}, "recent": {},
            "recovery_trend": false, "phase_history": []
        }))
        .unwrap();
        inc.phase_history = history
            .iter()
            .map(|(at, from, to)| PhaseChange {
                at: t(at),
                from: *from,
                to: *to,
                reason: format!("to {to}"),
            })
            .collect();
        inc.phase = history.last().unwrap().2;
        inc.status = match inc.phase {
            Phase::Recovered => Status::Recovered,
            Phase::Stale => Status::Stale,
            _ => Status::Open,
        };
        inc
    }

    fn keys(ts: &[Transition]) -> Vec<String> {
        ts.iter().map(|t| t.key()).collect()
    }

    use Phase::*;

    /// Name, phase history (at, from, to), cut-off, expected keys.
    type Case = (
        &'static str,
        Vec<(&'static str, Option<Phase>, Phase)>,
        Option<&'static str>,
        Vec<&'static str>,
    );

    #[test]
    fn transitions_from_phase_history() {
        let cases: Vec<Case> = vec![
            (
                "step by step up the ladder",
                vec![
                    ("2026-11-20T04:00:00Z", None, Deferred),
                    ("2026-11-20T04:15:00Z", Some(Deferred), NormalRetry),
                    ("2026-11-20T05:00:00Z", Some(NormalRetry), Persistent),
                    ("2026-11-21T04:00:00Z", Some(Persistent), Escalate),
                ],
                None,
                vec![
                    "7:opened:-:1795147200000",
                    "7:entered_phase:deferred:1795147200000",
                    "7:entered_phase:normal_retry:1795148100000",
                    "7:entered_phase:persistent:1795150800000",
                    "7:entered_phase:cooling:1795233600000",
                    "7:entered_phase:cooling_extended:1795233600000",
                    "7:entered_phase:escalate:1795233600000",
                ],
            ),
            (
                "escalate held back and reached again is one escalate",
                vec![
                    ("2026-11-20T04:00:00Z", None, Deferred),
                    ("2026-11-21T04:00:00Z", Some(Deferred), Escalate),
                    ("2026-11-21T05:00:00Z", Some(Escalate), CoolingExtended),
                    ("2026-11-21T07:30:00Z", Some(CoolingExtended), Escalate),
                ],
                Some("2026-11-21T00:00:00Z"),
                vec![
                    "7:entered_phase:normal_retry:1795233600000",
                    "7:entered_phase:persistent:1795233600000",
                    "7:entered_phase:cooling:1795233600000",
                    "7:entered_phase:cooling_extended:1795233600000",
                    "7:entered_phase:escalate:1795233600000",
                ],
            ),
            (
                "recovered, reopened straight into persistent, recovered again",
                vec![
                    ("2026-11-20T04:00:00Z", None, Deferred),
                    ("2026-11-20T05:00:00Z", Some(Deferred), Persistent),
                    ("2026-11-20T07:00:00Z", Some(Persistent), Recovered),
                    ("2026-11-20T07:20:00Z", Some(Recovered), Persistent),
                    ("2026-11-20T09:30:00Z", Some(Persistent), Recovered),
                ],
                None,
                vec![
                    "7:opened:-:1795147200000",
                    "7:entered_phase:deferred:1795147200000",
                    "7:entered_phase:normal_retry:1795150800000",
                    "7:entered_phase:persistent:1795150800000",
                    "7:recovered:recovered:1795158000000",
                    "7:reopened:-:1795159200000",
                    "7:entered_phase:persistent:1795159200000",
                    "7:recovered:recovered:1795167000000",
                ],
            ),
            (
                "stale close; the cut-off drops the old ones",
                vec![
                    ("2026-11-20T04:00:00Z", None, Deferred),
                    ("2026-11-20T04:20:00Z", Some(Deferred), NormalRetry),
                    ("2026-11-21T04:20:00Z", Some(NormalRetry), Stale),
                ],
                Some("2026-11-20T12:00:00Z"),
                vec!["7:entered_phase:stale:1795234800000"],
            ),
        ];
        for (name, history, cut, want) in cases {
            let inc = incident(&history);
            let got = transitions(&inc, cut.map(t));
            assert_eq!(keys(&got), want, "{name}");
        }
    }

    #[test]
    fn a_transition_carries_its_change() {
        let inc = incident(&[
            ("2026-11-20T04:00:00Z", None, Deferred),
            ("2026-11-20T05:00:00Z", Some(Deferred), Persistent),
        ]);
        let got = transitions(&inc, Some(t("2026-11-20T05:00:00Z")));
        assert_eq!(
            got,
            vec![
                Transition {
                    incident_id: 7,
                    kind: Kind::EnteredPhase(NormalRetry),
                    at: t("2026-11-20T05:00:00Z"),
                    from: Some(Deferred),
                    to: Persistent,
                    reason: "to persistent".into(),
                },
                Transition {
                    incident_id: 7,
                    kind: Kind::EnteredPhase(Persistent),
                    at: t("2026-11-20T05:00:00Z"),
                    from: Some(Deferred),
                    to: Persistent,
                    reason: "to persistent".into(),
                },
            ]
        );
    }

    #[test]
    fn webhooks_pick_what_they_asked_for() {
        let w = Webhook {
            url: "http://127.0.0.1/h".into(),
            format: super::super::config::Format::Generic,
            phases: vec![Escalate],
            events: vec![Event::Recovered],
        };
        let inc = incident(&[
            ("2026-11-20T04:00:00Z", None, Deferred),
            ("2026-11-21T04:00:00Z", Some(Deferred), Escalate),
            ("2026-11-21T06:00:00Z", Some(Escalate), Recovered),
        ]);
        let picked: Vec<_> = transitions(&inc, None)
            .into_iter()
            .filter(|t| t.wanted_by(&w))
            .map(|t| t.key())
            .collect();
        assert_eq!(
            picked,
            vec![
                "7:entered_phase:escalate:1795233600000",
                "7:recovered:recovered:1795240800000"
            ]
        );
    }
}
