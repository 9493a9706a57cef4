//! Classification of SMTP replies into a cause and an action (CLASSIFICATION.md).
//!
//! Rules are data (`data/rules.toml`, compiled in, optionally extended by the user's own
//! file). All rule patterns are compiled once into one `RegexSet`; a reply is matched in a
//! single pass and the first matching rule in priority order (user rules first, then file
//! order) whose code constraints hold wins. When no rule matches, the enhanced status code
//! (RFC 3463 and the IANA "SMTP Enhanced Status Codes" registry) decides, then the basic
//! code (RFC 5321 §4.2). Whatever decided, a 5xx is `permanent`: the code's class wins.

use std::collections::HashSet;
use std::fmt;
use std::ops::Range;
use std::str::FromStr;
use std::sync::LazyLock;
use std::sync::atomic::{AtomicU64, Ordering};

use regex::bytes::{Regex, RegexBuilder, RegexSet, RegexSetBuilder};
use serde::{Deserialize, Serialize};
use toml::Spanned;

use super::provider::{self, provider_by_key, provider_from_mx, provider_from_text};
use super::reply::{EnhancedCode, Reply, Stage, parse_reply};

/// The built-in rules, compiled into the binary.
pub const BUILTIN_RULES: &str = include_str!("../../data/rules.toml");
const BUILTIN_FILE: &str = "data/rules.toml";

/// Only this much of a reply's text is matched against the rules: the distinguishing
/// wording of every documented reply is in its first lines, and the cap bounds the cost of
/// a pathological event on the ingest path.
const MATCH_WINDOW: usize = 4096;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Cause {
    Greylisting,
    ConnectionLimit,
    RateLimit,
    Reputation,
    Authentication,
    TlsRequired,
    ServerBusy,
    Mailbox,
    Network,
    PolicyOther,
    Permanent,
}

impl Cause {
    pub const ALL: [Cause; 11] = [
        Cause::Greylisting,
        Cause::ConnectionLimit,
        Cause::RateLimit,
        Cause::Reputation,
        Cause::Authentication,
        Cause::TlsRequired,
        Cause::ServerBusy,
        Cause::Mailbox,
        Cause::Network,
        Cause::PolicyOther,
        Cause::Permanent,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Cause::Greylisting => "greylisting",
            Cause::ConnectionLimit => "connection_limit",
            Cause::RateLimit => "rate_limit",
            Cause::Reputation => "reputation",
            Cause::Authentication => "authentication",
            Cause::TlsRequired => "tls_required",
            Cause::ServerBusy => "server_busy",
            Cause::Mailbox => "mailbox",
            Cause::Network => "network",
            Cause::PolicyOther => "policy_other",
            Cause::Permanent => "permanent",
        }
    }

    /// The mapping table of CLASSIFICATION.md ("action").
    pub fn default_action(self) -> Action {
        match self {
            Cause::Greylisting
            | Cause::ServerBusy
            | Cause::Mailbox
            | Cause::Network
            | Cause::PolicyOther => Action::RetryNormally,
            Cause::ConnectionLimit => Action::ReduceConcurrency,
            Cause::RateLimit => Action::ReduceRate,
            Cause::Reputation => Action::PauseAndInvestigateReputation,
            Cause::Authentication => Action::FixAuthentication,
            Cause::TlsRequired => Action::EnableTls,
            Cause::Permanent => Action::None,
        }
    }
}

impl fmt::Display for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown cause {0:?}")]
pub struct UnknownLabel(pub String);

impl FromStr for Cause {
    type Err = UnknownLabel;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Cause::ALL
            .into_iter()
            .find(|c| c.as_str().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| UnknownLabel(s.to_string()))
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    RetryNormally,
    ReduceConcurrency,
    ReduceRate,
    PauseAndInvestigateReputation,
    FixAuthentication,
    EnableTls,
    None,
}

