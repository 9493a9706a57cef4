//! The escalation report of an incident built by the real engine from classified
//! events at exact instants.

use super::*;
use crate::checks::{CheckResult, Verdict};
use crate::event::{EventType, NewEvent, StoredEvent};
use crate::incidents::engine::{Engine, Timeline};
use crate::smtp::{Classifier, Stage};
use EventType::{Deferred, Delivered};

/// Building the rules takes a while in a debug build; once is enough.
static CLASSIFIER: std::sync::LazyLock<Classifier> = std::sync::LazyLock::new(Classifier::builtin);

const A: &str = "198.51.100.25";
const B: &str = "198.51.100.26";
/// First deferral, with seconds, so that rounding would show.
const T0: &str = "2026-11-22T06:00:07Z";

/// Gmail's multi-line reply as the MTA logged it: lines longer than the report's
/// prose, which must come through unwrapped.
fn gmail_421(n: i64) -> String {
    format!(
        "421-4.7.28 [198.51.100.25      15] Our system has detected an unusual rate of\n\
         421-4.7.28 unsolicited mail originating from your IP address. To protect our\n\
         421-4.7.28 users from spam, mail sent from your IP address has been temporarily\n\
         421-4.7.28 rate limited. For more information, go to\n\
         421-4.7.28  https://support.google.com/mail/?p=UnsolicitedRateLimitError to\n\
         421 4.7.28 review our Bulk Email Senders Guidelines. 41be03b00d2f7-b81{n:04}si.{n}1 - gsmtp"
    )
}

const EHLO_421: &str =
    "421 4.7.0 Try again later, closing connection. (EHLO) 5b1f17b1804b1-47a8 - gsmtp";

fn at(seconds: i64) -> DateTime<Utc> {
    T0.parse::<DateTime<Utc>>().unwrap() + TimeDelta::seconds(seconds)
}

fn ev(
    kind: EventType,
    seconds: i64,
    ip: &str,
    domain: &str,
    response: &str,
    stage: Stage,
) -> NewEvent {
    let classification = (kind == Deferred).then(|| CLASSIFIER.classify_text(response, None));
    NewEvent {
        source_id: 1,
        ext_id: None,
        dedupe_key: format!("{kind}-{seconds}-{ip}"),
        kind,
        time: at(seconds),
        received_at: at(seconds),
        recipient: format!("reader{seconds}@{domain}"),
        recipient_domain: domain.into(),
        sender: Some("news@sender.example".into()),
        source_ip: Some(ip.into()),
        helo: Some(format!("mta{}.sender.example", &ip[ip.len() - 2..])),
        mx_host: Some("gmail-smtp-in.l.google.com".into()),
        mx_ip: None,
        destination: "google".into(),
        response: Some(response.into()),
        code: classification.as_ref().and_then(|c| c.code),
        enhanced: None,
        stage,
        classification,
        attempt: None,
        pool: None,
        message_id: None,
        dkim_selector: (kind == Deferred).then(|| "s2026".to_string()),
        raw: "{}".into(),
    }
}

const HALF_HOUR: i64 = 1800;

