//! ESP webhook adapters: each provider's own payload turned into the core's events, and
//! the provider's signature checked over the exact bytes it sent.
//!
//! Every adapter is a pure `parse(body, ctx) -> Vec<Parsed>`; every verifier a pure
//! function of the raw body, the headers, the source's key and the current time. The
//! HTTP routes own the state (SNS certificate cache, token stores) and the responses.
//! Layouts and schemes follow `shared/formats.md` §5–§9.

pub mod brevo;
pub mod mailgun;
pub mod mandrill;
pub mod postal;
pub mod sendgrid;
pub mod ses;
pub mod sparkpost;

use super::json::{Context, classify_parsed};
use crate::event::{EventType, NewEvent};
use crate::incidents::destination;
use crate::smtp::{EnhancedCode, Stage, parse_reply};
use axum::http::HeaderMap;
use base64::Engine;
use chrono::{DateTime, TimeDelta, Utc};
use serde_json::Value;
use std::net::IpAddr;

/// Longest accepted response text; real replies, even multi-line, stay far below.
const MAX_RESPONSE_BYTES: usize = 64 * 1024;
const MAX_FIELD_BYTES: usize = 1024;

/// The providers, by the name used in `POST /api/v1/ingest/{format}` and `--format`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Esp {
    Sendgrid,
    Mailgun,
    Ses,
    Postal,
    Sparkpost,
    Mandrill,
    Brevo,
}

impl Esp {
    pub const ALL: [Esp; 7] = [
        Esp::Sendgrid,
        Esp::Mailgun,
        Esp::Ses,
        Esp::Postal,
        Esp::Sparkpost,
        Esp::Mandrill,
        Esp::Brevo,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Esp::Sendgrid => "sendgrid",
            Esp::Mailgun => "mailgun",
            Esp::Ses => "ses",
            Esp::Postal => "postal",
            Esp::Sparkpost => "sparkpost",
            Esp::Mandrill => "mandrill",
            Esp::Brevo => "brevo",
        }
    }

    /// Runs this provider's adapter over a request body.
    pub fn parse(self, body: &[u8], ctx: &Context<'_>) -> Vec<Parsed> {
        match self {
            Esp::Sendgrid => sendgrid::parse(body, ctx),
            Esp::Mailgun => mailgun::parse(body, ctx),
            Esp::Ses => ses::parse(body, ctx),
            Esp::Postal => postal::parse(body, ctx),
            Esp::Sparkpost => sparkpost::parse(body, ctx),
            Esp::Mandrill => mandrill::parse(body, ctx),
            Esp::Brevo => brevo::parse(body, ctx),
        }
    }
}

impl std::fmt::Display for Esp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Esp {
    type Err = String;
    fn from_str(s: &str) -> Result<Esp, String> {
        Esp::ALL
            .into_iter()
            .find(|e| e.as_str() == s)
            .ok_or_else(|| format!("{s:?} is not an ESP webhook format"))
    }
}

/// What one item of a webhook payload became.
#[derive(Debug)]
// Most items are events and the vector is consumed at once: boxing every event would
// cost an allocation each for no gain.
#[allow(clippy::large_enum_variant)]
pub enum Parsed {
    Event(NewEvent),
    /// A record type Deferwatch does not track (opens, clicks, sends…): counted and
    /// acknowledged, so that the provider never retries it forever.
    Ignored {
        kind: String,
    },
    /// An item that could not be read; `raw` is kept for the dead-letter table.
    Rejected {
        index: usize,
        field: Option<String>,
        reason: String,
        raw: String,
    },
    /// SNS asks to confirm a subscription: the route GETs `subscribe_url`, but only
    /// after the message's signature has been verified.
    SubscriptionConfirmation {
        topic_arn: String,
        subscribe_url: String,
        token: String,
    },
}

/// Why a webhook's authenticity could not be established; the route answers 401.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("missing {0}")]
    Missing(String),
    #[error("malformed {what}: {reason}")]
    Malformed { what: String, reason: String },
    #[error("the configured key is unusable: {0}")]
    BadKey(String),
    #[error("the signature does not match the payload")]
    Mismatch,
    #[error(
        "signed timestamp {timestamp} is {age_secs} s away from the server clock; the window is {tolerance_secs} s"
    )]
    Replayed {
        timestamp: i64,
        age_secs: i64,
        tolerance_secs: i64,
    },
    #[error("signing certificate refused: {0}")]
    Certificate(String),
    #[error("bad credentials: {0}")]
    Credentials(String),
    #[error("signed token already used inside the replay window: {0}")]
    Reused(String),
}

