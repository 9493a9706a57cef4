//! The escalation report (DESIGN.md, "The escalation report"): the evidence a
//! receiving postmaster can act on, as a structured model that the dashboard renders
//! as plain text and the mailer as HTML and .eml, so every form says the same thing.
//!
//! The plain text carries one labelled line or block per field a postmaster form asks
//! for (issue 7): `Source IP`, `HELO/EHLO`, `Destination domain`, `Remote MX`, `First
//! seen`, `Last seen`, `Response`, `Scope`, `Retry pattern`, `Sender checks`, plus a
//! transcript sample.
//!
//! `build` is pure: the caller loads the incident, its checks, changes and a sample of
//! its events, and passes `now`; `gather` does that loading for the page, the API and
//! the CLI alike.

pub mod digest;
pub mod digest_job;
pub mod gather;
mod html;
pub mod mail;
mod text;

pub use mail::{MailError, Mailer, ReportError, SendOutcome};

use crate::checks::Verdict;
use crate::event::{EventType, StoredEvent};
use crate::incidents::advice::{
    LEAD_WINDOW, SubjectRole, destination_label, fmt_minute, fmt_second, join_names, relevant,
    subject_role,
};
use crate::incidents::engine::human;
use crate::incidents::model::{Incident, Status, UNKNOWN_IP};
use crate::incidents::phase::Thresholds;
use crate::incidents::scope::{SourceIpScope, scope};
use crate::smtp::Stage;
use crate::smtp::provider::provider_by_key;
use crate::store::{StoredCheck, StoredCheckChange};
use chrono::{DateTime, TimeDelta, Utc};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};

/// Replies quoted in full; the rest are counted, so a report stays readable.
const MAX_REPLIES: usize = 8;
/// Recipient domains named before "and N more".
const MAX_DOMAINS: usize = 10;
/// Hourly rows in the retry table: the latest day of activity says how retries go now.
const MAX_HOURS: usize = 24;

/// Who sends the report, from the configuration; either may be missing.
#[derive(Clone, Copy, Debug, Default)]
pub struct SenderInfo<'a> {
    pub organisation: Option<&'a str>,
    pub contact: Option<&'a str>,
}

