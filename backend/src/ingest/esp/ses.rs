//! Amazon SES events through SNS (formats.md §7). The SNS envelope's `Message` is the
//! SES event as a JSON string: `DeliveryDelay` (one deferral per delayed recipient),
//! `Delivery`, `Bounce` (Permanent → bounced, Transient → deferred). With raw message
//! delivery the body is the bare SES event, which carries no signature.
//!
//! SNS signs a canonical string of selected envelope fields with RSA PKCS#1 v1.5,
//! SHA-1 for `SignatureVersion` 1 and SHA-256 for 2, using the key of the X.509
//! certificate at `SigningCertURL`, which must be an HTTPS `sns.<region>.amazonaws.com`
//! URL.

use super::{
    Fields, Parsed, SignatureError, b64, body_rejected, check_timestamp, malformed, outcome,
    rfc3339, s, strip_diag_type,
};
use crate::event::EventType;
use crate::ingest::json::Context;
use chrono::{DateTime, TimeDelta, Utc};
use rsa::RsaPublicKey;
use rsa::pkcs1v15::Pkcs1v15Sign;
use rsa::pkcs8::DecodePublicKey;
use serde_json::Value;
use sha1::Sha1;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::Mutex;
use x509_cert::Certificate;
use x509_cert::der::{DecodePem, Encode};

/// Largest certificate accepted from `SigningCertURL`; real ones are about 2 KB.
const MAX_CERT_BYTES: usize = 64 * 1024;

/// Checks a `SigningCertURL` before anything is fetched from it: HTTPS, the default
/// port, no credentials, host `sns.<region>.amazonaws.com` (or `.com.cn`), a `.pem`
/// path. Anything looser would let a forger point us at a key of their own.
pub fn validate_cert_url(url: &str) -> Result<(), SignatureError> {
    let bad = |why: &str| SignatureError::Certificate(format!("{url:?}: {why}"));
    let parsed = reqwest::Url::parse(url).map_err(|e| bad(&e.to_string()))?;
    if parsed.scheme() != "https" {
        return Err(bad("not https"));
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(bad("carries credentials"));
    }
    if parsed.port().is_some_and(|p| p != 443) {
        return Err(bad("not the https port"));
    }
    if !is_sns_host(parsed.host_str()) {
        return Err(bad("host is not sns.<region>.amazonaws.com"));
    }
    if !parsed.path().ends_with(".pem") || parsed.query().is_some() {
        return Err(bad("not a .pem path"));
    }
    Ok(())
}

