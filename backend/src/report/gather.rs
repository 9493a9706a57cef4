//! Loading what a report needs, in one place for the incident page's download, the API
//! and the CLI: the latest checks of the incident's subjects, the check changes around
//! it, and a sample of its stored events.

use super::{EscalationReport, Mailer, ReportInput, SendOutcome, SenderInfo};
use crate::app::AppState;
use crate::config::Config;
use crate::event::StoredEvent;
use crate::incidents::Incident;
use crate::incidents::phase::Thresholds;
use crate::store::reports::{NewReportSend, ReportSend};
use crate::store::{EventFilter, Store, StoreError, StoredCheck, StoredCheckChange};
use chrono::{DateTime, TimeDelta, Utc};

/// Events read for MX IPs and the transcript sample: the oldest ones of the incident,
/// enough to see every MX host of a typical destination without reading a long
/// incident's whole history on each report.
pub const SAMPLE_EVENTS: i64 = 500;
/// Check changes before the first deferral that can still be the lead.
const CHANGES_BEFORE: TimeDelta = TimeDelta::days(1);
const MAX_CHANGES: i64 = 200;

pub struct Evidence {
    pub checks: Vec<StoredCheck>,
    pub changes: Vec<StoredCheckChange>,
    pub events: Vec<StoredEvent>,
}

/// The latest result of every check on the incident's subjects.
pub async fn latest_checks(
    store: &dyn Store,
    inc: &Incident,
) -> Result<Vec<StoredCheck>, StoreError> {
    let mut checks = Vec::new();
    for s in crate::check_runner::subject_keys(inc) {
        checks.extend(store.latest_checks(&s).await?);
    }
    Ok(checks)
}

pub async fn sample_events(
    store: &dyn Store,
    inc: &Incident,
) -> Result<Vec<StoredEvent>, StoreError> {
    store
        .list_events(&EventFilter {
            incident: Some(inc.id),
            limit: SAMPLE_EVENTS,
            ..Default::default()
        })
        .await
}

pub async fn evidence(store: &dyn Store, inc: &Incident) -> Result<Evidence, StoreError> {
    let changes = store
        .check_changes(
            &crate::check_runner::subject_keys(inc),
            Some(inc.first_seen - CHANGES_BEFORE),
            MAX_CHANGES,
        )
        .await?;
    Ok(Evidence {
        checks: latest_checks(store, inc).await?,
        changes,
        events: sample_events(store, inc).await?,
    })
}

/// The report of an incident as of `now`, with the sender named by the configuration.
pub async fn report(
    store: &dyn Store,
    cfg: &Config,
    thresholds: &Thresholds,
    inc: &Incident,
    now: DateTime<Utc>,
) -> Result<EscalationReport, StoreError> {
    let ev = evidence(store, inc).await?;
    Ok(super::build(&ReportInput {
        incident: inc,
        checks: &ev.checks,
        changes: &ev.changes,
        events: &ev.events,
        thresholds,
        now,
        sender: sender(cfg),
    }))
}

/// The report as the running server sees it: settings saved in the browser applied,
/// the engine's current thresholds, the app's clock.
pub async fn for_state(state: &AppState, inc: &Incident) -> Result<EscalationReport, StoreError> {
    let engine = state.engine.get();
    let cfg = state.effective();
    report(
        &*state.store,
        &cfg,
        &engine.thresholds,
        inc,
        state.clock.now(),
    )
    .await
}

pub fn sender(cfg: &Config) -> SenderInfo<'_> {
    SenderInfo {
        organisation: cfg.sender_org.as_deref(),
        contact: cfg.smtp_from.as_deref(),
    }
}

/// Why a report was not sent. Only `Relay` reached the relay, and only it is recorded.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// The relay or the sender address is not configured; `field` names the setting.
    #[error("{field}: {reason}")]
    NotConfigured { field: &'static str, reason: String },
    #[error(transparent)]
    Invalid(#[from] super::ReportError),
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The relay refused the message or could not be reached; the attempt is recorded
    /// as failed with the relay's reply.
    #[error("not sent: {}", .error)]
    Relay {
        record: Box<ReportSend>,
        error: super::MailError,
    },
}

/// Most recipients one send takes: reports go to a postmaster and a few colleagues,
/// not to a list.
pub const MAX_RECIPIENTS: usize = 20;

/// Emails the report through the configured relay and records the attempt, whatever
/// the relay answers: `Ok` only when it accepted the message.
pub async fn send_and_record(
    store: &dyn Store,
    cfg: &Config,
    report: &EscalationReport,
    incident_id: i64,
    to: &[String],
    username: &str,
    now: DateTime<Utc>,
) -> Result<(ReportSend, SendOutcome), SendError> {
    if to.len() > MAX_RECIPIENTS {
        return Err(super::ReportError::Address {
            field: "to",
            reason: format!("at most {MAX_RECIPIENTS} recipients per send"),
        }
        .into());
    }
    // Addresses first: a typo is the operator's to fix, whatever the configuration.
    super::mail::parse_recipients(to)?;
    let url = cfg
        .smtp_url
        .as_deref()
        .filter(|u| !u.trim().is_empty())
        .ok_or(SendError::NotConfigured {
            field: "smtp_url",
            reason: "no SMTP relay is configured: set DEFERWATCH_SMTP_URL (e.g. \
                     smtp://127.0.0.1:25) or smtp_url on the settings page"
                .into(),
        })?;
    let from = cfg
        .smtp_from
        .as_deref()
        .filter(|f| !f.trim().is_empty())
        .ok_or(SendError::NotConfigured {
            field: "smtp_from",
            reason: "no sender address is configured: set DEFERWATCH_SMTP_FROM or \
                     smtp_from on the settings page"
                .into(),
        })?;
    let mailer = Mailer::from_url(url, from).map_err(|e| match e {
        super::MailError::Report(r) => SendError::Invalid(r),
        other => SendError::NotConfigured {
            field: "smtp_url",
            reason: other.to_string(),
        },
    })?;
    let message_id = mailer.new_message_id();
    let result = mailer.send(report, to, now, &message_id).await;
    let (ok, relay_response) = match &result {
        Ok(outcome) => (true, outcome.relay_response.clone()),
        Err(e) => (false, e.relay_reply()),
    };
    let record = store
        .record_send(&NewReportSend {
            incident_id,
            at: now,
            username,
            recipients: to,
            message_id: &message_id,
            ok,
            relay_response: &relay_response,
        })
        .await?;
    match result {
        Ok(outcome) => Ok((record, outcome)),
        Err(error) => Err(SendError::Relay {
            record: Box::new(record),
            error,
        }),
    }
}
