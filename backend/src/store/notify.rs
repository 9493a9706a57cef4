//! What the notifier stores: one row per (webhook, transition) — the deduplication,
//! the retry queue and the delivery log at once — each attempt, and how far the
//! incidents have been read.

use super::Result;
use crate::incidents::Incident;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::Serialize;

/// A transition to notify to one webhook, as queued.
#[derive(Clone, Debug)]
pub struct NewNotification {
    pub webhook_id: String,
    pub webhook_label: String,
    pub transition_key: String,
    pub incident_id: i64,
    pub event: String,
    pub phase: Option<String>,
    pub transition_at: DateTime<Utc>,
    pub payload: String,
    pub created_at: DateTime<Utc>,
}

/// A queued notification whose next attempt is due.
#[derive(Clone, Debug)]
pub struct DueNotification {
    pub id: i64,
    pub webhook_id: String,
    pub payload: String,
    pub attempts: u32,
    pub next_attempt_at: DateTime<Utc>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DeliveryState {
    Pending,
    Delivered,
    Failed,
}

impl DeliveryState {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryState::Pending => "pending",
            DeliveryState::Delivered => "delivered",
            DeliveryState::Failed => "failed",
        }
    }

    fn parse(s: &str) -> Result<Self> {
        match s {
            "pending" => Ok(DeliveryState::Pending),
            "delivered" => Ok(DeliveryState::Delivered),
            "failed" => Ok(DeliveryState::Failed),
            other => Err(super::StoreError::Corrupt(format!(
                "notification state {other:?}"
            ))),
        }
    }
}

/// One attempt's outcome and what it leaves the notification in.
#[derive(Clone, Debug)]
pub struct AttemptRecord {
    pub at: DateTime<Utc>,
    /// The HTTP status, when the receiver answered.
    pub status: Option<u16>,
    /// Transport error or the start of a non-2xx answer's body.
    pub error: Option<String>,
    pub duration_ms: i64,
    pub state: DeliveryState,
    /// When pending: the next attempt.
    pub next_attempt_at: Option<DateTime<Utc>>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DeliveryAttempt {
    #[serde(with = "crate::time_format")]
    pub at: DateTime<Utc>,
    pub status: Option<u16>,
    pub error: Option<String>,
    pub duration_ms: i64,
}

/// One row of the delivery log, newest first, for the settings page.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Delivery {
    pub id: i64,
    /// The webhook URL with its secret parts masked.
    pub webhook: String,
    pub incident_id: i64,
    pub event: String,
    pub phase: Option<String>,
    #[serde(with = "crate::time_format")]
    pub transition_at: DateTime<Utc>,
    pub state: DeliveryState,
    pub attempts: u32,
    pub last_status: Option<u16>,
    pub last_error: Option<String>,
    #[serde(with = "crate::time_format")]
    pub created_at: DateTime<Utc>,
    #[serde(with = "crate::time_format::option")]
    pub last_attempt_at: Option<DateTime<Utc>>,
    /// When pending: the next attempt.
    #[serde(with = "crate::time_format::option")]
    pub next_attempt_at: Option<DateTime<Utc>>,
    /// Delivered or given up.
    #[serde(with = "crate::time_format::option")]
    pub finished_at: Option<DateTime<Utc>>,
    /// Every attempt, oldest first.
    pub log: Vec<DeliveryAttempt>,
}

#[async_trait]
pub trait NotifyStore: Send + Sync + 'static {
    /// Incidents changed at or after `since` (ms, their `updated_at`), in
    /// `(updated_at, id)` order strictly after `after`, with their `updated_at`.
    async fn incidents_changed(
        &self,
        since: i64,
        after: (i64, i64),
        limit: i64,
    ) -> Result<Vec<(i64, Incident)>>;
    async fn notify_cursor(&self) -> Result<Option<i64>>;
    /// Moves the shared cursor forward (never back: instances may race).
    async fn advance_notify_cursor(&self, high_water: i64) -> Result<()>;
    /// Queues the notifications not queued before; returns how many were new.
    async fn queue_notifications(&self, items: &[NewNotification]) -> Result<u64>;
    /// Pending notifications for these webhooks due at `now`, oldest due first.
    async fn due_notifications(
        &self,
        webhook_ids: &[String],
        now: DateTime<Utc>,
        limit: i64,
    ) -> Result<Vec<DueNotification>>;
    /// Takes a due notification for sending by moving its next attempt to
    /// `lease_until`; false when another worker took it first.
    async fn claim_notification(
        &self,
        id: i64,
        expected_next: DateTime<Utc>,
        lease_until: DateTime<Utc>,
    ) -> Result<bool>;
    async fn record_attempt(&self, id: i64, attempt: &AttemptRecord) -> Result<()>;
    async fn list_deliveries(&self, limit: i64) -> Result<Vec<Delivery>>;
}

#[derive(sqlx::FromRow)]
pub(crate) struct DeliveryRow {
    pub id: i64,
    pub webhook_label: String,
    pub incident_id: i64,
    pub event: String,
    pub phase: Option<String>,
    pub transition_at: i64,
    pub state: String,
    pub attempts: i32,
    pub last_status: Option<i32>,
    pub last_error: Option<String>,
    pub created_at: i64,
    pub last_attempt_at: Option<i64>,
    pub next_attempt_at: i64,
    pub finished_at: Option<i64>,
}

