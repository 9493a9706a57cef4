//! Next steps for one incident: the runbook of DESIGN.md applied to this incident's
//! phase, scope, session stage, causes and check results, with its own IPs, hosts,
//! counts and times, so the operator reads instructions rather than a manual.
//!
//! Pure: the caller loads the checks and passes `now`; the same input gives the same
//! steps.

use super::engine::human;
use super::model::{Incident, Status};
use super::overview::{Overview, SENDER_WIDE_DESTINATIONS};
use super::phase::{Phase, Thresholds};
use super::scope::{Scope, SourceIpScope, StageScope};
use crate::checks::Verdict;
use crate::smtp::provider::provider_by_key;
use crate::store::{StoredCheck, StoredCheckChange};
use chrono::{DateTime, TimeDelta, Utc};
use serde::Serialize;

/// How long before the first deferral a check change still counts as the lead. Checks
/// run only while incidents are open, so a change is often detected at the first run of
/// the next incident; a day keeps a listing that came overnight in view.
pub const LEAD_WINDOW: TimeDelta = TimeDelta::hours(24);

/// Silence after which an open incident's source is worth a look: Postfix backs off
/// to at most 4000 s between retries, so two quiet hours mean the retries stopped
/// being reported, not that the receiver relented.
const SILENCE: TimeDelta = TimeDelta::hours(2);

/// Below this many attempts an hour, "stay under the busiest hour" is no guidance: the
/// receiver is counting over a longer span or per connection.
const MIN_CEILING: u32 = 10;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum StepKind {
    Do,
    Dont,
    Watch,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Step {
    pub kind: StepKind,
    pub text: String,
}

pub struct AdviceInput<'a> {
    pub incident: &'a Incident,
    /// `scope(incident)`, computed once by the caller for the page as well.
    pub scope: &'a Scope,
    /// Latest result of every check on the incident's subjects (`subjects_for`).
    pub checks: &'a [StoredCheck],
    pub changes: &'a [StoredCheckChange],
    pub thresholds: &'a Thresholds,
    /// Open incidents across destinations: one incident alone cannot see that the
    /// same IP is deferred everywhere, which points at the sender.
    pub overview: Option<&'a Overview>,
    pub now: DateTime<Utc>,
}

/// `2026-11-23 04:10 UTC`: precise enough for an instruction; the report carries
/// seconds.
pub fn fmt_minute(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M UTC").to_string()
}

/// `2026-11-23 04:10:07 UTC`, for evidence.
pub fn fmt_second(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

/// What a checked subject is to this incident: the same `dmarc` fail means something
/// else for our sender domain than for the recipient's domain.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SubjectRole {
    AffectedIp,
    ComparisonIp,
    SenderDomain,
    Destination,
    Other,
}

pub fn subject_role(inc: &Incident, subject: &str) -> SubjectRole {
    if let Some(r) = inc.routes.get(subject) {
        return if r.counts.deferred > 0 {
            SubjectRole::AffectedIp
        } else {
            SubjectRole::ComparisonIp
        };
    }
    let lower = subject.to_ascii_lowercase();
    if inc.sender_domains.items.contains_key(&lower) {
        SubjectRole::SenderDomain
    } else if inc.recipient_domains.items.contains_key(&lower) || inc.destination == lower {
        SubjectRole::Destination
    } else {
        SubjectRole::Other
    }
}

/// Whether a check says something about this incident. On the destination only its
/// MX and TLS policy matter: the receiver's own SPF or DMARC is not our concern.
pub fn relevant(role: SubjectRole, check_name: &str) -> bool {
    match role {
        SubjectRole::Destination => matches!(check_name, "mx" | "mta_sts" | "tls_rpt"),
        SubjectRole::Other => false,
        _ => true,
    }
}

/// The destination as a person names it: the recipient domain when there is one,
/// else the provider behind the incident.
pub fn destination_label(inc: &Incident) -> String {
    let domains = inc.recipient_domains.sorted();
    let provider = provider_by_key(&inc.destination).map(|p| p.name);
    match (domains.as_slice(), provider) {
        ([(d, _)], _) if inc.recipient_domains.other == 0 => (*d).to_string(),
        (_, Some(p)) => p.to_string(),
        ([(d, _), ..], None) => (*d).to_string(),
        ([], None) => inc.destination.clone(),
    }
}