fn malformed(what: &str, reason: impl ToString) -> SignatureError {
    SignatureError::Malformed {
        what: what.to_string(),
        reason: reason.to_string(),
    }
}

/// A header's value as text; absent and non-ASCII values are both "missing" to a verifier.
fn header<'h>(headers: &'h HeaderMap, name: &str) -> Result<&'h str, SignatureError> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .ok_or_else(|| SignatureError::Missing(format!("header {name}")))
}

/// Refuses a signed timestamp outside `now ± tolerance`: a captured request replayed
/// later, or one from a sender whose clock is badly off.
pub fn check_timestamp(
    timestamp: i64,
    now: DateTime<Utc>,
    tolerance: TimeDelta,
) -> Result<(), SignatureError> {
    let age = now.timestamp().saturating_sub(timestamp);
    if age.unsigned_abs() > tolerance.num_seconds().unsigned_abs() {
        return Err(SignatureError::Replayed {
            timestamp,
            age_secs: age,
            tolerance_secs: tolerance.num_seconds(),
        });
    }
    Ok(())
}

fn b64(text: &str, what: &str) -> Result<Vec<u8>, SignatureError> {
    base64::engine::general_purpose::STANDARD
        .decode(text.trim())
        .map_err(|e| malformed(what, format!("not base64 ({e})")))
}

/// Compares secrets without leaking where they differ through timing; shared with the
/// dashboard's CSRF check.
pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    a.ct_eq(b).into()
}

/// SparkPost and Brevo do not sign: they authenticate with HTTP Basic credentials set
/// on the webhook (Brevo puts them in the URL, which clients send as this header).
pub fn verify_basic_auth(
    headers: &HeaderMap,
    user: &str,
    password: &str,
) -> Result<(), SignatureError> {
    let value = header(headers, "authorization")?;
    let encoded = value
        .strip_prefix("Basic ")
        .or_else(|| value.strip_prefix("basic "))
        .ok_or_else(|| SignatureError::Credentials("Authorization is not Basic".into()))?;
    let decoded = b64(encoded, "Basic credentials")?;
    let expected = format!("{user}:{password}");
    if constant_time_eq(&decoded, expected.as_bytes()) {
        Ok(())
    } else {
        Err(SignatureError::Credentials(
            "Basic credentials do not match".into(),
        ))
    }
}

/// Bearer token on the webhook (Brevo's token option; SparkPost's and SendGrid's
/// OAuth2 send the token they fetched, which the operator then configures here).
pub fn verify_bearer(headers: &HeaderMap, token: &str) -> Result<(), SignatureError> {
    let value = header(headers, "authorization")?;
    let got = value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("bearer "))
        .ok_or_else(|| SignatureError::Credentials("Authorization is not Bearer".into()))?;
    if constant_time_eq(got.trim().as_bytes(), token.as_bytes()) {
        Ok(())
    } else {
        Err(SignatureError::Credentials(
            "bearer token does not match".into(),
        ))
    }
}

/// The fields a provider's item yields, before validation and classification.
#[derive(Default)]
struct Fields {
    kind: Option<EventType>,
    time: Option<DateTime<Utc>>,
    recipient: Option<String>,
    sender: Option<String>,
    source_ip: Option<String>,
    mx_host: Option<String>,
    mx_ip: Option<String>,
    response: Option<String>,
    code: Option<u16>,
    enhanced: Option<String>,
    attempt: Option<i64>,
    pool: Option<String>,
    message_id: Option<String>,
    /// The provider's own event id: the dedupe key when present.
    ext_id: Option<String>,
}

type Reject = (Option<String>, String);

fn reject(field: &str, reason: impl Into<String>) -> Reject {
    (Some(field.to_string()), reason.into())
}

fn clean(v: Option<String>, field: &str, max: usize) -> Result<Option<String>, Reject> {
    match v.as_deref().map(str::trim) {
        None | Some("") => Ok(None),
        Some(s) if s.len() > max => Err(reject(field, format!("longer than {max} bytes"))),
        // PostgreSQL text cannot hold NUL, and no provider field legitimately carries one.
        Some(s) if s.contains('\0') => Err(reject(field, "contains a NUL character")),
        Some(s) => Ok(Some(s.to_string())),
    }
}

