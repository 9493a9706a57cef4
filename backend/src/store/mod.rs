//! Storage: one narrow trait shaped by what the domain does, a SQLite and a PostgreSQL
//! implementation picked from the URL scheme, migrations per backend.

#[macro_use]
mod common;
#[macro_use]
pub mod web;
#[macro_use]
pub mod notify;
#[macro_use]
pub mod reports;
mod commit;
pub mod postgres;
mod rows;
pub mod sqlite;

use crate::event::{EventType, NewEvent, StoredEvent};
use crate::incidents::{Engine, Incident, Phase, Status};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::Serialize;
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database cannot be reached or did not answer in time; callers answer 503.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    #[error("{0} already exists")]
    Conflict(String),
    #[error("stored data is unreadable: {0}")]
    Corrupt(String),
    #[error("unsupported database URL {0:?}: use sqlite://PATH or postgres://…")]
    UnsupportedUrl(String),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("database error: {0}")]
    Database(sqlx::Error),
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        match &e {
            sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            // Garbled or cut-off wire traffic: a broken connection or a proxy in
            // front of the database failing, not a fault in the data.
            | sqlx::Error::Protocol(_)
            | sqlx::Error::WorkerCrashed => StoreError::Unavailable(e.to_string()),
            sqlx::Error::Database(db) if db.is_unique_violation() => {
                StoreError::Conflict(db.message().to_string())
            }
            // PostgreSQL shutting down or refusing: class 57 (operator intervention)
            // and 08 (connection exception).
            sqlx::Error::Database(db)
                if db
                    .code()
                    .is_some_and(|c| c.starts_with("57") || c.starts_with("08")) =>
            {
                StoreError::Unavailable(e.to_string())
            }
            _ => StoreError::Database(e),
        }
    }
}

pub use commit::ReclassifyPage;

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

#[derive(Clone, Debug, Serialize)]
pub struct Source {
    pub id: i64,
    pub name: String,
    pub format: String,
    #[serde(with = "crate::time_format")]
    pub created_at: DateTime<Utc>,
    #[serde(with = "crate::time_format::option")]
    pub revoked_at: Option<DateTime<Utc>>,
    #[serde(with = "crate::time_format::option")]
    pub last_event_at: Option<DateTime<Utc>>,
    #[serde(flatten)]
    pub keys: SourceKeys,
}

/// How a webhook source checks that a request really comes from its provider, on top
/// of the source token. Serialised without the secret: only whether one is set.
#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
pub struct SourceKeys {
    /// HMAC signing key (Mailgun, Mandrill) or `user:password` / bearer credentials
    /// (SparkPost, Brevo).
    #[serde(rename = "has_secret", serialize_with = "is_set")]
    pub secret: Option<String>,
    /// PEM or base64 public key (SendGrid, Postal) or a pinned SNS certificate (SES).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub public_key: Option<String>,
    /// The webhook URL exactly as configured at the provider (Mandrill signs it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub webhook_url: Option<String>,
}

fn is_set<S: serde::Serializer>(v: &Option<String>, s: S) -> std::result::Result<S::Ok, S::Error> {
    s.serialize_bool(v.is_some())
}

#[derive(Clone, Debug, Serialize)]
pub struct ApiToken {
    pub id: i64,
    pub name: String,
    #[serde(with = "crate::time_format")]
    pub created_at: DateTime<Utc>,
    #[serde(with = "crate::time_format::option")]
    pub revoked_at: Option<DateTime<Utc>>,
}

