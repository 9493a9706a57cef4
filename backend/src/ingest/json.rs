//! The native event format: one JSON object, a JSON array of them, or NDJSON.
//! Turns each item into a classified `NewEvent`, or a rejection naming the field.

use super::{IngestError, Rejection};
use crate::event::{EventType, NewEvent};
use crate::incidents::destination;
use crate::smtp::{Classifier, EnhancedCode, Stage, parse_reply};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::value::RawValue;
use sha2::{Digest, Sha256};
use std::borrow::Cow;
use std::net::IpAddr;

/// Longest accepted SMTP response text; real multi-line replies stay far below.
const MAX_RESPONSE_BYTES: usize = 64 * 1024;
const MAX_FIELD_BYTES: usize = 1024;

/// Splits a request body into items, each with its raw text.
pub fn split_body(
    body: &str,
    ndjson_hint: bool,
    max_items: usize,
) -> Result<Vec<&str>, IngestError> {
    let trimmed = body.trim_start();
    if trimmed.is_empty() {
        return Err(IngestError::Body("the request body is empty".into()));
    }
    let items: Vec<&str> = if !ndjson_hint && trimmed.starts_with('[') {
        let raw: Vec<&RawValue> = serde_json::from_str(body)
            .map_err(|e| IngestError::Body(format!("not a JSON array of events: {e}")))?;
        raw.into_iter().map(RawValue::get).collect()
    } else if !ndjson_hint && is_single_value(body) {
        vec![body.trim()]
    } else {
        body.lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect()
    };
    if items.len() > max_items {
        return Err(IngestError::TooManyEvents {
            got: items.len(),
            max: max_items,
        });
    }
    Ok(items)
}

/// True when the body holds exactly one JSON value (otherwise it is NDJSON).
fn is_single_value(body: &str) -> bool {
    let mut de = serde_json::Deserializer::from_str(body).into_iter::<serde::de::IgnoredAny>();
    matches!(de.next(), Some(Ok(_))) && de.next().is_none()
}

#[derive(Deserialize)]
#[serde(untagged)]
enum IdValue<'a> {
    #[serde(borrow)]
    Str(Cow<'a, str>),
    Num(serde_json::Number),
}

#[derive(Deserialize)]
#[serde(untagged)]
enum CodeValue<'a> {
    Num(u64),
    #[serde(borrow)]
    Str(Cow<'a, str>),
}

#[derive(Deserialize)]
struct EventInput<'a> {
    #[serde(borrow, default)]
    id: Option<IdValue<'a>>,
    #[serde(rename = "type", borrow, default)]
    kind: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    timestamp: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    recipient: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    sender: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    source_ip: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    helo: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    mx_host: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    mx_ip: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    response: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    code: Option<CodeValue<'a>>,
    #[serde(borrow, default)]
    enhanced: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    stage: Option<Cow<'a, str>>,
    #[serde(default)]
    attempt: Option<i64>,
    #[serde(borrow, default)]
    pool: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    message_id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    dkim_selector: Option<Cow<'a, str>>,
}

/// What the adapter needs from the server around it.
pub struct Context<'a> {
    pub source_id: i64,
    pub classifier: &'a Classifier,
    pub now: DateTime<Utc>,
    pub max_future_skew: chrono::TimeDelta,
}

pub(crate) fn reject(field: &str, reason: impl Into<String>) -> Rejection {
    Rejection {
        field: Some(field.to_string()),
        reason: reason.into(),
        ext_id: None,
    }
}

/// Validates every item of a request: valid ones become events, the others
/// rejections, each kept with its raw text for the dead-letter table.
pub fn parse_batch(
    items: &[&str],
    ctx: &Context<'_>,
) -> (crate::store::WriteBatch, Vec<(usize, Rejection)>) {
    let mut batch = crate::store::WriteBatch::default();
    let mut rejected = Vec::new();
    for (index, raw) in items.iter().enumerate() {
        match parse_event(raw, ctx) {
            Ok(ev) => batch.events.push(ev),
            Err(rejection) => {
                batch.rejects.push(crate::store::NewReject {
                    source_id: Some(ctx.source_id),
                    received_at: ctx.now,
                    index: Some(index),
                    field: rejection.field.clone(),
                    reason: rejection.reason.clone(),
                    raw: raw.to_string(),
                });
                rejected.push((index, rejection));
            }
        }
    }
    (batch, rejected)
}

