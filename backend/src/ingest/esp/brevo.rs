//! Brevo (ex-Sendinblue) transactional webhooks (formats.md §9c): one JSON event per
//! request (an array when batched); `deferred`, `delivered`, `hard_bounce` and
//! `soft_bounce` are tracked. Brevo does not sign: authenticate with
//! [`super::verify_basic_auth`] or [`super::verify_bearer`].
//!
//! Brevo has labelled 5xx replies `deferred`: the event keeps Brevo's label, and the
//! classification, which reads the code, tells the operator what the reply says.

use super::{Fields, Parsed, body_rejected, json_items, outcome, s, unix_time};
use crate::event::EventType;
use crate::ingest::json::Context;
use chrono::DateTime;
use serde_json::Value;

pub fn parse(body: &[u8], ctx: &Context<'_>) -> Vec<Parsed> {
    let trimmed = body.trim_ascii_start();
    let items = if trimmed.starts_with(b"[") {
        match json_items(body) {
            Ok(items) => items,
            Err(e) => return body_rejected(body, e),
        }
    } else {
        match serde_json::from_slice::<Value>(body) {
            Ok(v) => vec![(String::from_utf8_lossy(body).trim().to_string(), v)],
            Err(e) => return body_rejected(body, format!("not a JSON object: {e}")),
        }
    };
    items
        .iter()
        .enumerate()
        .map(|(index, (raw, v))| {
            let event = v.get("event").and_then(Value::as_str).unwrap_or("(none)");
            let kind = match event {
                "deferred" => EventType::Deferred,
                "delivered" => EventType::Delivered,
                // Brevo stops on a soft bounce as on a hard one.
                "hard_bounce" | "soft_bounce" => EventType::Bounced,
                // blocked and invalid_email were never attempted; the rest is engagement.
                other => {
                    return Parsed::Ignored {
                        kind: other.to_string(),
                    };
                }
            };
            // ts_event is UTC seconds; ts_epoch milliseconds; `date` is Paris local time,
            // so it is never used.
            let time = unix_time(v, "ts_event")
                .or_else(|| {
                    v.get("ts_epoch")
                        .and_then(Value::as_i64)
                        .and_then(DateTime::from_timestamp_millis)
                })
                .or_else(|| unix_time(v, "ts"));
            let f = Fields {
                kind: Some(kind),
                time,
                recipient: s(v, "email"),
                source_ip: s(v, "sending_ip"),
                response: s(v, "reason"),
                message_id: s(v, "message-id")
                    .map(|m| m.trim_start_matches('<').trim_end_matches('>').to_string()),
                // `id` is the webhook's id, the same for every event: content dedupe instead.
                ..Fields::default()
            };
            outcome(index, f, raw, ctx)
        })
        .collect()
}
