//! The escalation report (DESIGN.md, "The escalation report"): the evidence a
//! receiving postmaster can act on, as a structured model that the dashboard renders
//! as plain text and the mailer as HTML and .eml, so every form says the same thing.
//!
//! Pure: the caller loads the incident, its checks and changes, and passes `now`.

pub mod digest;
mod text;

use crate::incidents::advice::{
    LEAD_WINDOW, SubjectRole, destination_label, fmt_minute, fmt_second, join_names, relevant,
    subject_role,
};
use crate::incidents::engine::human;
use crate::incidents::model::{Incident, Status, UNKNOWN_IP};
use crate::incidents::phase::Thresholds;
use crate::incidents::scope::{SourceIpScope, scope};
use crate::smtp::provider::provider_by_key;
use crate::store::{StoredCheck, StoredCheckChange};
use chrono::{DateTime, TimeDelta, Utc};
use serde::Serialize;

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
    /// DNS records behind the value, quoted exactly.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub records: Vec<String>,
}

impl Field {
    fn new(label: impl Into<String>, value: impl Into<String>) -> Self {
        Field {
            label: label.into(),
            value: value.into(),
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
        destination(inc, &dest),
        timeline(inc, input.thresholds, input.now),
        scope_section(inc, &sc),
        replies(inc),
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
                Field::new("IP address", ip.as_str()),
                Field::new("HELO/EHLO name", helo_list(&r.helos)),
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
                Field::new("IP address", ip.as_str()),
                Field::new("HELO/EHLO name", helo_list(&r.helos)),
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

fn destination(inc: &Incident, dest: &str) -> Option<Section> {
    let mut rows = Vec::new();
    if let Some(p) = provider_by_key(&inc.destination) {
        rows.push(Field::new("Mail provider", p.name));
    } else {
        rows.push(Field::new("Destination", dest));
    }
    let domains = inc.recipient_domains.sorted();
    rows.push(Field::new(
        "Recipient domains",
        tally_list(&domains, inc.recipient_domains.other, "deferred"),
    ));
    let mut items = vec![Item::Fields {
        heading: None,
        rows,
    }];
    if !inc.mx_hosts.is_empty() {
        let mut hosts: Vec<(&String, &crate::incidents::model::Counts)> =
            inc.mx_hosts.iter().collect();
        hosts.sort_by(|a, b| b.1.deferred.cmp(&a.1.deferred).then(a.0.cmp(b.0)));
        items.push(Item::Table {
            heading: Some("Remote MX hosts our servers talked to:".to_string()),
            columns: vec!["MX host".into(), "Deferred".into(), "Delivered".into()],
            rows: hosts
                .iter()
                .map(|(h, c)| {
                    vec![
                        (*h).clone(),
                        c.deferred.to_string(),
                        c.delivered.to_string(),
                    ]
                })
                .collect(),
        });
    } else {
        items.push(Item::Paragraph {
            text: "The remote MX host was not reported by our MTA.".to_string(),
        });
    }
    Some(Section {
        title: "Destination".to_string(),
        items,
    })
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
    let mut items = vec![Item::Paragraph {
        text: format!("{}.", capitalise(&sc.summary)),
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
        let mut heading = count(r.count, "deferral", "deferrals");
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
    let mut rows = vec![
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
        Field::new(
            "Deferral rate",
            format!(
                "{rate:.1} per hour ({} in {})",
                c.deferred,
                exact_duration(span)
            ),
        ),
        Field::new(
            "Hours with deferrals",
            format!("{with_deferrals} of {slots} clock hours from first to last deferral"),
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
                    records: c.result.records.clone(),
                })
                .collect(),
        });
    }
    if items.is_empty() {
        items.push(Item::Paragraph {
            text: "No sender checks have been recorded for this incident yet.".to_string(),
        });
    } else {
        items.insert(
            0,
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
