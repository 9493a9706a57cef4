//! Mandrill (Mailchimp Transactional) webhooks (formats.md §9b): a form-encoded body
//! whose `mandrill_events` field is a JSON array; `deferral`, `send`, `hard_bounce`
//! and `soft_bounce` are tracked, with the per-attempt detail in `msg.smtp_events`.
//! `X-Mandrill-Signature` is base64(HMAC-SHA1(key, URL ‖ sorted name ‖ value …)).
//! Mandrill signs no timestamp, so replays can only be caught by event dedupe.

use super::{
    Fields, Parsed, SignatureError, b64, body_rejected, header, outcome, s, strip_diag_type,
    unix_time,
};
use crate::event::EventType;
use crate::ingest::json::Context;
use axum::http::HeaderMap;
use hmac::{Hmac, Mac};
use serde_json::Value;
use sha1::Sha1;

pub const SIGNATURE_HEADER: &str = "x-mandrill-signature";

/// Verifies a request against the webhook key and the webhook URL exactly as it was
/// configured in Mandrill (scheme, host, path and query: a proxy that rewrites any of
/// them changes the signed string).
pub fn verify(
    body: &[u8],
    headers: &HeaderMap,
    key: &str,
    webhook_url: &str,
) -> Result<(), SignatureError> {
    let given = b64(header(headers, SIGNATURE_HEADER)?, SIGNATURE_HEADER)?;
    let mut params: Vec<(String, String)> = form_urlencoded::parse(body)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    // Stable sort by name only, as Mandrill's reference code does (ksort).
    params.sort_by(|a, b| a.0.cmp(&b.0));
    let mut mac = Hmac::<Sha1>::new_from_slice(key.as_bytes())
        .map_err(|e| SignatureError::BadKey(e.to_string()))?;
    mac.update(webhook_url.as_bytes());
    for (k, v) in &params {
        mac.update(k.as_bytes());
        mac.update(v.as_bytes());
    }
    mac.verify_slice(&given)
        .map_err(|_| SignatureError::Mismatch)
}

pub fn parse(body: &[u8], ctx: &Context<'_>) -> Vec<Parsed> {
    let Some(events) = form_urlencoded::parse(body)
        .find(|(k, _)| k == "mandrill_events")
        .map(|(_, v)| v.into_owned())
    else {
        return body_rejected(body, "no mandrill_events form field");
    };
    let items = match super::json_items(events.as_bytes()) {
        Ok(items) => items,
        Err(e) => return body_rejected(body, format!("mandrill_events: {e}")),
    };
    items
        .iter()
        .enumerate()
        .map(|(index, (raw, v))| {
            let Some(event) = v.get("event").and_then(Value::as_str) else {
                // Sync events (whitelist/blacklist changes) say `type` instead of `event`.
                let kind = v
                    .get("type")
                    .and_then(Value::as_str)
                    .map_or("(none)".to_string(), |t| format!("sync:{t}"));
                return Parsed::Ignored { kind };
            };
            let kind = match event {
                "deferral" => EventType::Deferred,
                "send" => EventType::Delivered,
                // A soft bounce is Mandrill giving up after its retries: final, like a hard one.
                "hard_bounce" | "soft_bounce" => EventType::Bounced,
                other => {
                    return Parsed::Ignored {
                        kind: other.to_string(),
                    };
                }
            };
            let null = Value::Null;
            let msg = v.get("msg").unwrap_or(&null);
            let smtp_events = msg
                .get("smtp_events")
                .and_then(Value::as_array)
                .map(Vec::as_slice)
                .unwrap_or_default();
            let last = smtp_events.last();
            let response = match kind {
                EventType::Bounced => s(msg, "diag")
                    .or_else(|| s(msg, "bounce_description"))
                    .or_else(|| last.and_then(|e| s(e, "diag"))),
                _ => last.and_then(|e| s(e, "diag")),
            }
            .map(|d| strip_diag_type(&d).to_string());
            // Mandrill's `_id` names the message, not the event: the event and time make it one.
            let ext_id =
                s(v, "_id").map(|id| format!("{id}/{event}/{}", s(v, "ts").unwrap_or_default()));
            let f = Fields {
                kind: Some(kind),
                time: unix_time(v, "ts"),
                recipient: s(msg, "email"),
                sender: s(msg, "sender"),
                source_ip: last.and_then(|e| s(e, "source_ip")),
                mx_ip: last.and_then(|e| s(e, "destination_ip")),
                response,
                // Each smtp_event is one attempt; Mandrill has no counter of its own.
                attempt: (!smtp_events.is_empty()).then_some(smtp_events.len() as i64),
                ext_id,
                ..Fields::default()
            };
            outcome(index, f, raw, ctx)
        })
        .collect()
}
