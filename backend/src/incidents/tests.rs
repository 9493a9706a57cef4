//! Table-driven tests of the incident engine at exact instants.

use super::engine::{Engine, Timeline};
use super::model::Incident;
use super::model::Status;
use super::phase::{Phase, Thresholds};
use super::scope::{SourceIpScope, StageScope, scope};
use crate::event::{EventType, NewEvent};
use crate::smtp::{Classifier, Stage};
use chrono::{DateTime, TimeDelta, Utc};

/// Building the rules takes a while in a debug build; once is enough.
static CLASSIFIER: std::sync::LazyLock<Classifier> = std::sync::LazyLock::new(Classifier::builtin);

const T0: &str = "2026-11-20T08:00:00Z";
const A: &str = "198.51.100.25";
const B: &str = "198.51.100.26";
const GMAIL_421: &str = "421-4.7.28 Our system has detected an unusual rate of unsolicited mail originating from your IP address. - gsmtp";

fn t0() -> DateTime<Utc> {
    T0.parse().unwrap()
}

fn at(minutes: i64) -> DateTime<Utc> {
    t0() + TimeDelta::minutes(minutes)
}

fn ev(kind: EventType, minutes: i64, ip: &str) -> NewEvent {
    ev_to(kind, minutes, ip, "example.com")
}

fn ev_to(kind: EventType, minutes: i64, ip: &str, domain: &str) -> NewEvent {
    let response = match kind {
        EventType::Deferred => GMAIL_421,
        EventType::Delivered => "250 2.0.0 OK",
        EventType::Bounced => "550 5.1.1 no such user",
    };
    let classification =
        (kind != EventType::Delivered).then(|| CLASSIFIER.classify_text(response, None));
    NewEvent {
        source_id: 1,
        ext_id: None,
        dedupe_key: format!("{kind}-{minutes}-{ip}-{domain}"),
        kind,
        time: at(minutes),
        received_at: at(minutes),
        recipient: format!("user@{domain}"),
        recipient_domain: domain.into(),
        sender: None,
        source_ip: Some(ip.into()),
        helo: Some("mail.sender.example".into()),
        mx_host: Some("aspmx.l.google.com".into()),
        mx_ip: None,
        destination: "google".into(),
        response: Some(response.into()),
        code: classification.as_ref().and_then(|c| c.code),
        enhanced: None,
        stage: Stage::Rcpt,
        classification,
        attempt: None,
        pool: None,
        message_id: None,
        dkim_selector: None,
        raw: "{}".into(),
    }
}

use EventType::{Bounced, Deferred, Delivered};

/// Feeds events in the order given; returns the timeline.
fn run(engine: &Engine, events: &[NewEvent]) -> Timeline {
    let mut tl = Timeline::new(None);
    for e in events {
        engine.apply(&mut tl, e);
    }
    tl
}

fn every(kind: EventType, from: i64, to: i64, step: i64, ip: &str) -> Vec<NewEvent> {
    (0..)
        .map(|i| from + i * step)
        .take_while(|m| *m <= to)
        .map(|m| ev(kind, m, ip))
        .collect()
}

fn sorted(mut v: Vec<NewEvent>) -> Vec<NewEvent> {
    v.sort_by_key(|e| e.time);
    v
}

#[test]
fn steady_deferrals_walk_through_every_window() {
    let engine = Engine::new(Thresholds::default());
    // (minutes after the first deferral of a steady stream every 10 min, expected phase)
    let cases = [
        (0, Phase::Deferred),
        (10, Phase::Deferred),
        (20, Phase::NormalRetry),
        (60, Phase::Persistent),
        (350, Phase::Persistent),
        (360, Phase::Cooling),
        (720, Phase::CoolingExtended),
        (1430, Phase::CoolingExtended),
        (1440, Phase::Escalate),
        (2000, Phase::Escalate),
    ];
    for (end, want) in cases {
        let tl = run(&engine, &every(Deferred, 0, end, 10, A));
        assert_eq!(tl.incidents.len(), 1, "end {end}");
        let inc = &tl.incidents[0];
        assert_eq!(inc.phase, want, "after {end} min");
        assert_eq!(inc.status, Status::Open);
        assert_eq!(inc.first_seen, t0());
        assert_eq!(inc.last_seen, at(end));
    }
}

#[test]
fn phase_changes_are_recorded_at_the_event_that_crossed_the_window() {
    let engine = Engine::new(Thresholds::default());
    let tl = run(&engine, &every(Deferred, 0, 130, 50, A)); // 0, 50, 100
    let h: Vec<(DateTime<Utc>, Option<Phase>, Phase)> = tl.incidents[0]
        .phase_history
        .iter()
        .map(|c| (c.at, c.from, c.to))
        .collect();
    assert_eq!(
        h,
        vec![
            (at(0), None, Phase::Deferred),
            (at(50), Some(Phase::Deferred), Phase::NormalRetry),
            (at(100), Some(Phase::NormalRetry), Phase::Persistent),
        ]
    );
}

