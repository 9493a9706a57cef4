//! The digest for the on-call list: open incidents by phase, those new since the last
//! digest, and those that reach `escalate` within the next hours if deferrals go on.
//! Pure: incidents and times in, plain text out.

use crate::incidents::{Incident, Phase, Thresholds};
use chrono::{DateTime, TimeDelta, Utc};
use std::fmt::Write as _;

/// How far ahead the digest looks for incidents about to reach `escalate`.
pub const ESCALATE_HORIZON: TimeDelta = TimeDelta::hours(6);

pub struct DigestInput<'a> {
    /// The open incidents (closed ones are ignored).
    pub open: &'a [Incident],
    /// The previous digest; None for the first.
    pub since: Option<DateTime<Utc>>,
    pub now: DateTime<Utc>,
    pub thresholds: &'a Thresholds,
    /// `public_url`, for links to the incidents.
    pub public_url: Option<&'a str>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Digest {
    pub subject: String,
    pub text: String,
    /// Nothing open and nothing new: callers may skip sending.
    pub quiet: bool,
}

fn utc(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M UTC").to_string()
}

fn line(inc: &Incident, public_url: Option<&str>) -> String {
    let top = inc
        .top_causes()
        .first()
        .map(|(c, _)| c.clone())
        .unwrap_or_else(|| "unclassified".into());
    let mut s = format!(
        "  #{:<6} {:<18} {:<16} {:>7} deferred  since {}  ({})",
        inc.id,
        inc.destination,
        inc.phase.as_str(),
        inc.counts.deferred,
        utc(inc.first_seen),
        top
    );
    if let Some(base) = public_url {
        let _ = write!(s, "\n          {base}/incidents/{}", inc.id);
    }
    s
}