impl DeliveryRow {
    pub fn into_delivery(self, log: Vec<DeliveryAttempt>) -> Result<Delivery> {
        let state = DeliveryState::parse(&self.state)?;
        Ok(Delivery {
            id: self.id,
            webhook: self.webhook_label,
            incident_id: self.incident_id,
            event: self.event,
            phase: self.phase,
            transition_at: super::from_ms(self.transition_at),
            state,
            attempts: u32::try_from(self.attempts).unwrap_or(0),
            last_status: self.last_status.and_then(|s| u16::try_from(s).ok()),
            last_error: self.last_error,
            created_at: super::from_ms(self.created_at),
            last_attempt_at: self.last_attempt_at.map(super::from_ms),
            // While pending the column is the schedule (or a sender's lease); once
            // finished it means nothing.
            next_attempt_at: (state == DeliveryState::Pending)
                .then(|| super::from_ms(self.next_attempt_at)),
            finished_at: self.finished_at.map(super::from_ms),
            log,
        })
    }
}

pub(crate) const DELIVERY_COLUMNS: &str = "id, webhook_label, incident_id, event, phase, \
    transition_at, state, attempts, last_status, last_error, created_at, last_attempt_at, \
    next_attempt_at, finished_at";

/// Webhook ids are SHA-256 hex digests we computed; anything else is refused before
/// it could reach the SQL text they are listed in.
pub(crate) fn hex_list(ids: &[String]) -> Option<String> {
    if ids.is_empty()
        || !ids
            .iter()
            .all(|i| !i.is_empty() && i.bytes().all(|b| b.is_ascii_hexdigit()))
    {
        return None;
    }
    Some(
        ids.iter()
            .map(|i| format!("'{i}'"))
            .collect::<Vec<_>>()
            .join(","),
    )
}