pub struct ReportInput<'a> {
    pub incident: &'a Incident,
    /// Latest result of every check on the incident's subjects (`subjects_for`).
    pub checks: &'a [StoredCheck],
    pub changes: &'a [StoredCheckChange],
    /// A sample of the incident's stored events, oldest first (`gather::SAMPLE_EVENTS`):
    /// the incident keeps MX host names but not their IPs, and no single attempt, so
    /// the remote MX IPs and the transcript sample come from here. May be empty; the
    /// report then says what was not reported rather than guessing.
    pub events: &'a [StoredEvent],
    pub thresholds: &'a Thresholds,
    pub now: DateTime<Utc>,
    pub sender: SenderInfo<'a>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct EscalationReport {
    pub subject: String,
    pub greeting: String,
    pub opening: Vec<String>,
    pub sections: Vec<Section>,
    pub closing: Vec<String>,
    /// Sign-off lines: "Regards," then organisation and contact when configured.
    pub signature: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Section {
    pub title: String,
    pub items: Vec<Item>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Item {
    Paragraph {
        text: String,
    },
    /// Aligned label/value rows.
    Fields {
        heading: Option<String>,
        rows: Vec<Field>,
    },
    /// Machine text quoted exactly (SMTP replies): never wrapped, never altered.
    Quote {
        heading: String,
        lines: Vec<String>,
    },
    Table {
        heading: Option<String>,
        columns: Vec<String>,
        rows: Vec<Vec<String>>,
    },
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Field {
    pub label: String,
    pub value: String,
    /// Further values under the same label, one line each (one MX host per line).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub more: Vec<String>,
    /// DNS records behind the value, quoted exactly.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub records: Vec<String>,
}

impl Field {
    fn new(label: impl Into<String>, value: impl Into<String>) -> Self {
        Field {
            label: label.into(),
            value: value.into(),
            more: Vec::new(),
            records: Vec::new(),
        }
    }
}

impl EscalationReport {
    /// Plain text for a postmaster form or a .txt download: prose wrapped at 78
    /// columns, SMTP replies and DNS records left exactly as received.
    pub fn to_text(&self) -> String {
        text::render(self)
    }

    /// The email's text/plain part: `to_text` without the subject line, which is the
    /// message's Subject header there.
    pub fn body_text(&self) -> String {
        text::render_body(self)
    }

    /// The HTML alternative of the email: the same model through an askama template,
    /// every value escaped.
    pub fn to_html(&self) -> Result<String, ReportError> {
        html::render(self)
    }
}

pub fn build(input: &ReportInput) -> EscalationReport {
    let inc = input.incident;
    let sc = scope(inc);
    let dest = destination_label(inc);
    let affected: Vec<&str> = sc.affected_source_ips.iter().map(String::as_str).collect();
    let codes = codes(inc);

    let subject = subject(inc, &affected, &codes);

    let mut opening = Vec::new();
    let intro = input
        .sender
        .organisation
        .map(|o| format!("We are {o}. "))
        .unwrap_or_default();
    let from = if affected.is_empty() {
        "our mail servers".to_string()
    } else if affected.len() == 1 {
        format!("our mail server {}", affected[0])
    } else {
        format!("our mail servers {}", join_names(&affected, 4))
    };
    let code_words = if codes.is_empty() {
        "temporary".to_string()
    } else {
        format!("temporary {}", codes.join("/"))
    };
    let recipients = recipient_list(inc, 3);
    let deferrals = count(inc.counts.deferred, "deferral", "deferrals");
    let span = exact_duration(inc.last_deferral - inc.first_seen);
    opening.push(if inc.is_open() {
        format!(
            "{intro}Since {}, your mail servers for {recipients} have answered {from} with \
             {code_words} deferrals. They persist through our retries: {deferrals} over \
             {span}, the latest at {}.",
            fmt_second(inc.first_seen),
            fmt_second(inc.last_deferral)
        )
    } else {
        format!(
            "{intro}From {} to {}, your mail servers for {recipients} answered {from} with \
             {code_words} deferrals that persisted through our retries: {deferrals} over \
             {span}.",
            fmt_second(inc.first_seen),
            fmt_second(inc.last_deferral)
        )
    });
    if matches!(sc.source_ips, SourceIpScope::OneIp | SourceIpScope::SomeIps) {
        let good = &sc.unaffected_source_ips;
        let delivered: u64 = sc
            .ips
            .iter()
            .filter(|i| good.contains(&i.ip))
            .map(|i| i.delivered)
            .sum();
        opening.push(format!(
            "In the same period {} delivered {} to the same destination without a single \
             deferral, so the deferrals seem specific to {}.",
            join_names(good, 3),
            count(delivered, "message", "messages"),
            join_names(&affected, 4)
        ));
    }
    opening.push(
        "The details and the checks we ran on our side are below. Could you tell us why \
         these messages are deferred, or what we should change?"
            .to_string(),
    );

    let sections = vec![
        sending_side(inc, &sc, input.sender),
        destination(inc, &dest, input.events),
        timeline(inc, input.thresholds, input.now),
        scope_section(inc, &sc),
        replies(inc),
        transcript(inc, input.events),
        retry_pattern(inc),
        checks_section(inc, input.checks),
        changes_section(inc, input.changes, input.now),
    ]
    .into_iter()
    .flatten()
    .collect();

    let mut signature = vec!["Regards,".to_string()];
    signature.extend(input.sender.organisation.map(str::to_string));
    signature.extend(input.sender.contact.map(str::to_string));

    EscalationReport {
        subject,
        greeting: "Hello postmaster team,".to_string(),
        opening,
        sections,
        closing: vec![
            "We are glad to send full logs for individual messages or to run further tests \
             if that helps. Thank you for looking into this."
                .to_string(),
            format!("(Report prepared {}.)", fmt_second(input.now)),
        ],
        signature,
    }
}

fn count(n: u64, one: &str, many: &str) -> String {
    if n == 1 {
        format!("{n} {one}")
    } else {
        format!("{n} {many}")
    }
}

/// Reply codes by how many deferrals carried them.
fn codes(inc: &Incident) -> Vec<String> {
    let mut by_code: Vec<(u16, u64)> = Vec::new();
    for r in &inc.replies {
        if let Some(c) = r.code {
            match by_code.iter_mut().find(|(k, _)| *k == c) {
                Some((_, n)) => *n += r.count,
                None => by_code.push((c, r.count)),
            }
        }
    }
    by_code.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    by_code.iter().take(3).map(|(c, _)| c.to_string()).collect()
}

fn subject(inc: &Incident, affected: &[&str], codes: &[String]) -> String {
    let what = if codes.is_empty() {
        "Persistent temporary deferrals".to_string()
    } else {
        format!("Persistent {} deferrals", codes.join("/"))
    };
    let from = match affected {
        [] => String::new(),
        [one] => format!(" from {one}"),
        [a, b] => format!(" from {a} and {b}"),
        many => format!(" from {} of our IPs", many.len()),
    };
    let to = recipient_list(inc, 2);
    let when = if inc.is_open() {
        format!("since {}", fmt_minute(inc.first_seen))
    } else {
        format!(
            "from {} to {}",
            inc.first_seen.format("%Y-%m-%d %H:%M"),
            fmt_minute(inc.last_deferral)
        )
    };
    format!("{what}{from} to {to} {when}")
}

/// The deferred recipient domains as a postmaster knows them, most deferred first.
fn recipient_list(inc: &Incident, max: usize) -> String {
    let domains: Vec<&str> = inc.recipient_domains.sorted().iter().map(|d| d.0).collect();
    if domains.is_empty() {
        return destination_label(inc);
    }
    let more = domains.len().saturating_sub(max) + usize::from(inc.recipient_domains.other > 0);
    if more == 0 {
        join_names(&domains, max)
    } else {
        format!(
            "{} and more domains",
            domains[..domains.len().min(max)].join(", ")
        )
    }
}

/// `1d 1h 30m 12s`: exact, as evidence should be.
fn exact_duration(d: TimeDelta) -> String {
    let secs = d.num_seconds().max(0);
    let parts = [
        (secs / 86_400, "d"),
        (secs % 86_400 / 3600, "h"),
        (secs % 3600 / 60, "m"),
        (secs % 60, "s"),
    ];
    let out: Vec<String> = parts
        .iter()
        .filter(|(n, _)| *n > 0)
        .map(|(n, u)| format!("{n}{u}"))
        .collect();
    if out.is_empty() {
        "0s".to_string()
    } else {
        out.join(" ")
    }
}

fn opt_time(t: Option<DateTime<Utc>>) -> String {
    t.map_or_else(|| "none".to_string(), fmt_second)
}

fn sending_side(
    inc: &Incident,
    sc: &crate::incidents::Scope,
    sender: SenderInfo,
) -> Option<Section> {
    let mut items = Vec::new();
    let mut who = Vec::new();
    if let Some(o) = sender.organisation {
        who.push(Field::new("Organisation", o));
    }
    if let Some(c) = sender.contact {
        who.push(Field::new("Contact", c));
    }
    if !who.is_empty() {
        items.push(Item::Fields {
            heading: None,
            rows: who,
        });
    }
    for ip in &sc.affected_source_ips {
        let Some(r) = inc.routes.get(ip) else {
            continue;
        };
        items.push(Item::Fields {
            heading: Some("Deferred source IP:".to_string()),
            rows: vec![
                Field::new("Source IP", ip.as_str()),
                Field::new("HELO/EHLO", helo_list(&r.helos)),
                Field::new(
                    "Attempts",
                    format!(
                        "{} deferred, {} delivered, {} bounced",
                        r.counts.deferred, r.counts.delivered, r.counts.bounced
                    ),
                ),
                Field::new("First deferral", opt_time(r.first_deferral)),
                Field::new("Last deferral", opt_time(r.last_deferral)),
                Field::new("Last delivery", opt_time(r.last_delivery)),
            ],
        });
    }
    if let Some(r) = inc.routes.get(UNKNOWN_IP).filter(|r| r.counts.deferred > 0) {
        items.push(Item::Paragraph {
            text: format!(
                "{} further deferrals were reported without the sending IP.",
                r.counts.deferred
            ),
        });
    }
    for ip in &sc.unaffected_source_ips {
        let Some(r) = inc.routes.get(ip) else {
            continue;
        };
        items.push(Item::Fields {
            heading: Some("Unaffected source IP, for comparison:".to_string()),
            rows: vec![
                Field::new("Source IP", ip.as_str()),
                Field::new("HELO/EHLO", helo_list(&r.helos)),
                Field::new(
                    "Attempts",
                    format!(
                        "{} delivered, {} deferred, {} bounced",
                        r.counts.delivered, r.counts.deferred, r.counts.bounced
                    ),
                ),
                Field::new("Last delivery", opt_time(r.last_delivery)),
            ],
        });
    }
    let mut domain_rows = Vec::new();
    let senders = inc.sender_domains.sorted();
    if !senders.is_empty() {
        domain_rows.push(Field::new(
            "Envelope sender domain",
            tally_list(&senders, inc.sender_domains.other, "deferred"),
        ));
    }
    if !inc.dkim_selectors.is_empty() {
        let sel: Vec<String> = inc
            .dkim_selectors
            .iter()
            .map(|(d, s)| format!("{} ({d})", s.join(", ")))
            .collect();
        domain_rows.push(Field::new("DKIM selectors", sel.join("; ")));
    }
    if !domain_rows.is_empty() {
        items.push(Item::Fields {
            heading: None,
            rows: domain_rows,
        });
    }
    (!items.is_empty()).then(|| Section {
        title: "Sending side".to_string(),
        items,
    })
}

fn helo_list(helos: &[String]) -> String {
    if helos.is_empty() {
        "not reported".to_string()
    } else {
        helos.join(", ")
    }
}

fn tally_list(items: &[(&str, u64)], other: u64, what: &str) -> String {
    let mut parts: Vec<String> = items
        .iter()
        .take(MAX_DOMAINS)
        .map(|(k, n)| format!("{k} ({n} {what})"))
        .collect();
    let hidden: u64 = items.iter().skip(MAX_DOMAINS).map(|(_, n)| n).sum::<u64>() + other;
    if hidden > 0 {
        parts.push(format!("others ({hidden} {what})"));
    }
    parts.join(", ")
}

fn destination(inc: &Incident, dest: &str, events: &[StoredEvent]) -> Option<Section> {
    let domains = inc.recipient_domains.sorted();
    let mut rows = vec![Field::new(
        "Destination domain",
        if domains.is_empty() {
            dest.to_string()
        } else {
            tally_list(&domains, inc.recipient_domains.other, "deferred")
        },
    )];
    if let Some(p) = provider_by_key(&inc.destination) {
        rows.push(Field::new("Mail provider", p.name));
    }
    let ips = mx_ips(events);
    let mut hosts: Vec<(&String, &crate::incidents::model::Counts)> = inc.mx_hosts.iter().collect();
    hosts.sort_by(|a, b| b.1.deferred.cmp(&a.1.deferred).then(a.0.cmp(b.0)));
    let mut lines: Vec<String> = hosts
        .iter()
        .map(|(h, c)| {
            let ip = match ips.get(&h.to_ascii_lowercase()) {
                Some(set) if set.len() == 1 => format!("IP {}", join_set(set)),
                Some(set) => format!("IPs {}", join_set(set)),
                None => "IP not reported".to_string(),
            };
            format!(
                "{h} ({ip}): {} deferred, {} delivered",
                c.deferred, c.delivered
            )
        })
        .collect();
    rows.push(if lines.is_empty() {
        Field::new("Remote MX", "not reported by our MTA")
    } else {
        let first = lines.remove(0);
        Field {
            more: lines,
            ..Field::new("Remote MX", first)
        }
    });
    Some(Section {
        title: "Destination".to_string(),
        items: vec![Item::Fields {
            heading: None,
            rows,
        }],
    })
}

/// The IPs our MTA reported for each MX host (lowercased) in the sampled events.
fn mx_ips(events: &[StoredEvent]) -> BTreeMap<String, BTreeSet<&str>> {
    let mut out: BTreeMap<String, BTreeSet<&str>> = BTreeMap::new();
    for e in events {
        if let (Some(h), Some(ip)) = (&e.mx_host, &e.mx_ip)
            && !ip.trim().is_empty()
        {
            out.entry(h.to_ascii_lowercase())
                .or_default()
                .insert(ip.trim());
        }
    }
    out
}

fn join_set(set: &BTreeSet<&str>) -> String {
    set.iter().copied().collect::<Vec<_>>().join(", ")
}

fn timeline(inc: &Incident, th: &Thresholds, now: DateTime<Utc>) -> Option<Section> {
    let mut rows = vec![
        Field::new(
            "First seen",
            format!("{} (first deferral)", fmt_second(inc.first_seen)),
        ),
        Field::new(
            "Last seen",
            format!("{} (latest deferral)", fmt_second(inc.last_deferral)),
        ),
        Field::new(
            "Duration",
            exact_duration(inc.last_deferral - inc.first_seen),
        ),
    ];
    if inc.last_seen > inc.last_deferral {
        rows.push(Field::new(
            "Latest event",
            format!("{} (a delivery)", fmt_second(inc.last_seen)),
        ));
    }
    for r in &inc.reopens {
        rows.push(Field::new(
            "Returned",
            format!(
                "{}, after deliveries had recovered at {}",
                fmt_second(r.at),
                fmt_second(r.recovered_at)
            ),
        ));
    }
    rows.push(Field::new(
        "Status",
        match (inc.status, inc.closed_at) {
            (Status::Open, _) => format!("still deferring as of {}", fmt_second(now)),
            (Status::Recovered, Some(c)) => format!(
                "deliveries recovered; no deferral since {}, considered resolved at {} \
                 after {} of deliveries without a deferral",
                fmt_second(inc.last_deferral),
                fmt_second(c),
                human(th.quiet_period)
            ),
            (Status::Recovered, None) => "deliveries recovered".to_string(),
            (Status::Stale, _) => format!(
                "no further events reported after {}; not known to be resolved",
                fmt_second(inc.last_seen)
            ),
        },
    ));
    Some(Section {
        title: "Timeline (UTC)".to_string(),
        items: vec![Item::Fields {
            heading: None,
            rows,
        }],
    })
}

fn scope_section(inc: &Incident, sc: &crate::incidents::Scope) -> Option<Section> {
    let mut items = vec![Item::Fields {
        heading: None,
        rows: vec![Field::new("Scope", capitalise(&sc.summary))],
    }];
    let comparison: Vec<String> = sc
        .ips
        .iter()
        .filter(|i| sc.unaffected_source_ips.contains(&i.ip))
        .map(|i| format!("{} ({} delivered)", i.ip, i.delivered))
        .collect();
    if !comparison.is_empty() {
        items.push(Item::Paragraph {
            text: format!(
                "Unaffected in the same period, towards the same destination: {}.",
                join_names(&comparison, 4)
            ),
        });
    } else if sc.affected_source_ips.len() > 1 {
        items.push(Item::Paragraph {
            text: format!(
                "Every IP of ours that sent to this destination in the period was deferred \
                 ({}).",
                join_names(&sc.affected_source_ips, 6)
            ),
        });
    }
    if sc.affected_mx_hosts.len() == 1 && !sc.delivering_mx_hosts.is_empty() {
        items.push(Item::Paragraph {
            text: format!(
                "Only {} deferred; {} accepted our mail.",
                sc.affected_mx_hosts[0],
                join_names(&sc.delivering_mx_hosts, 4)
            ),
        });
    }
    if inc.counts.bounced > 0 {
        items.push(Item::Paragraph {
            text: format!(
                "{} permanently rejected in the same period.",
                count(inc.counts.bounced, "message was", "messages were")
            ),
        });
    }
    Some(Section {
        title: "Scope".to_string(),
        items,
    })
}

fn capitalise(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

fn stage_words(stage: &str) -> Option<&'static str> {
    match stage {
        "connect" => Some("at the greeting, on connect"),
        "ehlo" => Some("in reply to EHLO"),
        "starttls" => Some("in reply to STARTTLS"),
        "mail" => Some("in reply to MAIL FROM"),
        "rcpt" => Some("in reply to RCPT TO"),
        "data" => Some("in reply to DATA"),
        "end_of_data" => Some("after the message data"),
        _ => None,
    }
}

fn replies(inc: &Incident) -> Option<Section> {
    let mut sorted: Vec<&crate::incidents::model::ReplySample> = inc.replies.iter().collect();
    sorted.sort_by(|a, b| b.count.cmp(&a.count).then(a.first_seen.cmp(&b.first_seen)));
    let mut items = Vec::new();
    for r in sorted.iter().take(MAX_REPLIES) {
        let mut heading = format!("Response: {}", count(r.count, "deferral", "deferrals"));
        if let Some(w) = stage_words(&r.stage) {
            heading.push_str(", ");
            heading.push_str(w);
        }
        if r.count == 1 {
            heading.push_str(&format!(", at {}", fmt_second(r.first_seen)));
        } else {
            heading.push_str(&format!(
                ", first {}, last {}",
                fmt_second(r.first_seen),
                fmt_second(r.last_seen)
            ));
        }
        let lines: Vec<String> = if r.text.is_empty() {
            Vec::new()
        } else {
            r.text.lines().map(str::to_string).collect()
        };
        if lines.is_empty() {
            heading.push_str(": no reply text was reported.");
        } else {
            heading.push(':');
        }
        items.push(Item::Quote { heading, lines });
    }
    let hidden: u64 = sorted
        .iter()
        .skip(MAX_REPLIES)
        .map(|r| r.count)
        .sum::<u64>()
        + inc.replies_other;
    if hidden > 0 {
        items.push(Item::Paragraph {
            text: format!(
                "{} carried other replies, not quoted here.",
                count(hidden, "further deferral", "further deferrals")
            ),
        });
    }
    (!items.is_empty()).then(|| Section {
        title: "SMTP responses (quoted exactly)".to_string(),
        items,
    })
}

fn retry_pattern(inc: &Incident) -> Option<Section> {
    let c = &inc.counts;
    let span = inc.last_deferral - inc.first_seen;
    // Under an hour the per-hour rate would overstate; count it as one hour.
    let hours = span.num_seconds().max(3600) as f64 / 3600.0;
    let rate = c.deferred as f64 / hours;
    let first_hour = inc.first_seen.timestamp().div_euclid(3600) * 3600;
    let last_hour = inc.last_deferral.timestamp().div_euclid(3600) * 3600;
    let slots = (last_hour - first_hour) / 3600 + 1;
    let with_deferrals = inc
        .hourly
        .range(first_hour..=last_hour)
        .filter(|(_, b)| b.d > 0)
        .count();
    let interval = if c.deferred > 1 {
        let gaps = i32::try_from(c.deferred - 1).unwrap_or(i32::MAX);
        format!("one every {} on average", exact_duration(span / gaps))
    } else {
        "a single deferral".to_string()
    };
    let mut rows = vec![
        Field::new(
            "Retry pattern",
            format!(
                "{} over {}, {interval}; {rate:.1} per hour; deferrals in {with_deferrals} \
                 of {slots} clock hours from first to last deferral",
                count(c.deferred, "deferral", "deferrals"),
                exact_duration(span),
            ),
        ),
        Field::new(
            "Attempts",
            format!(
                "{}: {} deferred, {} delivered, {} bounced",
                c.deferred + c.delivered + c.bounced,
                c.deferred,
                c.delivered,
                c.bounced
            ),
        ),
    ];
    if let Some((h, b)) = inc
        .hourly
        .iter()
        .max_by(|a, b| a.1.d.cmp(&b.1.d).then(b.0.cmp(a.0)))
        .filter(|(_, b)| b.d > 0)
        && let Some(t) = DateTime::from_timestamp(*h, 0)
    {
        rows.push(Field::new(
            "Busiest hour",
            format!("{}: {} deferred, {} delivered", fmt_minute(t), b.d, b.s),
        ));
    }
    let mut items = vec![Item::Fields {
        heading: Some("Attempts to this destination from all our IPs:".to_string()),
        rows,
    }];
    let shown: Vec<(&i64, &crate::incidents::model::Bucket)> =
        inc.hourly.iter().rev().take(MAX_HOURS).collect();
    if !shown.is_empty() {
        let heading = if inc.hourly.len() > MAX_HOURS {
            format!("Per hour, the latest {MAX_HOURS} hours with attempts:")
        } else {
            "Per hour:".to_string()
        };
        items.push(Item::Table {
            heading: Some(heading),
            columns: vec![
                "Hour (UTC)".into(),
                "Deferred".into(),
                "Delivered".into(),
                "Bounced".into(),
            ],
            rows: shown
                .iter()
                .rev()
                .filter_map(|(h, b)| {
                    let t = DateTime::from_timestamp(**h, 0)?;
                    Some(vec![
                        t.format("%Y-%m-%d %H:%M").to_string(),
                        b.d.to_string(),
                        b.s.to_string(),
                        b.b.to_string(),
                    ])
                })
                .collect(),
        });
    }
    Some(Section {
        title: "Retry pattern".to_string(),
        items,
    })
}

fn role_words(role: SubjectRole) -> &'static str {
    match role {
        SubjectRole::AffectedIp => "deferred source IP",
        SubjectRole::ComparisonIp => "unaffected source IP",
        SubjectRole::SenderDomain => "envelope sender domain",
        SubjectRole::Destination => "recipient domain",
        SubjectRole::Other => "other",
    }
}

fn checks_section(inc: &Incident, checks: &[StoredCheck]) -> Option<Section> {
    let mut subjects: Vec<(SubjectRole, &str)> = checks
        .iter()
        .map(|c| (subject_role(inc, &c.subject), c.subject.as_str()))
        .filter(|(role, _)| *role != SubjectRole::Other)
        .collect();
    subjects.sort();
    subjects.dedup();
    let mut items = Vec::new();
    for (role, subject) in subjects {
        let mut of_subject: Vec<&StoredCheck> = checks
            .iter()
            .filter(|c| c.subject == subject && relevant(role, &c.result.name))
            .collect();
        if of_subject.is_empty() {
            continue;
        }
        of_subject.sort_by(|a, b| a.result.name.cmp(&b.result.name));
        let first = of_subject.iter().map(|c| c.checked_at).min();
        let last = of_subject.iter().map(|c| c.checked_at).max();
        let when = match (first, last) {
            (Some(f), Some(l)) if f != l => {
                format!("checked between {} and {}", fmt_second(f), fmt_second(l))
            }
            (Some(f), _) => format!("checked {}", fmt_second(f)),
            _ => String::new(),
        };
        let helo = inc
            .routes
            .get(subject)
            .filter(|r| !r.helos.is_empty())
            .map(|r| format!(", HELO {}", r.helos.join(", ")))
            .unwrap_or_default();
        items.push(Item::Fields {
            heading: Some(format!("{subject} ({}{helo}), {when}:", role_words(role))),
            rows: of_subject
                .iter()
                .map(|c| Field {
                    label: c.result.name.clone(),
                    value: if c.result.detail.trim().is_empty() {
                        c.result.verdict.to_string()
                    } else {
                        format!("{}: {}", c.result.verdict, c.result.detail.trim())
                    },
                    more: Vec::new(),
                    records: c.result.records.clone(),
                })
                .collect(),
        });
    }
    let summary = Item::Fields {
        heading: None,
        rows: vec![Field::new(
            "Sender checks",
            sender_checks_summary(inc, checks),
        )],
    };
    if items.is_empty() {
        items.push(summary);
    } else {
        items.insert(0, summary);
        items.insert(
            1,
            Item::Paragraph {
                text: "DNS and policy checks of our side (and of your MX and TLS policy), \
                       with the records seen. Verdicts: pass, warn, fail, error (could not \
                       be evaluated), none (nothing published)."
                    .to_string(),
            },
        );
    }
    Some(Section {
        title: "Sender checks reviewed".to_string(),
        items,
    })
}

/// The families of sender-side checks the runbook asks to rule out, in its order.
const CHECK_FAMILIES: [(&str, &[&str]); 5] = [
    ("PTR/FCrDNS", &["ptr", "fcrdns"]),
    ("HELO", &["helo"]),
    ("SPF", &["spf"]),
    ("DKIM", &["dkim"]),
    ("DMARC", &["dmarc"]),
];

fn is_blocklist(name: &str) -> bool {
    name.starts_with("dnsbl:") || name.starts_with("rhsbl:")
}

/// One line: the worst verdict per check family over our deferred IPs and sender
/// domains (the comparison IP and the recipient's DNS are not "sender checks"), and
/// when they ran.
fn sender_checks_summary(inc: &Incident, checks: &[StoredCheck]) -> String {
    let ours: Vec<&StoredCheck> = checks
        .iter()
        .filter(|c| {
            let role = subject_role(inc, &c.subject);
            matches!(role, SubjectRole::AffectedIp | SubjectRole::SenderDomain)
                && relevant(role, &c.result.name)
        })
        .collect();
    if ours.is_empty() {
        return "none recorded for this incident yet".to_string();
    }
    let worst = |pick: &dyn Fn(&str) -> bool| -> Option<Verdict> {
        ours.iter()
            .filter(|c| pick(&c.result.name))
            .map(|c| c.result.verdict)
            .reduce(Verdict::worst)
    };
    let mut parts: Vec<String> = CHECK_FAMILIES
        .iter()
        .map(|(label, names)| match worst(&|n| names.contains(&n)) {
            Some(v) => format!("{label} {v}"),
            None => format!("{label} not checked"),
        })
        .collect();
    let lists: BTreeSet<&str> = ours
        .iter()
        .filter(|c| is_blocklist(&c.result.name))
        .map(|c| c.result.name.as_str())
        .collect();
    let listed: BTreeSet<&str> = ours
        .iter()
        .filter(|c| is_blocklist(&c.result.name) && c.result.verdict == Verdict::Fail)
        .map(|c| c.result.name.split_once(':').map_or("", |(_, z)| z))
        .collect();
    parts.push(match worst(&is_blocklist) {
        None => "blocklists not checked".to_string(),
        Some(Verdict::Fail) => format!(
            "blocklists fail (listed on {} of {} lists: {})",
            listed.len(),
            lists.len(),
            listed.iter().copied().collect::<Vec<_>>().join(", ")
        ),
        Some(v) => format!(
            "blocklists {v} ({})",
            count(lists.len() as u64, "list", "lists")
        ),
    });
    let first = ours.iter().map(|c| c.checked_at).min();
    let last = ours.iter().map(|c| c.checked_at).max();
    let when = match (first, last) {
        (Some(f), Some(l)) if f != l => {
            format!("checked between {} and {}", fmt_second(f), fmt_second(l))
        }
        (Some(f), _) => format!("checked {}", fmt_second(f)),
        _ => String::new(),
    };
    format!("{}; {when}", parts.join(", "))
}

/// What a client says before the reply of each stage, in session order.
fn client_commands(e: &StoredEvent) -> Option<Vec<String>> {
    let helo = format!(
        "C: EHLO {}",
        e.helo.as_deref().unwrap_or("(HELO name not reported)")
    );
    let mail = format!("C: MAIL FROM:<{}>", e.sender.as_deref().unwrap_or(""));
    let rcpt = format!("C: RCPT TO:<{}>", e.recipient);
    let data = "C: DATA".to_string();
    Some(match e.stage {
        Stage::Connect => vec![],
        Stage::Ehlo => vec![helo],
        Stage::Starttls => vec![helo, "C: STARTTLS".to_string()],
        Stage::Mail => vec![helo, mail],
        Stage::Rcpt => vec![helo, mail, rcpt],
        Stage::Data => vec![helo, mail, rcpt, data],
        Stage::EndOfData => vec![
            helo,
            mail,
            rcpt,
            data,
            "C: (message content)".to_string(),
            "C: .".to_string(),
        ],
        Stage::Unknown => return None,
    })
}

/// One deferred attempt from the stored events, as a session transcript: the commands
/// up to the stage the reply answered, with the names and addresses our MTA logged,
/// and the reply exactly as logged. Only the reply is the receiver's own text, and the
/// heading says so; nothing is shown that the event did not carry.
fn transcript(inc: &Incident, events: &[StoredEvent]) -> Option<Section> {
    let top = inc
        .replies
        .iter()
        .max_by(|a, b| a.count.cmp(&b.count).then(b.first_seen.cmp(&a.first_seen)));
    let deferred = || {
        events
            .iter()
            .filter(|e| e.kind == EventType::Deferred && e.response.is_some())
    };
    let e = top
        .and_then(|r| deferred().find(|e| e.response.as_deref() == Some(r.text.as_str())))
        .or_else(|| deferred().next())?;
    let response = e.response.as_deref().unwrap_or_default();
    let mx = match (&e.mx_host, &e.mx_ip) {
        (Some(h), Some(ip)) => format!("{h} [{ip}]"),
        (Some(h), None) => format!("{h} (IP not reported)"),
        (None, Some(ip)) => format!("[{ip}]"),
        (None, None) => "the remote MX (not reported)".to_string(),
    };
    let mut lines = vec![format!(
        "Connected from {} to {mx}",
        e.source_ip.as_deref().unwrap_or("(source IP not reported)")
    )];
    let commands = client_commands(e);
    let known_stage = commands.is_some();
    lines.extend(commands.unwrap_or_default());
    lines.extend(response.lines().map(|l| format!("S: {l}")));
    let stage = if known_stage {
        String::new()
    } else {
        " The session stage was not reported, so only the reply is shown.".to_string()
    };
    Some(Section {
        title: "Transcript sample".to_string(),
        items: vec![Item::Quote {
            heading: format!(
                "One deferred attempt at {}, reconstructed from our MTA's log: C: lines are \
                 the commands our server had sent by then, S: the reply exactly as \
                 logged.{stage}",
                fmt_second(e.timestamp)
            ),
            lines,
        }],
    })
}

fn changes_section(
    inc: &Incident,
    changes: &[StoredCheckChange],
    now: DateTime<Utc>,
) -> Option<Section> {
    let from = inc.first_seen - LEAD_WINDOW;
    let mut sorted: Vec<&StoredCheckChange> = changes
        .iter()
        .filter(|c| c.at >= from && c.at <= now)
        .filter(|c| subject_role(inc, &c.subject) != SubjectRole::Other)
        .collect();
    if sorted.is_empty() {
        return None;
    }
    sorted.sort_by(|a, b| a.at.cmp(&b.at).then(a.subject.cmp(&b.subject)));
    let rows = sorted
        .iter()
        .map(|c| {
            let when = if c.at <= inc.first_seen {
                " (before the first deferral)"
            } else {
                ""
            };
            Field::new(
                fmt_second(c.at),
                format!("{}: {}{when}", c.subject, c.description),
            )
        })
        .collect();
    Some(Section {
        title: "Changes in check results".to_string(),
        items: vec![Item::Fields {
            heading: Some(format!(
                "Changes detected since {} ({} before the first deferral):",
                fmt_second(from),
                human(LEAD_WINDOW)
            )),
            rows,
        }],
    })
}

#[cfg(test)]
mod tests;
