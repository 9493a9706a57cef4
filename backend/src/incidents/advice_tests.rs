//! Next steps for incidents built by the real engine at exact instants.

use super::*;
use crate::checks::CheckResult;
use crate::event::{EventType, NewEvent};
use crate::incidents::engine::{Engine, Timeline};
use crate::incidents::overview::overview;
use crate::incidents::scope::scope;
use crate::smtp::{Cause, Classification, Origin, Stage};
use EventType::{Deferred, Delivered};

const A: &str = "198.51.100.25";
const B: &str = "198.51.100.26";
const T0: &str = "2026-11-22T06:00:00Z";
const RATE_421: &str = "421-4.7.28 Our system has detected an unusual rate of unsolicited mail originating from your IP address. - gsmtp";

fn at(minutes: i64) -> DateTime<Utc> {
    T0.parse::<DateTime<Utc>>().unwrap() + TimeDelta::minutes(minutes)
}

fn ev(kind: EventType, minutes: i64, ip: &str) -> NewEvent {
    let deferred = kind == Deferred;
    NewEvent {
        source_id: 1,
        ext_id: None,
        dedupe_key: format!("{kind}-{minutes}-{ip}"),
        kind,
        time: at(minutes),
        received_at: at(minutes),
        recipient: "user@gmail.com".into(),
        recipient_domain: "gmail.com".into(),
        sender: Some("news@sender.example".into()),
        source_ip: Some(ip.into()),
        helo: Some(format!("mta{}.sender.example", &ip[ip.len() - 2..])),
        mx_host: Some("aspmx.l.google.com".into()),
        mx_ip: None,
        destination: "google".into(),
        response: Some(if deferred { RATE_421 } else { "250 2.0.0 OK" }.into()),
        code: Some(if deferred { 421 } else { 250 }),
        enhanced: None,
        stage: Stage::Rcpt,
        classification: deferred.then(|| classification(Cause::RateLimit, Origin::Remote)),
        attempt: None,
        pool: None,
        message_id: None,
        dkim_selector: None,
        raw: "{}".into(),
    }
}

fn classification(cause: Cause, origin: Origin) -> Classification {
    Classification {
        code: Some(421),
        enhanced: None,
        cause,
        action: cause.default_action(),
        provider: None,
        reference: None,
        explanation: String::new(),
        stage: Stage::Rcpt,
        origin,
        retry_hint_seconds: None,
        rule: None,
    }
}

fn every(kind: EventType, from: i64, to: i64, step: i64, ip: &str) -> Vec<NewEvent> {
    (0..)
        .map(|i| from + i * step)
        .take_while(|m| *m <= to)
        .map(|m| ev(kind, m, ip))
        .collect()
}

/// Deferrals of `ip` with every event changed by `f`.
fn deferrals(from: i64, to: i64, step: i64, ip: &str, f: impl Fn(&mut NewEvent)) -> Vec<NewEvent> {
    let mut v = every(Deferred, from, to, step, ip);
    v.iter_mut().for_each(f);
    v
}

fn incident(events: Vec<NewEvent>) -> Incident {
    let engine = Engine::new(Thresholds::default());
    let mut events = events;
    events.sort_by_key(|e| e.time);
    let mut tl = Timeline::new(None);
    for e in &events {
        engine.apply(&mut tl, e);
    }
    tl.incidents.remove(0)
}

fn check(subject: &str, name: &str, verdict: Verdict, detail: &str, minutes: i64) -> StoredCheck {
    StoredCheck {
        subject: subject.into(),
        result: CheckResult::new(name, verdict, detail, vec![]),
        checked_at: at(minutes),
    }
}

fn change(
    subject: &str,
    description: &str,
    previous: &str,
    verdict: &str,
    at: DateTime<Utc>,
) -> StoredCheckChange {
    StoredCheckChange {
        id: 1,
        subject: subject.into(),
        name: description.split(':').take(2).collect::<Vec<_>>().join(":"),
        previous: Some(previous.into()),
        verdict: verdict.into(),
        description: description.into(),
        at,
    }
}

fn passing_auth() -> Vec<StoredCheck> {
    vec![
        check(
            "sender.example",
            "spf",
            Verdict::Pass,
            "v=spf1 authorises the IPs",
            2,
        ),
        check(
            "sender.example",
            "dkim",
            Verdict::Pass,
            "selector s1 has a key",
            2,
        ),
        check(
            "sender.example",
            "dmarc",
            Verdict::Pass,
            "p=quarantine published",
            2,
        ),
    ]
}