/// A deferred every half hour for 25 h (to two Gmail domains), four greeting-stage
/// refusals among them, B delivering alongside.
fn events() -> Vec<NewEvent> {
    let mut v = Vec::new();
    for i in 0..=50 {
        let domain = if i % 5 == 4 {
            "googlemail.com"
        } else {
            "gmail.com"
        };
        v.push(ev(
            Deferred,
            i * HALF_HOUR,
            A,
            domain,
            &gmail_421(i),
            Stage::Rcpt,
        ));
    }
    for i in 0..4 {
        v.push(ev(
            Deferred,
            900 + i * 3 * 3600,
            A,
            "gmail.com",
            EHLO_421,
            Stage::Ehlo,
        ));
    }
    for i in 0..=50 {
        v.push(ev(
            Delivered,
            i * HALF_HOUR + 60,
            B,
            "gmail.com",
            "250 2.0.0 OK 1700000000 x1si - gsmtp",
            Stage::EndOfData,
        ));
    }
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

/// Events as the store gives them back: what the report samples for MX IPs and the
/// transcript. The MTA reported the MX IP on every second attempt only.
fn stored_events(events: &[NewEvent]) -> Vec<StoredEvent> {
    events
        .iter()
        .enumerate()
        .map(|(i, e)| StoredEvent {
            id: i as i64 + 1,
            source: "mta1".into(),
            ext_id: e.ext_id.clone(),
            kind: e.kind,
            timestamp: e.time,
            received_at: e.received_at,
            recipient: e.recipient.clone(),
            recipient_domain: e.recipient_domain.clone(),
            sender: e.sender.clone(),
            source_ip: e.source_ip.clone(),
            helo: e.helo.clone(),
            mx_host: e.mx_host.clone(),
            mx_ip: (i % 2 == 0).then(|| "142.250.102.26".to_string()),
            destination: e.destination.clone(),
            response: e.response.clone(),
            code: e.code,
            enhanced: e.enhanced.clone(),
            stage: e.stage,
            cause: e.cause(),
            action: None,
            classification: None,
            attempt: e.attempt,
            pool: e.pool.clone(),
            message_id: e.message_id.clone(),
            incident_id: Some(1),
            raw: serde_json::Value::Null,
        })
        .collect()
}

fn sorted_events() -> Vec<NewEvent> {
    let mut v = events();
    v.sort_by_key(|e| e.time);
    v
}

const SPF_RECORD: &str = "v=spf1 ip4:198.51.100.0/24 include:_spf.mailer.example -all";
const DMARC_RECORD: &str = "v=DMARC1; p=quarantine; rua=mailto:dmarc-reports@sender.example; ruf=mailto:dmarc-forensic@sender.example; fo=1";

fn dkim_record() -> String {
    format!(
        "v=DKIM1; k=rsa; p=MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA{}",
        "x".repeat(300)
    )
}

fn stored(
    subject: &str,
    name: &str,
    verdict: Verdict,
    detail: &str,
    records: Vec<String>,
) -> StoredCheck {
    StoredCheck {
        subject: subject.into(),
        result: CheckResult::new(name, verdict, detail, records),
        checked_at: at(75),
    }
}

fn checks() -> Vec<StoredCheck> {
    vec![
        stored(
            A,
            "ptr",
            Verdict::Pass,
            "198.51.100.25 has PTR mta25.sender.example.",
            vec!["mta25.sender.example.".into()],
        ),
        stored(
            A,
            "fcrdns",
            Verdict::Pass,
            "mta25.sender.example resolves back to 198.51.100.25.",
            vec![],
        ),
        stored(
            A,
            "helo",
            Verdict::Pass,
            "mta25.sender.example is a valid FQDN resolving to the IP.",
            vec![],
        ),
        stored(
            A,
            "spf",
            Verdict::Pass,
            "sender.example authorises 198.51.100.25.",
            vec![SPF_RECORD.into()],
        ),
        stored(
            A,
            "dnsbl:zen.spamhaus.org",
            Verdict::Pass,
            "not listed",
            vec![],
        ),
        stored(
            B,
            "ptr",
            Verdict::Pass,
            "198.51.100.26 has PTR mta26.sender.example.",
            vec!["mta26.sender.example.".into()],
        ),
        stored(
            "sender.example",
            "dkim",
            Verdict::Pass,
            "selector s2026 publishes a 2048-bit RSA key.",
            vec![dkim_record()],
        ),
        stored(
            "sender.example",
            "dmarc",
            Verdict::Pass,
            "policy quarantine, aligned.",
            vec![DMARC_RECORD.into()],
        ),
        stored(
            "gmail.com",
            "mx",
            Verdict::Pass,
            "5 MX hosts, lowest preference gmail-smtp-in.l.google.com.",
            vec!["5 gmail-smtp-in.l.google.com.".into()],
        ),
        // The recipient domain's own DMARC says nothing about our mail.
        stored(
            "gmail.com",
            "dmarc",
            Verdict::Pass,
            "p=none",
            vec!["v=DMARC1; p=none; sp=quarantine; rua=mailto:mailauth-reports@google.com".into()],
        ),
    ]
}

fn changes() -> Vec<StoredCheckChange> {
    vec![StoredCheckChange {
        id: 7,
        subject: A.into(),
        name: "dnsbl:zen.spamhaus.org".into(),
        previous: Some("fail".into()),
        verdict: "pass".into(),
        description: "dnsbl:zen.spamhaus.org: fail → pass; removed 127.0.0.3".into(),
        at: at(-3300),
    }]
}

fn report(inc: &Incident, sender: SenderInfo) -> EscalationReport {
    build(&ReportInput {
        incident: inc,
        checks: &checks(),
        changes: &changes(),
        events: &stored_events(&sorted_events()),
        thresholds: &Thresholds::default(),
        now: at(25 * 3600 + 600),
        sender,
    })
}

/// Prose as a reader sees it, whatever the line breaks.
fn flat(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

const SENDER: SenderInfo = SenderInfo {
    organisation: Some("Example Sender Ltd"),
    contact: Some("postmaster@sender.example"),
};

#[test]
fn subject_names_the_persistent_deferrals_and_the_destination() {
    let inc = incident(events());
    let r = report(&inc, SENDER);
    assert_eq!(
        r.subject,
        "Persistent 421 deferrals from 198.51.100.25 to gmail.com and googlemail.com since \
         2026-11-22 06:00 UTC"
    );
    assert!(r.to_text().starts_with(&format!(
        "Subject: {}\n\nHello postmaster team,\n",
        r.subject
    )));

    // Closed incidents name the period instead.
    let engine = Engine::new(Thresholds::default());
    let mut recovered = incident(
        events()
            .into_iter()
            .chain((0..6).map(|i| {
                ev(
                    Delivered,
                    26 * 3600 + i * 600,
                    A,
                    "gmail.com",
                    "250 2.0.0 OK",
                    Stage::EndOfData,
                )
            }))
            .collect(),
    );
    assert!(engine.settle(&mut recovered, at(40 * 3600)));
    let r = report(&recovered, SenderInfo::default());
    assert_eq!(
        r.subject,
        "Persistent 421 deferrals from 198.51.100.25 to gmail.com and googlemail.com from \
         2026-11-22 06:00 to 2026-11-23 07:00 UTC"
    );
    let text = flat(&r.to_text());
    for needle in [
        "From 2026-11-22 06:00:07 UTC to 2026-11-23 07:00:07 UTC, your mail servers for \
         gmail.com and googlemail.com answered our mail server 198.51.100.25 with temporary \
         421 deferrals that persisted through our retries: 55 deferrals over 1d 1h.",
        "Status: deliveries recovered; no deferral since 2026-11-23 07:00:07 UTC, considered \
         resolved at 2026-11-23 10:00:07 UTC after 2h of deliveries without a deferral",
    ] {
        assert!(
            text.contains(&flat(needle)),
            "missing {needle:?} in\n{text}"
        );
    }
}

#[test]
fn replies_are_quoted_verbatim_with_counts_and_exact_times() {
    let inc = incident(events());
    let text = report(&inc, SENDER).to_text();
    // The representative reply is the first one seen, quoted whole, lines unwrapped.
    assert!(text.contains(&format!("{}\n", gmail_421(0))), "{text}");
    assert!(text.contains(
        "Response: 51 deferrals, in reply to RCPT TO, first 2026-11-22 06:00:07 UTC,\nlast 2026-11-23 07:00:07 UTC:\n421-4.7.28 [198.51.100.25      15]"
    ), "{text}");
    assert!(text.contains(&format!(
        "Response: 4 deferrals, in reply to EHLO, first 2026-11-22 06:15:07 UTC, last\n2026-11-22 15:15:07 UTC:\n{EHLO_421}\n"
    )), "{text}");
}

#[test]
fn evidence_sections_carry_exact_facts() {
    let inc = incident(events());
    let text = report(&inc, SENDER).to_text();
    let has = |needle: &str| assert!(text.contains(needle), "missing {needle:?} in\n{text}");
    let says = |needle: &str| {
        assert!(
            flat(&text).contains(&flat(needle)),
            "missing {needle:?} in\n{text}"
        )
    };
    // Opening: polite, with the comparison IP.
    says(
        "Hello postmaster team, We are Example Sender Ltd. Since 2026-11-22 06:00:07 UTC, your \
         mail servers for gmail.com and googlemail.com have answered our mail server \
         198.51.100.25 with temporary 421 deferrals. They persist through our retries: 55 \
         deferrals over 1d 1h, the latest at 2026-11-23 07:00:07 UTC.",
    );
    says(
        "In the same period 198.51.100.26 delivered 51 messages to the same destination \
         without a single deferral, so the deferrals seem specific to 198.51.100.25.",
    );
    // Sending side, with HELO names.
    has(
        "Deferred source IP:\nSource IP:      198.51.100.25\nHELO/EHLO:      mta25.sender.example\nAttempts:       55 deferred, 0 delivered, 0 bounced\nFirst deferral: 2026-11-22 06:00:07 UTC\nLast deferral:  2026-11-23 07:00:07 UTC",
    );
    has(
        "Unaffected source IP, for comparison:\nSource IP:     198.51.100.26\nHELO/EHLO:     mta26.sender.example\nAttempts:      51 delivered, 0 deferred, 0 bounced",
    );
    has("Envelope sender domain: sender.example (55 deferred)");
    has("DKIM selectors:         s2026 (sender.example)");
    // Destination.
    // Destination, with the MX IP the sampled events reported.
    has(
        "Destination domain: gmail.com (45 deferred), googlemail.com (10 deferred)\nMail provider:      Google\nRemote MX:          gmail-smtp-in.l.google.com (IP 142.250.102.26): 55\n                    deferred, 51 delivered\n",
    );
    // Timeline, to the second.
    has(
        "First seen:   2026-11-22 06:00:07 UTC (first deferral)\nLast seen:    2026-11-23 07:00:07 UTC (latest deferral)\nDuration:     1d 1h\nLatest event: 2026-11-23 07:01:07 UTC (a delivery)",
    );
    has("Status:       still deferring as of 2026-11-23 07:10:07 UTC");
    // Scope in one line.
    has("Scope\n-----\n\nScope: One source IP, 2 recipient domains\n");
    says(
        "Unaffected in the same period, towards the same destination: 198.51.100.26 (51 delivered).",
    );
    // Retry pattern.
    // 55 deferrals in 25 h 0 m 0 s: 54 gaps of 27 m 46 s on average.
    has(
        "Retry pattern: 55 deferrals over 1d 1h, one every 27m 46s on average; 2.2 per\n               hour; deferrals in 26 of 26 clock hours from first to last\n               deferral\nAttempts:      106: 55 deferred, 51 delivered, 0 bounced\nBusiest hour:  2026-11-22 06:00 UTC: 3 deferred, 2 delivered\n",
    );
    has(
        "Per hour, the latest 24 hours with attempts:\nHour (UTC)        Deferred  Delivered  Bounced\n2026-11-22 08:00         2          2        0\n",
    );
    has("2026-11-23 07:00         1          1        0\n");
    // Checks with verdicts and records, the recipient domain's own DMARC left out,
    // summed up per family over our deferred IP and sender domain first.
    says(
        "Sender checks: PTR/FCrDNS pass, HELO pass, SPF pass, DKIM pass, DMARC pass, blocklists pass (1 list); checked 2026-11-22 06:01:22 UTC",
    );
    says(
        "198.51.100.25 (deferred source IP, HELO mta25.sender.example), checked 2026-11-22 06:01:22 UTC: dnsbl:zen.spamhaus.org: pass: not listed",
    );
    has(
        "ptr:                    pass: 198.51.100.25 has PTR mta25.sender.example.\n    mta25.sender.example.\n",
    );
    has(&format!(
        "spf:                    pass: sender.example authorises 198.51.100.25.\n    {SPF_RECORD}\n"
    ));
    has("dnsbl:zen.spamhaus.org: pass: not listed\n");
    has("198.51.100.26 (unaffected source IP, HELO mta26.sender.example)");
    has(&format!("    {}\n", dkim_record()));
    has(&format!("    {DMARC_RECORD}\n"));
    has("gmail.com (recipient domain), checked 2026-11-22 06:01:22 UTC:\nmx: pass: 5 MX hosts");
    assert!(!text.contains("mailauth-reports"), "{text}");
    // A transcript of the most frequent reply's first attempt, from the stored events.
    has(&format!(
        "Connected from 198.51.100.25 to gmail-smtp-in.l.google.com [142.250.102.26]\nC: EHLO mta25.sender.example\nC: MAIL FROM:<news@sender.example>\nC: RCPT TO:<reader0@gmail.com>\n{}\n",
        gmail_421(0)
            .lines()
            .map(|l| format!("S: {l}"))
            .collect::<Vec<_>>()
            .join("\n")
    ));
    says("One deferred attempt at 2026-11-22 06:00:07 UTC, reconstructed from our MTA's log");
    // The change before the first deferral, exact.
    says(
        "2026-11-22 05:05:07 UTC: 198.51.100.25: dnsbl:zen.spamhaus.org: fail → pass; removed 127.0.0.3 (before the first deferral)",
    );
    // Closing and signature.
    says(
        "We are glad to send full logs for individual messages or to run further tests if that helps. Thank you for looking into this.",
    );
    has(
        "(Report prepared 2026-11-23 07:10:07 UTC.)\n\nRegards,\nExample Sender Ltd\npostmaster@sender.example\n",
    );
    // No internal jargon.
    for word in [
        "cooling",
        "escalat",
        "rate_limit",
        "normal_retry",
        "persistent (",
    ] {
        assert!(!text.to_lowercase().contains(word), "{word} in\n{text}");
    }
}

#[test]
fn prose_wraps_at_78_columns_but_evidence_never_does() {
    let inc = incident(events());
    let r = report(&inc, SENDER);
    let text = r.to_text();
    let mut evidence: Vec<String> = inc
        .replies
        .iter()
        .flat_map(|r| r.text.lines().map(str::to_string).collect::<Vec<_>>())
        .collect();
    // The transcript quotes the same reply lines after its "S: " marker.
    evidence.extend(inc.replies.iter().flat_map(|r| {
        r.text
            .lines()
            .map(|l| format!("S: {l}"))
            .collect::<Vec<_>>()
    }));
    for c in checks() {
        evidence.extend(c.result.records.iter().map(|rec| format!("    {rec}")));
    }
    evidence.push(format!("Subject: {}", r.subject));
    let long: Vec<&str> = text
        .lines()
        .filter(|l| l.chars().count() > 78 && !evidence.iter().any(|e| e == l))
        .collect();
    assert!(long.is_empty(), "lines over 78 columns: {long:#?}");
    // The long reply lines and the DKIM key really are longer, and whole.
    assert!(
        text.lines()
            .any(|l| l.chars().count() > 78 && l.starts_with("421-4.7.28 users from spam"))
    );
    assert!(text.lines().any(|l| l == format!("    {}", dkim_record())));
}

#[test]
fn without_sender_information_or_checks_the_report_says_so() {
    let inc = incident(events());
    let r = build(&ReportInput {
        incident: &inc,
        checks: &[],
        changes: &[],
        events: &[],
        thresholds: &Thresholds::default(),
        now: at(25 * 3600 + 600),
        sender: SenderInfo::default(),
    });
    let text = r.to_text();
    assert!(
        text.contains("Since 2026-11-22 06:00:07 UTC, your mail servers for gmail.com"),
        "{text}"
    );
    assert!(
        text.contains("Sender checks: none recorded for this incident yet\n"),
        "{text}"
    );
    // Without sampled events the MX IP is not made up, and there is no transcript.
    assert!(
        text.contains(
            "Remote MX:          gmail-smtp-in.l.google.com (IP not reported): 55 deferred,\n"
        ),
        "{text}"
    );
    assert!(!text.contains("Transcript sample"), "{text}");
    assert!(!text.contains("Changes in check results"));
    assert!(!text.contains("Organisation:"));
    assert!(text.ends_with("UTC.)\n\nRegards,\n"), "{text}");
    assert_eq!(r.signature, vec!["Regards,".to_string()]);
    // Deterministic, and serialisable for the dashboard and the mailer.
    assert_eq!(
        r,
        build(&ReportInput {
            incident: &inc,
            checks: &[],
            changes: &[],
            events: &[],
            thresholds: &Thresholds::default(),
            now: at(25 * 3600 + 600),
            sender: SenderInfo::default()
        })
    );
    let json = serde_json::to_value(&r).unwrap();
    assert_eq!(json["sections"][4]["items"][0]["type"], "quote");
}

#[test]
fn every_ip_deferred_is_named_as_such() {
    let mut v: Vec<NewEvent> = (0..=8)
        .map(|i| {
            ev(
                Deferred,
                i * HALF_HOUR,
                A,
                "gmail.com",
                &gmail_421(i),
                Stage::Rcpt,
            )
        })
        .collect();
    v.extend((0..=8).map(|i| {
        ev(
            Deferred,
            i * HALF_HOUR + 60,
            B,
            "gmail.com",
            &gmail_421(i + 100),
            Stage::Rcpt,
        )
    }));
    let inc = incident(v);
    let r = report(&inc, SENDER);
    assert_eq!(
        r.subject,
        "Persistent 421 deferrals from 198.51.100.25 and 198.51.100.26 to gmail.com since \
         2026-11-22 06:00 UTC"
    );
    let text = r.to_text();
    assert!(
        text.contains("Scope: All 2 source IPs, one recipient domain, after RCPT TO\n"),
        "{text}"
    );
    assert!(text.contains("Every IP of ours that sent to this destination in the period was deferred\n(198.51.100.25 and 198.51.100.26)."), "{text}");
    assert!(!text.contains("for comparison"), "{text}");
}

/// Issue 7: one labelled line or block per field, with exactly these labels.
pub(crate) const LABELS: [&str; 10] = [
    "Source IP",
    "HELO/EHLO",
    "Destination domain",
    "Remote MX",
    "First seen",
    "Last seen",
    "Response",
    "Scope",
    "Retry pattern",
    "Sender checks",
];

#[test]
fn every_field_has_its_label_at_the_start_of_a_line() {
    let inc = incident(events());
    for r in [
        report(&inc, SENDER),
        build(&ReportInput {
            incident: &inc,
            checks: &[],
            changes: &[],
            events: &[],
            thresholds: &Thresholds::default(),
            now: at(25 * 3600 + 600),
            sender: SenderInfo::default(),
        }),
    ] {
        let text = r.to_text();
        for label in LABELS {
            assert!(
                text.lines().any(|l| l.starts_with(&format!("{label}:"))),
                "no {label:?} line in\n{text}"
            );
        }
    }
}

#[test]
fn html_carries_the_same_fields_escaped() {
    let mut v = events();
    // A hostile reply: the receiver's text must arrive as text, never as markup.
    v.push(ev(
        Deferred,
        100,
        A,
        "gmail.com",
        "421 4.7.0 <script>alert(1)</script> & \"try later\"",
        Stage::Rcpt,
    ));
    let inc = incident(v);
    let r = report(&inc, SENDER);
    let html = r.to_html().unwrap();
    assert!(html.starts_with("<!DOCTYPE html>"), "{html}");
    assert!(!html.contains("<script>"), "{html}");
    assert!(
        html.contains(
            "421 4.7.0 &#60;script&#62;alert(1)&#60;/script&#62; &#38; &#34;try later&#34;</pre>"
        ),
        "{html}"
    );
    for label in LABELS {
        assert!(
            html.contains(&format!("{label}:")),
            "no {label:?} in\n{html}"
        );
    }
    // Replies are kept whole in a <pre>, line breaks included.
    assert!(html.contains(&format!(">{}</pre>", gmail_421(0))), "{html}");
    assert!(
        !html.contains("<style"),
        "styles are inline for email clients"
    );
}

#[test]
fn eml_is_multipart_alternative_with_both_parts() {
    let inc = incident(events());
    let r = report(&inc, SENDER);
    let eml = r
        .to_eml(
            "Deferwatch <postmaster@sender.example>",
            &["postmaster@gmail.com".to_string()],
            at(25 * 3600 + 600),
            "<report.1@sender.example>",
        )
        .unwrap();
    let eml = String::from_utf8(eml).unwrap();
    let (head, body) = eml.split_once("\r\n\r\n").unwrap();
    for needle in [
        "From: Deferwatch <postmaster@sender.example>\r\n",
        "To: postmaster@gmail.com\r\n",
        "Message-ID: <report.1@sender.example>\r\n",
        "Date: Mon, 23 Nov 2026 07:10:07 +0000\r\n",
        "MIME-Version: 1.0\r\n",
        "Content-Type: multipart/alternative;",
        "Subject: Persistent 421 deferrals from 198.51.100.25 to gmail.com and\r\n googlemail.com",
    ] {
        assert!(head.contains(needle), "missing {needle:?} in\n{head}");
    }
    assert!(
        body.contains("Content-Type: text/plain; charset=utf-8"),
        "{body}"
    );
    assert!(
        body.contains("Content-Type: text/html; charset=utf-8"),
        "{body}"
    );
    assert!(
        body.find("text/plain").unwrap() < body.find("text/html").unwrap(),
        "plain text first: the last alternative is the preferred one"
    );
    for bad in [vec!["not an address".to_string()], Vec::new()] {
        let e = r
            .to_eml("postmaster@sender.example", &bad, at(0), "<x@y>")
            .unwrap_err();
        assert!(e.to_string().starts_with("to: "), "{e}");
    }
    let e = r
        .to_eml("nobody", &["postmaster@gmail.com".into()], at(0), "<x@y>")
        .unwrap_err();
    assert!(e.to_string().starts_with("from: "), "{e}");
}
