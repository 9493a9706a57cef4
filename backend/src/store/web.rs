//! What the dashboard stores: users, sessions, login failures, the operator's marks and
//! activity on incidents, settings edited in the browser, and the sending IPs seen.

use super::Result;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::Serialize;
use std::collections::HashMap;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Admin,
    Viewer,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Viewer => "viewer",
        }
    }
}

impl std::str::FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "admin" => Ok(Role::Admin),
            "viewer" => Ok(Role::Viewer),
            other => Err(format!("unknown role {other:?}: use admin or viewer")),
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct User {
    pub id: i64,
    pub username: String,
    pub role: Role,
    #[serde(with = "crate::time_format")]
    pub created_at: DateTime<Utc>,
    #[serde(with = "crate::time_format::option")]
    pub last_login_at: Option<DateTime<Utc>>,
}

/// A live session with its user, found by the hash of the cookie.
#[derive(Clone, Debug)]
pub struct Session {
    pub id: i64,
    pub user: User,
    pub csrf_token: String,
    pub expires_at: DateTime<Utc>,
}

/// The operator's marks on one incident.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Marks {
    pub ack_by: Option<String>,
    #[serde(with = "crate::time_format::option")]
    pub ack_at: Option<DateTime<Utc>>,
    #[serde(with = "crate::time_format::option")]
    pub snoozed_until: Option<DateTime<Utc>>,
    pub snoozed_by: Option<String>,
    pub resolved_by: Option<String>,
    #[serde(with = "crate::time_format::option")]
    pub resolved_at: Option<DateTime<Utc>>,
}

/// Something an operator did to an incident.
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    Acknowledge,
    Note(String),
    Snooze(DateTime<Utc>),
    Unsnooze,
    Resolve,
    Reopen,
    RerunChecks(String),
    /// The escalation report went out: recipients and the relay's answer.
    ReportSent(String),
    /// The relay refused or could not be reached: recipients and its reply.
    ReportNotSent(String),
}