/// `a`, `a and b`, `a, b and c`, `a, b, c and 2 more`.
pub fn join_names<S: AsRef<str>>(names: &[S], max: usize) -> String {
    let shown: Vec<&str> = names.iter().take(max.max(1)).map(AsRef::as_ref).collect();
    let rest = names.len().saturating_sub(shown.len());
    match (shown.as_slice(), rest) {
        ([], _) => String::new(),
        ([one], 0) => (*one).to_string(),
        (_, 0) => format!(
            "{} and {}",
            shown[..shown.len() - 1].join(", "),
            shown[shown.len() - 1]
        ),
        _ => format!("{} and {rest} more", shown.join(", ")),
    }
}

/// The reply code most deferrals carried, for "these 421 deferrals".
pub fn dominant_code(inc: &Incident) -> Option<u16> {
    let mut by_code: Vec<(u16, u64)> = Vec::new();
    for r in &inc.replies {
        if let Some(c) = r.code {
            match by_code.iter_mut().find(|(k, _)| *k == c) {
                Some((_, n)) => *n += r.count,
                None => by_code.push((c, r.count)),
            }
        }
    }
    by_code
        .into_iter()
        .max_by(|a, b| a.1.cmp(&b.1).then(b.0.cmp(&a.0)))
        .map(|(c, _)| c)
}

fn plural(n: u64, one: &str, many: &str) -> String {
    if n == 1 {
        format!("{n} {one}")
    } else {
        format!("{n} {many}")
    }
}

fn cause_label(cause: &str) -> &str {
    match cause {
        "greylisting" => "greylisting",
        "connection_limit" => "connection limits",
        "rate_limit" => "rate limiting",
        "reputation" => "reputation",
        "authentication" => "authentication",
        "tls_required" => "TLS policy",
        "server_busy" => "the receiver being busy",
        "mailbox" => "mailbox trouble",
        "network" => "network failures",
        "policy_other" => "other policy",
        other => other,
    }
}

fn verdict_of(s: &str) -> Verdict {
    match s {
        "pass" => Verdict::Pass,
        "warn" => Verdict::Warn,
        "fail" => Verdict::Fail,
        "none" => Verdict::None,
        _ => Verdict::Error,
    }
}

fn worse(previous: Option<&str>, current: &str) -> bool {
    let rank = |v: Verdict| match v {
        Verdict::None | Verdict::Pass => 0,
        Verdict::Warn | Verdict::Error => 1,
        Verdict::Fail => 2,
    };
    rank(verdict_of(current)) > previous.map_or(0, |p| rank(verdict_of(p)))
}

fn trim_period(s: &str) -> &str {
    s.trim().trim_end_matches('.')
}

struct Ctx<'a> {
    inc: &'a Incident,
    scope: &'a Scope,
    th: &'a Thresholds,
    dest: String,
    /// "these 421 deferrals" / "these deferrals".
    these: String,
    affected: String,
    /// The dominant cause already says to slow down, with numbers.
    rate_cause: bool,
}

pub fn next_steps(input: &AdviceInput) -> Vec<Step> {
    let inc = input.incident;
    let ctx = Ctx {
        inc,
        scope: input.scope,
        th: input.thresholds,
        dest: destination_label(inc),
        these: match dominant_code(inc) {
            Some(c) => format!("these {c} deferrals"),
            None => "these deferrals".to_string(),
        },
        affected: if input.scope.affected_source_ips.is_empty() {
            "the affected route".to_string()
        } else {
            join_names(&input.scope.affected_source_ips, 4)
        },
        rate_cause: dominant_cause(inc).is_some_and(|(c, _)| c == "rate_limit"),
    };
    let mut steps = Steps::default();
    leads(&ctx, input.changes, &mut steps);
    failing_checks(&ctx, input.checks, &mut steps);
    match inc.status {
        Status::Open => {
            let sender_side = sender_side(&ctx, input.overview, &mut steps);
            phase_steps(&ctx, sender_side, &mut steps);
            scope_steps(&ctx, &mut steps);
            stage_steps(&ctx, &mut steps);
            cause_steps(&ctx, &mut steps);
            authentication_dont(&ctx, input.checks, &mut steps);
            trend_and_silence(&ctx, input.now, &mut steps);
        }
        Status::Recovered => recovered(&ctx, &mut steps),
        Status::Stale => stale(&ctx, &mut steps),
    }
    steps.finish()
}

#[derive(Default)]
struct Steps {
    dos: Vec<String>,
    donts: Vec<String>,
    watches: Vec<String>,
}

impl Steps {
    fn push(&mut self, kind: StepKind, text: String) {
        let list = match kind {
            StepKind::Do => &mut self.dos,
            StepKind::Dont => &mut self.donts,
            StepKind::Watch => &mut self.watches,
        };
        if !list.contains(&text) {
            list.push(text);
        }
    }