/// Validates and classifies one item.
pub fn parse_event(raw: &str, ctx: &Context<'_>) -> Result<NewEvent, Rejection> {
    let mut de = serde_json::Deserializer::from_str(raw);
    let input: EventInput<'_> = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if inner.is_syntax() || inner.is_eof() || path.is_empty() || path == "." || path == "?" {
            Rejection {
                field: None,
                reason: if inner.is_syntax() || inner.is_eof() {
                    format!("invalid JSON: {inner}")
                } else {
                    format!("an event must be a JSON object: {inner}")
                },
                ext_id: None,
            }
        } else {
            reject(&path, format!("wrong type: {inner}"))
        }
    })?;
    let ext_id = match &input.id {
        Some(IdValue::Str(s)) => Some(s.to_string()),
        Some(IdValue::Num(n)) => Some(n.to_string()),
        None => None,
    };
    normalize(input, raw, ctx).map_err(|mut r| {
        r.ext_id = ext_id;
        r
    })
}

fn text<'a>(
    v: &'a Option<Cow<'a, str>>,
    field: &str,
    max: usize,
) -> Result<Option<&'a str>, Rejection> {
    match v.as_deref().map(str::trim) {
        None | Some("") => Ok(None),
        Some(s) if s.len() > max => Err(reject(field, format!("longer than {max} bytes"))),
        // PostgreSQL text cannot hold NUL, and no MTA field legitimately carries one.
        Some(s) if s.contains('\0') => Err(reject(field, "contains a NUL character")),
        Some(s) => Ok(Some(s)),
    }
}

pub(crate) fn host_name(s: &str, field: &str) -> Result<String, Rejection> {
    let h = s.trim_end_matches('.').to_ascii_lowercase();
    let ok = !h.is_empty()
        && h.len() <= 253
        && h.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.chars()
                    .all(|c| c.is_alphanumeric() || c == '-' || c == '_')
        });
    if ok {
        Ok(h)
    } else {
        Err(reject(field, format!("{s:?} is not a host name")))
    }
}

fn ip(s: Option<&str>, field: &str) -> Result<Option<String>, Rejection> {
    s.map(|s| {
        // Postfix and others write [203.0.113.5]; IPv6 may come as IPv6:2001:db8::1.
        let bare = s.trim_start_matches('[').trim_end_matches(']');
        let bare = bare.strip_prefix("IPv6:").unwrap_or(bare);
        bare.parse::<IpAddr>()
            .map(|a| a.to_string())
            .map_err(|_| reject(field, format!("{s:?} is not an IP address")))
    })
    .transpose()
}

