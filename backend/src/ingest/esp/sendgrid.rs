//! SendGrid Event Webhook (formats.md §5): a JSON array of events; `deferred`,
//! `delivered` and `bounce` (type `bounce` or `blocked`) are tracked. Signed webhooks
//! carry an ECDSA P-256/SHA-256 signature over the timestamp header followed by the
//! raw body.

use super::{
    Fields, Parsed, SignatureError, b64, body_rejected, check_timestamp, header, int, json_items,
    malformed, outcome, s, unix_time,
};
use crate::event::EventType;
use crate::ingest::json::Context;
use axum::http::HeaderMap;
use chrono::{DateTime, TimeDelta, Utc};
use p256::ecdsa::signature::Verifier;
use p256::ecdsa::{Signature, VerifyingKey};
use p256::pkcs8::DecodePublicKey;

pub const SIGNATURE_HEADER: &str = "x-twilio-email-event-webhook-signature";
pub const TIMESTAMP_HEADER: &str = "x-twilio-email-event-webhook-timestamp";

/// Parses the verification key as SendGrid shows it: base64 DER SubjectPublicKeyInfo,
/// or the same wrapped as a PEM `PUBLIC KEY`.
pub fn public_key(text: &str) -> Result<VerifyingKey, SignatureError> {
    let body: String = text
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .map(str::trim)
        .collect();
    let der = b64(&body, "public key").map_err(|e| SignatureError::BadKey(e.to_string()))?;
    VerifyingKey::from_public_key_der(&der)
        .map_err(|e| SignatureError::BadKey(format!("not a P-256 public key: {e}")))
}

/// Verifies a signed Event Webhook request. The signature covers the timestamp header's
/// exact text followed by the raw body, so the body must not have been re-serialised.
pub fn verify(
    body: &[u8],
    headers: &HeaderMap,
    key: &VerifyingKey,
    now: DateTime<Utc>,
    tolerance: TimeDelta,
) -> Result<(), SignatureError> {
    let sig_text = header(headers, SIGNATURE_HEADER)?;
    let ts_text = header(headers, TIMESTAMP_HEADER)?;
    let ts: i64 = ts_text
        .parse()
        .map_err(|_| malformed(TIMESTAMP_HEADER, "not unix seconds"))?;
    let der = b64(sig_text, SIGNATURE_HEADER)?;
    let sig = Signature::from_der(&der)
        .map_err(|e| malformed(SIGNATURE_HEADER, format!("not a DER ECDSA signature ({e})")))?;
    let mut signed = Vec::with_capacity(ts_text.len() + body.len());
    signed.extend_from_slice(ts_text.as_bytes());
    signed.extend_from_slice(body);
    key.verify(&signed, &sig)
        .map_err(|_| SignatureError::Mismatch)?;
    // Checked after the signature, so that a forged timestamp cannot be what is reported.
    check_timestamp(ts, now, tolerance)
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
            let event = v.get("event").and_then(|e| e.as_str()).unwrap_or("");
            let kind = match event {
                "deferred" => EventType::Deferred,
                "delivered" => EventType::Delivered,
                "bounce" => EventType::Bounced,
                // `dropped` was never attempted; opens, clicks and the rest are engagement.
                other => {
                    return Parsed::Ignored {
                        kind: if other.is_empty() {
                            "(none)".into()
                        } else {
                            other.into()
                        },
                    };
                }
            };
            // Bounces put the remote reply in `reason` and the enhanced code in `status`.
            let response = s(v, "response").or_else(|| s(v, "reason"));
            let pool = v
                .get("pool")
                .and_then(|p| p.get("name"))
                .and_then(|n| n.as_str())
                .map(str::to_string);
            let f = Fields {
                kind: Some(kind),
                time: unix_time(v, "timestamp"),
                recipient: s(v, "email"),
                source_ip: s(v, "ip"),
                response,
                enhanced: s(v, "status"),
                attempt: int(v, "attempt"),
                pool,
                message_id: s(v, "smtp-id")
                    .map(|m| m.trim_start_matches('<').trim_end_matches('>').to_string()),
                ext_id: s(v, "sg_event_id"),
                ..Fields::default()
            };
            outcome(index, f, raw, ctx)
        })
        .collect()
}