    /// What to do first, then what to avoid, then what to keep an eye on; within each,
    /// the order the runbook reasons in (evidence, time, scope, stage, cause).
    fn finish(self) -> Vec<Step> {
        let tag = |kind: StepKind| move |text: String| Step { kind, text };
        self.dos
            .into_iter()
            .map(tag(StepKind::Do))
            .chain(self.donts.into_iter().map(tag(StepKind::Dont)))
            .chain(self.watches.into_iter().map(tag(StepKind::Watch)))
            .collect()
    }
}

/// Check changes around the start: one shortly before the first deferral is the lead
/// (DESIGN.md: "what changed matters more than what is").
fn leads(ctx: &Ctx, changes: &[StoredCheckChange], steps: &mut Steps) {
    let first = ctx.inc.first_seen;
    let end = ctx.inc.closed_at.unwrap_or(ctx.inc.last_seen);
    let mut sorted: Vec<&StoredCheckChange> = changes.iter().collect();
    sorted.sort_by(|a, b| b.at.cmp(&a.at).then(a.subject.cmp(&b.subject)));
    for c in &sorted {
        if c.at <= first && c.at >= first - LEAD_WINDOW {
            let when = if c.at == first {
                "at the first deferral".to_string()
            } else {
                format!("{} before the first deferral", human(first - c.at))
            };
            steps.push(
                StepKind::Do,
                format!(
                    "Start with what changed: at {}, {when}, {} {}.",
                    fmt_minute(c.at),
                    c.subject,
                    trim_period(&c.description)
                ),
            );
        }
    }
    for c in sorted.iter().rev() {
        if c.at > first && c.at <= end {
            if worse(c.previous.as_deref(), &c.verdict) {
                steps.push(
                    StepKind::Do,
                    format!(
                        "Look at the check change found at {}, {} into the incident: {}: {}. \
                         The previous check run may have been long before, so it can predate \
                         the deferrals.",
                        fmt_minute(c.at),
                        human(c.at - first),
                        c.subject,
                        trim_period(&c.description)
                    ),
                );
            } else if verdict_of(&c.verdict) == Verdict::Pass {
                steps.push(
                    StepKind::Watch,
                    format!(
                        "{} improved at {} ({}): watch whether the deferrals ease after it.",
                        c.subject,
                        fmt_minute(c.at),
                        trim_period(&c.description)
                    ),
                );
            }
        }
    }
}

/// A check that fails is a fault of ours (or a broken destination), whatever the
/// phase: fixing it comes before waiting.
fn failing_checks(ctx: &Ctx, checks: &[StoredCheck], steps: &mut Steps) {
    let sender_domain = ctx
        .inc
        .sender_domains
        .sorted()
        .first()
        .map(|(d, _)| d.to_string());
    let mut seen: Vec<(String, String, String)> = Vec::new();
    let mut sorted: Vec<&StoredCheck> = checks.iter().collect();
    sorted.sort_by(|a, b| {
        subject_role(ctx.inc, &a.subject)
            .cmp(&subject_role(ctx.inc, &b.subject))
            .then(a.subject.cmp(&b.subject))
            .then(a.result.name.cmp(&b.result.name))
    });
    for c in sorted {
        let role = subject_role(ctx.inc, &c.subject);
        let name = c.result.name.as_str();
        if c.result.verdict != Verdict::Fail || !relevant(role, name) {
            continue;
        }
        // DKIM, DMARC and domain lists checked along with an IP are about the sender
        // domain: name that, so one fault checked twice reads as one step.
        let about_domain = matches!(name, "dkim" | "dmarc") || name.starts_with("rhsbl:");
        let subject = match (&sender_domain, about_domain, role) {
            (Some(d), true, SubjectRole::AffectedIp | SubjectRole::ComparisonIp) => d.clone(),
            _ => c.subject.clone(),
        };
        let detail = trim_period(&c.result.detail).to_string();
        let key = (name.to_string(), subject.clone(), detail.clone());
        if seen.contains(&key) {
            continue;
        }
        seen.push(key);
        let why = format!("{name} fails: {detail}");
        let helo = ctx
            .inc
            .routes
            .get(&c.subject)
            .and_then(|r| r.helos.first())
            .map(|h| format!(" ({h})"))
            .unwrap_or_default();
        let text = if let Some(zone) = name.strip_prefix("dnsbl:") {
            format!(
                "{subject} is listed on {zone} ({why}): find out why from the list's lookup \
                 page, fix that cause, then request delisting."
            )
        } else if let Some(zone) = name.strip_prefix("rhsbl:") {
            format!(
                "The domain {subject} is listed on {zone} ({why}): find out why, fix the \
                 cause, then request delisting."
            )
        } else {
            match name {
                "ptr" => format!(
                    "Give {subject} working reverse DNS ({why}): receivers defer or refuse IPs \
                     without a PTR name."
                ),
                "fcrdns" => format!(
                    "Make the PTR name of {subject} resolve back to {subject} ({why}): \
                     receivers expect forward-confirmed reverse DNS."
                ),
                "helo" => format!(
                    "Fix the HELO/EHLO name {subject} uses{helo} ({why}): it must be a fully \
                     qualified name that resolves to the IP."
                ),
                "spf" | "dkim" | "dmarc" => format!(
                    "Fix {} for {subject} ({why}): this one is a real fault, not a reaction to \
                     the deferrals.",
                    name.to_ascii_uppercase()
                ),
                "mx" => format!(
                    "The destination {subject} has no usable MX ({why}): tell the recipient's \
                     side; retries will not help until it is fixed."
                ),
                "mta_sts" | "tls_rpt" => format!(
                    "The TLS policy of {subject} does not hold ({why}): check that your MTA's \
                     TLS towards {} matches what the policy requires.",
                    ctx.dest
                ),
                _ => format!("Fix {name} for {subject} ({why})."),
            }
        };
        steps.push(StepKind::Do, text);
    }
}

