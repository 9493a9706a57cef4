//! Escalation reports sent by email: one record per attempt, accepted or refused, so
//! the incident shows who sent what to whom and what the relay answered.

use super::Result;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::Serialize;

/// One attempt to send, as it is recorded.
#[derive(Clone, Debug)]
pub struct NewReportSend<'a> {
    pub incident_id: i64,
    pub at: DateTime<Utc>,
    /// The dashboard user, or `api:<token name>` / `cli` for machine sends.
    pub username: &'a str,
    pub recipients: &'a [String],
    pub message_id: &'a str,
    /// True only when the relay accepted the message.
    pub ok: bool,
    /// The relay's reply: its acceptance, its refusal, or why it could not be reached.
    pub relay_response: &'a str,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ReportSend {
    pub id: i64,
    pub incident_id: i64,
    #[serde(with = "crate::time_format")]
    pub at: DateTime<Utc>,
    pub username: String,
    pub recipients: Vec<String>,
    pub message_id: String,
    pub ok: bool,
    pub relay_response: String,
}

#[async_trait]
pub trait ReportStore: Send + Sync + 'static {
    async fn record_send(&self, send: &NewReportSend<'_>) -> Result<ReportSend>;
    /// The incident's sends, newest first.
    async fn list_sends(&self, incident_id: i64) -> Result<Vec<ReportSend>>;
}

#[derive(sqlx::FromRow)]
pub(crate) struct ReportSendRow {
    pub id: i64,
    pub incident_id: i64,
    pub at: i64,
    pub username: String,
    pub recipients: String,
    pub message_id: String,
    pub ok: bool,
    pub relay_response: String,
}

impl From<ReportSendRow> for ReportSend {
    fn from(r: ReportSendRow) -> Self {
        ReportSend {
            id: r.id,
            incident_id: r.incident_id,
            at: super::from_ms(r.at),
            username: r.username,
            recipients: split_recipients(&r.recipients),
            message_id: r.message_id,
            ok: r.ok,
            relay_response: r.relay_response,
        }
    }
}

/// One address per line: a display name may hold a comma, a validated address never
/// holds a line break.
pub(crate) fn join_recipients(to: &[String]) -> String {
    to.iter().map(|a| a.trim()).collect::<Vec<_>>().join("\n")
}

fn split_recipients(s: &str) -> Vec<String> {
    s.lines()
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect()
}

pub(crate) const REPORT_SEND_COLUMNS: &str =
    "id, incident_id, at, username, recipients, message_id, ok, relay_response";

/// The `ReportStore` implementation; the SQL is the same text on both backends.
macro_rules! impl_report_store {
    ($ty:ty) => {
        #[async_trait::async_trait]
        impl $crate::store::reports::ReportStore for $ty {
            async fn record_send(
                &self,
                send: &$crate::store::reports::NewReportSend<'_>,
            ) -> $crate::store::Result<$crate::store::reports::ReportSend> {
                let sql = format!(
                    "INSERT INTO report_sends (incident_id, at, username, recipients, message_id, ok, relay_response) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING {}",
                    $crate::store::reports::REPORT_SEND_COLUMNS
                );
                let row: $crate::store::reports::ReportSendRow = sqlx::query_as(&sql)
                    .bind(send.incident_id)
                    .bind($crate::store::ms(send.at))
                    .bind(send.username)
                    .bind($crate::store::reports::join_recipients(send.recipients))
                    .bind(send.message_id)
                    .bind(send.ok)
                    .bind(send.relay_response)
                    .fetch_one(&self.pool)
                    .await?;
                Ok(row.into())
            }

            async fn list_sends(
                &self,
                incident_id: i64,
            ) -> $crate::store::Result<Vec<$crate::store::reports::ReportSend>> {
                let sql = format!(
                    "SELECT {} FROM report_sends WHERE incident_id = $1 ORDER BY id DESC",
                    $crate::store::reports::REPORT_SEND_COLUMNS
                );
                let rows: Vec<$crate::store::reports::ReportSendRow> = sqlx::query_as(&sql)
                    .bind(incident_id)
                    .fetch_all(&self.pool)
                    .await?;
                Ok(rows.into_iter().map(Into::into).collect())
            }
        }
    };
}