struct Case {
    name: &'static str,
    incident: Incident,
    checks: Vec<StoredCheck>,
    changes: Vec<StoredCheckChange>,
    overview_of: Vec<Incident>,
    /// Minutes after T0.
    now: i64,
    want: Vec<(StepKind, &'static str)>,
    absent: Vec<&'static str>,
}

impl Case {
    fn new(name: &'static str, incident: Incident, now: i64) -> Self {
        Case {
            name,
            incident,
            checks: Vec::new(),
            changes: Vec::new(),
            overview_of: Vec::new(),
            now,
            want: Vec::new(),
            absent: Vec::new(),
        }
    }
}

fn steps_of(c: &Case) -> Vec<Step> {
    let sc = scope(&c.incident);
    let ov = (!c.overview_of.is_empty()).then(|| overview(&c.overview_of));
    next_steps(&AdviceInput {
        incident: &c.incident,
        scope: &sc,
        checks: &c.checks,
        changes: &c.changes,
        thresholds: &Thresholds::default(),
        overview: ov.as_ref(),
        now: at(c.now),
    })
}

fn run(cases: Vec<Case>) {
    for c in cases {
        let steps = steps_of(&c);
        let dump = steps
            .iter()
            .map(|s| format!("  {:?}: {}", s.kind, s.text))
            .collect::<Vec<_>>()
            .join("\n");
        for (kind, text) in &c.want {
            assert!(
                steps
                    .iter()
                    .any(|s| s.kind == *kind && s.text.contains(text)),
                "{}: no {kind:?} step containing {text:?} in\n{dump}",
                c.name
            );
        }
        for text in &c.absent {
            assert!(
                !steps.iter().any(|s| s.text.contains(text)),
                "{}: unexpected step containing {text:?} in\n{dump}",
                c.name
            );
        }
        // Deterministic: the same input gives the same steps.
        assert_eq!(steps, steps_of(&c), "{}", c.name);
    }
}

const AUTH_DONT: &str = "Do not change SPF, DKIM or DMARC because of these 421 deferrals";

#[test]
fn scope_decides_whose_problem_it_is() {
    let one_ip = || {
        let mut v = every(Deferred, 0, 120, 10, A);
        v.extend(every(Delivered, 0, 120, 10, B));
        incident(v)
    };
    let mut persistent = Case::new("one IP, persistent", one_ip(), 125);
    persistent.checks = passing_auth();
    persistent.want = vec![
        (
            StepKind::Do,
            "Isolate 198.51.100.25 towards gmail.com (lower its rate or pause it) and compare \
             it side by side with 198.51.100.26, which delivered 13 messages in the same window",
        ),
        (
            StepKind::Dont,
            "Do not move 198.51.100.25's volume onto 198.51.100.26",
        ),
        (
            StepKind::Dont,
            "Do not change SPF, DKIM or DMARC because of these 421 deferrals: your SPF, DKIM \
             and DMARC checks pass for sender.example (checked 2026-11-22 06:02 UTC)",
        ),
    ];
    persistent.absent = vec!["receiving MX", "Escalate"];

    let mut cooling_events = every(Deferred, 0, 400, 20, A);
    cooling_events.extend(every(Delivered, 0, 400, 20, B));
    let mut cooling = Case::new("one IP, cooling", incident(cooling_events), 405);
    cooling.want = vec![
        (
            StepKind::Do,
            "Pause 198.51.100.25 towards gmail.com and compare it side by side with \
             198.51.100.26, which delivered 21 messages in the same window",
        ),
        (
            StepKind::Dont,
            "Do not move 198.51.100.25's volume onto 198.51.100.26",
        ),
        (
            StepKind::Do,
            "Let the queue retry slowly while 198.51.100.25 is paused; gmail.com has been \
             deferring since 2026-11-22 06:00 UTC (6h 40m).",
        ),
    ];
    cooling.absent = vec!["Pause the affected route"];

    let mut early = Case::new(
        "one IP, still early",
        incident(vec![
            ev(Deferred, 0, A),
            ev(Delivered, 5, B),
            ev(Deferred, 20, A),
        ]),
        21,
    );
    early.want = vec![(
        StepKind::Watch,
        "Only 198.51.100.25 is deferred towards gmail.com while 198.51.100.26 delivers \
         (1 message so far): if it persists past 2026-11-22 07:00 UTC",
    )];
    early.absent = vec!["Isolate", "Pause 198.51.100.25"];

    let mut both = every(Deferred, 0, 90, 10, A);
    both.extend(every(Deferred, 5, 90, 10, B));
    let mut all_ips = Case::new("every IP, one destination", incident(both), 95);
    all_ips.want = vec![(
        StepKind::Do,
        "All 2 sending IPs (198.51.100.25 and 198.51.100.26) are deferred by gmail.com: the \
         receiving MX (aspmx.l.google.com) is the centre of this incident",
    )];
    all_ips.absent = vec!["Do not move", "side by side"];

    let mut only = Case::new("the only IP", incident(every(Deferred, 0, 90, 10, A)), 95);
    only.want = vec![(
        StepKind::Do,
        "198.51.100.25 is the only IP sending to gmail.com, so scope cannot tell an IP \
         problem from a receiver problem",
    )];

    let one_mx = incident({
        let mut v = deferrals(0, 90, 10, A, |e| {
            e.mx_host = Some("alt1.aspmx.l.google.com".into())
        });
        v.extend(every(Delivered, 5, 90, 10, A));
        v
    });
    let mut mx = Case::new("one MX host", one_mx, 95);
    mx.want = vec![(
        StepKind::Do,
        "Only alt1.aspmx.l.google.com defers while aspmx.l.google.com accepts mail",
    )];

    run(vec![persistent, cooling, early, all_ips, only, mx]);
}

#[test]
fn sender_wide_and_local_failures_point_at_the_sender() {
    let elsewhere = |dest: &str| {
        let mut i = incident(every(Deferred, 0, 60, 10, A));
        i.destination = dest.into();
        i
    };
    let google = incident(every(Deferred, 0, 1500, 30, A));
    let mut wide = Case::new("same IP deferred everywhere", google.clone(), 1505);
    wide.overview_of = vec![google, elsewhere("microsoft"), elsewhere("yahoo")];
    wide.want = vec![
        (
            StepKind::Do,
            "198.51.100.25 is deferred by 3 destinations at once (google, microsoft and \
             yahoo): the sender side is the likelier cause",
        ),
        (StepKind::Dont, "Do not escalate to gmail.com yet"),
    ];
    wide.absent = vec!["Escalate: send"];

    let timeout = "connect to aspmx.l.google.com[142.250.27.26]:25: Connection timed out";
    let local = incident(deferrals(0, 20, 10, A, |e| {
        e.response = Some(timeout.into());
        e.code = None;
        e.stage = Stage::Connect;
        e.classification = Some(classification(Cause::Network, Origin::Local));
    }));
    let mut local = Case::new("the MTA reports its own failures", local, 21);
    local.want = vec![
        (
            StepKind::Do,
            "All 3 failures were reported by the sending MTA itself; gmail.com never \
             answered. Check the MTA's network path, DNS and TLS towards aspmx.l.google.com.",
        ),
        (StepKind::Dont, "Do not contact gmail.com's postmaster"),
        (
            StepKind::Dont,
            "Do not change SPF, DKIM or DMARC because of these deferrals",
        ),
    ];
    local.absent = vec!["network failures: connections"];

    run(vec![wide, local]);
}

#[test]
fn the_session_stage_says_where_to_look() {
    let at_stage = |stage: Stage| {
        incident(deferrals(0, 90, 10, A, |e| {
            e.stage = stage;
            e.classification = Some(classification(Cause::Reputation, Origin::Remote));
        }))
    };
    let mut connect = Case::new("greeting", at_stage(Stage::Connect), 95);
    connect.want = vec![
        (
            StepKind::Do,
            "The deferrals come at connection, before MAIL FROM: the receiver has not seen a \
             message",
        ),
        (StepKind::Do, "reputation of 198.51.100.25"),
        (
            StepKind::Dont,
            "Do not rework message content or recipient lists for these",
        ),
        (StepKind::Do, "Google Postmaster Tools"),
    ];
    connect.absent = vec!["Reduce the sending rate"];

    let mut data = Case::new("after DATA", at_stage(Stage::Data), 95);
    data.want = vec![(
        StepKind::Do,
        "The deferrals come after DATA: the receiver has seen sender and recipients, so \
         rate, sender domain and content can play a part. Reduce the sending rate towards \
         gmail.com.",
    )];
    data.absent = vec!["Do not rework"];

    run(vec![connect, data]);
}

#[test]
fn each_phase_gets_its_runbook_step() {
    let steady = |to: i64, step: i64| incident(every(Deferred, 0, to, step, A));
    let mut deferred = Case::new("deferred", steady(10, 10), 11);
    deferred.want = vec![
        (
            StepKind::Watch,
            "Nothing to do yet: 2 deferrals towards gmail.com since 2026-11-22 06:00 UTC (10m) \
             is the retry queue doing its job. It counts as persistent if it still defers at \
             2026-11-22 07:00 UTC.",
        ),
        (
            StepKind::Dont,
            "Do not pause, reroute or throttle yet: deferrals younger than 1h",
        ),
    ];

    let mut normal = Case::new("normal_retry", steady(30, 10), 31);
    normal.want = vec![(
        StepKind::Do,
        "Let automatic retries work: gmail.com has been deferring since 2026-11-22 06:00 UTC \
         (30m), within the normal deferral window. If it still defers at 2026-11-22 07:00 \
         UTC, lower the pressure.",
    )];

    let mut persistent = Case::new("persistent", steady(120, 10), 121);
    persistent.want = vec![(
        StepKind::Do,
        "Lower the pressure towards gmail.com: cut concurrency and hourly volume from \
         198.51.100.25; deferring since 2026-11-22 06:00 UTC (2h). The busiest hour so far, \
         2026-11-22 06:00 UTC, had 6 attempts. If it still defers at 2026-11-22 12:00 UTC, \
         pause the route.",
    )];
    persistent.absent = vec!["Do not pause, reroute"];

    let mut cooling = Case::new("cooling", steady(400, 20), 401);
    cooling.want = vec![
        (
            StepKind::Do,
            "Pause the affected route (198.51.100.25 towards gmail.com) and let the queue \
             retry slowly; deferring since 2026-11-22 06:00 UTC (6h 40m).",
        ),
        (
            StepKind::Dont,
            "Do not escalate before 2026-11-23 06:00 UTC",
        ),
    ];

    let mut extended = Case::new("cooling_extended", steady(800, 40), 801);
    extended.want = vec![
        (
            StepKind::Do,
            "Keep a 12h cooling window on these stubborn deferrals: leave 198.51.100.25 \
             paused towards gmail.com and let the queue retry slowly until 2026-11-23 06:00 UTC.",
        ),
        (
            StepKind::Dont,
            "Do not escalate before 2026-11-23 06:00 UTC",
        ),
    ];

    let mut escalate = Case::new("escalate", steady(1500, 60), 1501);
    escalate.want = vec![(
        StepKind::Do,
        "Escalate: send the escalation report to gmail.com's postmaster (or to your ESP): \
         deferring since 2026-11-22 06:00 UTC (1d 1h) with no recovery trend.",
    )];
    escalate.absent = vec!["Recovery trend", "Do not escalate"];

    let mut silent = Case::new("no event for hours", steady(120, 10), 120 + 180);
    silent.want = vec![(
        StepKind::Watch,
        "No event since 2026-11-22 08:00 UTC (3h ago): check that the source still reports. \
         Without events the incident closes as stale at 2026-11-23 08:00 UTC.",
    )];

    run(vec![
        deferred, normal, persistent, cooling, extended, escalate, silent,
    ]);
}

#[test]
fn a_recovery_trend_holds_back_escalation() {
    // Every 10 min for 21 h, then one deferral an hour while the same IP delivers again.
    let mut events = every(Deferred, 0, 21 * 60, 10, A);
    events.extend(every(Deferred, 22 * 60, 25 * 60, 60, A));
    events.extend(every(Delivered, 21 * 60 + 5, 25 * 60 + 5, 15, A));
    let inc = incident(events);
    assert!(inc.recovery_trend);
    let mut c = Case::new("recovering after a day", inc, 25 * 60 + 10);
    c.want = vec![
        (
            StepKind::Do,
            "Keep cooling: gmail.com has deferred 198.51.100.25 since 2026-11-22 06:00 UTC (1d \
             1h), but the affected routes show a recovery trend, so escalation is held back.",
        ),
        (
            StepKind::Watch,
            "Recovery trend on the affected routes: deferrals are falling or deliveries \
             succeed again. 198.51.100.25 has delivered again since 2026-11-23 07:05 UTC; with \
             no new deferral it counts as recovered at 2026-11-23 09:05 UTC.",
        ),
    ];
    c.absent = vec!["Escalate: send", "escalation report"];
    run(vec![c]);
}

#[test]
fn failing_checks_and_changes_come_first() {
    let base = || {
        let mut v = every(Deferred, 0, 120, 10, A);
        v.extend(every(Delivered, 0, 120, 10, B));
        incident(v)
    };
    let mut failing = Case::new("PTR and blocklist fail", base(), 125);
    failing.checks = vec![
        check(
            A,
            "ptr",
            Verdict::Fail,
            "198.51.100.25 has no PTR record.",
            3,
        ),
        check(
            A,
            "dnsbl:zen.spamhaus.org",
            Verdict::Fail,
            "listed: 127.0.0.3 (SBL CSS)",
            3,
        ),
        check(B, "ptr", Verdict::Pass, "mta26.sender.example", 3),
        // The receiver's own DMARC is none of our business.
        check("gmail.com", "dmarc", Verdict::Fail, "p=none is weak", 3),
    ];
    failing.checks.extend(passing_auth());
    failing.want = vec![
        (
            StepKind::Do,
            "Give 198.51.100.25 working reverse DNS (ptr fails: 198.51.100.25 has no PTR \
             record): receivers defer or refuse IPs without a PTR name.",
        ),
        (
            StepKind::Do,
            "198.51.100.25 is listed on zen.spamhaus.org (dnsbl:zen.spamhaus.org fails: \
             listed: 127.0.0.3 (SBL CSS)): find out why",
        ),
        // A PTR fault is no reason to touch SPF.
        (StepKind::Dont, AUTH_DONT),
    ];
    failing.absent = vec!["gmail.com (dmarc", "Fix DMARC"];

    let mut spf = Case::new("SPF fails", base(), 125);
    spf.checks = vec![
        check(
            A,
            "spf",
            Verdict::Fail,
            "198.51.100.25 is not authorised",
            3,
        ),
        check("sender.example", "dmarc", Verdict::Pass, "p=reject", 3),
    ];
    spf.want = vec![(
        StepKind::Do,
        "Fix SPF for 198.51.100.25 (spf fails: 198.51.100.25 is not authorised)",
    )];
    spf.absent = vec!["Do not change SPF"];

    let listed = "dnsbl:zen.spamhaus.org: pass → fail; added 127.0.0.2";
    let mut lead = Case::new("listing an hour before", base(), 125);
    lead.changes = vec![
        change(A, listed, "pass", "fail", at(-55)),
        change(A, "ptr: pass → fail", "pass", "fail", at(-3 * 24 * 60)),
        change(B, "fcrdns: fail → pass", "fail", "pass", at(90)),
    ];
    lead.want = vec![
        (
            StepKind::Do,
            "Start with what changed: at 2026-11-22 05:05 UTC, 55m before the first \
             deferral, 198.51.100.25 dnsbl:zen.spamhaus.org: pass → fail; added 127.0.0.2.",
        ),
        (
            StepKind::Watch,
            "198.51.100.26 improved at 2026-11-22 07:30 UTC (fcrdns: fail → pass)",
        ),
    ];
    lead.absent = vec!["ptr: pass → fail"];
    let first = steps_of(&lead).remove(0);
    assert!(
        first.text.starts_with("Start with what changed"),
        "{first:?}"
    );

    let mut during = Case::new("listing found during the incident", base(), 125);
    during.changes = vec![change(A, listed, "pass", "fail", at(2))];
    during.want = vec![(
        StepKind::Do,
        "Look at the check change found at 2026-11-22 06:02 UTC, 2m into the incident: \
         198.51.100.25: dnsbl:zen.spamhaus.org: pass → fail; added 127.0.0.2.",
    )];
    during.absent = vec!["Start with what changed"];

    run(vec![failing, spf, lead, during]);
}

#[test]
fn causes_bring_their_own_steps() {
    let caused = |cause: Cause| {
        incident(deferrals(0, 90, 10, A, |e| {
            e.classification = Some(classification(cause, Origin::Remote));
        }))
    };
    let mut rate = Case::new("rate limit", incident(every(Deferred, 0, 90, 2, A)), 95);
    rate.want = vec![(
        StepKind::Do,
        "All 46 deferrals point to rate limiting: spread the volume. Lower the hourly rate \
         from 198.51.100.25 towards gmail.com to well below the 30 attempts of the busiest \
         hour (2026-11-22 06:00 UTC).",
    )];
    // The cause step gives the numbers; the stage step does not repeat the advice.
    rate.absent = vec!["Reduce the sending rate"];
    let mut trickle = Case::new("rate limit, a trickle", caused(Cause::RateLimit), 95);
    trickle.want = vec![(
        StepKind::Do,
        "All 10 deferrals point to rate limiting: spread the volume. Lower the hourly rate \
         from 198.51.100.25 towards gmail.com.",
    )];
    trickle.absent = vec!["well below"];

    let mut grey = Case::new("greylisting", caused(Cause::Greylisting), 95);
    grey.want = vec![
        (
            StepKind::Do,
            "greylisting clears on a later retry from the same IP",
        ),
        (
            StepKind::Dont,
            "Do not retry greylisted mail from another IP",
        ),
    ];

    let mut auth = Case::new("authentication", caused(Cause::Authentication), 95);
    auth.checks = passing_auth();
    auth.want = vec![(StepKind::Do, "the receiver names authentication")];
    auth.absent = vec!["Do not change SPF"];

    let mut busy = Case::new("server busy", caused(Cause::ServerBusy), 95);
    busy.want = vec![(
        StepKind::Watch,
        "gmail.com reports trouble of its own (overload, maintenance)",
    )];

    let mut tls = Case::new("TLS", caused(Cause::TlsRequired), 95);
    tls.want = vec![(StepKind::Do, "fix TLS towards gmail.com")];

    let mut conns = Case::new("connection limit", caused(Cause::ConnectionLimit), 95);
    conns.want = vec![(
        StepKind::Do,
        "lower the number of parallel connections from 198.51.100.25 to aspmx.l.google.com",
    )];

    run(vec![rate, trickle, grey, auth, busy, tls, conns]);
}

#[test]
fn closed_incidents_get_watch_steps() {
    let engine = Engine::new(Thresholds::default());
    let mut recovered = incident({
        let mut v = every(Deferred, 0, 120, 10, A);
        v.extend(every(Delivered, 130, 250, 30, A));
        v
    });
    // The last delivery already ends the quiet period; the sweep changes nothing more.
    engine.settle(&mut recovered, at(300));
    assert_eq!(recovered.status, Status::Recovered);
    let mut r = Case::new("recovered", recovered, 300);
    r.checks = passing_auth();
    r.want = vec![
        (
            StepKind::Do,
            "Bring 198.51.100.25 back to normal volume towards gmail.com gradually",
        ),
        (
            StepKind::Watch,
            "Recovered at 2026-11-22 10:10 UTC: 198.51.100.25 delivered for 2h without a \
             deferral. A deferral before 2026-11-22 16:10 UTC reopens this incident.",
        ),
    ];
    r.absent = vec!["Do not change SPF", "Lower the pressure", "Escalate"];

    let mut stale = incident(every(Deferred, 0, 30, 10, A));
    assert!(engine.settle(&mut stale, at(3000)));
    let mut s = Case::new("stale", stale, 3000);
    s.want = vec![
        (
            StepKind::Watch,
            "Closed as stale at 2026-11-23 06:30 UTC: no event for 1d after 2026-11-22 06:30 \
             UTC, without a recovery on 198.51.100.25.",
        ),
        (StepKind::Do, "whether mail to gmail.com is still queued"),
    ];
    s.absent = vec!["Recovered at", "Let automatic retries"];

    run(vec![r, s]);
}

#[test]
fn steps_serialise_with_lowercase_kinds() {
    let step = Step {
        kind: StepKind::Dont,
        text: "Do not panic.".into(),
    };
    assert_eq!(
        serde_json::to_value(&step).unwrap(),
        serde_json::json!({"kind": "dont", "text": "Do not panic."})
    );
    assert_eq!(fmt_minute(at(0)), "2026-11-22 06:00 UTC");
    assert_eq!(
        fmt_second(at(0) + TimeDelta::seconds(7)),
        "2026-11-22 06:00:07 UTC"
    );
    assert_eq!(join_names(&["a", "b", "c", "d"], 2), "a, b and 2 more");
    assert_eq!(join_names(&["a", "b", "c"], 3), "a, b and c");
}
