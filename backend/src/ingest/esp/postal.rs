//! Postal webhooks (formats.md §8): `{"event","timestamp","payload","uuid"}`;
//! `MessageDelayed` (SoftFail), `MessageSent`, `MessageDeliveryFailed` (HardFail).
//! Signed with RSA PKCS#1 v1.5 over the raw body: `X-Postal-Signature-256` (SHA-256,
//! Postal ≥ 3.2) and the legacy `X-Postal-Signature` (SHA-1).

use super::{
    Fields, Parsed, SignatureError, b64, body_rejected, check_timestamp, header, malformed,
    outcome, s, unix_time,
};
use crate::event::EventType;
use crate::ingest::json::Context;
use axum::http::HeaderMap;
use chrono::{DateTime, TimeDelta, Utc};
use rsa::RsaPublicKey;
use rsa::pkcs1::DecodeRsaPublicKey;
use rsa::pkcs1v15::Pkcs1v15Sign;
use rsa::pkcs8::DecodePublicKey;
use serde_json::Value;
use sha1::Sha1;
use sha2::{Digest, Sha256};

pub const SIGNATURE_256_HEADER: &str = "x-postal-signature-256";
pub const SIGNATURE_HEADER: &str = "x-postal-signature";

/// Parses Postal's signing key: a PEM `PUBLIC KEY` or `RSA PUBLIC KEY`, or the bare
/// base64 body of either as Postal's web UI shows it.
pub fn public_key(text: &str) -> Result<RsaPublicKey, SignatureError> {
    let t = text.trim();
    if t.starts_with("-----BEGIN PUBLIC KEY") {
        return RsaPublicKey::from_public_key_pem(t)
            .map_err(|e| SignatureError::BadKey(format!("not an RSA public key: {e}")));
    }
    if t.starts_with("-----BEGIN RSA PUBLIC KEY") {
        return RsaPublicKey::from_pkcs1_pem(t)
            .map_err(|e| SignatureError::BadKey(format!("not an RSA public key: {e}")));
    }
    let compact: String = t.split_whitespace().collect();
    let der = b64(&compact, "public key").map_err(|e| SignatureError::BadKey(e.to_string()))?;
    RsaPublicKey::from_public_key_der(&der)
        .or_else(|_| RsaPublicKey::from_pkcs1_der(&der))
        .map_err(|e| SignatureError::BadKey(format!("not an RSA public key: {e}")))
}

/// Verifies a request with the installation's key. The SHA-256 signature is used when
/// present (no fallback to SHA-1 then, so a stripped header cannot downgrade it); the
/// signed body's `timestamp` must be within `tolerance`. Postal retries the same body
/// for about 36 minutes, so the window must be at least that long to accept retries.
pub fn verify(
    body: &[u8],
    headers: &HeaderMap,
    key: &RsaPublicKey,
    now: DateTime<Utc>,
    tolerance: TimeDelta,
) -> Result<(), SignatureError> {
    let result = if let Ok(sig) = header(headers, SIGNATURE_256_HEADER) {
        let sig = b64(sig, SIGNATURE_256_HEADER)?;
        key.verify(Pkcs1v15Sign::new::<Sha256>(), &Sha256::digest(body), &sig)
    } else {
        let sig = header(headers, SIGNATURE_HEADER).map_err(|_| {
            SignatureError::Missing(format!(
                "header {SIGNATURE_256_HEADER} or {SIGNATURE_HEADER}"
            ))
        })?;
        let sig = b64(sig, SIGNATURE_HEADER)?;
        key.verify(Pkcs1v15Sign::new::<Sha1>(), &Sha1::digest(body), &sig)
    };
    result.map_err(|_| SignatureError::Mismatch)?;
    let v: Value =
        serde_json::from_slice(body).map_err(|e| malformed("body", format!("not JSON ({e})")))?;
    let ts = unix_time(&v, "timestamp")
        .ok_or_else(|| SignatureError::Missing("the body's timestamp".into()))?;
    check_timestamp(ts.timestamp(), now, tolerance)
}

/// `ip:port (host)` as Postal writes an endpoint; IPv6 addresses may be bracketed.
fn endpoint(text: &str) -> (Option<String>, Option<String>) {
    let (addr, rest) = match text.split_once(' ') {
        Some((a, r)) => (a, r),
        None => (text, ""),
    };
    let ip = addr
        .rsplit_once(':')
        .map(|(ip, _port)| ip.trim_start_matches('[').trim_end_matches(']').to_string());
    let host = rest
        .trim()
        .strip_prefix('(')
        .and_then(|r| r.split_once(')'))
        .map(|(h, _)| h.to_string());
    (ip, host)
}

/// The MX and the source IP that Postal only gives inside `details`.
fn from_details(details: &str) -> (Option<String>, Option<String>, Option<String>) {
    let after = details
        .split_once(" when sending to ")
        .or_else(|| details.split_once(" accepted by "))
        .map(|(_, rest)| rest);
    let Some(after) = after else {
        return (None, None, None);
    };
    let (mx_ip, mx_host) = endpoint(after);
    let source_ip = after
        .split_once("(from ")
        .and_then(|(_, r)| r.split_once(')'))
        .map(|(ip, _)| ip.to_string());
    (mx_ip, mx_host, source_ip)
}

pub fn parse(body: &[u8], ctx: &Context<'_>) -> Vec<Parsed> {
    let v: Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(e) => return body_rejected(body, format!("not a JSON object: {e}")),
    };
    let event = v.get("event").and_then(Value::as_str).unwrap_or("");
    let kind = match event {
        "MessageDelayed" => EventType::Deferred,
        "MessageSent" => EventType::Delivered,
        "MessageDeliveryFailed" => EventType::Bounced,
        // MessageHeld, MessageBounced (asynchronous DSNs), clicks, loads, DNS and limits.
        other => {
            return vec![Parsed::Ignored {
                kind: if other.is_empty() {
                    "(none)".into()
                } else {
                    other.into()
                },
            }];
        }
    };
    let null = Value::Null;
    let payload = v.get("payload").unwrap_or(&null);
    let message = payload.get("message").unwrap_or(&null);
    let details = s(payload, "details").unwrap_or_default();
    let (mx_ip, mx_host, source_ip) = from_details(&details);
    // `output` is the remote reply; without one (connection failures) `details` says why.
    let response = s(payload, "output")
        .filter(|o| !o.trim().is_empty())
        .or_else(|| Some(details.clone()).filter(|d| !d.trim().is_empty()));
    let f = Fields {
        kind: Some(kind),
        time: unix_time(payload, "timestamp").or_else(|| unix_time(&v, "timestamp")),
        recipient: s(message, "to"),
        sender: s(message, "from"),
        source_ip,
        mx_host,
        mx_ip,
        response,
        message_id: s(message, "message_id"),
        ext_id: s(&v, "uuid"),
        ..Fields::default()
    };
    vec![outcome(0, f, &String::from_utf8_lossy(body), ctx)]
}
