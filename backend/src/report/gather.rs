//! Loading what a report needs, in one place for the incident page's download, the API
//! and the CLI: the latest checks of the incident's subjects, the check changes around
//! it, and a sample of its stored events.

use super::{EscalationReport, ReportInput, SenderInfo};
use crate::app::AppState;
use crate::config::Config;
use crate::event::StoredEvent;
use crate::incidents::Incident;
use crate::incidents::phase::Thresholds;
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
    for s in subjects(inc) {
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
            &subjects(inc),
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

/// Subject names (IPs and domains) whose checks belong with an incident.
pub fn subjects(inc: &Incident) -> Vec<String> {
    let mut v: Vec<String> = crate::check_runner::subjects_for(inc)
        .iter()
        .map(|s| s.key())
        .collect();
    v.dedup();
    v
}
