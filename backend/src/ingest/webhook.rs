//! The authenticity of an ESP webhook request, per provider: which of a source's keys
//! it needs, and the check of one request against them. The source token has already
//! identified the source; this is the provider's own proof on top of it.

use super::esp::{self, Esp, SignatureError};
use crate::store::{Source, SourceKeys};
use axum::http::HeaderMap;
use chrono::{DateTime, TimeDelta, Utc};
use std::collections::HashMap;
use std::sync::Mutex;

/// Mailgun tokens seen inside the replay window, at most this many per process: far
/// more than the requests a window holds at any realistic webhook rate.
const MAX_SEEN_TOKENS: usize = 100_000;

/// What verification keeps between requests.
pub struct WebhookState {
    /// SNS signing keys fetched from validated certificate URLs.
    pub sns_certs: esp::ses::CertCache,
    /// The HTTP client that confirms SNS subscriptions.
    client: reqwest::Client,
    /// Mailgun signs a (timestamp, token) pair, not the event: a token seen twice inside
    /// the window is a replay. (source id, token) → signed timestamp.
    seen_tokens: Mutex<HashMap<(i64, String), i64>>,
}

impl Default for WebhookState {
    fn default() -> Self {
        // HTTPS only, a short timeout, and redirects re-validated by the cache itself.
        let client = reqwest::Client::builder()
            .https_only(true)
            .timeout(std::time::Duration::from_secs(10))
            .build()
            .unwrap_or_default();
        WebhookState {
            sns_certs: esp::ses::CertCache::new(client.clone()),
            client,
            seen_tokens: Mutex::new(HashMap::new()),
        }
    }
}

/// Refuses a source definition that could never verify its provider's requests: a
/// signing provider without its key, or keys a format does not use.
pub fn check_keys(format: &str, keys: &SourceKeys) -> Result<(), String> {
    let Ok(esp) = format.parse::<Esp>() else {
        if keys.secret.is_some() || keys.public_key.is_some() || keys.webhook_url.is_some() {
            return Err(format!(
                "format {format} does not sign its requests: --secret, --public-key and --webhook-url are for the ESP formats"
            ));
        }
        return Ok(());
    };
    let need = |what: Option<&String>, flag: &str, why: &str| match what {
        Some(_) => Ok(()),
        None => Err(format!("format {esp} needs {flag}: {why}")),
    };
    let unused = |what: Option<&String>, flag: &str| match what {
        Some(_) => Err(format!("format {esp} does not use {flag}")),
        None => Ok(()),
    };
    match esp {
        Esp::Sendgrid => {
            need(
                keys.public_key.as_ref(),
                "--public-key FILE",
                "the verification key SendGrid shows under Signed Event Webhook",
            )?;
            let key = keys.public_key.as_deref().unwrap_or_default();
            esp::sendgrid::public_key(key).map_err(|e| e.to_string())?;
            unused(keys.secret.as_ref(), "--secret")?;
            unused(keys.webhook_url.as_ref(), "--webhook-url")
        }
        Esp::Postal => {
            need(
                keys.public_key.as_ref(),
                "--public-key FILE",
                "the server's signing key (postal default-dkim-record, or the web UI)",
            )?;
            let key = keys.public_key.as_deref().unwrap_or_default();
            esp::postal::public_key(key).map_err(|e| e.to_string())?;
            unused(keys.secret.as_ref(), "--secret")?;
            unused(keys.webhook_url.as_ref(), "--webhook-url")
        }
        Esp::Mailgun => {
            need(
                keys.secret.as_ref(),
                "--secret KEY",
                "the HTTP webhook signing key from Mailgun's Webhooks page",
            )?;
            unused(keys.public_key.as_ref(), "--public-key")?;
            unused(keys.webhook_url.as_ref(), "--webhook-url")
        }
        Esp::Mandrill => {
            need(
                keys.secret.as_ref(),
                "--secret KEY",
                "the webhook's key from Mandrill's Webhooks page",
            )?;
            need(
                keys.webhook_url.as_ref(),
                "--webhook-url URL",
                "the URL exactly as entered in Mandrill, which it signs",
            )?;
            unused(keys.public_key.as_ref(), "--public-key")
        }
        Esp::Ses => {
            if let Some(pem) = &keys.public_key {
                ses_pinned_key(pem, None).map_err(|e| e.to_string())?;
            }
            unused(keys.secret.as_ref(), "--secret")?;
            unused(keys.webhook_url.as_ref(), "--webhook-url")
        }
        Esp::Sparkpost | Esp::Brevo => {
            unused(keys.public_key.as_ref(), "--public-key")?;
            unused(keys.webhook_url.as_ref(), "--webhook-url")
        }
    }
}