fn normalize(i: EventInput<'_>, raw: &str, ctx: &Context<'_>) -> Result<NewEvent, Rejection> {
    let kind_text = text(&i.kind, "type", 32)?
        .ok_or_else(|| reject("type", "required: one of deferred, delivered, bounced"))?;
    let kind: EventType = kind_text.parse().map_err(|_| {
        reject(
            "type",
            format!("{kind_text:?} is not one of deferred, delivered, bounced"),
        )
    })?;
    let ts_text = text(&i.timestamp, "timestamp", 64)?.ok_or_else(|| {
        reject(
            "timestamp",
            "required: an RFC 3339 time such as 2026-11-23T01:27:04Z",
        )
    })?;
    let time = DateTime::parse_from_rfc3339(ts_text)
        .map_err(|e| {
            reject(
                "timestamp",
                format!("{ts_text:?} is not an RFC 3339 time: {e}"),
            )
        })?
        .with_timezone(&Utc);
    if time > ctx.now + ctx.max_future_skew {
        return Err(reject(
            "timestamp",
            format!(
                "{ts_text} is more than {} ahead of the server clock",
                crate::incidents::engine::human(ctx.max_future_skew)
            ),
        ));
    }
    let recipient = text(&i.recipient, "recipient", MAX_FIELD_BYTES)?
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
    let recipient_domain = host_name(domain, "recipient")?;
    let recipient = format!("{local}@{recipient_domain}");
    let sender = text(&i.sender, "sender", MAX_FIELD_BYTES)?
        .map(|s| s.trim_start_matches('<').trim_end_matches('>').to_string());
    let source_ip = ip(text(&i.source_ip, "source_ip", 64)?, "source_ip")?;
    let helo = text(&i.helo, "helo", 255)?.map(str::to_string);
    let mut mx_host = text(&i.mx_host, "mx_host", 255)?
        .map(|h| host_name(h, "mx_host"))
        .transpose()?;
    let mut mx_ip = ip(text(&i.mx_ip, "mx_ip", 64)?, "mx_ip")?;
    let response = text(&i.response, "response", MAX_RESPONSE_BYTES)?;

    let code = match &i.code {
        None => None,
        Some(CodeValue::Num(n)) => Some(*n),
        Some(CodeValue::Str(s)) if s.trim().is_empty() => None,
        Some(CodeValue::Str(s)) => Some(
            s.trim()
                .parse::<u64>()
                .map_err(|_| reject("code", format!("{s:?} is not a three-digit SMTP code")))?,
        ),
    };
    let code = code
        .map(|c| {
            u16::try_from(c)
                .ok()
                .filter(|c| (200..600).contains(c))
                .ok_or_else(|| reject("code", format!("{c} is not an SMTP reply code (200-599)")))
        })
        .transpose()?;
    let enhanced = text(&i.enhanced, "enhanced", 16)?
        .map(|e| {
            e.parse::<EnhancedCode>().map_err(|_| {
                reject(
                    "enhanced",
                    format!("{e:?} is not an enhanced status code such as 4.7.0"),
                )
            })
        })
        .transpose()?;
    let stage = text(&i.stage, "stage", 32)?
        .map(|s| {
            s.parse::<Stage>().map_err(|_| {
                reject(
                    "stage",
                    format!("{s:?} is not one of connect, ehlo, starttls, mail, rcpt, data, end_of_data, unknown"),
                )
            })
        })
        .transpose()?;
    let attempt = i
        .attempt
        .map(|a| {
            i32::try_from(a)
                .ok()
                .filter(|a| *a >= 0)
                .ok_or_else(|| reject("attempt", "must be a non-negative integer"))
        })
        .transpose()?;
    if kind != EventType::Delivered && response.is_none() && code.is_none() {
        return Err(reject(
            "response",
            format!("a {kind} event needs the SMTP response (or at least its code)"),
        ));
    }

    let reply = response.map(parse_reply);
    let code = code.or(reply.as_ref().and_then(|r| r.code));
    let enhanced = enhanced.or(reply.as_ref().and_then(|r| r.enhanced));
    let stage = stage
        .or(reply.as_ref().map(|r| r.stage))
        .unwrap_or(Stage::Unknown);
    if mx_host.is_none() {
        mx_host = reply
            .as_ref()
            .and_then(|r| r.remote_host.as_deref())
            .and_then(|h| host_name(h, "mx_host").ok());
    }
    if mx_ip.is_none() {
        mx_ip = reply
            .as_ref()
            .and_then(|r| r.remote_ip.as_deref())
            .and_then(|a| a.parse::<IpAddr>().ok())
            .map(|a| a.to_string());
    }
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
    let destination = destination(mx_host.as_deref(), &recipient_domain);
    let ext_id = match &i.id {
        Some(IdValue::Str(s)) if s.len() > 256 => {
            return Err(reject("id", "longer than 256 bytes"));
        }
        Some(IdValue::Str(s)) if !s.trim().is_empty() => Some(s.trim().to_string()),
        Some(IdValue::Num(n)) => Some(n.to_string()),
        _ => None,
    };
    let dedupe_key = dedupe_key(
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
        recipient,
        recipient_domain,
        sender,
        source_ip,
        helo,
        mx_host,
        mx_ip,
        destination,
        response: response.map(str::to_string),
        code,
        enhanced: enhanced.map(|e| e.to_string()),
        stage,
        classification,
        attempt,
        pool: text(&i.pool, "pool", 255)?.map(str::to_string),
        message_id: text(&i.message_id, "message_id", MAX_FIELD_BYTES)?.map(str::to_string),
        dkim_selector: text(&i.dkim_selector, "dkim_selector", 255)?
            .map(|s| {
                // RFC 6376 §3.1: a selector is one or more DNS labels.
                let s = s.to_ascii_lowercase();
                let ok = s.split('.').all(|l| {
                    !l.is_empty()
                        && l.len() <= 63
                        && l.bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
                });
                if ok {
                    Ok(s)
                } else {
                    Err(reject(
                        "dkim_selector",
                        format!("{s:?} is not a DKIM selector"),
                    ))
                }
            })
            .transpose()?,
        raw: raw.to_string(),
    })
}

