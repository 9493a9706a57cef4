//! SMTP replies: parsing, stage and classification. Pure: no I/O, no HTTP, no SQL.
//!
//! First cut, replaced by the rules-table classifier; the seam is `Classifier::classify`.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct EnhancedCode {
    pub class: u8,
    pub subject: u16,
    pub detail: u16,
}

impl fmt::Display for EnhancedCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.class, self.subject, self.detail)
    }
}

impl FromStr for EnhancedCode {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        let mut it = s.split('.');
        let class: u8 = it.next().ok_or(())?.parse().map_err(|_| ())?;
        let subject: u16 = it.next().ok_or(())?.parse().map_err(|_| ())?;
        let detail: u16 = it.next().ok_or(())?.parse().map_err(|_| ())?;
        if it.next().is_some() || !matches!(class, 2 | 4 | 5) || subject > 999 || detail > 999 {
            return Err(());
        }
        Ok(EnhancedCode {
            class,
            subject,
            detail,
        })
    }
}

impl Serialize for EnhancedCode {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for EnhancedCode {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse()
            .map_err(|_| serde::de::Error::custom("not an enhanced status code"))
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    Connect,
    Ehlo,
    Starttls,
    Mail,
    Rcpt,
    Data,
    EndOfData,
    Unknown,
}

impl Stage {
    pub const ALL: [Stage; 8] = [
        Stage::Connect,
        Stage::Ehlo,
        Stage::Starttls,
        Stage::Mail,
        Stage::Rcpt,
        Stage::Data,
        Stage::EndOfData,
        Stage::Unknown,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Connect => "connect",
            Stage::Ehlo => "ehlo",
            Stage::Starttls => "starttls",
            Stage::Mail => "mail",
            Stage::Rcpt => "rcpt",
            Stage::Data => "data",
            Stage::EndOfData => "end_of_data",
            Stage::Unknown => "unknown",
        }
    }
}

impl FromStr for Stage {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        let s = s.trim().to_ascii_lowercase();
        Ok(match s.as_str() {
            "connect" | "greeting" | "banner" | "connection" => Stage::Connect,
            "ehlo" | "helo" => Stage::Ehlo,
            "starttls" => Stage::Starttls,
            "mail" | "mail from" => Stage::Mail,
            "rcpt" | "rcpt to" => Stage::Rcpt,
            "data" => Stage::Data,
            "end_of_data" | "end of data" | "dot" => Stage::EndOfData,
            "unknown" => Stage::Unknown,
            _ => return Err(()),
        })
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    pub code: Option<u16>,
    pub enhanced: Option<EnhancedCode>,
    pub text: String,
    pub stage: Stage,
    pub remote_host: Option<String>,
    pub remote_ip: Option<String>,
}

impl Reply {
    pub fn is_temporary(&self) -> bool {
        matches!(self.code, Some(400..=499))
    }
    pub fn is_permanent(&self) -> bool {
        matches!(self.code, Some(500..=599))
    }
}