/// Secondary fields: a malformed host name is dropped, not a rejection.
fn host_name(s: &str) -> Option<String> {
    super::json::host_name(s.trim(), "").ok()
}

/// An IP in any of the spellings providers use (`[ip]`, `IPv6:…`); anything else is
/// dropped rather than rejected, since these are secondary fields.
fn ip(s: Option<&str>) -> Option<String> {
    let s = s?.trim();
    let bare = s.trim_start_matches('[').trim_end_matches(']');
    let bare = bare.strip_prefix("IPv6:").unwrap_or(bare);
    bare.parse::<IpAddr>().ok().map(|a| a.to_string())
}

/// Validates and classifies one provider item, like the native adapter does.
fn build(f: Fields, raw: &str, ctx: &Context<'_>) -> Result<NewEvent, Reject> {
    let kind = f.kind.ok_or_else(|| reject("event", "no event type"))?;
    let time = f
        .time
        .ok_or_else(|| reject("timestamp", "missing or not a time"))?;
    if time > ctx.now + ctx.max_future_skew {
        return Err(reject(
            "timestamp",
            format!(
                "{} is more than {} ahead of the server clock",
                time.to_rfc3339(),
                crate::incidents::engine::human(ctx.max_future_skew)
            ),
        ));
    }
    let recipient = clean(f.recipient, "recipient", MAX_FIELD_BYTES)?
        .ok_or_else(|| reject("recipient", "required: the recipient address"))?;
    let recipient = recipient.trim_start_matches('<').trim_end_matches('>');
    let (local, domain) = recipient
        .rsplit_once('@')
        .filter(|(l, _)| !l.is_empty())
        .ok_or_else(|| {
            reject(
                "recipient",
                format!("{recipient:?} is not an email address"),
            )
        })?;
    let recipient_domain = host_name(domain)
        .ok_or_else(|| reject("recipient", format!("{domain:?} is not a host name")))?;
    let recipient = format!("{local}@{recipient_domain}");
    let sender = clean(f.sender, "sender", MAX_FIELD_BYTES)?
        .map(|s| s.trim_start_matches('<').trim_end_matches('>').to_string());
    let response = clean(f.response, "response", MAX_RESPONSE_BYTES)?;
    // As in the native format: a failure with neither reply nor code says nothing the
    // incident engine could use.
    if kind != EventType::Delivered && response.is_none() && f.code.is_none() {
        return Err(reject(
            "response",
            format!("a {kind} event needs the SMTP response (or at least its code)"),
        ));
    }
    let reply = response.as_deref().map(parse_reply);
    // Codes outside 200-599 (Mailgun's 0 for some internal failures) say nothing.
    let code = f
        .code
        .filter(|c| (200..600).contains(c))
        .or(reply.as_ref().and_then(|r| r.code));
    let enhanced = f
        .enhanced
        .as_deref()
        .and_then(|e| e.parse::<EnhancedCode>().ok())
        .or(reply.as_ref().and_then(|r| r.enhanced));
    let stage = reply.as_ref().map_or(Stage::Unknown, |r| r.stage);
    let mut mx_host = f.mx_host.as_deref().and_then(host_name);
    let mut mx_ip = ip(f.mx_ip.as_deref());
    if mx_host.is_none() {
        mx_host = reply
            .as_ref()
            .and_then(|r| r.remote_host.as_deref())
            .and_then(host_name);
    }
    if mx_ip.is_none() {
        mx_ip = ip(reply.as_ref().and_then(|r| r.remote_ip.as_deref()));
    }
    let attempt = f
        .attempt
        .map(|a| {
            i32::try_from(a)
                .ok()
                .filter(|a| *a >= 0)
                .ok_or_else(|| reject("attempt", "must be a non-negative integer"))
        })
        .transpose()?;
    let classification = (kind != EventType::Delivered).then(|| {
        classify_parsed(
            ctx.classifier,
            reply,
            code,
            enhanced,
            stage,
            mx_host.as_deref(),
        )
    });
    let ext_id = clean(f.ext_id, "id", 256)?;
    let dedupe_key = super::json::dedupe_key(
        ctx.source_id,
        ext_id.as_deref(),
        raw,
        kind,
        time,
        &recipient,
    );
    Ok(NewEvent {
        source_id: ctx.source_id,
        ext_id,
        dedupe_key,
        kind,
        time,
        received_at: ctx.now,
        destination: destination(mx_host.as_deref(), &recipient_domain),
        recipient,
        recipient_domain,
        sender,
        source_ip: ip(f.source_ip.as_deref()),
        helo: None,
        mx_host,
        mx_ip,
        response,
        code,
        enhanced: enhanced.map(|e| e.to_string()),
        stage,
        classification,
        attempt,
        pool: clean(f.pool, "pool", 255)?,
        message_id: clean(f.message_id, "message_id", MAX_FIELD_BYTES)?,
        dkim_selector: None,
        raw: raw.to_string(),
    })
}