/// The widest scope: returns whether the sender side is suspected, which holds back
/// any advice to escalate to the receiver.
fn sender_side(ctx: &Ctx, overview: Option<&Overview>, steps: &mut Steps) -> bool {
    let inc = ctx.inc;
    let mut suspected = false;
    if let Some(o) = overview {
        for w in &o.sender_wide_ips {
            if ctx.scope.affected_source_ips.contains(&w.ip) {
                suspected = true;
                steps.push(
                    StepKind::Do,
                    format!(
                        "{} is deferred by {} destinations at once ({}): the sender side is the \
                         likelier cause. Check the MTA and {}'s reputation, blocklist results \
                         and recent volume before looking at {}.",
                        w.ip,
                        w.destinations.len(),
                        join_names(&w.destinations, 5),
                        w.ip,
                        ctx.dest
                    ),
                );
            }
        }
        let local = &o.local_failure_destinations;
        if local.len() >= SENDER_WIDE_DESTINATIONS && local.contains(&inc.destination) {
            suspected = true;
            steps.push(
                StepKind::Do,
                format!(
                    "The sending MTA reports its own failures towards {} destinations at once \
                     ({}): a sender-side outage. Check the MTA itself, its network and its DNS \
                     resolver.",
                    local.len(),
                    join_names(local, 5)
                ),
            );
        }
    }
    let local = inc.origins.get("local").copied().unwrap_or(0);
    if local > 0 && local == inc.counts.deferred {
        suspected = true;
        let mx = if ctx.scope.affected_mx_hosts.is_empty() {
            ctx.dest.clone()
        } else {
            join_names(&ctx.scope.affected_mx_hosts, 3)
        };
        steps.push(
            StepKind::Do,
            format!(
                "All {} failures were reported by the sending MTA itself; {} never answered. \
                 Check the MTA's network path, DNS and TLS towards {mx}.",
                inc.counts.deferred, ctx.dest
            ),
        );
        steps.push(
            StepKind::Dont,
            format!(
                "Do not contact {}'s postmaster about these failures: the receiver never \
                 replied, so it has nothing to look up.",
                ctx.dest
            ),
        );
    }
    suspected
}