/// The AWS SDKs' rule for SNS endpoints: `^sns\.[a-zA-Z0-9\-]{3,}\.amazonaws\.com(\.cn)?$`.
/// An IP literal cannot match it, so the text form of the host suffices.
fn is_sns_host(host: Option<&str>) -> bool {
    let Some(host) = host.map(str::to_ascii_lowercase) else {
        return false;
    };
    host.strip_suffix(".amazonaws.com")
        .or_else(|| host.strip_suffix(".amazonaws.com.cn"))
        .and_then(|h| h.strip_prefix("sns."))
        .is_some_and(|rest| {
            rest.len() >= 3 && rest.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

/// Checks a `SubscribeURL` before the confirmation GET: HTTPS on the default port to an
/// SNS endpoint, asking for `ConfirmSubscription`. A forged confirmation is refused by its
/// signature first; this keeps a signed but odd URL from making us fetch anything else.
pub fn validate_subscribe_url(url: &str) -> Result<(), SignatureError> {
    let bad = |why: &str| SignatureError::Certificate(format!("SubscribeURL {url:?}: {why}"));
    let parsed = reqwest::Url::parse(url).map_err(|e| bad(&e.to_string()))?;
    if parsed.scheme() != "https" || parsed.port().is_some_and(|p| p != 443) {
        return Err(bad("not https on the default port"));
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(bad("carries credentials"));
    }
    if !is_sns_host(parsed.host_str()) {
        return Err(bad("host is not sns.<region>.amazonaws.com"));
    }
    if !parsed
        .query_pairs()
        .any(|(k, v)| k == "Action" && v == "ConfirmSubscription")
    {
        return Err(bad("not a ConfirmSubscription request"));
    }
    Ok(())
}

/// The RSA key of a PEM X.509 certificate, refused outside its validity period.
pub fn key_from_cert_pem(pem: &[u8], now: DateTime<Utc>) -> Result<RsaPublicKey, SignatureError> {
    let cert = Certificate::from_pem(pem)
        .map_err(|e| SignatureError::Certificate(format!("not a PEM X.509 certificate: {e}")))?;
    let validity = &cert.tbs_certificate.validity;
    let now_sys = std::time::SystemTime::from(now);
    if now_sys < validity.not_before.to_system_time()
        || now_sys > validity.not_after.to_system_time()
    {
        return Err(SignatureError::Certificate(
            "outside its validity period".into(),
        ));
    }
    let spki = cert
        .tbs_certificate
        .subject_public_key_info
        .to_der()
        .map_err(|e| SignatureError::Certificate(e.to_string()))?;
    RsaPublicKey::from_public_key_der(&spki)
        .map_err(|e| SignatureError::Certificate(format!("no RSA public key: {e}")))
}

/// The envelope fields that take part in the signature, JSON-decoded.
fn field<'v>(v: &'v Value, k: &str) -> Option<&'v str> {
    v.get(k).and_then(Value::as_str)
}

/// The string SNS signs: `Key\nValue\n` for each signed key present, in byte order.
pub fn string_to_sign(envelope: &Value) -> Result<String, SignatureError> {
    let ty = field(envelope, "Type").ok_or_else(|| SignatureError::Missing("Type".into()))?;
    let keys: &[&str] = match ty {
        "Notification" => &[
            "Message",
            "MessageId",
            "Subject",
            "Timestamp",
            "TopicArn",
            "Type",
        ],
        "SubscriptionConfirmation" | "UnsubscribeConfirmation" => &[
            "Message",
            "MessageId",
            "SubscribeURL",
            "Timestamp",
            "Token",
            "TopicArn",
            "Type",
        ],
        other => {
            return Err(malformed(
                "Type",
                format!("unknown SNS message type {other:?}"),
            ));
        }
    };
    let mut out = String::new();
    for k in keys {
        match field(envelope, k) {
            Some(v) => {
                out.push_str(k);
                out.push('\n');
                out.push_str(v);
                out.push('\n');
            }
            // Subject is the one optional signed field of a notification.
            None if *k == "Subject" => {}
            None => return Err(SignatureError::Missing((*k).to_string())),
        }
    }
    Ok(out)
}

/// Verifies an SNS message with the signing certificate's key (from
/// [`key_from_cert_pem`], fetched by [`CertCache`] or pinned in the source), and its
/// `Timestamp` against the replay window.
pub fn verify(
    body: &[u8],
    key: &RsaPublicKey,
    now: DateTime<Utc>,
    tolerance: TimeDelta,
) -> Result<(), SignatureError> {
    let envelope: Value =
        serde_json::from_slice(body).map_err(|e| malformed("body", format!("not JSON ({e})")))?;
    let signed = string_to_sign(&envelope)?;
    let sig = b64(
        field(&envelope, "Signature").ok_or_else(|| SignatureError::Missing("Signature".into()))?,
        "Signature",
    )?;
    let result = match field(&envelope, "SignatureVersion") {
        Some("1") => key.verify(
            Pkcs1v15Sign::new::<Sha1>(),
            &Sha1::digest(signed.as_bytes()),
            &sig,
        ),
        Some("2") => key.verify(
            Pkcs1v15Sign::new::<Sha256>(),
            &Sha256::digest(signed.as_bytes()),
            &sig,
        ),
        Some(other) => {
            return Err(malformed(
                "SignatureVersion",
                format!("{other:?} is neither 1 nor 2"),
            ));
        }
        None => return Err(SignatureError::Missing("SignatureVersion".into())),
    };
    result.map_err(|_| SignatureError::Mismatch)?;
    let ts = rfc3339(&envelope, "Timestamp")
        .ok_or_else(|| malformed("Timestamp", "not an ISO 8601 time"))?;
    check_timestamp(ts.timestamp(), now, tolerance)
}

/// The signing certificate URL of an envelope, validated.
pub fn cert_url(body: &[u8]) -> Result<String, SignatureError> {
    let envelope: Value =
        serde_json::from_slice(body).map_err(|e| malformed("body", format!("not JSON ({e})")))?;
    let url = field(&envelope, "SigningCertURL")
        .or_else(|| field(&envelope, "SigningCertUrl"))
        .ok_or_else(|| SignatureError::Missing("SigningCertURL".into()))?;
    validate_cert_url(url)?;
    Ok(url.to_string())
}

/// Signing keys fetched from validated `SigningCertURL`s, kept for the process's life:
/// AWS rotates certificates rarely and under a new URL.
pub struct CertCache {
    client: reqwest::Client,
    keys: Mutex<HashMap<String, RsaPublicKey>>,
}

impl CertCache {
    pub fn new(client: reqwest::Client) -> CertCache {
        CertCache {
            client,
            keys: Mutex::new(HashMap::new()),
        }
    }

    /// The key for `url`, fetched once over HTTPS after [`validate_cert_url`].
    pub async fn key(&self, url: &str, now: DateTime<Utc>) -> Result<RsaPublicKey, SignatureError> {
        validate_cert_url(url)?;
        if let Some(k) = self.keys.lock().unwrap_or_else(|e| e.into_inner()).get(url) {
            return Ok(k.clone());
        }
        let fetch_err =
            |e: reqwest::Error| SignatureError::Certificate(format!("fetching {url}: {e}"));
        let resp = self
            .client
            .get(url)
            .timeout(std::time::Duration::from_secs(10))
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(fetch_err)?;
        // The caller's client may follow redirects: where it ended must pass the same rule.
        validate_cert_url(resp.url().as_str())?;
        if resp
            .content_length()
            .is_some_and(|n| n > MAX_CERT_BYTES as u64)
        {
            return Err(SignatureError::Certificate(format!("{url}: too large")));
        }
        let pem = resp.bytes().await.map_err(fetch_err)?;
        if pem.len() > MAX_CERT_BYTES {
            return Err(SignatureError::Certificate(format!("{url}: too large")));
        }
        let key = key_from_cert_pem(&pem, now)?;
        self.keys
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(url.to_string(), key.clone());
        Ok(key)
    }
}

pub fn parse(body: &[u8], ctx: &Context<'_>) -> Vec<Parsed> {
    let envelope: Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(e) => return body_rejected(body, format!("not a JSON object: {e}")),
    };
    let (message_text, sns_id) = match field(&envelope, "Type") {
        Some("Notification") => match field(&envelope, "Message") {
            Some(m) => (m.to_string(), field(&envelope, "MessageId")),
            None => return body_rejected(body, "an SNS notification without Message"),
        },
        Some("SubscriptionConfirmation") => {
            let (Some(url), Some(topic), Some(token)) = (
                field(&envelope, "SubscribeURL"),
                field(&envelope, "TopicArn"),
                field(&envelope, "Token"),
            ) else {
                return body_rejected(
                    body,
                    "a SubscriptionConfirmation needs SubscribeURL, TopicArn and Token",
                );
            };
            return vec![Parsed::SubscriptionConfirmation {
                topic_arn: topic.to_string(),
                subscribe_url: url.to_string(),
                token: token.to_string(),
            }];
        }
        Some(other) => {
            return vec![Parsed::Ignored {
                kind: format!("sns:{other}"),
            }];
        }
        // Raw message delivery: the body is the SES event itself.
        None => (String::from_utf8_lossy(body).into_owned(), None),
    };
    let event: Value = match serde_json::from_str(&message_text) {
        Ok(v) => v,
        Err(e) => return body_rejected(body, format!("the SES event is not JSON: {e}")),
    };
    ses_event(&event, &message_text, sns_id, ctx)
}