#[test]
fn recovery_trend_on_the_affected_route_holds_back_escalate() {
    let engine = Engine::new(Thresholds::default());
    // Every 10 min for 21 h, then one deferral an hour while deliveries on the same IP
    // succeed again: the deferral rate on the affected route has fallen.
    let mut events = every(Deferred, 0, 21 * 60, 10, A);
    events.extend(every(Deferred, 21 * 60 + 60, 25 * 60, 60, A));
    events.extend(every(Delivered, 21 * 60 + 5, 25 * 60 + 5, 15, A));
    let tl = run(&engine, &sorted(events));
    let inc = &tl.incidents[0];
    assert!(inc.recovery_trend);
    assert_eq!(inc.phase, Phase::CoolingExtended);
    assert!(inc.age() >= TimeDelta::hours(24));
}

#[test]
fn deliveries_from_an_unaffected_ip_are_not_a_recovery() {
    let engine = Engine::new(Thresholds::default());
    let mut events = every(Deferred, 0, 25 * 60, 10, A);
    events.extend(every(Delivered, 20 * 60, 25 * 60, 5, B));
    let tl = run(&engine, &sorted(events));
    let inc = &tl.incidents[0];
    assert!(!inc.recovery_trend);
    assert_eq!(inc.phase, Phase::Escalate);
    assert_eq!(inc.recovering_since, None);
    // …and B shows as the unaffected comparison IP.
    let s = scope(inc);
    assert_eq!(s.source_ips, SourceIpScope::OneIp);
    assert_eq!(s.affected_source_ips, vec![A.to_string()]);
    assert_eq!(s.unaffected_source_ips, vec![B.to_string()]);
    assert_eq!(
        s.summary,
        "one source IP, one recipient domain, after RCPT TO"
    );
}

#[test]
fn time_passing_recovers_stales_and_nothing_before_its_instant() {
    let engine = Engine::new(Thresholds::default());
    // (events, sweep instant in minutes, expected status, expected closing instant)
    let deferrals_then_delivery = sorted(
        every(Deferred, 0, 60, 10, A)
            .into_iter()
            .chain([ev(Delivered, 70, A)])
            .collect(),
    );
    let deferrals_only = every(Deferred, 0, 60, 10, A);
    let healthy_ip_delivers = sorted(
        every(Deferred, 0, 60, 10, A)
            .into_iter()
            .chain([ev(Delivered, 70, B)])
            .collect(),
    );
    type Case<'a> = (&'a str, &'a Vec<NewEvent>, i64, Status, Option<i64>);
    let cases: Vec<Case> = vec![
        (
            "quiet period not over",
            &deferrals_then_delivery,
            70 + 119,
            Status::Open,
            None,
        ),
        (
            "quiet period over",
            &deferrals_then_delivery,
            70 + 120,
            Status::Recovered,
            Some(190),
        ),
        (
            "sweep long after",
            &deferrals_then_delivery,
            5000,
            Status::Recovered,
            Some(190),
        ),
        (
            "no delivery, a day minus a minute",
            &deferrals_only,
            60 + 1439,
            Status::Open,
            None,
        ),
        (
            "no event for a day",
            &deferrals_only,
            60 + 1440,
            Status::Stale,
            Some(1500),
        ),
        (
            "healthy IP only",
            &healthy_ip_delivers,
            70 + 600,
            Status::Open,
            None,
        ),
        (
            "healthy IP only, a day later",
            &healthy_ip_delivers,
            70 + 1440,
            Status::Stale,
            Some(1510),
        ),
    ];
    for (name, events, sweep_at, status, closed) in cases {
        let mut tl = run(&engine, events);
        let inc = &mut tl.incidents[0];
        let changed = engine.settle(inc, at(sweep_at));
        assert_eq!(inc.status, status, "{name}");
        assert_eq!(changed, closed.is_some(), "{name}");
        assert_eq!(inc.closed_at, closed.map(at), "{name}");
        if let Some(c) = closed {
            let last = inc.phase_history.last().unwrap();
            assert_eq!((last.at, last.to), (at(c), inc.phase), "{name}");
            // A closed incident is not due any more; an open one is due at its instant.
            assert_eq!(engine.due_at(inc), None, "{name}");
        } else {
            assert!(engine.due_at(inc).unwrap() > at(sweep_at), "{name}");
        }
    }
}