fn phase_steps(ctx: &Ctx, sender_side: bool, steps: &mut Steps) {
    let inc = ctx.inc;
    let th = ctx.th;
    let first = inc.first_seen;
    let age = human(inc.age());
    let since = format!("since {} ({age})", fmt_minute(first));
    let dest = &ctx.dest;
    let affected = &ctx.affected;
    match inc.phase {
        Phase::Deferred => steps.push(
            StepKind::Watch,
            format!(
                "Nothing to do yet: {} towards {dest} {since} is the retry queue doing its job. \
                 It counts as persistent if it still defers at {}.",
                plural(inc.counts.deferred, "deferral", "deferrals"),
                fmt_minute(first + th.persistent)
            ),
        ),
        Phase::NormalRetry => steps.push(
            StepKind::Do,
            format!(
                "Let automatic retries work: {dest} has been deferring {since}, within the \
                 normal deferral window. If it still defers at {}, lower the pressure.",
                fmt_minute(first + th.persistent)
            ),
        ),
        Phase::Persistent => steps.push(
            StepKind::Do,
            format!(
                "Lower the pressure towards {dest}: cut concurrency and hourly volume from \
                 {affected}; deferring {since}.{} If it still defers at {}, pause the route.",
                busiest_hour(inc)
                    .map(|(h, n)| format!(
                        " The busiest hour so far, {}, had {n} attempts.",
                        fmt_minute(h)
                    ))
                    .unwrap_or_default(),
                fmt_minute(first + th.cooling)
            ),
        ),
        Phase::Cooling => {
            // With other IPs delivering, the scope step names the pause and the IP to
            // compare with; saying "pause" twice would read as two tasks.
            let text = if matches!(
                ctx.scope.source_ips,
                SourceIpScope::OneIp | SourceIpScope::SomeIps
            ) {
                format!(
                    "Let the queue retry slowly while {affected} is paused; {dest} has been \
                     deferring {since}."
                )
            } else {
                format!(
                    "Pause the affected route ({affected} towards {dest}) and let the queue \
                     retry slowly; deferring {since}."
                )
            };
            steps.push(StepKind::Do, text);
            steps.push(
                StepKind::Dont,
                format!(
                    "Do not escalate before {}: a deferral {age} old can still clear on its \
                     own.",
                    fmt_minute(first + th.escalate)
                ),
            );
        }
        Phase::CoolingExtended => {
            let window = human(th.escalate - th.cooling_extended);
            if inc.age() >= th.escalate {
                steps.push(
                    StepKind::Do,
                    format!(
                        "Keep cooling: {dest} has deferred {affected} {since}, but the affected \
                         routes show a recovery trend, so escalation is held back."
                    ),
                );
            } else {
                steps.push(
                    StepKind::Do,
                    format!(
                        "Keep a {window} cooling window on these stubborn deferrals: leave \
                         {affected} paused towards {dest} and let the queue retry slowly until \
                         {}.",
                        fmt_minute(first + th.escalate)
                    ),
                );
                steps.push(
                    StepKind::Dont,
                    format!(
                        "Do not escalate before {}: a deferral {age} old can still clear on \
                         its own.",
                        fmt_minute(first + th.escalate)
                    ),
                );
            }
        }
        Phase::Escalate => {
            if inc.recovery_trend {
                steps.push(
                    StepKind::Do,
                    format!(
                        "Hold the escalation: {dest} has deferred {since}, but the affected \
                         routes show a recovery trend. Keep cooling and watch it."
                    ),
                );
            } else if sender_side {
                steps.push(
                    StepKind::Dont,
                    format!(
                        "Do not escalate to {dest} yet: the evidence above points at the \
                         sender side; rule that out first."
                    ),
                );
            } else {
                steps.push(
                    StepKind::Do,
                    format!(
                        "Escalate: send the escalation report to {dest}'s postmaster (or to \
                         your ESP): deferring {since} with no recovery trend."
                    ),
                );
            }
        }
        Phase::Recovered | Phase::Stale => {}
    }
    if inc.phase < Phase::Persistent {
        steps.push(
            StepKind::Dont,
            format!(
                "Do not pause, reroute or throttle yet: deferrals younger than {} are what the \
                 retry queue is for.",
                human(th.persistent)
            ),
        );
    }
}

/// The hour with the most attempts towards the destination, as a ceiling to stay under.
fn busiest_hour(inc: &Incident) -> Option<(DateTime<Utc>, u32)> {
    inc.hourly
        .iter()
        .map(|(h, b)| (*h, b.d + b.s + b.b))
        .max_by(|a, b| a.1.cmp(&b.1).then(b.0.cmp(&a.0)))
        .and_then(|(h, n)| DateTime::from_timestamp(h, 0).map(|t| (t, n)))
}