/// An item that failed validation, kept with its raw payload for inspection.
#[derive(Clone, Debug)]
pub struct NewReject {
    pub source_id: Option<i64>,
    pub received_at: DateTime<Utc>,
    pub index: Option<usize>,
    pub field: Option<String>,
    pub reason: String,
    pub raw: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct DeadLetter {
    pub id: i64,
    pub source: Option<String>,
    #[serde(with = "crate::time_format")]
    pub received_at: DateTime<Utc>,
    pub index: Option<i64>,
    pub field: Option<String>,
    pub reason: String,
    pub raw: String,
}

/// What one ingest request asks the store to write, atomically.
#[derive(Clone, Debug, Default)]
pub struct WriteBatch {
    pub events: Vec<NewEvent>,
    pub rejects: Vec<NewReject>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventOutcome {
    Stored { incident_id: Option<i64> },
    Duplicate,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BatchOutcome {
    /// One per event of the batch, in order.
    pub events: Vec<EventOutcome>,
    /// Incidents this commit opened (reported on the first batch of a group).
    pub opened: Vec<i64>,
}

#[derive(Clone, Debug, Default)]
pub struct IncidentFilter {
    pub phase: Option<Phase>,
    pub status: Option<Status>,
    pub destination: Option<String>,
    /// Incidents in which this sending IP was deferred.
    pub ip: Option<String>,
    /// Incidents with deferrals of this cause.
    pub cause: Option<String>,
    /// Free text: matches the destination, IPs, MX hosts, domains and replies.
    pub search: Option<String>,
    pub limit: i64,
    pub offset: i64,
}

impl IncidentFilter {
    /// The exact test behind the SQL prefilter (which matches on the stored JSON text).
    pub fn matches(&self, inc: &Incident) -> bool {
        self.ip
            .as_ref()
            .is_none_or(|ip| inc.routes.get(ip).is_some_and(|r| r.counts.deferred > 0))
            && self
                .cause
                .as_ref()
                .is_none_or(|c| inc.causes.contains_key(c))
            && self.search.as_ref().is_none_or(|q| {
                let q = q.to_lowercase();
                inc.destination.to_lowercase().contains(&q)
                    || inc.routes.keys().any(|k| k.contains(&q))
                    || inc.mx_hosts.keys().any(|k| k.to_lowercase().contains(&q))
                    || inc
                        .recipient_domains
                        .items
                        .keys()
                        .any(|k| k.to_lowercase().contains(&q))
                    || inc
                        .replies
                        .iter()
                        .any(|r| r.text.to_lowercase().contains(&q))
            })
    }
}

#[derive(Clone, Debug, Default)]
pub struct EventFilter {
    pub kind: Option<EventType>,
    pub source: Option<String>,
    pub incident: Option<i64>,
    pub since: Option<DateTime<Utc>>,
    /// Keyset pagination: events with an id above this one.
    pub after: Option<i64>,
    pub limit: i64,
}

/// A check result as stored, with its subject and time.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct StoredCheck {
    pub subject: String,
    #[serde(flatten)]
    pub result: crate::checks::CheckResult,
    #[serde(with = "crate::time_format")]
    pub checked_at: DateTime<Utc>,
}

/// A check whose verdict or records changed between two runs: the lead when it
/// happened shortly before deferrals began.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct StoredCheckChange {
    pub id: i64,
    pub subject: String,
    pub name: String,
    pub previous: Option<String>,
    pub verdict: String,
    pub description: String,
    #[serde(with = "crate::time_format")]
    pub at: DateTime<Utc>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct SweepReport {
    pub examined: usize,
    pub recovered: usize,
    pub stale: usize,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct PruneReport {
    pub events: u64,
    pub dead_letters: u64,
    pub check_results: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

#[derive(Clone, Debug)]
pub struct ConnectOptions {
    pub max_connections: u32,
    /// How long a request waits for a connection before the database counts as down.
    pub acquire_timeout: Duration,
}

impl Default for ConnectOptions {
    fn default() -> Self {
        ConnectOptions {
            max_connections: 10,
            acquire_timeout: Duration::from_secs(5),
        }
    }
}

#[async_trait]
pub trait Store:
    web::WebStore + notify::NotifyStore + reports::ReportStore + Send + Sync + 'static
{
    fn backend(&self) -> Backend;
    async fn ping(&self) -> Result<()>;

    async fn create_source(
        &self,
        name: &str,
        format: &str,
        token_hash: &str,
        now: DateTime<Utc>,
    ) -> Result<Source>;
    async fn list_sources(&self) -> Result<Vec<Source>>;
    /// Sets what the source verifies its provider's requests with; false when no such
    /// source.
    async fn set_source_keys(&self, name: &str, keys: &SourceKeys) -> Result<bool>;
    async fn source_by_token(&self, token_hash: &str) -> Result<Option<Source>>;
    /// Replaces the token of a source; false when no such source.
    async fn rotate_source_token(&self, name: &str, token_hash: &str) -> Result<bool>;
    async fn revoke_source(&self, name: &str, now: DateTime<Utc>) -> Result<bool>;

    async fn create_api_token(
        &self,
        name: &str,
        token_hash: &str,
        now: DateTime<Utc>,
    ) -> Result<ApiToken>;
    async fn list_api_tokens(&self) -> Result<Vec<ApiToken>>;
    async fn api_token_by_hash(&self, token_hash: &str) -> Result<Option<ApiToken>>;
    async fn revoke_api_token(&self, name: &str, now: DateTime<Utc>) -> Result<bool>;

    /// Stores the batches' new events and rejects and updates their incidents, all in
    /// one transaction: either everything is durable or nothing is written.
    async fn record_events(
        &self,
        batches: &[WriteBatch],
        engine: &Engine,
        now: DateTime<Utc>,
    ) -> Result<Vec<BatchOutcome>>;

    /// Lets time pass for open incidents: recovered after a quiet period, stale after
    /// a day without events.
    async fn sweep(&self, engine: &Engine, now: DateTime<Utc>) -> Result<SweepReport>;

    /// Classifies the stored events after `after` (up to `limit`) again with the current
    /// rules and moves their incidents' cause counts accordingly.
    async fn reclassify_page(
        &self,
        after: i64,
        limit: i64,
        classifier: &crate::smtp::Classifier,
        engine: &Engine,
        now: DateTime<Utc>,
    ) -> Result<ReclassifyPage>;

    async fn list_incidents(&self, filter: &IncidentFilter) -> Result<Vec<Incident>>;
    async fn incident(&self, id: i64) -> Result<Option<Incident>>;
    async fn open_incidents_by_phase(&self) -> Result<Vec<(String, i64)>>;

    async fn list_events(&self, filter: &EventFilter) -> Result<Vec<StoredEvent>>;
    async fn list_dead_letters(&self, after: Option<i64>, limit: i64) -> Result<Vec<DeadLetter>>;

    /// Stores one run of checks and returns what changed since the previous run of
    /// each check on the same subject (also stored as check changes).
    async fn record_checks(
        &self,
        report: &crate::checks::CheckReport,
    ) -> Result<Vec<crate::checks::CheckChange>>;
    /// The most recent result of each check on the subject.
    async fn latest_checks(&self, subject: &str) -> Result<Vec<StoredCheck>>;
    async fn check_history(&self, subject: &str, limit: i64) -> Result<Vec<StoredCheck>>;
    async fn check_changes(
        &self,
        subjects: &[String],
        since: Option<DateTime<Utc>>,
        limit: i64,
    ) -> Result<Vec<StoredCheckChange>>;

    /// Deletes raw events, dead letters and check results received before `before`;
    /// incidents and check changes stay.
    async fn prune(&self, before: DateTime<Utc>) -> Result<PruneReport>;
}

pub type DynStore = Arc<dyn Store>;

/// Opens the database named by `url` and brings its schema up to date.
pub async fn connect(url: &str, opts: &ConnectOptions) -> Result<DynStore> {
    if url.starts_with("sqlite:") {
        Ok(Arc::new(sqlite::SqliteStore::connect(url, opts).await?))
    } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
        Ok(Arc::new(postgres::PgStore::connect(url, opts).await?))
    } else {
        Err(StoreError::UnsupportedUrl(redact_url(url)))
    }
}

/// A database URL with its password masked, for logs and error messages.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &url[s + 3..at];
            match creds.find(':') {
                Some(c) => format!("{}{}:***{}", &url[..s + 3], &creds[..c], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

pub(crate) fn ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

pub(crate) fn from_ms(ms: i64) -> DateTime<Utc> {
    crate::time_format::from_millis(ms)
}

pub(crate) fn parse_state(id: i64, state: &str) -> Result<Incident> {
    let mut inc: Incident = serde_json::from_str(state)
        .map_err(|e| StoreError::Corrupt(format!("incident {id}: {e}")))?;
    inc.id = id;
    Ok(inc)
}

#[cfg(test)]
mod tests {
    #[test]
    fn redacts_passwords_only() {
        assert_eq!(
            super::redact_url("postgres://app:s3cret@db:5432/dw"),
            "postgres://app:***@db:5432/dw"
        );
        assert_eq!(
            super::redact_url("postgres://postgres@127.0.0.1/test"),
            "postgres://postgres@127.0.0.1/test"
        );
    }
}