pub fn build(input: &DigestInput) -> Digest {
    let open: Vec<&Incident> = input.open.iter().filter(|i| i.is_open()).collect();
    let new: Vec<&Incident> = open
        .iter()
        .copied()
        .filter(|i| input.since.is_none_or(|s| i.first_seen >= s))
        .collect();
    // Phase ages run on event time from the first deferral; an incident whose
    // escalate boundary falls within the horizon gets there if deferrals go on and no
    // recovery trend appears.
    let mut soon: Vec<(&Incident, DateTime<Utc>)> = open
        .iter()
        .copied()
        .filter(|i| i.phase < Phase::Escalate && !i.recovery_trend)
        .map(|i| (i, i.first_seen + input.thresholds.escalate))
        .filter(|(_, at)| *at <= input.now + ESCALATE_HORIZON)
        .collect();
    soon.sort_by_key(|(_, at)| *at);
    let escalating = open.iter().filter(|i| i.phase == Phase::Escalate).count();
    let subject = if open.is_empty() {
        "Deferwatch digest: no open incident".to_string()
    } else {
        format!(
            "Deferwatch digest: {} open incident{}, {escalating} to escalate, {} new",
            open.len(),
            if open.len() == 1 { "" } else { "s" },
            new.len()
        )
    };
    let mut t = String::new();
    let _ = writeln!(t, "Deferwatch digest, {}", utc(input.now));
    match input.since {
        Some(s) => {
            let _ = writeln!(t, "Covering {} to {}.", utc(s), utc(input.now));
        }
        None => {
            let _ = writeln!(t, "First digest.");
        }
    }
    let _ = writeln!(t, "\nOpen incidents by phase");
    if open.is_empty() {
        let _ = writeln!(t, "  none");
    }
    for phase in Phase::ALL.iter().rev() {
        let mut of: Vec<&&Incident> = open.iter().filter(|i| i.phase == *phase).collect();
        if of.is_empty() {
            continue;
        }
        of.sort_by_key(|i| std::cmp::Reverse(i.counts.deferred));
        let _ = writeln!(t, "\n{} ({})", phase.as_str(), of.len());
        for inc in of {
            let _ = writeln!(t, "{}", line(inc, input.public_url));
        }
    }
    let _ = writeln!(t, "\nNew since the last digest ({})", new.len());
    if new.is_empty() {
        let _ = writeln!(t, "  none");
    }
    for inc in &new {
        let _ = writeln!(t, "{}", line(inc, input.public_url));
    }
    let _ = writeln!(
        t,
        "\nReaching escalate within {} h if deferrals go on ({})",
        ESCALATE_HORIZON.num_hours(),
        soon.len()
    );
    if soon.is_empty() {
        let _ = writeln!(t, "  none");
    }
    for (inc, at) in &soon {
        let _ = writeln!(
            t,
            "{}\n          escalate at {}",
            line(inc, input.public_url),
            utc(*at)
        );
    }
    Digest {
        subject,
        quiet: open.is_empty() && new.is_empty(),
        text: t,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::incidents::{Engine, Timeline};

    fn ts(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    /// An incident built by the real parser and engine from hourly deferrals.
    fn incident(id: i64, mx: &str, from: &str, hours: i64) -> Incident {
        let classifier = crate::smtp::Classifier::builtin();
        let ctx = crate::ingest::json::Context {
            source_id: 1,
            classifier: &classifier,
            now: ts("2026-11-23T08:00:00Z"),
            max_future_skew: TimeDelta::hours(1),
        };
        let engine = Engine::new(Thresholds::default());
        let mut tl = Timeline::new(None);
        let start = ts(from);
        for h in 0..=hours {
            let at = (start + TimeDelta::hours(h)).to_rfc3339();
            let raw = format!(
                r#"{{"type":"deferred","timestamp":"{at}","recipient":"u{h}@example.com","source_ip":"198.51.100.25","mx_host":"{mx}","response":"421 4.7.0 Try again later"}}"#
            );
            let ev = crate::ingest::json::parse_event(&raw, &ctx).unwrap();
            engine.apply(&mut tl, &ev);
        }
        let mut inc = tl.incidents.remove(0);
        inc.id = id;
        inc
    }

    #[test]
    fn phases_new_incidents_and_those_about_to_escalate() {
        let now = ts("2026-11-23T08:00:00Z");
        let open = vec![
            // 27 h: escalate.
            incident(
                1,
                "example-com.mail.protection.outlook.com",
                "2026-11-22T05:00:00Z",
                27,
            ),
            // 20 h: cooling_extended, escalates at 2026-11-23 12:00, within 6 h.
            incident(2, "gmail-smtp-in.l.google.com", "2026-11-22T12:00:00Z", 20),
            // 2 h and new since the last digest at 05:00.
            incident(3, "mta5.am0.yahoodns.net", "2026-11-23T06:00:00Z", 2),
        ];
        let th = Thresholds::default();
        let d = build(&DigestInput {
            open: &open,
            since: Some(ts("2026-11-23T05:00:00Z")),
            now,
            thresholds: &th,
            public_url: Some("https://dw.example"),
        });
        assert_eq!(
            d.subject,
            "Deferwatch digest: 3 open incidents, 1 to escalate, 1 new"
        );
        assert!(!d.quiet);
        let escalate = d.text.find("\nescalate (1)").expect("escalate group");
        let cooling = d
            .text
            .find("\ncooling_extended (1)")
            .expect("cooling group");
        assert!(escalate < cooling, "most urgent first:\n{}", d.text);
        let new = d
            .text
            .split("New since the last digest (1)")
            .nth(1)
            .unwrap();
        assert!(
            new.split("Reaching").next().unwrap().contains("#3"),
            "{}",
            d.text
        );
        let soon = d
            .text
            .split("Reaching escalate within 6 h if deferrals go on (1)")
            .nth(1)
            .unwrap();
        assert!(
            soon.contains("#2") && soon.contains("escalate at 2026-11-23 12:00 UTC"),
            "{}",
            d.text
        );
        assert!(d.text.contains("https://dw.example/incidents/1"));
    }

    #[test]
    fn nothing_open_is_a_quiet_digest() {
        let th = Thresholds::default();
        let d = build(&DigestInput {
            open: &[],
            since: None,
            now: ts("2026-11-23T08:00:00Z"),
            thresholds: &th,
            public_url: None,
        });
        assert!(d.quiet);
        assert_eq!(d.subject, "Deferwatch digest: no open incident");
        assert!(d.text.contains("First digest."));
    }
}