impl Action {
    pub fn name(&self) -> &'static str {
        match self {
            Action::Acknowledge => "acknowledged",
            Action::Note(_) => "note",
            Action::Snooze(_) => "snoozed",
            Action::Unsnooze => "unsnoozed",
            Action::Resolve => "resolved",
            Action::Reopen => "reopened",
            Action::RerunChecks(_) => "checks re-run",
            Action::ReportSent(_) => "report sent",
            Action::ReportNotSent(_) => "report not sent",
        }
    }

    pub fn detail(&self) -> String {
        match self {
            Action::Note(t) => t.clone(),
            Action::Snooze(until) => format!("until {}", until.format("%Y-%m-%d %H:%M UTC")),
            Action::RerunChecks(summary)
            | Action::ReportSent(summary)
            | Action::ReportNotSent(summary) => summary.clone(),
            _ => String::new(),
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct Activity {
    pub id: i64,
    pub incident_id: i64,
    #[serde(with = "crate::time_format")]
    pub at: DateTime<Utc>,
    pub username: String,
    pub action: String,
    pub detail: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct SendingIp {
    pub ip: String,
    #[serde(with = "crate::time_format")]
    pub first_seen: DateTime<Utc>,
    #[serde(with = "crate::time_format")]
    pub last_seen: DateTime<Utc>,
    pub helo: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct HistogramRow {
    pub bin: i64,
    pub kind: String,
    pub cause: String,
    pub count: i64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FailureCounts {
    pub by_username: i64,
    pub by_client: i64,
}

#[async_trait]
pub trait WebStore: Send + Sync + 'static {
    async fn count_users(&self) -> Result<i64>;
    /// Fails with `Conflict` when the name is taken.
    async fn create_user(
        &self,
        username: &str,
        password_hash: &str,
        role: Role,
        now: DateTime<Utc>,
    ) -> Result<User>;
    /// Creates the user only while there is none at all: the first-run setup page
    /// must not become a way in once someone has set the dashboard up.
    async fn create_first_user(
        &self,
        username: &str,
        password_hash: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<User>>;
    async fn list_users(&self) -> Result<Vec<User>>;
    /// The user and the stored password hash.
    async fn user_credentials(&self, username: &str) -> Result<Option<(User, String)>>;
    async fn set_password(&self, username: &str, password_hash: &str) -> Result<bool>;
    async fn delete_user(&self, username: &str) -> Result<bool>;

    async fn create_session(
        &self,
        token_hash: &str,
        user_id: i64,
        csrf_token: &str,
        now: DateTime<Utc>,
        expires_at: DateTime<Utc>,
    ) -> Result<()>;
    async fn session(&self, token_hash: &str, now: DateTime<Utc>) -> Result<Option<Session>>;
    async fn delete_session(&self, token_hash: &str) -> Result<()>;
    /// Deletes expired sessions and old login failures.
    async fn prune_sessions(&self, now: DateTime<Utc>) -> Result<u64>;

    async fn record_login_failure(
        &self,
        username: &str,
        client: &str,
        now: DateTime<Utc>,
    ) -> Result<()>;
    async fn login_failures(
        &self,
        username: &str,
        client: &str,
        since: DateTime<Utc>,
    ) -> Result<FailureCounts>;
    async fn clear_login_failures(&self, username: &str) -> Result<()>;

    async fn marks(&self, incident_ids: &[i64]) -> Result<HashMap<i64, Marks>>;
    /// Applies the action to the incident's marks and records it in the activity log,
    /// in one transaction. False when there is no such incident.
    async fn apply_action(
        &self,
        incident_id: i64,
        action: &Action,
        username: &str,
        now: DateTime<Utc>,
    ) -> Result<bool>;
    async fn activity(&self, incident_id: i64, limit: i64) -> Result<Vec<Activity>>;

    async fn setting(&self, key: &str) -> Result<Option<String>>;
    async fn put_setting(
        &self,
        key: &str,
        value: &str,
        username: &str,
        now: DateTime<Utc>,
    ) -> Result<()>;

    async fn sending_ips(&self) -> Result<Vec<SendingIp>>;
    /// The incident's stored events counted per time bin, type and cause.
    async fn incident_histogram(&self, incident_id: i64, bin_ms: i64) -> Result<Vec<HistogramRow>>;
    /// The raw payload of one stored event, by its dedupe key.
    async fn event_raw(&self, dedupe_key: &str) -> Result<Option<String>>;
    /// Events per source received since `since`, and dead letters per source.
    async fn source_activity(&self, since: DateTime<Utc>) -> Result<HashMap<String, (i64, i64)>>;
}

#[derive(sqlx::FromRow)]
pub(crate) struct UserRow {
    pub id: i64,
    pub username: String,
    pub role: String,
    pub created_at: i64,
    pub last_login_at: Option<i64>,
}

impl UserRow {
    pub fn into_user(self) -> Result<User> {
        Ok(User {
            id: self.id,
            role: self.role.parse().map_err(|e: String| {
                super::StoreError::Corrupt(format!("user {}: {e}", self.id))
            })?,
            username: self.username,
            created_at: super::from_ms(self.created_at),
            last_login_at: self.last_login_at.map(super::from_ms),
        })
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct MarksRow {
    pub incident_id: i64,
    pub ack_by: Option<String>,
    pub ack_at: Option<i64>,
    pub snoozed_until: Option<i64>,
    pub snoozed_by: Option<String>,
    pub resolved_by: Option<String>,
    pub resolved_at: Option<i64>,
}

impl MarksRow {
    pub fn into_marks(self) -> (i64, Marks) {
        (
            self.incident_id,
            Marks {
                ack_by: self.ack_by,
                ack_at: self.ack_at.map(super::from_ms),
                snoozed_until: self.snoozed_until.map(super::from_ms),
                snoozed_by: self.snoozed_by,
                resolved_by: self.resolved_by,
                resolved_at: self.resolved_at.map(super::from_ms),
            },
        )
    }
}

pub(crate) const USER_COLUMNS: &str = "id, username, role, created_at, last_login_at";

/// The `WebStore` implementation; the SQL is the same text on both backends.
macro_rules! impl_web_store {
    ($ty:ty) => {
        #[async_trait::async_trait]
        impl $crate::store::web::WebStore for $ty {
            async fn count_users(&self) -> $crate::store::Result<i64> {
                let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM users")
                    .fetch_one(&self.pool)
                    .await?;
                Ok(n)
            }

            async fn create_user(
                &self,
                username: &str,
                password_hash: &str,
                role: $crate::store::web::Role,
                now: chrono::DateTime<chrono::Utc>,
            ) -> $crate::store::Result<$crate::store::web::User> {
                let sql = format!(
                    "INSERT INTO users (username, password_hash, role, created_at) VALUES ($1, $2, $3, $4) RETURNING {}",
                    $crate::store::web::USER_COLUMNS
                );
                let row: $crate::store::web::UserRow = sqlx::query_as(&sql)
                    .bind(username)
                    .bind(password_hash)
                    .bind(role.as_str())
                    .bind($crate::store::ms(now))
                    .fetch_one(&self.pool)
                    .await
                    .map_err(|e| match $crate::store::StoreError::from(e) {
                        $crate::store::StoreError::Conflict(_) => {
                            $crate::store::StoreError::Conflict(format!("user {username:?}"))
                        }
                        other => other,
                    })?;
                row.into_user()
            }

            async fn create_first_user(
                &self,
                username: &str,
                password_hash: &str,
                now: chrono::DateTime<chrono::Utc>,
            ) -> $crate::store::Result<Option<$crate::store::web::User>> {
                // One statement, so two browsers racing through setup cannot both win.
                let sql = format!(
                    "INSERT INTO users (username, password_hash, role, created_at) \
                     SELECT $1, $2, 'admin', $3 WHERE NOT EXISTS (SELECT 1 FROM users) RETURNING {}",
                    $crate::store::web::USER_COLUMNS
                );
                let row: Option<$crate::store::web::UserRow> = sqlx::query_as(&sql)
                    .bind(username)
                    .bind(password_hash)
                    .bind($crate::store::ms(now))
                    .fetch_optional(&self.pool)
                    .await?;
                row.map(|r| r.into_user()).transpose()
            }

            async fn list_users(&self) -> $crate::store::Result<Vec<$crate::store::web::User>> {
                let sql = format!("SELECT {} FROM users ORDER BY username", $crate::store::web::USER_COLUMNS);
                let rows: Vec<$crate::store::web::UserRow> = sqlx::query_as(&sql).fetch_all(&self.pool).await?;
                rows.into_iter().map(|r| r.into_user()).collect()
            }

            async fn user_credentials(
                &self,
                username: &str,
            ) -> $crate::store::Result<Option<($crate::store::web::User, String)>> {
                let sql = format!(
                    "SELECT {}, password_hash FROM users WHERE username = $1",
                    $crate::store::web::USER_COLUMNS
                );
                let row: Option<(i64, String, String, i64, Option<i64>, String)> =
                    sqlx::query_as(&sql).bind(username).fetch_optional(&self.pool).await?;
                match row {
                    None => Ok(None),
                    Some((id, username, role, created_at, last_login_at, hash)) => {
                        let user = $crate::store::web::UserRow { id, username, role, created_at, last_login_at }.into_user()?;
                        Ok(Some((user, hash)))
                    }
                }
            }

            async fn set_password(&self, username: &str, password_hash: &str) -> $crate::store::Result<bool> {
                let r = sqlx::query("UPDATE users SET password_hash = $1 WHERE username = $2")
                    .bind(password_hash)
                    .bind(username)
                    .execute(&self.pool)
                    .await?;
                if r.rows_affected() > 0 {
                    // A new password ends every session opened with the old one.
                    sqlx::query("DELETE FROM sessions WHERE user_id IN (SELECT id FROM users WHERE username = $1)")
                        .bind(username)
                        .execute(&self.pool)
                        .await?;
                }
                Ok(r.rows_affected() > 0)
            }

            async fn delete_user(&self, username: &str) -> $crate::store::Result<bool> {
                let mut tx = self.pool.begin().await?;
                sqlx::query("DELETE FROM sessions WHERE user_id IN (SELECT id FROM users WHERE username = $1)")
                    .bind(username)
                    .execute(&mut *tx)
                    .await?;
                let r = sqlx::query("DELETE FROM users WHERE username = $1")
                    .bind(username)
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                Ok(r.rows_affected() > 0)
            }

            async fn create_session(
                &self,
                token_hash: &str,
                user_id: i64,
                csrf_token: &str,
                now: chrono::DateTime<chrono::Utc>,
                expires_at: chrono::DateTime<chrono::Utc>,
            ) -> $crate::store::Result<()> {
                sqlx::query(
                    "INSERT INTO sessions (token_hash, user_id, csrf_token, created_at, expires_at, last_seen_at) \
                     VALUES ($1, $2, $3, $4, $5, $4)",
                )
                .bind(token_hash)
                .bind(user_id)
                .bind(csrf_token)
                .bind($crate::store::ms(now))
                .bind($crate::store::ms(expires_at))
                .execute(&self.pool)
                .await?;
                sqlx::query("UPDATE users SET last_login_at = $1 WHERE id = $2")
                    .bind($crate::store::ms(now))
                    .bind(user_id)
                    .execute(&self.pool)
                    .await?;
                Ok(())
            }

            async fn session(
                &self,
                token_hash: &str,
                now: chrono::DateTime<chrono::Utc>,
            ) -> $crate::store::Result<Option<$crate::store::web::Session>> {
                let row: Option<(i64, String, i64, i64, String, String, i64, Option<i64>)> = sqlx::query_as(
                    "SELECT s.id, s.csrf_token, s.expires_at, u.id, u.username, u.role, u.created_at, u.last_login_at \
                     FROM sessions s JOIN users u ON u.id = s.user_id \
                     WHERE s.token_hash = $1 AND s.expires_at > $2",
                )
                .bind(token_hash)
                .bind($crate::store::ms(now))
                .fetch_optional(&self.pool)
                .await?;
                match row {
                    None => Ok(None),
                    Some((sid, csrf_token, expires_at, id, username, role, created_at, last_login_at)) => {
                        Ok(Some($crate::store::web::Session {
                            id: sid,
                            csrf_token,
                            expires_at: $crate::store::from_ms(expires_at),
                            user: $crate::store::web::UserRow { id, username, role, created_at, last_login_at }.into_user()?,
                        }))
                    }
                }
            }

            async fn delete_session(&self, token_hash: &str) -> $crate::store::Result<()> {
                sqlx::query("DELETE FROM sessions WHERE token_hash = $1")
                    .bind(token_hash)
                    .execute(&self.pool)
                    .await?;
                Ok(())
            }

            async fn prune_sessions(&self, now: chrono::DateTime<chrono::Utc>) -> $crate::store::Result<u64> {
                let a = sqlx::query("DELETE FROM sessions WHERE expires_at <= $1")
                    .bind($crate::store::ms(now))
                    .execute(&self.pool)
                    .await?;
                let day_ago = now - chrono::TimeDelta::days(1);
                sqlx::query("DELETE FROM login_failures WHERE at < $1")
                    .bind($crate::store::ms(day_ago))
                    .execute(&self.pool)
                    .await?;
                Ok(a.rows_affected())
            }

            async fn record_login_failure(
                &self,
                username: &str,
                client: &str,
                now: chrono::DateTime<chrono::Utc>,
            ) -> $crate::store::Result<()> {
                sqlx::query("INSERT INTO login_failures (username, client, at) VALUES ($1, $2, $3)")
                    .bind(username)
                    .bind(client)
                    .bind($crate::store::ms(now))
                    .execute(&self.pool)
                    .await?;
                Ok(())
            }

            async fn login_failures(
                &self,
                username: &str,
                client: &str,
                since: chrono::DateTime<chrono::Utc>,
            ) -> $crate::store::Result<$crate::store::web::FailureCounts> {
                let (by_username, by_client): (i64, i64) = sqlx::query_as(
                    "SELECT (SELECT COUNT(*) FROM login_failures WHERE username = $1 AND at >= $3), \
                            (SELECT COUNT(*) FROM login_failures WHERE client = $2 AND at >= $3)",
                )
                .bind(username)
                .bind(client)
                .bind($crate::store::ms(since))
                .fetch_one(&self.pool)
                .await?;
                Ok($crate::store::web::FailureCounts { by_username, by_client })
            }

            async fn clear_login_failures(&self, username: &str) -> $crate::store::Result<()> {
                sqlx::query("DELETE FROM login_failures WHERE username = $1")
                    .bind(username)
                    .execute(&self.pool)
                    .await?;
                Ok(())
            }

            async fn marks(
                &self,
                incident_ids: &[i64],
            ) -> $crate::store::Result<std::collections::HashMap<i64, $crate::store::web::Marks>> {
                if incident_ids.is_empty() {
                    return Ok(Default::default());
                }
                // Ids are integers we hold, not user text: listing them inline is safe and
                // keeps one statement for both backends.
                let list = incident_ids.iter().map(|i| i.to_string()).collect::<Vec<_>>().join(",");
                let sql = format!(
                    "SELECT incident_id, ack_by, ack_at, snoozed_until, snoozed_by, resolved_by, resolved_at \
                     FROM incident_marks WHERE incident_id IN ({list})"
                );
                let rows: Vec<$crate::store::web::MarksRow> = sqlx::query_as(&sql).fetch_all(&self.pool).await?;
                Ok(rows.into_iter().map(|r| r.into_marks()).collect())
            }

            async fn apply_action(
                &self,
                incident_id: i64,
                action: &$crate::store::web::Action,
                username: &str,
                now: chrono::DateTime<chrono::Utc>,
            ) -> $crate::store::Result<bool> {
                use $crate::store::web::Action;
                let now_ms = $crate::store::ms(now);
                let mut tx = self.pool.begin().await?;
                let exists: Option<(i64,)> = sqlx::query_as("SELECT id FROM incidents WHERE id = $1")
                    .bind(incident_id)
                    .fetch_optional(&mut *tx)
                    .await?;
                if exists.is_none() {
                    return Ok(false);
                }
                sqlx::query("INSERT INTO incident_marks (incident_id) VALUES ($1) ON CONFLICT (incident_id) DO NOTHING")
                    .bind(incident_id)
                    .execute(&mut *tx)
                    .await?;
                let update: Option<(&str, Vec<Option<String>>, Vec<Option<i64>>)> = match action {
                    Action::Acknowledge => Some((
                        "UPDATE incident_marks SET ack_by = $1, ack_at = $2 WHERE incident_id = $3",
                        vec![Some(username.to_string())],
                        vec![Some(now_ms)],
                    )),
                    Action::Snooze(until) => Some((
                        "UPDATE incident_marks SET snoozed_by = $1, snoozed_until = $2 WHERE incident_id = $3",
                        vec![Some(username.to_string())],
                        vec![Some($crate::store::ms(*until))],
                    )),
                    Action::Unsnooze => Some((
                        "UPDATE incident_marks SET snoozed_by = $1, snoozed_until = $2 WHERE incident_id = $3",
                        vec![None],
                        vec![None],
                    )),
                    Action::Resolve => Some((
                        "UPDATE incident_marks SET resolved_by = $1, resolved_at = $2 WHERE incident_id = $3",
                        vec![Some(username.to_string())],
                        vec![Some(now_ms)],
                    )),
                    Action::Reopen => Some((
                        "UPDATE incident_marks SET resolved_by = $1, resolved_at = $2 WHERE incident_id = $3",
                        vec![None],
                        vec![None],
                    )),
                    Action::Note(_)
                    | Action::RerunChecks(_)
                    | Action::ReportSent(_)
                    | Action::ReportNotSent(_) => None,
                };
                if let Some((sql, texts, times)) = update {
                    sqlx::query(sql)
                        .bind(texts[0].clone())
                        .bind(times[0])
                        .bind(incident_id)
                        .execute(&mut *tx)
                        .await?;
                }
                sqlx::query(
                    "INSERT INTO incident_activity (incident_id, at, username, action, detail) VALUES ($1, $2, $3, $4, $5)",
                )
                .bind(incident_id)
                .bind(now_ms)
                .bind(username)
                .bind(action.name())
                .bind(action.detail())
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
                Ok(true)
            }

            async fn activity(
                &self,
                incident_id: i64,
                limit: i64,
            ) -> $crate::store::Result<Vec<$crate::store::web::Activity>> {
                let rows: Vec<(i64, i64, i64, String, String, String)> = sqlx::query_as(
                    "SELECT id, incident_id, at, username, action, detail FROM incident_activity \
                     WHERE incident_id = $1 ORDER BY id DESC LIMIT $2",
                )
                .bind(incident_id)
                .bind(limit)
                .fetch_all(&self.pool)
                .await?;
                Ok(rows
                    .into_iter()
                    .map(|(id, incident_id, at, username, action, detail)| $crate::store::web::Activity {
                        id,
                        incident_id,
                        at: $crate::store::from_ms(at),
                        username,
                        action,
                        detail,
                    })
                    .collect())
            }

            async fn setting(&self, key: &str) -> $crate::store::Result<Option<String>> {
                let row: Option<(String,)> = sqlx::query_as("SELECT value FROM settings WHERE key = $1")
                    .bind(key)
                    .fetch_optional(&self.pool)
                    .await?;
                Ok(row.map(|r| r.0))
            }

            async fn put_setting(
                &self,
                key: &str,
                value: &str,
                username: &str,
                now: chrono::DateTime<chrono::Utc>,
            ) -> $crate::store::Result<()> {
                sqlx::query(
                    "INSERT INTO settings (key, value, updated_at, updated_by) VALUES ($1, $2, $3, $4) \
                     ON CONFLICT (key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at, updated_by = excluded.updated_by",
                )
                .bind(key)
                .bind(value)
                .bind($crate::store::ms(now))
                .bind(username)
                .execute(&self.pool)
                .await?;
                Ok(())
            }

            async fn sending_ips(&self) -> $crate::store::Result<Vec<$crate::store::web::SendingIp>> {
                let rows: Vec<(String, i64, i64, Option<String>)> =
                    sqlx::query_as("SELECT ip, first_seen, last_seen, helo FROM sending_ips ORDER BY ip")
                        .fetch_all(&self.pool)
                        .await?;
                Ok(rows
                    .into_iter()
                    .map(|(ip, f, l, helo)| $crate::store::web::SendingIp {
                        ip,
                        first_seen: $crate::store::from_ms(f),
                        last_seen: $crate::store::from_ms(l),
                        helo,
                    })
                    .collect())
            }

            async fn incident_histogram(
                &self,
                incident_id: i64,
                bin_ms: i64,
            ) -> $crate::store::Result<Vec<$crate::store::web::HistogramRow>> {
                Ok(sqlx::query_as(
                    "SELECT (ts / $2) * $2 AS bin, type AS kind, COALESCE(cause, 'unclassified') AS cause, COUNT(*) AS count \
                     FROM events WHERE incident_id = $1 GROUP BY 1, 2, 3 ORDER BY 1",
                )
                .bind(incident_id)
                .bind(bin_ms.max(1))
                .fetch_all(&self.pool)
                .await?)
            }

            async fn event_raw(&self, dedupe_key: &str) -> $crate::store::Result<Option<String>> {
                let row: Option<(String,)> = sqlx::query_as("SELECT raw FROM events WHERE dedupe_key = $1")
                    .bind(dedupe_key)
                    .fetch_optional(&self.pool)
                    .await?;
                Ok(row.map(|r| r.0))
            }

            async fn source_activity(
                &self,
                since: chrono::DateTime<chrono::Utc>,
            ) -> $crate::store::Result<std::collections::HashMap<String, (i64, i64)>> {
                let rows: Vec<(String, i64, i64)> = sqlx::query_as(
                    "SELECT s.name, \
                       (SELECT COUNT(*) FROM events e WHERE e.source_id = s.id AND e.received_at >= $1), \
                       (SELECT COUNT(*) FROM dead_letters d WHERE d.source_id = s.id) \
                     FROM sources s",
                )
                .bind($crate::store::ms(since))
                .fetch_all(&self.pool)
                .await?;
                Ok(rows.into_iter().map(|(n, e, d)| (n, (e, d))).collect())
            }
        }
    };
}
