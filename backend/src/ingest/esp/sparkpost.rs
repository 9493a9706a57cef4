//! SparkPost webhooks (formats.md §9a): a JSON array of `{"msys":{"<kind>_event":{…}}}`;
//! message events `delay`, `delivery`, `bounce` and `out_of_band` are tracked. Values
//! are strings throughout. SparkPost does not sign: authenticate with
//! [`super::verify_basic_auth`], [`super::verify_bearer`] or [`verify_token`].

use super::{
    Fields, Parsed, SignatureError, body_rejected, constant_time_eq, header, int, json_items,
    outcome, s, unix_time,
};
use crate::event::EventType;
use crate::ingest::json::Context;
use axum::http::HeaderMap;
use serde_json::Value;

/// The deprecated per-webhook `auth_token`, sent as this header.
pub const TOKEN_HEADER: &str = "x-messagesystems-webhook-token";

pub fn verify_token(headers: &HeaderMap, token: &str) -> Result<(), SignatureError> {
    let got = header(headers, TOKEN_HEADER)?;
    if constant_time_eq(got.as_bytes(), token.as_bytes()) {
        Ok(())
    } else {
        Err(SignatureError::Credentials(format!(
            "{TOKEN_HEADER} does not match"
        )))
    }
}

pub fn parse(body: &[u8], ctx: &Context<'_>) -> Vec<Parsed> {
    let items = match json_items(body) {
        Ok(items) => items,
        Err(e) => return body_rejected(body, e),
    };
    items
        .iter()
        .enumerate()
        .map(|(index, (raw, v))| {
            let Some((wrapper, ev)) = v
                .get("msys")
                .and_then(Value::as_object)
                .and_then(|m| m.iter().next())
            else {
                return Parsed::Rejected {
                    index,
                    field: Some("msys".into()),
                    reason: "not a {\"msys\":{…}} event".into(),
                    raw: raw.clone(),
                };
            };
            let ty = ev.get("type").and_then(Value::as_str).unwrap_or("(none)");
            let kind = match (wrapper.as_str(), ty) {
                ("message_event", "delay") => EventType::Deferred,
                ("message_event", "delivery") => EventType::Delivered,
                ("message_event", "bounce" | "out_of_band") => EventType::Bounced,
                // policy_rejection and generation failures were never attempted remotely.
                (w, t) => {
                    return Parsed::Ignored {
                        kind: format!("{w}.{t}"),
                    };
                }
            };
            let f = Fields {
                kind: Some(kind),
                time: unix_time(ev, "timestamp"),
                recipient: s(ev, "rcpt_to").or_else(|| s(ev, "raw_rcpt_to")),
                sender: s(ev, "msg_from"),
                source_ip: s(ev, "sending_ip"),
                mx_ip: s(ev, "ip_address"),
                response: s(ev, "raw_reason").or_else(|| s(ev, "reason")),
                code: int(ev, "error_code").and_then(|c| u16::try_from(c).ok()),
                // num_retries counts the failures before this attempt.
                attempt: int(ev, "num_retries").map(|n| n.saturating_add(1)),
                pool: s(ev, "ip_pool"),
                ext_id: s(ev, "event_id"),
                ..Fields::default()
            };
            outcome(index, f, raw, ctx)
        })
        .collect()
}