/// A pinned SNS key: the signing certificate (checked for validity at `now`, when
/// given) or its bare public key.
fn ses_pinned_key(
    pem: &str,
    now: Option<DateTime<Utc>>,
) -> Result<rsa::RsaPublicKey, SignatureError> {
    if pem.contains("BEGIN CERTIFICATE") {
        let now = now.unwrap_or_else(Utc::now);
        esp::ses::key_from_cert_pem(pem.as_bytes(), now)
    } else {
        esp::postal::public_key(pem)
    }
}

impl WebhookState {
    /// Checks one request against the source's keys.
    pub async fn verify(
        &self,
        esp: Esp,
        source: &Source,
        headers: &HeaderMap,
        body: &[u8],
        now: DateTime<Utc>,
        tolerance: TimeDelta,
    ) -> Result<(), SignatureError> {
        let keys = &source.keys;
        let missing = |what: &str| {
            SignatureError::BadKey(format!(
                "source {:?} has no {what}; set it with `deferwatch source keys {} …`",
                source.name, source.name
            ))
        };
        match esp {
            Esp::Sendgrid => {
                let key = keys
                    .public_key
                    .as_deref()
                    .ok_or_else(|| missing("public key"))?;
                let key = esp::sendgrid::public_key(key)?;
                esp::sendgrid::verify(body, headers, &key, now, tolerance)
            }
            Esp::Postal => {
                let key = keys
                    .public_key
                    .as_deref()
                    .ok_or_else(|| missing("public key"))?;
                let key = esp::postal::public_key(key)?;
                esp::postal::verify(body, headers, &key, now, tolerance)
            }
            Esp::Mailgun => {
                let secret = keys
                    .secret
                    .as_deref()
                    .ok_or_else(|| missing("signing key"))?;
                let signed = esp::mailgun::verify(body, secret, now, tolerance)?;
                self.remember_token(source.id, signed, now, tolerance)
            }
            Esp::Mandrill => {
                let secret = keys
                    .secret
                    .as_deref()
                    .ok_or_else(|| missing("webhook key"))?;
                let url = keys
                    .webhook_url
                    .as_deref()
                    .ok_or_else(|| missing("webhook URL"))?;
                esp::mandrill::verify(body, headers, secret, url)
            }
            Esp::Ses => {
                let key = match keys.public_key.as_deref() {
                    Some(pem) => ses_pinned_key(pem, Some(now))?,
                    None => {
                        let url = esp::ses::cert_url(body)?;
                        self.sns_certs.key(&url, now).await?
                    }
                };
                esp::ses::verify(body, &key, now, tolerance)
            }
            // Neither signs: with a secret configured, the credentials the webhook sends
            // must match it; without one the source token alone authenticates.
            Esp::Sparkpost | Esp::Brevo => match keys.secret.as_deref() {
                None => Ok(()),
                Some(secret) => match secret.split_once(':') {
                    Some((user, password)) => esp::verify_basic_auth(headers, user, password),
                    None if esp == Esp::Sparkpost
                        && headers.contains_key(esp::sparkpost::TOKEN_HEADER) =>
                    {
                        esp::sparkpost::verify_token(headers, secret)
                    }
                    None => esp::verify_bearer(headers, secret),
                },
            },
        }
    }

    fn remember_token(
        &self,
        source_id: i64,
        signed: esp::mailgun::SignedToken,
        now: DateTime<Utc>,
        tolerance: TimeDelta,
    ) -> Result<(), SignatureError> {
        let mut seen = self.seen_tokens.lock().unwrap_or_else(|e| e.into_inner());
        let oldest = now.timestamp() - tolerance.num_seconds().abs();
        if seen.len() >= MAX_SEEN_TOKENS {
            seen.retain(|_, ts| *ts >= oldest);
        }
        if seen.len() >= MAX_SEEN_TOKENS {
            // Still full of live tokens: forget the oldest half rather than refuse
            // genuine requests; dedupe still catches a replayed event.
            let mut stamps: Vec<i64> = seen.values().copied().collect();
            stamps.sort_unstable();
            let cut = stamps[stamps.len() / 2];
            seen.retain(|_, ts| *ts > cut);
        }
        match seen.entry((source_id, signed.token)) {
            std::collections::hash_map::Entry::Occupied(o) => Err(SignatureError::Reused(format!(
                "Mailgun token {}",
                o.key().1
            ))),
            std::collections::hash_map::Entry::Vacant(v) => {
                v.insert(signed.timestamp);
                Ok(())
            }
        }
    }

    /// Confirms an SNS subscription whose message was verified, by fetching its
    /// `SubscribeURL`. Returns the error text when the URL or the fetch fails.
    pub async fn confirm_subscription(&self, subscribe_url: &str) -> Result<(), String> {
        esp::ses::validate_subscribe_url(subscribe_url).map_err(|e| e.to_string())?;
        let resp = self
            .client
            .get(subscribe_url)
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(|e| format!("confirming the subscription: {e}"))?;
        esp::ses::validate_subscribe_url(resp.url().as_str()).map_err(|e| e.to_string())?;
        Ok(())
    }
}