#[test]
fn a_new_event_after_the_quiet_period_settles_the_incident_first() {
    let engine = Engine::new(Thresholds::default());
    let mut events = every(Deferred, 0, 60, 10, A);
    events.push(ev(Delivered, 70, A));
    events.push(ev(Delivered, 300, A)); // the quiet period ended at 190
    let tl = run(&engine, &events);
    let inc = &tl.incidents[0];
    assert_eq!(inc.status, Status::Recovered);
    assert_eq!(inc.closed_at, Some(at(190)));
    // The later delivery came after the close and is not counted in it.
    assert_eq!(inc.counts.delivered, 1);
}

#[test]
fn reopen_window_decides_between_the_same_and_a_new_incident() {
    let engine = Engine::new(Thresholds::default());
    // Recovered at minute 190 (see above); reopen window 6 h → until 550.
    let cases = [
        ("deferral 5h after recovery", 190 + 300, 1, 1),
        ("deferral at the window's end", 190 + 360, 1, 1),
        ("deferral 7h after recovery", 190 + 420, 2, 0),
    ];
    for (name, minute, incidents, reopens) in cases {
        let mut events = every(Deferred, 0, 60, 10, A);
        events.push(ev(Delivered, 70, A));
        events.push(ev(Deferred, minute, A));
        let tl = run(&engine, &events);
        assert_eq!(tl.incidents.len(), incidents, "{name}");
        assert_eq!(tl.incidents[0].reopens.len(), reopens, "{name}");
        let last = tl.incidents.last().unwrap();
        assert_eq!(last.status, Status::Open, "{name}");
        if reopens == 1 {
            let change = last.phase_history.last().unwrap();
            assert_eq!(change.from, Some(Phase::Recovered), "{name}");
            assert!(
                change.reason.starts_with("reopened"),
                "{name}: {}",
                change.reason
            );
            // Age still counts from the first deferral: stubborn deferrals.
            assert_eq!(last.first_seen, t0(), "{name}");
        } else {
            assert_eq!(last.first_seen, at(minute), "{name}");
        }
    }
}

#[test]
fn a_stale_incident_is_never_reopened() {
    let engine = Engine::new(Thresholds::default());
    let mut events = every(Deferred, 0, 60, 10, A);
    events.push(ev(Deferred, 60 + 1440 + 30, A));
    let tl = run(&engine, &events);
    assert_eq!(tl.incidents.len(), 2);
    assert_eq!(tl.incidents[0].status, Status::Stale);
    assert_eq!(tl.incidents[0].closed_at, Some(at(1500)));
    assert_eq!(tl.incidents[1].status, Status::Open);
}

#[test]
fn replay_gives_the_same_incident_whenever_the_sweep_ran() {
    let engine = Engine::new(Thresholds::default());
    let events = sorted(
        every(Deferred, 0, 300, 15, A)
            .into_iter()
            .chain(every(Delivered, 20, 300, 30, B))
            .collect(),
    );
    let without = run(&engine, &events);
    // A sweep at a wall clock far ahead (a backfill) closes the incident as stale after
    // the first events; the events that follow reopen it as if nothing happened.
    let mut with = Timeline::new(None);
    for (i, e) in events.iter().enumerate() {
        engine.apply(&mut with, e);
        if i == 3 {
            let inc = with.incidents.last_mut().unwrap();
            assert!(engine.settle(inc, at(100_000)));
            assert_eq!(inc.status, Status::Stale);
        }
    }
    assert_eq!(with.incidents, without.incidents);
}

#[test]
fn arrival_order_does_not_matter_within_a_batch_once_sorted() {
    let engine = Engine::new(Thresholds::default());
    let events = every(Deferred, 0, 200, 10, A);
    let mut shuffled = events.clone();
    shuffled.reverse();
    assert_eq!(
        run(&engine, &events).incidents,
        run(&engine, &sorted(shuffled)).incidents
    );
}

#[test]
fn a_late_earlier_deferral_moves_first_seen_back() {
    let engine = Engine::new(Thresholds::default());
    let tl = run(
        &engine,
        &[
            ev(Deferred, 100, A),
            ev(Deferred, 130, A),
            ev(Deferred, 30, A),
        ],
    );
    let inc = &tl.incidents[0];
    assert_eq!(inc.first_seen, at(30));
    assert_eq!(inc.last_deferral, at(130));
    assert_eq!(inc.counts.deferred, 3);
}

#[test]
fn deliveries_and_bounces_without_an_incident_open_none() {
    let engine = Engine::new(Thresholds::default());
    let mut tl = Timeline::new(None);
    assert_eq!(engine.apply(&mut tl, &ev(Delivered, 0, A)), None);
    assert_eq!(engine.apply(&mut tl, &ev(Bounced, 1, A)), None);
    assert!(tl.incidents.is_empty());
    assert_eq!(engine.apply(&mut tl, &ev(Deferred, 2, A)), Some(0));
    assert_eq!(engine.apply(&mut tl, &ev(Bounced, 3, A)), Some(0));
    assert_eq!(tl.incidents[0].counts.bounced, 1);
}