/// Classifies a reply whose code, enhanced code and stage may have been stated
/// explicitly by the source; those win over what the text suggests.
pub fn classify_parsed(
    classifier: &Classifier,
    reply: Option<crate::smtp::Reply>,
    code: Option<u16>,
    enhanced: Option<EnhancedCode>,
    stage: Stage,
    mx_host: Option<&str>,
) -> crate::smtp::Classification {
    let mut reply = reply.unwrap_or(crate::smtp::Reply {
        code,
        enhanced,
        text: String::new(),
        stage,
        remote_host: None,
        remote_ip: None,
    });
    reply.code = code;
    reply.enhanced = enhanced;
    reply.stage = stage;
    classifier.classify(&reply, mx_host)
}

/// Classifies a stored event again, from what the store kept of it.
pub fn reclassify_stored(
    classifier: &Classifier,
    response: Option<&str>,
    code: Option<u16>,
    enhanced: Option<&str>,
    stage: Stage,
    mx_host: Option<&str>,
) -> crate::smtp::Classification {
    classify_parsed(
        classifier,
        response.map(parse_reply),
        code,
        enhanced.and_then(|e| e.parse().ok()),
        stage,
        mx_host,
    )
}

/// Unique per source: the sender's own id when it gave one; otherwise the content, so
/// that a resent payload (or a re-read log line) is recognised as the same event. Every
/// adapter uses this one key; a source serves one format, so the source id is scope
/// enough.
pub(crate) fn dedupe_key(
    source_id: i64,
    ext_id: Option<&str>,
    raw: &str,
    kind: EventType,
    time: DateTime<Utc>,
    recipient: &str,
) -> String {
    let mut h = Sha256::new();
    h.update(source_id.to_be_bytes());
    match ext_id {
        Some(id) => {
            h.update(b"id\0");
            h.update(id.as_bytes());
        }
        None => {
            // The raw item is the content; normalised fields in front make the key
            // insensitive to nothing that matters while staying cheap to compute.
            h.update(b"content\0");
            h.update(kind.as_str().as_bytes());
            h.update(time.timestamp_millis().to_be_bytes());
            h.update(recipient.as_bytes());
            h.update(raw.trim().as_bytes());
        }
    }
    let digest = h.finalize();
    let mut key = [0u8; 32];
    // encode_to_slice writes the same lowercase digits as hex::encode without building
    // the string a char at a time (this runs once per event).
    match hex::encode_to_slice(&digest[..16], &mut key)
        .ok()
        .and_then(|()| std::str::from_utf8(&key).ok())
    {
        Some(k) => k.to_string(),
        None => hex::encode(&digest[..16]),
    }
}
