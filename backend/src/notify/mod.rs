//! Outbound webhook notifications when an incident opens, reopens, enters a configured
//! phase or recovers (issue 7, "Notifications").
//!
//! The worker reads the incidents changed since its cursor, derives their transitions
//! from the phase history (`transition`), and queues one row per (webhook, transition)
//! with the body already built (`payload`). The store's UNIQUE constraint on that pair
//! is the deduplication, so reading an incident twice, restarting, or running several
//! instances on one PostgreSQL never notifies a transition twice. Due rows are then
//! claimed one by one (a compare-and-set on their schedule) and posted (`deliver`);
//! failures are rescheduled with backoff in the row itself, so a restart resumes them.

pub mod config;
pub mod deliver;
pub mod payload;
pub mod transition;

pub use config::{Event, Format, NotifyConfig, Webhook, mask_url};
pub use transition::{Kind, Transition, transitions};

use crate::app::AppState;
use crate::store::StoreError;
use crate::store::notify::{Delivery, DeliveryState, DueNotification, NewNotification};
use chrono::TimeDelta;
use futures::StreamExt;
use serde::Serialize;
use tokio::sync::watch;

#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What one pass did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct RunReport {
    /// Incidents read (changed since the cursor, with an overlap).
    pub incidents: usize,
    /// Notifications newly queued.
    pub queued: u64,
    /// Attempts made, by outcome.
    pub delivered: usize,
    pub retrying: usize,
    pub failed: usize,
}

/// Incidents are read again this far behind the cursor: an ingest commit stamps
/// `updated_at` before it commits, so a slow commit can become visible after a later
/// one moved the cursor past it. Reading twice is harmless; the queue deduplicates.
const OVERLAP: TimeDelta = TimeDelta::minutes(5);
const PAGE: i64 = 200;
/// Due notifications handled per pass, and posts in flight at once.
const DUE_BATCH: i64 = 200;
const CONCURRENCY: usize = 4;

/// One pass: queue new transitions, then attempt every due notification.
pub async fn run_once(state: &AppState) -> Result<RunReport, NotifyError> {
    let cfg = state.effective();
    let mut report = RunReport::default();
    if cfg.notify.webhooks.is_empty() {
        return Ok(report);
    }
    queue_transitions(state, &cfg, &mut report).await?;
    deliver_due(state, &cfg.notify, &mut report).await?;
    Ok(report)
}

async fn queue_transitions(
    state: &AppState,
    cfg: &crate::config::Config,
    report: &mut RunReport,
) -> Result<(), NotifyError> {
    let n = &cfg.notify;
    let now = state.clock.now();
    let not_before = now - TimeDelta::from_std(n.max_age).unwrap_or(TimeDelta::days(1));
    // A transition at event time T was written when the clock read at least
    // T - max_future_skew, so older rows cannot hold one inside max_age.
    let skew = TimeDelta::from_std(cfg.max_future_skew).unwrap_or(TimeDelta::hours(1));
    let floor = (not_before - skew).timestamp_millis();
    let cursor = state.store.notify_cursor().await?.unwrap_or(floor);
    let since = (cursor - OVERLAP.num_milliseconds()).max(floor);
    let mut after = (since, -1);
    let mut high_water = cursor;
    loop {
        let page = state.store.incidents_changed(since, after, PAGE).await?;
        let Some(&(last_updated, ref last)) = page.last() else {
            break;
        };
        after = (last_updated, last.id);
        high_water = high_water.max(last_updated);
        report.incidents += page.len();
        let created_at = state.clock.now();
        let mut items = Vec::new();
        for (_, inc) in &page {
            let trs = transitions(inc, Some(not_before));
            for w in &n.webhooks {
                for tr in trs.iter().filter(|t| t.wanted_by(w)) {
                    let body = payload::build(w.format, inc, tr, cfg.public_url.as_deref());
                    items.push(NewNotification {
                        webhook_id: w.id(),
                        webhook_label: w.label(),
                        transition_key: tr.key(),
                        incident_id: inc.id,
                        event: tr.kind.event().to_string(),
                        phase: tr.kind.phase().map(|p| p.as_str().to_string()),
                        transition_at: tr.at,
                        payload: body.to_string(),
                        created_at,
                    });
                }
            }
        }
        report.queued += state.store.queue_notifications(&items).await?;
        if (page.len() as i64) < PAGE {
            break;
        }
    }
    // Only after everything read is queued: a failure above reads it all again.
    state.store.advance_notify_cursor(high_water).await?;
    Ok(())
}