fn ses_event(ev: &Value, raw: &str, sns_id: Option<&str>, ctx: &Context<'_>) -> Vec<Parsed> {
    // Event publishing says eventType; classic feedback notifications notificationType.
    let ty = field(ev, "eventType")
        .or_else(|| field(ev, "notificationType"))
        .unwrap_or("(none)");
    let null = Value::Null;
    let mail = ev.get("mail").unwrap_or(&null);
    let sender = s(mail, "source");
    let message_id = mail
        .get("commonHeaders")
        .and_then(|h| s(h, "messageId"))
        .map(|m| m.trim_start_matches('<').trim_end_matches('>').to_string());
    let ses_id = s(mail, "messageId");
    // One SNS message or SES message carries several recipients: the id names the pair.
    let ext = |rcpt: &str| {
        sns_id
            .map(str::to_string)
            .or_else(|| ses_id.as_ref().map(|m| format!("{m}/{ty}")))
            .map(|id| format!("{id}/{rcpt}"))
    };
    let mut out = Vec::new();
    match ty {
        "DeliveryDelay" => {
            let d = ev.get("deliveryDelay").unwrap_or(&null);
            let time = rfc3339(d, "timestamp").or_else(|| rfc3339(mail, "timestamp"));
            let recipients = d
                .get("delayedRecipients")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            if recipients.is_empty() {
                return body_rejected(raw.as_bytes(), "DeliveryDelay without delayedRecipients");
            }
            for (i, r) in recipients.iter().enumerate() {
                let rcpt = s(r, "emailAddress").unwrap_or_default();
                let response = s(r, "diagnosticCode")
                    .map(|c| strip_diag_type(&c).to_string())
                    .or_else(|| s(d, "delayType").map(|t| format!("SES delay: {t}")));
                let f = Fields {
                    kind: Some(EventType::Deferred),
                    time,
                    ext_id: ext(&rcpt),
                    recipient: Some(rcpt),
                    sender: sender.clone(),
                    mx_ip: s(d, "remoteMtaIp"),
                    response,
                    enhanced: s(r, "status"),
                    message_id: message_id.clone(),
                    ..Fields::default()
                };
                out.push(outcome(i, f, raw, ctx));
            }
        }
        "Delivery" => {
            let d = ev.get("delivery").unwrap_or(&null);
            let recipients: Vec<String> = d
                .get("recipients")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(|r| r.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default();
            if recipients.is_empty() {
                return body_rejected(raw.as_bytes(), "Delivery without recipients");
            }
            for (i, rcpt) in recipients.into_iter().enumerate() {
                let f = Fields {
                    kind: Some(EventType::Delivered),
                    time: rfc3339(d, "timestamp").or_else(|| rfc3339(mail, "timestamp")),
                    ext_id: ext(&rcpt),
                    recipient: Some(rcpt),
                    sender: sender.clone(),
                    mx_ip: s(d, "remoteMtaIp"),
                    response: s(d, "smtpResponse"),
                    message_id: message_id.clone(),
                    ..Fields::default()
                };
                out.push(outcome(i, f, raw, ctx));
            }
        }
        "Bounce" => {
            let b = ev.get("bounce").unwrap_or(&null);
            let bounce_type = field(b, "bounceType").unwrap_or("");
            let kind = match bounce_type {
                "Permanent" => EventType::Bounced,
                // SES gave up on a temporary condition (formats.md §7): still a 4xx-kind cause.
                "Transient" => EventType::Deferred,
                other => {
                    return vec![Parsed::Ignored {
                        kind: format!("Bounce/{}", if other.is_empty() { "(none)" } else { other }),
                    }];
                }
            };
            let recipients = b
                .get("bouncedRecipients")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            if recipients.is_empty() {
                return body_rejected(raw.as_bytes(), "Bounce without bouncedRecipients");
            }
            let sub = field(b, "bounceSubType").unwrap_or("General");
            for (i, r) in recipients.iter().enumerate() {
                let rcpt = s(r, "emailAddress").unwrap_or_default();
                // Suppression bounces have no diagnostic: SES's own classification is the text.
                let response = s(r, "diagnosticCode")
                    .map(|c| strip_diag_type(&c).to_string())
                    .or_else(|| Some(format!("SES {bounce_type} bounce: {sub}")));
                let f = Fields {
                    kind: Some(kind),
                    time: rfc3339(b, "timestamp").or_else(|| rfc3339(mail, "timestamp")),
                    ext_id: ext(&rcpt),
                    recipient: Some(rcpt),
                    sender: sender.clone(),
                    mx_ip: s(b, "remoteMtaIp"),
                    response,
                    enhanced: s(r, "status"),
                    message_id: message_id.clone(),
                    ..Fields::default()
                };
                out.push(outcome(i, f, raw, ctx));
            }
        }
        other => out.push(Parsed::Ignored {
            kind: other.to_string(),
        }),
    }
    out
}
