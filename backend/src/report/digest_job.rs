//! Sending the digest on schedule: every `digest_interval` to the report recipients
//! through the configured relay. The last send is kept in the settings table so a
//! restart neither repeats nor skips a digest.

use super::digest::{DigestInput, build};
use super::mail::{MailError, Mailer, SendOutcome};
use crate::app::AppState;
use crate::store::StoreError;
use chrono::{DateTime, TimeDelta, Utc};

const LAST_SENT_KEY: &str = "digest_last_sent";
const LAST_FAILED_KEY: &str = "digest_last_failed";
/// After a failed digest, wait this long before trying again rather than every tick.
const RETRY_AFTER: TimeDelta = TimeDelta::minutes(15);
/// Who writes the bookkeeping rows in the settings table.
const BY: &str = "deferwatch";

#[derive(Debug, thiserror::Error)]
pub enum DigestError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Mail(#[from] MailError),
}

#[derive(Debug, PartialEq)]
pub enum DigestRun {
    /// No interval, no recipients or no relay configured.
    Off,
    /// Not due until this instant.
    NotDue(DateTime<Utc>),
    /// Nothing open and nothing new: skipped, counted as sent.
    Quiet,
    Sent {
        message_id: String,
        relay_response: String,
    },
}

async fn instant(state: &AppState, key: &str) -> Result<Option<DateTime<Utc>>, StoreError> {
    Ok(state
        .store
        .setting(key)
        .await?
        .and_then(|v| DateTime::parse_from_rfc3339(&v).ok())
        .map(|t| t.with_timezone(&Utc)))
}

/// Sends the digest if it is due; called every minute by the background loop.
pub async fn run_due(state: &AppState) -> Result<DigestRun, DigestError> {
    let cfg = state.effective();
    let (Some(interval), Some(url), Some(from)) = (
        cfg.digest_interval,
        cfg.smtp_url.as_deref(),
        cfg.smtp_from.as_deref(),
    ) else {
        return Ok(DigestRun::Off);
    };
    if cfg.report_recipients.is_empty() {
        return Ok(DigestRun::Off);
    }
    let now = state.clock.now();
    let interval = TimeDelta::from_std(interval).unwrap_or(TimeDelta::days(1));
    let last = instant(state, LAST_SENT_KEY).await?;
    if let Some(at) = last.map(|l| l + interval).filter(|due| *due > now) {
        return Ok(DigestRun::NotDue(at));
    }
    if let Some(at) = instant(state, LAST_FAILED_KEY)
        .await?
        .map(|f| f + RETRY_AFTER)
        .filter(|retry| *retry > now)
    {
        return Ok(DigestRun::NotDue(at));
    }
    let open = state
        .store
        .list_incidents(&crate::store::IncidentFilter {
            status: Some(crate::incidents::Status::Open),
            limit: 5000,
            ..Default::default()
        })
        .await?;
    let engine = state.engine.get();
    let digest = build(&DigestInput {
        open: &open,
        since: last,
        now,
        thresholds: &engine.thresholds,
        public_url: cfg.public_url.as_deref(),
    });
    let stamp = now.to_rfc3339();
    if digest.quiet {
        state
            .store
            .put_setting(LAST_SENT_KEY, &stamp, BY, now)
            .await?;
        return Ok(DigestRun::Quiet);
    }
    let sent: Result<SendOutcome, MailError> = async {
        Mailer::from_url(url, from)?
            .send_text(
                &digest.subject,
                digest.text.clone(),
                &cfg.report_recipients,
                now,
            )
            .await
    }
    .await;
    match sent {
        Ok(o) => {
            state
                .store
                .put_setting(LAST_SENT_KEY, &stamp, BY, now)
                .await?;
            Ok(DigestRun::Sent {
                message_id: o.message_id,
                relay_response: o.relay_response,
            })
        }
        Err(e) => {
            state
                .store
                .put_setting(LAST_FAILED_KEY, &stamp, BY, now)
                .await?;
            Err(e.into())
        }
    }
}