async fn deliver_due(
    state: &AppState,
    n: &NotifyConfig,
    report: &mut RunReport,
) -> Result<(), NotifyError> {
    let ids: Vec<(String, &Webhook)> = n.webhooks.iter().map(|w| (w.id(), w)).collect();
    let id_list: Vec<String> = ids.iter().map(|(i, _)| i.clone()).collect();
    let due = state
        .store
        .due_notifications(&id_list, state.clock.now(), DUE_BATCH)
        .await?;
    // How long a claimed row stays hidden from other workers: longer than one
    // attempt can take, so a crash mid-send only delays the retry.
    let lease =
        TimeDelta::from_std(n.timeout).unwrap_or(TimeDelta::seconds(10)) + TimeDelta::seconds(60);
    let attempts: Vec<_> = due
        .into_iter()
        .filter_map(|d| {
            let w = ids.iter().find(|(i, _)| *i == d.webhook_id)?.1;
            Some(attempt(state, n, w, d, lease))
        })
        .collect();
    let outcomes: Vec<Result<Option<DeliveryState>, StoreError>> = futures::stream::iter(attempts)
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await;
    for o in outcomes {
        match o? {
            Some(DeliveryState::Delivered) => report.delivered += 1,
            Some(DeliveryState::Pending) => report.retrying += 1,
            Some(DeliveryState::Failed) => report.failed += 1,
            None => {}
        }
    }
    Ok(())
}

/// Claims one due notification and posts it; `None` when another worker had it.
async fn attempt(
    state: &AppState,
    n: &NotifyConfig,
    w: &Webhook,
    d: DueNotification,
    lease: TimeDelta,
) -> Result<Option<DeliveryState>, StoreError> {
    let now = state.clock.now();
    if !state
        .store
        .claim_notification(d.id, d.next_attempt_at, now + lease)
        .await?
    {
        return Ok(None);
    }
    let (answer, ms) = deliver::post(&w.url, &d.payload, n.timeout).await;
    let record = deliver::decide(n, d.attempts, &answer, state.clock.now(), ms);
    if record.state != DeliveryState::Delivered {
        tracing::warn!(
            webhook = %w.label(),
            notification = d.id,
            state = record.state.as_str(),
            error = record.error.as_deref().unwrap_or(""),
            "notification not delivered"
        );
    }
    state.store.record_attempt(d.id, &record).await?;
    Ok(Some(record.state))
}

/// The background worker: a pass every `notify.interval`, the first one interval
/// after start (a restart's due retries wait at most that long). Does nothing when no
/// webhook is configured. Stops when `shutdown` flips.
pub fn spawn(state: AppState, mut shutdown: watch::Receiver<bool>) {
    let interval = state.effective().notify.interval;
    if state.effective().notify.webhooks.is_empty() {
        return;
    }
    tokio::spawn(async move {
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => match run_once(&state).await {
                    Ok(r) if r.queued as usize + r.delivered + r.retrying + r.failed > 0 => tracing::info!(
                        queued = r.queued, delivered = r.delivered, retrying = r.retrying, failed = r.failed,
                        "notifications"
                    ),
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "notification pass failed"),
                },
                _ = shutdown.changed() => break,
            }
        }
    });
}

/// The delivery log, newest first, for the settings page: webhook URLs masked, each
/// notification with its attempts.
pub async fn list_deliveries(state: &AppState, limit: i64) -> Result<Vec<Delivery>, NotifyError> {
    Ok(state.store.list_deliveries(limit.clamp(1, 1000)).await?)
}