fn scope_steps(ctx: &Ctx, steps: &mut Steps) {
    let s = ctx.scope;
    let inc = ctx.inc;
    let dest = &ctx.dest;
    let early = inc.phase < Phase::Persistent;
    let delivered = |ip: &str| s.ips.iter().find(|i| i.ip == ip).map_or(0, |i| i.delivered);
    match s.source_ips {
        SourceIpScope::OneIp | SourceIpScope::SomeIps => {
            let bad = join_names(&s.affected_source_ips, 4);
            let good = &s.unaffected_source_ips[0];
            let others = s.unaffected_source_ips.len() - 1;
            let good_n = plural(delivered(good), "message", "messages");
            let (verb, them, their) = if s.affected_source_ips.len() == 1 {
                ("is", "it", format!("{bad}'s"))
            } else {
                ("are", "them", "their".to_string())
            };
            if early {
                steps.push(
                    StepKind::Watch,
                    format!(
                        "Only {bad} {verb} deferred towards {dest} while {good} delivers \
                         ({good_n} so far): if it persists past {}, isolate {them} and compare \
                         with {good}.",
                        fmt_minute(inc.first_seen + ctx.th.persistent)
                    ),
                );
            } else {
                let action = if inc.phase >= Phase::Cooling {
                    "Pause"
                } else {
                    "Isolate"
                };
                let how = if inc.phase >= Phase::Cooling {
                    ""
                } else {
                    " (lower its rate or pause it)"
                };
                steps.push(
                    StepKind::Do,
                    format!(
                        "{action} {bad} towards {dest}{how} and compare {them} side by side \
                         with {good}, which delivered {good_n} in the same window: PTR, HELO \
                         name, blocklist results and recent volume."
                    ),
                );
            }
            let onto = if others > 0 {
                format!("{good} or the other delivering IPs")
            } else {
                good.clone()
            };
            steps.push(
                StepKind::Dont,
                format!(
                    "Do not move {their} volume onto {onto}: the extra load towards {dest} \
                     can get the healthy IP deferred too."
                ),
            );
        }
        SourceIpScope::AllIps if s.affected_source_ips.len() == 1 => steps.push(
            StepKind::Do,
            format!(
                "{} is the only IP sending to {dest}, so scope cannot tell an IP problem from \
                 a receiver problem: compare how {} fares at other destinations and read the \
                 sender checks.",
                s.affected_source_ips[0], s.affected_source_ips[0]
            ),
        ),
        SourceIpScope::AllIps => {
            let mx = if s.affected_mx_hosts.is_empty() {
                String::new()
            } else {
                format!(" ({})", join_names(&s.affected_mx_hosts, 3))
            };
            steps.push(
                StepKind::Do,
                format!(
                    "All {} sending IPs ({}) are deferred by {dest}: the receiving MX{mx} is \
                     the centre of this incident, not one IP of yours.",
                    s.affected_source_ips.len(),
                    join_names(&s.affected_source_ips, 4)
                ),
            );
        }
        SourceIpScope::Unknown => steps.push(
            StepKind::Do,
            "Make the event source report the sending IP: without it this incident cannot \
             tell one deferred IP from all of them."
                .to_string(),
        ),
    }
    if s.affected_mx_hosts.len() == 1 && !s.delivering_mx_hosts.is_empty() {
        steps.push(
            StepKind::Do,
            format!(
                "Only {} defers while {} accepts mail: the incident centres on that one \
                 receiving host.",
                s.affected_mx_hosts[0],
                join_names(&s.delivering_mx_hosts, 3)
            ),
        );
    }
}

fn stage_steps(ctx: &Ctx, steps: &mut Steps) {
    let inc = ctx.inc;
    let (mut conn, mut txn) = (0u64, 0u64);
    for (stage, n) in &inc.stages {
        match stage.as_str() {
            "connect" | "ehlo" | "starttls" => conn += n,
            "mail" | "rcpt" | "data" | "end_of_data" => txn += n,
            _ => {}
        }
    }
    let connection = format!(
        "the receiver has not seen a message, so it is judging the connecting IP, the \
         connection load or TLS. Look at connection handling (parallel connections, connection \
         rate, TLS) and at the reputation of {}",
        ctx.affected
    );
    match ctx.scope.stage {
        StageScope::Connection => {
            steps.push(
                StepKind::Do,
                format!(
                    "The deferrals come at connection, before MAIL FROM: {connection}, not at \
                     content."
                ),
            );
            steps.push(
                StepKind::Dont,
                "Do not rework message content or recipient lists for these: the receiver \
                 defers before it sees any message."
                    .to_string(),
            );
        }
        StageScope::Transaction => {
            let stage = match inc.dominant_stage() {
                Some("mail") => "MAIL FROM",
                Some("data") => "DATA",
                Some("end_of_data") => "the end of DATA",
                _ => "RCPT TO",
            };
            steps.push(
                StepKind::Do,
                format!(
                    "The deferrals come after {stage}: the receiver has seen sender and \
                     recipients, so rate, sender domain and content can play a part.{}",
                    if ctx.rate_cause {
                        String::new()
                    } else {
                        format!(" Reduce the sending rate towards {}.", ctx.dest)
                    }
                ),
            );
        }
        StageScope::Mixed => steps.push(
            StepKind::Do,
            format!(
                "{conn} deferrals came at connection and {txn} later in the session: treat the \
                 first as a connection or IP matter and reduce the rate for the rest."
            ),
        ),
        StageScope::Unknown => {}
    }
}

/// The most frequent classified cause; unclassified only when nothing else is known.
fn dominant_cause(inc: &Incident) -> Option<(String, u64)> {
    let causes = inc.top_causes();
    causes
        .iter()
        .find(|(c, _)| c != "unclassified")
        .or(causes.first())
        .cloned()
}

