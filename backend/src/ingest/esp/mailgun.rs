//! Mailgun webhooks (formats.md §6): one JSON object per request,
//! `{"signature":{timestamp,token,signature},"event-data":{…}}`. `failed` with
//! `severity` temporary is a deferral, permanent a bounce; `delivered` a delivery.
//! The signature is HMAC-SHA256(signing key, timestamp ‖ token), in the body; the
//! event itself is not signed, so the timestamp window and token dedupe bound replay.

use super::{
    Fields, Parsed, SignatureError, body_rejected, check_timestamp, int, join_reply, malformed,
    outcome, s, unix_time,
};
use crate::event::EventType;
use crate::ingest::json::Context;
use chrono::{DateTime, TimeDelta, Utc};
use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;

/// The signed values of a request, for the route's token replay store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedToken {
    pub timestamp: i64,
    pub token: String,
}

/// Verifies the `signature` object against the webhook signing key. Returns the token
/// so the route can refuse one it has already seen inside the window.
pub fn verify(
    body: &[u8],
    signing_key: &str,
    now: DateTime<Utc>,
    tolerance: TimeDelta,
) -> Result<SignedToken, SignatureError> {
    let v: Value =
        serde_json::from_slice(body).map_err(|e| malformed("body", format!("not JSON ({e})")))?;
    let sig = v
        .get("signature")
        .ok_or_else(|| SignatureError::Missing("the signature object".into()))?;
    let field = |k: &str| {
        sig.get(k)
            .and_then(|x| match x {
                Value::String(t) => Some(t.clone()),
                Value::Number(n) => Some(n.to_string()),
                _ => None,
            })
            .filter(|t| !t.is_empty())
            .ok_or_else(|| SignatureError::Missing(format!("signature.{k}")))
    };
    let timestamp = field("timestamp")?;
    let token = field("token")?;
    let given = field("signature")?;
    let given = hex::decode(given.trim())
        .map_err(|_| malformed("signature.signature", "not hexadecimal"))?;
    let mut mac = Hmac::<Sha256>::new_from_slice(signing_key.as_bytes())
        .map_err(|e| SignatureError::BadKey(e.to_string()))?;
    mac.update(timestamp.as_bytes());
    mac.update(token.as_bytes());
    mac.verify_slice(&given)
        .map_err(|_| SignatureError::Mismatch)?;
    let ts: i64 = timestamp
        .trim()
        .parse()
        .map_err(|_| malformed("signature.timestamp", "not unix seconds"))?;
    check_timestamp(ts, now, tolerance)?;
    Ok(SignedToken {
        timestamp: ts,
        token,
    })
}

pub fn parse(body: &[u8], ctx: &Context<'_>) -> Vec<Parsed> {
    let v: Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(e) => return body_rejected(body, format!("not a JSON object: {e}")),
    };
    let Some(ev) = v.get("event-data").filter(|e| e.is_object()) else {
        return body_rejected(body, "no event-data object");
    };
    let event = ev.get("event").and_then(Value::as_str).unwrap_or("");
    let kind = match (event, ev.get("severity").and_then(Value::as_str)) {
        ("failed", Some("temporary")) => EventType::Deferred,
        ("failed", Some("permanent")) => EventType::Bounced,
        ("delivered", _) => EventType::Delivered,
        (other, severity) => {
            let kind = match (other, severity) {
                ("", _) => "(none)".to_string(),
                ("failed", Some(sev)) => format!("failed/{sev}"),
                (o, _) => o.to_string(),
            };
            return vec![Parsed::Ignored { kind }];
        }
    };
    let null = Value::Null;
    let ds = ev.get("delivery-status").unwrap_or(&null);
    let envelope = ev.get("envelope").unwrap_or(&null);
    // `message` usually lacks the basic code; `description` is the fallback text.
    let text = s(ds, "message")
        .filter(|m| !m.trim().is_empty())
        .or_else(|| s(ds, "description"));
    let code = int(ds, "code");
    let message_id = ev
        .get("message")
        .and_then(|m| m.get("headers"))
        .and_then(|h| s(h, "message-id"));
    // Mailgun's event ids are unique only within a day: the time makes them unique.
    let ext_id = s(ev, "id").map(|id| match s(ev, "timestamp") {
        Some(ts) => format!("{id}@{ts}"),
        None => id,
    });
    let raw = String::from_utf8_lossy(body);
    let f = Fields {
        kind: Some(kind),
        time: unix_time(ev, "timestamp"),
        recipient: s(ev, "recipient"),
        sender: s(envelope, "sender"),
        source_ip: s(envelope, "sending-ip"),
        mx_host: s(ds, "mx-host"),
        response: join_reply(code, text.as_deref()),
        code: code.and_then(|c| u16::try_from(c).ok()),
        enhanced: s(ds, "enhanced-code"),
        attempt: int(ds, "attempt-no"),
        message_id,
        ext_id,
        ..Fields::default()
    };
    vec![outcome(0, f, &raw, ctx)]
}