/// The `NotifyStore` implementation; the SQL is the same text on both backends.
macro_rules! impl_notify_store {
    ($ty:ty) => {
        #[async_trait::async_trait]
        impl $crate::store::notify::NotifyStore for $ty {
            async fn incidents_changed(
                &self,
                since: i64,
                after: (i64, i64),
                limit: i64,
            ) -> $crate::store::Result<Vec<(i64, $crate::incidents::Incident)>> {
                let rows: Vec<(i64, i64, String)> = sqlx::query_as(
                    "SELECT id, updated_at, state FROM incidents \
                     WHERE updated_at >= $1 AND (updated_at > $2 OR (updated_at = $2 AND id > $3)) \
                     ORDER BY updated_at, id LIMIT $4",
                )
                .bind(since)
                .bind(after.0)
                .bind(after.1)
                .bind(limit)
                .fetch_all(&self.pool)
                .await?;
                rows.into_iter()
                    .map(|(id, updated, state)| Ok((updated, $crate::store::parse_state(id, &state)?)))
                    .collect()
            }

            async fn notify_cursor(&self) -> $crate::store::Result<Option<i64>> {
                let row: Option<(i64,)> = sqlx::query_as("SELECT high_water FROM notify_cursor WHERE id = 1")
                    .fetch_optional(&self.pool)
                    .await?;
                Ok(row.map(|r| r.0))
            }

            async fn advance_notify_cursor(&self, high_water: i64) -> $crate::store::Result<()> {
                sqlx::query(
                    "INSERT INTO notify_cursor (id, high_water) VALUES (1, $1) \
                     ON CONFLICT (id) DO UPDATE SET high_water = excluded.high_water \
                     WHERE notify_cursor.high_water < excluded.high_water",
                )
                .bind(high_water)
                .execute(&self.pool)
                .await?;
                Ok(())
            }

            async fn queue_notifications(
                &self,
                items: &[$crate::store::notify::NewNotification],
            ) -> $crate::store::Result<u64> {
                if items.is_empty() {
                    return Ok(0);
                }
                let mut tx = self.pool.begin().await?;
                let mut inserted = 0;
                for n in items {
                    let created = $crate::store::ms(n.created_at);
                    // The UNIQUE (webhook_id, transition_key) constraint is the
                    // deduplication: a transition seen again, by this instance or
                    // another, inserts nothing.
                    let r = sqlx::query(
                        "INSERT INTO notifications (webhook_id, webhook_label, transition_key, \
                         incident_id, event, phase, transition_at, payload, state, attempts, \
                         created_at, next_attempt_at) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'pending', 0, $9, $9) \
                         ON CONFLICT (webhook_id, transition_key) DO NOTHING",
                    )
                    .bind(&n.webhook_id)
                    .bind(&n.webhook_label)
                    .bind(&n.transition_key)
                    .bind(n.incident_id)
                    .bind(&n.event)
                    .bind(&n.phase)
                    .bind($crate::store::ms(n.transition_at))
                    .bind(&n.payload)
                    .bind(created)
                    .execute(&mut *tx)
                    .await?;
                    inserted += r.rows_affected();
                }
                tx.commit().await?;
                Ok(inserted)
            }

            async fn due_notifications(
                &self,
                webhook_ids: &[String],
                now: chrono::DateTime<chrono::Utc>,
                limit: i64,
            ) -> $crate::store::Result<Vec<$crate::store::notify::DueNotification>> {
                let Some(list) = $crate::store::notify::hex_list(webhook_ids) else {
                    return Ok(Vec::new());
                };
                let sql = format!(
                    "SELECT id, webhook_id, payload, attempts, next_attempt_at FROM notifications \
                     WHERE state = 'pending' AND next_attempt_at <= $1 AND webhook_id IN ({list}) \
                     ORDER BY next_attempt_at, id LIMIT $2"
                );
                let rows: Vec<(i64, String, String, i32, i64)> = sqlx::query_as(&sql)
                    .bind($crate::store::ms(now))
                    .bind(limit)
                    .fetch_all(&self.pool)
                    .await?;
                Ok(rows
                    .into_iter()
                    .map(|(id, webhook_id, payload, attempts, next)| $crate::store::notify::DueNotification {
                        id,
                        webhook_id,
                        payload,
                        attempts: u32::try_from(attempts).unwrap_or(0),
                        next_attempt_at: $crate::store::from_ms(next),
                    })
                    .collect())
            }

            async fn claim_notification(
                &self,
                id: i64,
                expected_next: chrono::DateTime<chrono::Utc>,
                lease_until: chrono::DateTime<chrono::Utc>,
            ) -> $crate::store::Result<bool> {
                // Compare-and-set on the schedule: of several workers that saw the
                // row due, exactly one moves it.
                let r = sqlx::query(
                    "UPDATE notifications SET next_attempt_at = $1 \
                     WHERE id = $2 AND state = 'pending' AND next_attempt_at = $3",
                )
                .bind($crate::store::ms(lease_until))
                .bind(id)
                .bind($crate::store::ms(expected_next))
                .execute(&self.pool)
                .await?;
                Ok(r.rows_affected() == 1)
            }

            async fn record_attempt(
                &self,
                id: i64,
                a: &$crate::store::notify::AttemptRecord,
            ) -> $crate::store::Result<()> {
                let at = $crate::store::ms(a.at);
                let status = a.status.map(i32::from);
                let mut tx = self.pool.begin().await?;
                sqlx::query(
                    "INSERT INTO notification_attempts (notification_id, at, status, error, duration_ms) \
                     VALUES ($1, $2, $3, $4, $5)",
                )
                .bind(id)
                .bind(at)
                .bind(status)
                .bind(&a.error)
                .bind(a.duration_ms)
                .execute(&mut *tx)
                .await?;
                let finished = (a.state != $crate::store::notify::DeliveryState::Pending).then_some(at);
                sqlx::query(
                    "UPDATE notifications SET state = $1, attempts = attempts + 1, last_attempt_at = $2, \
                     last_status = $3, last_error = $4, next_attempt_at = $5, finished_at = $6 WHERE id = $7",
                )
                .bind(a.state.as_str())
                .bind(at)
                .bind(status)
                .bind(&a.error)
                .bind(a.next_attempt_at.map($crate::store::ms).unwrap_or(at))
                .bind(finished)
                .bind(id)
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
                Ok(())
            }

            async fn list_deliveries(
                &self,
                limit: i64,
            ) -> $crate::store::Result<Vec<$crate::store::notify::Delivery>> {
                let sql = format!(
                    "SELECT {} FROM notifications ORDER BY id DESC LIMIT $1",
                    $crate::store::notify::DELIVERY_COLUMNS
                );
                let rows: Vec<$crate::store::notify::DeliveryRow> =
                    sqlx::query_as(&sql).bind(limit).fetch_all(&self.pool).await?;
                if rows.is_empty() {
                    return Ok(Vec::new());
                }
                // Ids are integers we hold, not user text: listing them inline keeps
                // one statement for both backends.
                let ids = rows.iter().map(|r| r.id.to_string()).collect::<Vec<_>>().join(",");
                let attempts: Vec<(i64, i64, Option<i32>, Option<String>, i64)> = sqlx::query_as(&format!(
                    "SELECT notification_id, at, status, error, duration_ms FROM notification_attempts \
                     WHERE notification_id IN ({ids}) ORDER BY id"
                ))
                .fetch_all(&self.pool)
                .await?;
                let mut logs: std::collections::HashMap<i64, Vec<$crate::store::notify::DeliveryAttempt>> =
                    std::collections::HashMap::new();
                for (nid, at, status, error, duration_ms) in attempts {
                    logs.entry(nid).or_default().push($crate::store::notify::DeliveryAttempt {
                        at: $crate::store::from_ms(at),
                        status: status.and_then(|s| u16::try_from(s).ok()),
                        error,
                        duration_ms,
                    });
                }
                rows.into_iter()
                    .map(|r| {
                        let log = logs.remove(&r.id).unwrap_or_default();
                        r.into_delivery(log)
                    })
                    .collect()
            }
        }
    };
}