fn cause_steps(ctx: &Ctx, steps: &mut Steps) {
    let inc = ctx.inc;
    let Some((cause, n)) = dominant_cause(inc) else {
        return;
    };
    let total = inc.counts.deferred;
    let label = cause_label(&cause);
    let share = match (n == total, total) {
        (true, 1) => format!("The one deferral points to {label}"),
        (true, _) => format!("All {total} deferrals point to {label}"),
        _ => format!("{n} of {total} deferrals point to {label}"),
    };
    let dest = &ctx.dest;
    let affected = &ctx.affected;
    let mx = if ctx.scope.affected_mx_hosts.is_empty() {
        dest.clone()
    } else {
        join_names(&ctx.scope.affected_mx_hosts, 3)
    };
    let all_local = inc.origins.get("local").copied().unwrap_or(0) == total;
    match cause.as_str() {
        "rate_limit" => {
            let ceiling = busiest_hour(inc)
                .filter(|(_, n)| *n >= MIN_CEILING)
                .map(|(h, n)| {
                    format!(
                        " to well below the {n} attempts of the busiest hour ({})",
                        fmt_minute(h)
                    )
                })
                .unwrap_or_default();
            steps.push(
                StepKind::Do,
                format!(
                    "{share}: spread the volume. Lower the hourly rate from {affected} towards \
                     {dest}{ceiling}."
                ),
            );
        }
        "connection_limit" => steps.push(
            StepKind::Do,
            format!(
                "{share}: lower the number of parallel connections from {affected} to {mx} and \
                 the connection rate; the receiver limits sessions, not messages."
            ),
        ),
        "reputation" => {
            let tools = match inc.destination.as_str() {
                "google" => " Google Postmaster Tools shows how Gmail rates your IPs and domain.",
                "microsoft" => " Microsoft SNDS shows how Outlook.com rates your IPs.",
                "yahoo" => " Yahoo Sender Hub shows how Yahoo rates your traffic.",
                _ => "",
            };
            steps.push(
                StepKind::Do,
                format!(
                    "{share}: pause the traffic of {affected} to {dest} and investigate \
                     reputation: complaint and bounce rates, recent volume jumps, list \
                     hygiene, blocklist results.{tools}"
                ),
            );
        }
        "greylisting" => {
            steps.push(
                StepKind::Do,
                format!(
                    "{share}: let the queue retry; greylisting clears on a later retry from \
                     the same IP."
                ),
            );
            steps.push(
                StepKind::Dont,
                "Do not retry greylisted mail from another IP: greylisting remembers the \
                 sending IP, so a new one starts the delay over."
                    .to_string(),
            );
        }
        "authentication" => steps.push(
            StepKind::Do,
            format!(
                "{share}: the receiver names authentication. Compare SPF, DKIM, DMARC \
                 alignment and reverse DNS of {affected} with the reply text; the sender checks \
                 show what DNS publishes."
            ),
        ),
        "tls_required" => steps.push(
            StepKind::Do,
            format!(
                "{share}: fix TLS towards {dest}. Check the MTA's STARTTLS settings, \
                 certificates and protocol versions against {mx}, and the destination's \
                 MTA-STS result."
            ),
        ),
        "server_busy" => steps.push(
            StepKind::Watch,
            format!(
                "{share}: {dest} reports trouble of its own (overload, maintenance). Let the \
                 queue retry; nothing on your side needs to change for these."
            ),
        ),
        "mailbox" => steps.push(
            StepKind::Watch,
            format!(
                "{share}: individual mailboxes (full or unavailable). Retries settle them; do \
                 not slow the whole route for them."
            ),
        ),
        "network" if !all_local => steps.push(
            StepKind::Do,
            format!(
                "{share}: connections to {mx} fail before a usable reply. Check the sending \
                 MTA's network path and DNS towards {dest}."
            ),
        ),
        "network" => {}
        "policy_other" => steps.push(
            StepKind::Do,
            format!(
                "{share}: read the reply text for the receiver's reason. Fewer recipients per \
                 message and fewer errors per session often help."
            ),
        ),
        _ => steps.push(
            StepKind::Do,
            format!(
                "{} of {total} deferrals have no known cause: read the reply text for the \
                 receiver's reason.",
                n
            ),
        ),
    }
}