pub fn parse_reply(input: &str) -> Reply {
    let lower = input.to_ascii_lowercase();
    let stage = if lower.contains("rcpt to") {
        Stage::Rcpt
    } else if lower.contains("end of data") || lower.contains("end of message") {
        Stage::EndOfData
    } else if lower.contains("mail from") {
        Stage::Mail
    } else if lower.contains("greeting") || lower.contains("initial connection") {
        Stage::Connect
    } else {
        Stage::Unknown
    };
    let mut code = None;
    let mut enhanced = None;
    let mut text = input.trim().to_string();
    for (i, w) in input.split_whitespace().enumerate() {
        let w = w.trim_start_matches("smtp;");
        let digits = w.get(..3).filter(|d| d.bytes().all(|b| b.is_ascii_digit()));
        if let Some(d) = digits
            && (w.len() == 3 || w.as_bytes().get(3) == Some(&b'-'))
            && let Ok(c) = d.parse::<u16>()
            && (200..600).contains(&c)
        {
            code = Some(c);
            if let Some(e) = w.get(4..).and_then(|e| e.parse().ok()) {
                enhanced = Some(e);
            }
            let rest: Vec<&str> = input.split_whitespace().skip(i + 1).collect();
            if let Some(e) = rest.first().and_then(|e| e.parse().ok()) {
                enhanced = Some(e);
                text = rest[1..].join(" ");
            } else {
                text = rest.join(" ");
            }
            break;
        }
    }
    Reply {
        code,
        enhanced,
        text,
        stage,
        remote_host: None,
        remote_ip: None,
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
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
    pub fn default_action(self) -> Action {
        match self {
            Cause::ConnectionLimit => Action::ReduceConcurrency,
            Cause::RateLimit => Action::ReduceRate,
            Cause::Reputation => Action::PauseAndInvestigateReputation,
            Cause::Authentication => Action::FixAuthentication,
            Cause::TlsRequired => Action::EnableTls,
            Cause::Permanent => Action::None,
            _ => Action::RetryNormally,
        }
    }
}

impl FromStr for Cause {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        Cause::ALL.into_iter().find(|c| c.as_str() == s).ok_or(())
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

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Origin {
    Remote,
    Local,
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

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct RulesError(String);

pub struct Classifier;

impl Classifier {
    pub fn builtin() -> Classifier {
        Classifier
    }
    pub fn rule_count(&self) -> usize {
        0
    }
    pub fn classify_text(&self, text: &str, mx_host: Option<&str>) -> Classification {
        self.classify(&parse_reply(text), mx_host)
    }
    pub fn classify(&self, reply: &Reply, mx_host: Option<&str>) -> Classification {
        let t = reply.text.to_ascii_lowercase();
        let cause = if reply.is_permanent() {
            Cause::Permanent
        } else if t.contains("greylist") {
            Cause::Greylisting
        } else if t.contains("too many connections") {
            Cause::ConnectionLimit
        } else if t.contains("rate") {
            Cause::RateLimit
        } else if t.contains("reputation") || t.contains("blocked") {
            Cause::Reputation
        } else if t.contains("timed out") || t.contains("connection refused") {
            Cause::Network
        } else {
            Cause::ServerBusy
        };
        Classification {
            code: reply.code,
            enhanced: reply.enhanced,
            cause,
            action: cause.default_action(),
            provider: mx_host
                .and_then(provider_from_mx)
                .map(|p| p.name.to_string()),
            reference: None,
            explanation: String::new(),
            stage: reply.stage,
            origin: Origin::Remote,
            retry_hint_seconds: None,
            rule: None,
        }
    }
}

pub struct Provider {
    pub key: &'static str,
    pub name: &'static str,
}

static PROVIDERS: &[(Provider, &[&str], &[&str])] = &[
    (
        Provider {
            key: "google",
            name: "Google",
        },
        &["google.com", "googlemail.com"],
        &["gmail.com", "googlemail.com"],
    ),
    (
        Provider {
            key: "microsoft",
            name: "Microsoft",
        },
        &["protection.outlook.com", "hotmail.com", "outlook.com"],
        &["outlook.com", "hotmail.com", "live.com", "msn.com"],
    ),
    (
        Provider {
            key: "yahoo",
            name: "Yahoo",
        },
        &["yahoodns.net"],
        &["yahoo.com", "aol.com", "ymail.com"],
    ),
];

fn ends_with_label(host: &str, suffix: &str) -> bool {
    host == suffix || host.ends_with(&format!(".{suffix}"))
}

pub fn provider_from_mx(mx_host: &str) -> Option<&'static Provider> {
    let h = mx_host.trim_end_matches('.').to_ascii_lowercase();
    PROVIDERS
        .iter()
        .find(|(_, mx, _)| mx.iter().any(|s| ends_with_label(&h, s)))
        .map(|(p, _, _)| p)
}

pub fn provider_from_domain(domain: &str) -> Option<&'static Provider> {
    let d = domain.trim_end_matches('.').to_ascii_lowercase();
    PROVIDERS
        .iter()
        .find(|(_, _, doms)| doms.contains(&d.as_str()))
        .map(|(p, _, _)| p)
}

pub fn provider_from_text(_text: &str) -> Option<&'static Provider> {
    None
}