/// Turns a build result into the item's outcome.
fn outcome(index: usize, f: Fields, raw: &str, ctx: &Context<'_>) -> Parsed {
    match build(f, raw, ctx) {
        Ok(ev) => Parsed::Event(ev),
        Err((field, reason)) => Parsed::Rejected {
            index,
            field,
            reason,
            raw: raw.to_string(),
        },
    }
}

/// A whole body that cannot be read: one rejection carrying it.
fn body_rejected(body: &[u8], reason: impl Into<String>) -> Vec<Parsed> {
    vec![Parsed::Rejected {
        index: 0,
        field: None,
        reason: reason.into(),
        raw: String::from_utf8_lossy(body).into_owned(),
    }]
}

/// The body as a JSON array, each item with its exact text (kept as the event's raw).
fn json_items(body: &[u8]) -> Result<Vec<(String, Value)>, String> {
    let raw: Vec<&serde_json::value::RawValue> =
        serde_json::from_slice(body).map_err(|e| format!("not a JSON array of events: {e}"))?;
    raw.into_iter()
        .map(|r| {
            let v: Value = serde_json::from_str(r.get()).map_err(|e| e.to_string())?;
            Ok((r.get().to_string(), v))
        })
        .collect()
}

/// A string field, or a number written as one: providers mix both for the same field.
fn s(v: &Value, key: &str) -> Option<String> {
    match v.get(key)? {
        Value::String(t) => Some(t.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// An integer field given as a number or a numeric string (SendGrid's `attempt`,
/// SparkPost's everything).
fn int(v: &Value, key: &str) -> Option<i64> {
    match v.get(key)? {
        Value::Number(n) => n.as_i64().or_else(|| n.as_f64().map(|f| f as i64)),
        Value::String(t) => t.trim().parse().ok(),
        _ => None,
    }
}

/// Unix seconds, integer or fractional, as a number or a string.
fn unix_time(v: &Value, key: &str) -> Option<DateTime<Utc>> {
    let secs = match v.get(key)? {
        Value::Number(n) => n.as_f64()?,
        Value::String(t) => t.trim().parse::<f64>().ok()?,
        _ => return None,
    };
    if !secs.is_finite() {
        return None;
    }
    DateTime::from_timestamp_millis((secs * 1000.0).round() as i64)
}

fn rfc3339(v: &Value, key: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(v.get(key)?.as_str()?)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// A reply reported as a separate code and text, joined the way an MTA writes it so
/// that the enhanced code and the wording stay where the reply parser looks for them.
fn join_reply(code: Option<i64>, text: Option<&str>) -> Option<String> {
    let text = text.map(str::trim).filter(|t| !t.is_empty());
    match (code.filter(|c| (200..600).contains(c)), text) {
        (Some(c), Some(t)) if t.starts_with(&c.to_string()) => Some(t.to_string()),
        (Some(c), Some(t)) => Some(format!("{c} {t}")),
        (Some(c), None) => Some(c.to_string()),
        (None, Some(t)) => Some(t.to_string()),
        (None, None) => None,
    }
}

/// `smtp; 421 4.4.1 …` (DSN diagnostic-code style, SES and Mandrill) → the reply.
fn strip_diag_type(s: &str) -> &str {
    let t = s.trim();
    match t.split_once(';') {
        Some((ty, rest)) if ty.trim().eq_ignore_ascii_case("smtp") => rest.trim(),
        _ => t,
    }
}

#[cfg(test)]
mod tests;