/// DESIGN.md: "Do not recommend changing SPF/DKIM/DMARC because of one 421". Only a
/// failing SPF, DKIM or DMARC check of ours, or a receiver that names authentication
/// itself, lifts it; a PTR fault or a listing does not make SPF edits useful.
fn authentication_dont(ctx: &Ctx, checks: &[StoredCheck], steps: &mut Steps) {
    let inc = ctx.inc;
    let auth: Vec<&StoredCheck> = checks
        .iter()
        .filter(|c| matches!(c.result.name.as_str(), "spf" | "dkim" | "dmarc"))
        .filter(|c| {
            matches!(
                subject_role(inc, &c.subject),
                SubjectRole::AffectedIp | SubjectRole::ComparisonIp | SubjectRole::SenderDomain
            )
        })
        .collect();
    let failing = auth.iter().any(|c| c.result.verdict == Verdict::Fail);
    let cause_says_auth = inc
        .top_causes()
        .first()
        .is_some_and(|(c, _)| c == "authentication");
    if failing || cause_says_auth {
        return;
    }
    let evidence = if !auth.is_empty() && auth.iter().all(|c| c.result.verdict == Verdict::Pass) {
        let latest = auth
            .iter()
            .map(|c| c.checked_at)
            .max()
            .unwrap_or(inc.first_seen);
        let domain = inc
            .sender_domains
            .sorted()
            .first()
            .map(|(d, _)| format!(" for {d}"))
            .unwrap_or_default();
        format!(
            "your SPF, DKIM and DMARC checks pass{domain} (checked {}), and a temporary \
             deferral is a throttle, not an authentication verdict",
            fmt_minute(latest)
        )
    } else if auth.is_empty() {
        "a temporary deferral is a throttle, not an authentication verdict, and no check has \
         shown an authentication fault"
            .to_string()
    } else {
        "none of your SPF, DKIM or DMARC checks fails, and a temporary deferral is a throttle, \
         not an authentication verdict"
            .to_string()
    };
    steps.push(
        StepKind::Dont,
        format!(
            "Do not change SPF, DKIM or DMARC because of {}: {evidence}.",
            ctx.these
        ),
    );
}

fn trend_and_silence(ctx: &Ctx, now: DateTime<Utc>, steps: &mut Steps) {
    let inc = ctx.inc;
    if inc.recovery_trend {
        let recovering = inc
            .recovering_since
            .filter(|r| *r > inc.last_deferral)
            .map(|r| {
                format!(
                    " {} has delivered again since {}; with no new deferral it counts as \
                     recovered at {}.",
                    ctx.affected,
                    fmt_minute(r),
                    fmt_minute(r + ctx.th.quiet_period)
                )
            })
            .unwrap_or_default();
        steps.push(
            StepKind::Watch,
            format!(
                "Recovery trend on the affected routes: deferrals are falling or deliveries \
                 succeed again.{recovering}"
            ),
        );
    }
    if now - inc.last_seen >= SILENCE {
        steps.push(
            StepKind::Watch,
            format!(
                "No event since {} ({} ago): check that the source still reports. Without \
                 events the incident closes as stale at {}.",
                fmt_minute(inc.last_seen),
                human(now - inc.last_seen),
                fmt_minute(inc.last_seen + ctx.th.stale_after)
            ),
        );
    }
}

fn recovered(ctx: &Ctx, steps: &mut Steps) {
    let inc = ctx.inc;
    let closed = inc.closed_at.unwrap_or(inc.last_seen);
    let peak = inc
        .phase_history
        .iter()
        .map(|c| c.to)
        .filter(|p| *p <= Phase::Escalate)
        .max()
        .unwrap_or(Phase::Deferred);
    if peak >= Phase::Persistent {
        steps.push(
            StepKind::Do,
            format!(
                "Bring {} back to normal volume towards {} gradually, not all at once.",
                ctx.affected, ctx.dest
            ),
        );
    }
    steps.push(
        StepKind::Watch,
        format!(
            "Recovered at {}: {} delivered for {} without a deferral. A deferral before {} \
             reopens this incident.",
            fmt_minute(closed),
            ctx.affected,
            human(ctx.th.quiet_period),
            fmt_minute(closed + ctx.th.reopen_window)
        ),
    );
}

fn stale(ctx: &Ctx, steps: &mut Steps) {
    let inc = ctx.inc;
    let closed = inc.closed_at.unwrap_or(inc.last_seen);
    steps.push(
        StepKind::Do,
        format!(
            "Check that the source still reports events and whether mail to {} is still \
             queued: the incident closed without a recovery.",
            ctx.dest
        ),
    );
    steps.push(
        StepKind::Watch,
        format!(
            "Closed as stale at {}: no event for {} after {}, without a recovery on {}.",
            fmt_minute(closed),
            human(ctx.th.stale_after),
            fmt_minute(inc.last_seen),
            ctx.affected
        ),
    );
}

#[cfg(test)]
#[path = "advice_tests.rs"]
mod tests;