#[test]
fn scope_summaries_name_what_spread() {
    let engine = Engine::new(Thresholds::default());
    let cases: Vec<(&str, Vec<NewEvent>, SourceIpScope, &str)> = vec![
        (
            "one IP, others fine",
            vec![ev(Deferred, 0, A), ev(Delivered, 1, B)],
            SourceIpScope::OneIp,
            "one source IP, one recipient domain, after RCPT TO",
        ),
        (
            "every IP seen",
            vec![ev(Deferred, 0, A), ev(Deferred, 1, B)],
            SourceIpScope::AllIps,
            "all 2 source IPs, one recipient domain, after RCPT TO",
        ),
        (
            "several domains",
            vec![
                ev_to(Deferred, 0, A, "a.example"),
                ev_to(Deferred, 1, A, "b.example"),
                ev_to(Deferred, 2, A, "c.example"),
            ],
            SourceIpScope::AllIps,
            "one source IP, 3 recipient domains, after RCPT TO",
        ),
    ];
    for (name, events, ips, summary) in cases {
        let tl = run(&engine, &events);
        let s = scope(&tl.incidents[0]);
        assert_eq!(s.source_ips, ips, "{name}");
        assert_eq!(s.summary, summary, "{name}");
        assert_eq!(s.stage, StageScope::Transaction, "{name}");
    }
    // Greeting-stage deferrals point at connection handling, not content.
    let mut e = ev(Deferred, 0, A);
    e.stage = Stage::Connect;
    let tl = run(&engine, &[e]);
    let s = scope(&tl.incidents[0]);
    assert_eq!(s.stage, StageScope::Connection);
    assert!(
        s.summary.ends_with("at connection (before MAIL FROM)"),
        "{}",
        s.summary
    );
}

#[test]
fn replies_differing_only_in_variable_parts_are_one_representative_reply() {
    use super::engine::reply_key;
    assert_eq!(
        reply_key(
            Some(421),
            "4.7.0 [TSS04] Messages from 198.51.100.25 temporarily deferred"
        ),
        reply_key(
            Some(421),
            "4.7.0 [TSS04] Messages from 198.51.100.26 temporarily deferred"
        ),
    );
    assert_ne!(
        reply_key(Some(421), "4.7.0 [TSS04] Messages temporarily deferred"),
        reply_key(Some(451), "4.7.0 [TSS04] Messages temporarily deferred"),
    );
}

#[test]
fn overview_suspects_the_sender_when_one_ip_is_deferred_everywhere() {
    use super::overview::overview;
    let engine = Engine::new(Thresholds::default());
    let incident = |dest: &str, ip: &str, response: Option<&str>| {
        let mut e = ev(Deferred, 0, ip);
        e.destination = dest.into();
        if let Some(r) = response {
            e.response = Some(r.into());
            e.classification = Some(CLASSIFIER.classify_text(r, None));
        }
        run(&engine, &[e]).incidents.remove(0)
    };
    let timeout = "connect to mx.example.net[203.0.113.9]:25: Connection timed out";
    let cases: Vec<(&str, Vec<Incident>, bool, &str)> = vec![
        ("nothing open", vec![], false, "no open incidents"),
        (
            "one IP, three destinations",
            vec![
                incident("google", A, None),
                incident("microsoft", A, None),
                incident("yahoo", A, None),
                incident("apple", B, None),
            ],
            true,
            "198.51.100.25 is deferred by 3 destinations at once (google, microsoft, yahoo)",
        ),
        (
            "different IPs",
            vec![
                incident("google", A, None),
                incident("microsoft", B, None),
                incident("yahoo", "198.51.100.27", None),
            ],
            false,
            "3 destinations deferring, no sending IP shared by 3 or more",
        ),
        (
            "our MTA cannot connect anywhere",
            vec![
                incident("a.example", A, Some(timeout)),
                incident("b.example", B, Some(timeout)),
                incident("c.example", "198.51.100.27", Some(timeout)),
            ],
            true,
            "the sending MTA reports its own failures towards 3 destinations",
        ),
    ];
    for (name, open, suspected, summary) in cases {
        let o = overview(&open);
        assert_eq!(o.sender_side_suspected, suspected, "{name}: {}", o.summary);
        assert!(o.summary.starts_with(summary), "{name}: {}", o.summary);
        assert_eq!(o.open_incidents, open.len(), "{name}");
    }
}