impl Action {
    pub const ALL: [Action; 7] = [
        Action::RetryNormally,
        Action::ReduceConcurrency,
        Action::ReduceRate,
        Action::PauseAndInvestigateReputation,
        Action::FixAuthentication,
        Action::EnableTls,
        Action::None,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Action::RetryNormally => "retry_normally",
            Action::ReduceConcurrency => "reduce_concurrency",
            Action::ReduceRate => "reduce_rate",
            Action::PauseAndInvestigateReputation => "pause_and_investigate_reputation",
            Action::FixAuthentication => "fix_authentication",
            Action::EnableTls => "enable_tls",
            Action::None => "none",
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Action {
    type Err = UnknownLabel;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Action::ALL
            .into_iter()
            .find(|c| c.as_str().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| UnknownLabel(s.to_string()))
    }
}

/// Who produced the reply: the receiver (`remote`) or the sending MTA itself (`local`:
/// connect timeouts, DNS failures, ESP `[internal]` states). A local reply says nothing
/// about how the receiver judges the sender.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Origin {
    Remote,
    Local,
}

impl Origin {
    pub fn as_str(self) -> &'static str {
        match self {
            Origin::Remote => "remote",
            Origin::Local => "local",
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct Classification {
    pub code: Option<u16>,
    pub enhanced: Option<EnhancedCode>,
    pub cause: Cause,
    pub action: Action,
    pub provider: Option<String>,
    pub reference: Option<String>,
    pub explanation: String,
    pub stage: Stage,
    pub origin: Origin,
    pub retry_hint_seconds: Option<u64>,
    pub rule: Option<String>,
}

/// A rules file that cannot be used. The message names the file and the line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RulesError {
    #[error("{file}:{line}: {message}")]
    Syntax {
        file: String,
        line: usize,
        message: String,
    },
    #[error("{file}:{line}: rule {id:?}: {message}")]
    Rule {
        file: String,
        line: usize,
        id: String,
        message: String,
    },
    #[error("{file}: {message}")]
    Build { file: String, message: String },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleFile {
    #[serde(default)]
    rule: Vec<RuleDef>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleDef {
    id: Spanned<String>,
    pattern: Spanned<String>,
    #[serde(default)]
    provider: Option<String>,
    #[serde(default)]
    codes: Option<Vec<u16>>,
    #[serde(default)]
    enhanced: Option<Vec<Spanned<String>>>,
    cause: Cause,
    #[serde(default)]
    action: Option<Action>,
    #[serde(default)]
    reference: Option<Spanned<String>>,
    explanation: String,
    #[serde(default)]
    origin: Option<Origin>,
    #[serde(default)]
    source: Option<String>,
    #[serde(default)]
    example: Option<String>,
}

/// `4.7.0`, `4.7.*`, `4.*.*` or a detail range `4.7.500-699`.
#[derive(Clone, Debug)]
struct EnhancedPattern {
    class: u8,
    subject: Option<u16>,
    detail: Option<(u16, u16)>,
}

impl EnhancedPattern {
    fn parse(s: &str) -> Option<EnhancedPattern> {
        let mut parts = s.trim().split('.');
        let class: u8 = parts.next()?.parse().ok()?;
        let subject = match parts.next()? {
            "*" => None,
            v => Some(v.parse().ok()?),
        };
        let detail = match parts.next()? {
            "*" => None,
            v => match v.split_once('-') {
                Some((a, b)) => Some((a.parse().ok()?, b.parse().ok()?)),
                None => {
                    let d = v.parse().ok()?;
                    Some((d, d))
                }
            },
        };
        if parts.next().is_some() || !matches!(class, 2 | 4 | 5) {
            return None;
        }
        Some(EnhancedPattern {
            class,
            subject,
            detail,
        })
    }

    fn matches(&self, e: EnhancedCode) -> bool {
        e.class == self.class
            && self.subject.is_none_or(|s| s == e.subject)
            && self.detail.is_none_or(|(a, b)| (a..=b).contains(&e.detail))
    }
}

/// One compiled rule. Public so tooling and tests can list the rules and their sources.
#[derive(Clone, Debug)]
pub struct Rule {
    pub id: String,
    pub pattern: String,
    pub provider: Option<String>,
    pub codes: Vec<u16>,
    pub cause: Cause,
    pub action: Option<Action>,
    pub explanation: String,
    pub origin: Option<Origin>,
    pub source: Option<String>,
    pub example: Option<String>,
    /// `true` for rules from the user's file.
    pub user: bool,
    enhanced: Vec<EnhancedPattern>,
    reference: Option<Regex>,
}

impl Rule {
    fn accepts(&self, reply: &Reply) -> bool {
        // A rule for the sending MTA's own wording must not fire on a receiver's reply that
        // happens to say "connection refused": only replies without a code, network/routing
        // codes (RFC 3463 X.4.X) or the ESPs' internal codes qualify.
        if self.origin == Some(Origin::Local) && !looks_local(reply) {
            return false;
        }
        if !self.codes.is_empty() && !reply.code.is_some_and(|c| self.codes.contains(&c)) {
            return false;
        }
        if !self.enhanced.is_empty()
            && !reply
                .enhanced
                .is_some_and(|e| self.enhanced.iter().any(|p| p.matches(e)))
        {
            return false;
        }
        true
    }
}

fn looks_local(reply: &Reply) -> bool {
    reply.code.is_none()
        || matches!(reply.code, Some(400 | 498)) // KumoMTA internal, Mailgun "No MX"
        || reply.enhanced.is_some_and(|e| e.subject == 4)
        || reply.text.contains("[internal]")
        || reply.text.contains("KumoMTA internal")
        // ZoneMTA puts its own 450 in front of its connection and DNS errors
        // ("450 Network error when connecting to MX server …: Connection refused").
        || reply.text.starts_with("Network error when connecting to MX server")
        || reply.text.starts_with("DNS error")
}

/// The compiled rules. Build once and share (`Arc<Classifier>`); classification takes
/// `&self` and is `Send + Sync`.
#[derive(Clone, Debug)]
pub struct Classifier {
    rules: Vec<Rule>,
    /// The rules' patterns, then (when `aux`) `REFERENCE` and `RETRY_HINT`.
    set: RegexSet,
    /// Whether the set ends with the two auxiliary patterns. Matching them in the rules'
    /// pass costs nothing extra, while each scan of its own cost as much as a third of a
    /// classification; their captures then run only on the few replies that match.
    aux: bool,
    /// Which build this is, so that a cache of classifications (a line parser's memo)
    /// can tell when the rules it was filled with were replaced; a clone has the same
    /// rules and keeps the id.
    build: u64,
}

/// Builds so far, for `Classifier::build`.
static BUILDS: AtomicU64 = AtomicU64::new(0);

impl Classifier {
    /// The built-in rules. They are tested (`tests/rules_examples.rs`), so a failure here
    /// is a build defect; it falls back to an empty table rather than panicking in a server.
    pub fn builtin() -> Classifier {
        match Self::build(None) {
            Ok(c) => c,
            Err(e) => {
                debug_assert!(false, "built-in rules are broken: {e}");
                Classifier {
                    rules: Vec::new(),
                    set: RegexSet::empty(),
                    aux: false,
                    build: BUILDS.fetch_add(1, Ordering::Relaxed),
                }
            }
        }
    }

    /// Built-in rules plus the user's own. User rules take priority over all built-in
    /// rules, and a user rule with the id of a built-in one replaces it.
    pub fn with_user_rules(user_toml: &str, file_name: &str) -> Result<Classifier, RulesError> {
        Self::build(Some((user_toml, file_name)))
    }

    fn build(user: Option<(&str, &str)>) -> Result<Classifier, RulesError> {
        let mut rules = Vec::new();
        if let Some((text, file)) = user {
            rules.extend(load_rules(text, file, true)?);
        }
        let user_ids: HashSet<String> = rules.iter().map(|r: &Rule| r.id.clone()).collect();
        let builtin = load_rules(BUILTIN_RULES, BUILTIN_FILE, false)?;
        rules.extend(builtin.into_iter().filter(|r| !user_ids.contains(&r.id)));
        // ASCII-only case folding and classes keep the combined automaton small (the
        // documented replies are ASCII apart from a few literal accents); a user rule that
        // needs Unicode classes still works through the Unicode-aware fallback.
        // The auxiliary patterns carry their own flags, so the set's do not change them.
        let reference = format!("(?-i:{REFERENCE_PATTERN})");
        let build_set = |unicode: bool, aux: bool| {
            let extra = [reference.as_str(), RETRY_HINT_PATTERN];
            let extra = if aux { &extra[..] } else { &[] };
            RegexSetBuilder::new(
                rules
                    .iter()
                    .map(|r| r.pattern.as_str())
                    .chain(extra.iter().copied()),
            )
            .case_insensitive(true)
            .unicode(unicode)
            .size_limit(64 << 20)
            .dfa_size_limit(64 << 20)
            .build()
        };
        let with_aux = build_set(false, true).or_else(|_| build_set(true, true));
        // Should the auxiliary patterns push the set over its size limit, the rules alone
        // still classify, with the two scans of their own.
        let (set, aux) = match with_aux {
            Ok(set) => (set, true),
            Err(_) => (
                build_set(false, false)
                    .or_else(|_| build_set(true, false))
                    .map_err(|e| RulesError::Build {
                        file: user.map_or(BUILTIN_FILE, |u| u.1).to_string(),
                        message: e.to_string(),
                    })?,
                false,
            ),
        };
        Ok(Classifier {
            rules,
            set,
            aux,
            build: BUILDS.fetch_add(1, Ordering::Relaxed),
        })
    }

    /// Distinct for every build of a classifier (not for its clones).
    pub fn build_id(&self) -> u64 {
        self.build
    }

    pub fn rule_count(&self) -> usize {
        self.rules.len()
    }

    /// The rules in priority order.
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    pub fn classify_text(&self, text: &str, mx_host: Option<&str>) -> Classification {
        self.classify(&parse_reply(text), mx_host)
    }

    pub fn classify(&self, reply: &Reply, mx_host: Option<&str>) -> Classification {
        let window = window(&reply.text, MATCH_WINDOW);
        // Neither auxiliary pattern matches an empty text.
        let (mut rule, mut may_reference, mut may_hint) = (None, false, false);
        if !window.is_empty() {
            let matched = self.set.matches(window.as_bytes());
            rule = matched
                .iter()
                .filter_map(|i| self.rules.get(i))
                .find(|r| r.accepts(reply));
            let n = self.rules.len();
            (may_reference, may_hint) = if self.aux {
                (matched.matched(n), matched.matched(n + 1))
            } else {
                (true, true)
            };
        }

        let (mut cause, explanation) = match rule {
            // A rule for final failures ("retry timeout exceeded") cannot make a 4xx final.
            Some(r) if r.cause == Cause::Permanent && reply.is_temporary() => {
                let cause = fallback_cause(reply);
                (cause, fallback_explanation(cause, reply))
            }
            Some(r) => (r.cause, r.explanation.clone()),
            None => {
                let cause = fallback_cause(reply);
                (cause, fallback_explanation(cause, reply))
            }
        };
        // CLASSIFICATION.md: the code's class wins for temporary versus permanent.
        if reply.is_permanent() {
            cause = Cause::Permanent;
        }
        let action = match rule.and_then(|r| r.action) {
            Some(a) if cause != Cause::Permanent => a,
            _ => cause.default_action(),
        };
        let origin = rule
            .and_then(|r| r.origin)
            .unwrap_or(if reply.code.is_some() {
                Origin::Remote
            } else {
                Origin::Local
            });

        let detected = mx_host
            .and_then(provider_from_mx)
            .or_else(|| reply.remote_host.as_deref().and_then(provider_from_mx))
            .or_else(|| provider_from_text(window));
        let provider_name = match detected {
            Some(p) => Some(p.name.to_string()),
            None => rule
                .and_then(|r| r.provider.as_deref())
                .map(|k| provider_by_key(k).map_or_else(|| k.to_string(), |p| p.name.to_string())),
        };
        let is_google = detected.is_some_and(|p| std::ptr::eq(p, &provider::GOOGLE))
            || (detected.is_none() && rule.and_then(|r| r.provider.as_deref()) == Some("google"));

        let reference = rule
            .and_then(|r| r.reference.as_ref())
            .and_then(|re| capture(re, window))
            .or_else(|| {
                if may_reference {
                    capture(&REFERENCE, window)
                } else {
                    None
                }
            })
            // Gmail publishes its errors by enhanced code (support.google.com/a/answer/3726730).
            .or_else(|| {
                if is_google && origin == Origin::Remote {
                    reply.enhanced.map(|e| e.to_string())
                } else {
                    None
                }
            });

        Classification {
            code: reply.code,
            enhanced: reply.enhanced,
            cause,
            action,
            provider: provider_name,
            reference,
            explanation,
            stage: reply.stage,
            origin,
            retry_hint_seconds: if may_hint {
                retry_hint_seconds(window)
            } else {
                None
            },
            rule: rule.map(|r| r.id.clone()),
        }
    }
}

fn window(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while end > 0 && !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// One rule pattern, compiled like the combined set (ASCII first, Unicode if needed).
fn compile(pattern: &str) -> Result<Regex, regex::Error> {
    let build = |unicode: bool| {
        RegexBuilder::new(pattern)
            .case_insensitive(true)
            .unicode(unicode)
            .size_limit(8 << 20)
            .build()
    };
    build(false).or_else(|_| build(true))
}

fn line_of(text: &str, span: Range<usize>) -> usize {
    let end = span.start.min(text.len());
    text.as_bytes()[..end]
        .iter()
        .filter(|b| **b == b'\n')
        .count()
        + 1
}

fn load_rules(text: &str, file: &str, user: bool) -> Result<Vec<Rule>, RulesError> {
    let parsed: RuleFile = toml::from_str(text).map_err(|e| RulesError::Syntax {
        file: file.to_string(),
        line: e.span().map_or(1, |s| line_of(text, s)),
        message: e.message().trim().to_string(),
    })?;
    let mut seen = HashSet::new();
    let mut out = Vec::with_capacity(parsed.rule.len());
    for def in parsed.rule {
        let line = line_of(text, def.id.span());
        let id = def.id.into_inner();
        let err = |line: usize, message: String| RulesError::Rule {
            file: file.to_string(),
            line,
            id: id.clone(),
            message,
        };
        if id.trim().is_empty() {
            return Err(err(line, "empty id".into()));
        }
        if !seen.insert(id.clone()) {
            return Err(err(line, "duplicate id in this file".into()));
        }
        let pattern_line = line_of(text, def.pattern.span());
        let pattern = def.pattern.into_inner();
        let single =
            compile(&pattern).map_err(|e| err(pattern_line, format!("invalid pattern: {e}")))?;
        let mut enhanced = Vec::new();
        for e in def.enhanced.unwrap_or_default() {
            let l = line_of(text, e.span());
            let s = e.into_inner();
            enhanced.push(EnhancedPattern::parse(&s).ok_or_else(|| {
                err(
                    l,
                    format!(
                        "invalid enhanced code pattern {s:?} (use 4.7.0, 4.7.* or 4.7.500-699)"
                    ),
                )
            })?);
        }
        let codes = def.codes.unwrap_or_default();
        if let Some(c) = codes.iter().find(|c| !(200..600).contains(*c)) {
            return Err(err(line, format!("code {c} is not an SMTP reply code")));
        }
        let reference = match def.reference {
            Some(r) => {
                let l = line_of(text, r.span());
                Some(
                    compile(&r.into_inner())
                        .map_err(|e| err(l, format!("invalid reference pattern: {e}")))?,
                )
            }
            None => None,
        };
        if let Some(ex) = def.example.as_deref() {
            // The example is the text that motivated the rule: a pattern that does not
            // match it is a broken rule, not a harmless one.
            let parsed = parse_reply(ex);
            if !single.is_match(parsed.text.as_bytes()) {
                return Err(err(
                    pattern_line,
                    "pattern does not match the rule's own example".into(),
                ));
            }
        }
        out.push(Rule {
            id,
            pattern,
            provider: def.provider,
            codes,
            cause: def.cause,
            action: def.action,
            explanation: def.explanation,
            origin: def.origin,
            source: def.source,
            example: def.example,
            user,
            enhanced,
            reference,
        });
    }
    Ok(out)
}

/// Receivers' own reference codes: Yahoo `[TSS04]`, Microsoft `(S3114)` / `AS(201806281)`,
/// Comcast `RL000010`, Orange `OFR_999`, Apple `(CS01)`, Mimecast `[…]` ids stay in text.
const REFERENCE_PATTERN: &str = r"(?-u)\[((?:TSS?|PH|BL|HM|GL|DM|RL|TS)\d{2})\]|\((S\d{3,5})\)|\b(AS\(\d{3,12}\))|\b(RL\d{6})\b|\b(OFR\d{3}_\d{2,4}|OFR_\d{3})\b|\b(HVU:[A-Z0-9]+)\b|\((CS\d{2})\)|\b(LPN\d{3}_\d{3})\b";
static REFERENCE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(REFERENCE_PATTERN).expect("constant regex compiles"));

fn capture(re: &Regex, text: &str) -> Option<String> {
    let caps = re.captures(text.as_bytes())?;
    caps.iter()
        .skip(1)
        .flatten()
        .next()
        .or_else(|| caps.get(0))
        .map(|m| String::from_utf8_lossy(m.as_bytes()).into_owned())
}

/// "try again in 5 minutes", "come back in 00:05:00" (milter-greylist), "Retry after 1
/// hour", "greylisted for 300 seconds". Gmail's "Please try again later" gives none.
const RETRY_HINT_PATTERN: &str = r"(?i-u)\b(?:try(?:ing)?(?: it)? again|retry|come back|resend|wait|greylist(?:ed|ing)?|deferred|blocked|available)\b[^.;\n]{0,40}?\b(?:in|after|for)\s+(?:(\d{1,2}):(\d{2}):(\d{2})|(\d{1,7})\s*(seconds?|secs?|s|minutes?|mins?|m|hours?|hrs?|h|days?)\b)";
static RETRY_HINT: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(RETRY_HINT_PATTERN).expect("constant regex compiles"));

pub fn retry_hint_seconds(text: &str) -> Option<u64> {
    let c = RETRY_HINT.captures(text.as_bytes())?;
    let num =
        |i: usize| -> Option<u64> { std::str::from_utf8(c.get(i)?.as_bytes()).ok()?.parse().ok() };
    if let (Some(h), Some(m), Some(s)) = (num(1), num(2), num(3)) {
        return Some(h * 3600 + m * 60 + s);
    }
    let n = num(4)?;
    let unit = c.get(5)?.as_bytes().first()?.to_ascii_lowercase();
    let mult = match Some(&unit) {
        Some(b's') => 1,
        Some(b'm') => 60,
        Some(b'h') => 3600,
        Some(b'd') => 86_400,
        _ => return None,
    };
    n.checked_mul(mult)
}

/// RFC 3463 §3 subjects and details (and the IANA registry's later additions, RFC 7372,
/// RFC 8689) for class 4, then the basic code (RFC 5321 §4.2.2).
fn fallback_cause(reply: &Reply) -> Cause {
    if reply.is_permanent() {
        return Cause::Permanent;
    }
    if let Some(e) = reply.enhanced.filter(|e| e.class == 4) {
        return match (e.subject, e.detail) {
            (1, 7 | 8) => Cause::Authentication, // bad sender's mailbox address syntax / system address
            (1, _) | (2, _) => Cause::Mailbox,
            (3, _) => Cause::ServerBusy,
            (4, 5) => Cause::ServerBusy, // system congestion
            (4, _) => Cause::Network,
            (5, 3) => Cause::PolicyOther, // too many recipients
            (5, _) | (6, _) => Cause::PolicyOther,
            (7, 5 | 10 | 11 | 30) => Cause::TlsRequired, // crypto failure, encryption needed, REQUIRETLS
            (7, 7 | 20..=27 | 29) => Cause::Authentication, // DKIM/SPF/rDNS/ARC failures (RFC 7372)
            (7, 28) => Cause::RateLimit,                 // mail flood detected (RFC 7372)
            (7, _) => Cause::PolicyOther,
            _ => Cause::PolicyOther,
        };
    }
    match reply.code {
        Some(421) => Cause::ServerBusy, // service not available, closing transmission channel
        Some(450) => Cause::Mailbox,    // mailbox unavailable
        Some(451) => Cause::ServerBusy, // local error in processing
        Some(452) => Cause::ServerBusy, // insufficient system storage
        Some(454) => Cause::TlsRequired, // RFC 3207: TLS not available due to temporary reason
        Some(_) => Cause::PolicyOther,
        // No reply at all: the sending MTA describes its own failure to talk to the receiver.
        None => Cause::Network,
    }
}

fn fallback_explanation(cause: Cause, reply: &Reply) -> String {
    let code = match (reply.code, reply.enhanced) {
        (Some(c), Some(e)) => format!("{c} {e}"),
        (Some(c), None) => c.to_string(),
        (None, Some(e)) => e.to_string(),
        (None, None) => "No SMTP reply".to_string(),
    };
    let what = match cause {
        Cause::Greylisting => {
            "the receiver is greylisting this sender; the queue's next retry normally succeeds."
        }
        Cause::ConnectionLimit => {
            "the receiver limits concurrent connections; lower the connection count to this destination."
        }
        Cause::RateLimit => {
            "the receiver limits the rate of mail from this sender; lower the hourly volume to this destination."
        }
        Cause::Reputation => {
            "the receiver is deferring on the sender's reputation; pause, then review complaints, lists and volume."
        }
        Cause::Authentication => {
            "the receiver could not authenticate the sender (SPF, DKIM, DMARC or reverse DNS); check the sender records."
        }
        Cause::TlsRequired => {
            "the TLS policy between sender and receiver failed; check STARTTLS towards this destination."
        }
        Cause::ServerBusy => {
            "the receiving system reports a temporary problem of its own; the queue retries."
        }
        Cause::Mailbox => "one recipient's mailbox is temporarily unavailable; the queue retries.",
        Cause::Network => {
            "the sending MTA could not complete the SMTP conversation (timeout, refused connection or DNS); the queue retries."
        }
        Cause::PolicyOther => {
            "the receiver temporarily refused the message by policy; the queue retries."
        }
        Cause::Permanent => {
            "the receiver refused the message permanently (5xx); it will not be retried."
        }
    };
    format!("{code}: {what}")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The auxiliary patterns answer in the rules' pass exactly as their own regexes do,
    /// so that skipping a scan never loses a reference or a retry hint.
    #[test]
    fn auxiliary_patterns_match_where_their_regexes_do() {
        let c = Classifier::builtin();
        assert!(
            c.aux,
            "the built-in set has room for the auxiliary patterns"
        );
        let mut texts: Vec<String> = Vec::new();
        for file in [
            include_str!("../../tests/corpus/replies.toml"),
            include_str!("../../tests/corpus/blind.toml"),
            include_str!("../../tests/corpus/blind2.toml"),
        ] {
            let v: toml::Value = toml::from_str(file).unwrap_or(toml::Value::Boolean(false));
            for r in v
                .get("reply")
                .and_then(|r| r.as_array())
                .into_iter()
                .flatten()
            {
                texts.extend(r.get("text").and_then(|t| t.as_str()).map(str::to_string));
            }
        }
        texts.extend(c.rules().iter().filter_map(|r| r.example.clone()));
        texts.extend(
            [
                "Greylisted, please try again in 300 seconds",
                "Come back in 00:05:00",
                "[TSS04] Messages from 192.0.2.1 temporarily deferred",
                "tss04 lowercase is not a reference",
                "(S775) and AS(201806281) and RL000010 and OFR_999",
                "",
            ]
            .map(str::to_string),
        );
        assert!(texts.len() > 300, "{}", texts.len());
        let n = c.rules.len();
        for t in &texts {
            let r = parse_reply(t);
            let window = window(&r.text, MATCH_WINDOW);
            let m = c.set.matches(window.as_bytes());
            assert_eq!(
                m.matched(n),
                REFERENCE.is_match(window.as_bytes()),
                "reference: {t:?}"
            );
            assert_eq!(
                m.matched(n + 1),
                RETRY_HINT.is_match(window.as_bytes()),
                "retry hint: {t:?}"
            );
            assert!(m.iter().all(|i| i < n + 2));
        }
    }

    #[test]
    fn labels_round_trip() {
        for c in Cause::ALL {
            assert_eq!(c.as_str().parse::<Cause>(), Ok(c));
            assert_eq!(
                serde_json::to_string(&c).expect("json"),
                format!("\"{}\"", c.as_str())
            );
        }
        for a in Action::ALL {
            assert_eq!(a.as_str().parse::<Action>(), Ok(a));
            assert_eq!(
                serde_json::to_string(&a).expect("json"),
                format!("\"{}\"", a.as_str())
            );
        }
        assert_eq!(
            serde_json::to_string(&Origin::Local).expect("json"),
            "\"local\""
        );
    }

    #[test]
    fn retry_hints() {
        let cases = [
            ("Greylisted, please try again in 5 minutes", Some(300)),
            (
                "Greylisting in action, please come back in 00:05:00",
                Some(300),
            ),
            ("Try again later", None),
            ("Please try again later", None),
            ("come back in 300 seconds", Some(300)),
            ("Retry after 1 hour", Some(3600)),
            ("greylisted for 60 seconds", Some(60)),
            ("Please retry in 2 min", Some(120)),
        ];
        for (t, want) in cases {
            assert_eq!(retry_hint_seconds(t), want, "{t}");
        }
    }

    #[test]
    fn enhanced_patterns() {
        let p = EnhancedPattern::parse("4.7.500-699").expect("valid");
        assert!(p.matches(EnhancedCode::new(4, 7, 650)));
        assert!(!p.matches(EnhancedCode::new(4, 7, 700)));
        assert!(
            EnhancedPattern::parse("4.*.*")
                .expect("valid")
                .matches(EnhancedCode::new(4, 2, 2))
        );
        assert!(EnhancedPattern::parse("3.1.1").is_none());
    }

    #[test]
    fn builtin_rules_compile() {
        let c = Classifier::build(None).expect("built-in rules compile");
        assert!(c.rule_count() > 50);
    }

    #[test]
    fn five_hundreds_are_permanent() {
        let c = Classifier::builtin();
        let r = c.classify_text("550 4.7.1 Message temporarily deferred", None);
        assert_eq!(r.cause, Cause::Permanent);
        assert_eq!(r.action, Action::None);
    }

    #[test]
    fn user_rules_win_and_errors_name_lines() {
        let user = "[[rule]]\nid = \"mine\"\npattern = 'try again later'\ncause = \"rate_limit\"\nexplanation = \"ours\"\n";
        let c = Classifier::with_user_rules(user, "custom.toml").expect("valid");
        let r = c.classify_text("421 4.7.0 Try again later, closing connection.", None);
        assert_eq!(r.rule.as_deref(), Some("mine"));
        assert_eq!(r.cause, Cause::RateLimit);

        // A user rule with a built-in id replaces the built-in one.
        let replace = "[[rule]]\nid = \"postgrey\"\npattern = 'Greylisted, see http://postgrey'\ncause = \"policy_other\"\nexplanation = \"ours\"\n";
        let c = Classifier::with_user_rules(replace, "custom.toml").expect("valid");
        assert_eq!(c.rule_count(), Classifier::builtin().rule_count());
        let r = c.classify_text("450 4.2.0 <a@b>: Recipient address rejected: Greylisted, see http://postgrey.schweikert.ch/help/b.html", None);
        assert_eq!(
            (r.rule.as_deref(), r.cause),
            (Some("postgrey"), Cause::PolicyOther)
        );

        // An example its own pattern does not match is a broken rule.
        let bad = "[[rule]]\nid = \"x\"\npattern = 'abc'\ncause = \"rate_limit\"\nexplanation = \"e\"\nexample = \"421 xyz\"\n";
        let e = Classifier::with_user_rules(bad, "custom.toml").expect_err("broken");
        assert!(e.to_string().starts_with("custom.toml:3:"), "{e}");

        let bad = "[[rule]]\nid = \"x\"\npattern = '(unclosed'\ncause = \"rate_limit\"\nexplanation = \"e\"\n";
        let e = Classifier::with_user_rules(bad, "custom.toml").expect_err("broken");
        assert!(e.to_string().starts_with("custom.toml:3:"), "{e}");

        let bad = "[[rule]]\nid = \"x\"\npattern = 'a'\ncause = \"bogus\"\nexplanation = \"e\"\n";
        let e = Classifier::with_user_rules(bad, "custom.toml").expect_err("broken");
        assert!(e.to_string().starts_with("custom.toml:4:"), "{e}");

        let bad = "[[rule]\nid = 1";
        let e = Classifier::with_user_rules(bad, "custom.toml").expect_err("broken");
        assert!(e.to_string().starts_with("custom.toml:1:"), "{e}");
    }
}
