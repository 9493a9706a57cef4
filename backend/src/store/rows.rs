//! Row shapes and SQL text shared by both backends. Both number their placeholders
//! `$1…`, store times as unix milliseconds and JSON as text, so most statements are
//! the same string; only bulk inserts and set membership differ.

use super::{ApiToken, DeadLetter, Result, Source, SourceKeys, StoreError, from_ms};
use crate::event::StoredEvent;
use crate::incidents::Incident;
use sqlx::FromRow;

#[derive(FromRow)]
pub(crate) struct SourceRow {
    pub id: i64,
    pub name: String,
    pub format: String,
    pub created_at: i64,
    pub revoked_at: Option<i64>,
    pub last_event_at: Option<i64>,
    pub secret: Option<String>,
    pub public_key: Option<String>,
    pub webhook_url: Option<String>,
}

impl From<SourceRow> for Source {
    fn from(r: SourceRow) -> Self {
        Source {
            id: r.id,
            name: r.name,
            format: r.format,
            created_at: from_ms(r.created_at),
            revoked_at: r.revoked_at.map(from_ms),
            last_event_at: r.last_event_at.map(from_ms),
            keys: SourceKeys {
                secret: r.secret,
                public_key: r.public_key,
                webhook_url: r.webhook_url,
            },
        }
    }
}

#[derive(FromRow)]
pub(crate) struct TokenRow {
    pub id: i64,
    pub name: String,
    pub created_at: i64,
    pub revoked_at: Option<i64>,
}

impl From<TokenRow> for ApiToken {
    fn from(r: TokenRow) -> Self {
        ApiToken {
            id: r.id,
            name: r.name,
            created_at: from_ms(r.created_at),
            revoked_at: r.revoked_at.map(from_ms),
        }
    }
}

#[derive(FromRow)]
pub(crate) struct IncidentRow {
    pub id: i64,
    pub state: String,
}

impl IncidentRow {
    pub fn into_incident(self) -> Result<Incident> {
        super::parse_state(self.id, &self.state)
    }
}

#[derive(FromRow)]
pub(crate) struct DeadLetterRow {
    pub id: i64,
    pub source: Option<String>,
    pub received_at: i64,
    pub item_index: Option<i32>,
    pub field: Option<String>,
    pub reason: String,
    pub raw: String,
}

impl From<DeadLetterRow> for DeadLetter {
    fn from(r: DeadLetterRow) -> Self {
        DeadLetter {
            id: r.id,
            source: r.source,
            received_at: from_ms(r.received_at),
            index: r.item_index.map(i64::from),
            field: r.field,
            reason: r.reason,
            raw: r.raw,
        }
    }
}

#[derive(FromRow)]
pub(crate) struct EventRow {
    pub id: i64,
    pub source: String,
    pub ext_id: Option<String>,
    #[sqlx(rename = "type")]
    pub kind: String,
    pub ts: i64,
    pub received_at: i64,
    pub recipient: String,
    pub recipient_domain: String,
    pub sender: Option<String>,
    pub source_ip: Option<String>,
    pub helo: Option<String>,
    pub mx_host: Option<String>,
    pub mx_ip: Option<String>,
    pub destination: String,
    pub response: Option<String>,
    pub code: Option<i32>,
    pub enhanced: Option<String>,
    pub stage: String,
    pub cause: Option<String>,
    pub action: Option<String>,
    pub classification: Option<String>,
    pub attempt: Option<i32>,
    pub pool: Option<String>,
    pub message_id: Option<String>,
    pub incident_id: Option<i64>,
    pub raw: String,
}

impl TryFrom<EventRow> for StoredEvent {
    type Error = StoreError;
    fn try_from(r: EventRow) -> Result<Self> {
        let corrupt = |what: &str| StoreError::Corrupt(format!("event {}: bad {what}", r.id));
        let json = |s: &str| serde_json::from_str::<serde_json::Value>(s).ok();
        Ok(StoredEvent {
            id: r.id,
            kind: r.kind.parse().map_err(|_| corrupt("type"))?,
            source: r.source.clone(),
            ext_id: r.ext_id.clone(),
            timestamp: from_ms(r.ts),
            received_at: from_ms(r.received_at),
            recipient: r.recipient.clone(),
            recipient_domain: r.recipient_domain.clone(),
            sender: r.sender.clone(),
            source_ip: r.source_ip.clone(),
            helo: r.helo.clone(),
            mx_host: r.mx_host.clone(),
            mx_ip: r.mx_ip.clone(),
            destination: r.destination.clone(),
            response: r.response.clone(),
            code: r.code.and_then(|c| u16::try_from(c).ok()),
            enhanced: r.enhanced.clone(),
            stage: r.stage.parse().map_err(|_| corrupt("stage"))?,
            cause: r.cause.as_deref().and_then(|c| c.parse().ok()),
            action: r.action.as_deref().and_then(|a| {
                crate::smtp::Action::ALL
                    .into_iter()
                    .find(|x| x.as_str() == a)
            }),
            classification: r.classification.as_deref().and_then(json),
            attempt: r.attempt,
            pool: r.pool.clone(),
            message_id: r.message_id.clone(),
            incident_id: r.incident_id,
            raw: json(&r.raw).unwrap_or(serde_json::Value::String(r.raw)),
        })
    }
}

pub(crate) const SOURCE_COLUMNS: &str =
    "id, name, format, created_at, revoked_at, last_event_at, secret, public_key, webhook_url";

pub(crate) const EVENT_SELECT: &str = "SELECT e.id, s.name AS source, e.ext_id, e.type, e.ts, \
    e.received_at, e.recipient, e.recipient_domain, e.sender, e.source_ip, e.helo, e.mx_host, \
    e.mx_ip, e.destination, e.response, e.code, e.enhanced, e.stage, e.cause, e.action, \
    e.classification, e.attempt, e.pool, e.message_id, e.incident_id, e.raw \
    FROM events e JOIN sources s ON s.id = e.source_id";

pub(crate) const INSERT_INCIDENT: &str = "INSERT INTO incidents (destination, status, phase, \
    first_seen, last_seen, closed_at, due_at, deferred_count, delivered_count, bounced_count, \
    updated_at, state) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) RETURNING id";

pub(crate) const UPDATE_INCIDENT: &str = "UPDATE incidents SET destination = $1, status = $2, \
    phase = $3, first_seen = $4, last_seen = $5, closed_at = $6, due_at = $7, \
    deferred_count = $8, delivered_count = $9, bounced_count = $10, updated_at = $11, \
    state = $12 WHERE id = $13";

pub(crate) const DUE_INCIDENTS: &str =
    "SELECT id, state FROM incidents WHERE status = 'open' AND due_at <= $1 ORDER BY id";

pub(crate) const INCIDENT_BY_ID: &str = "SELECT id, state FROM incidents WHERE id = $1";

pub(crate) const OPEN_BY_PHASE: &str =
    "SELECT phase, COUNT(*) FROM incidents WHERE status = 'open' GROUP BY phase";

pub(crate) const DEAD_LETTERS: &str = "SELECT d.id, s.name AS source, d.received_at, \
    d.item_index, d.field, d.reason, d.raw FROM dead_letters d \
    LEFT JOIN sources s ON s.id = d.source_id WHERE d.id > $1 ORDER BY d.id LIMIT $2";

pub(crate) const PRUNE_EVENTS: &str = "DELETE FROM events WHERE id IN \
    (SELECT id FROM events WHERE received_at < $1 LIMIT 10000)";

pub(crate) const PRUNE_DEAD_LETTERS: &str = "DELETE FROM dead_letters WHERE id IN \
    (SELECT id FROM dead_letters WHERE received_at < $1 LIMIT 10000)";

/// A filter value to bind, in placeholder order.
pub(crate) enum Arg {
    I64(i64),
    Str(String),
}

/// `WHERE …` for the incident list, with its arguments.
pub(crate) fn incident_list_sql(f: &super::IncidentFilter) -> (String, Vec<Arg>) {
    // The page is chosen on narrow columns first and only its rows' states are read:
    // sorting whole rows would drag every incident's state through the sort.
    let mut sql = String::from(
        "SELECT id, CASE WHEN status = 'open' THEN 0 ELSE 1 END AS rank, last_seen \
         FROM incidents WHERE 1 = 1",
    );
    let mut args = Vec::new();
    if let Some(p) = f.phase {
        args.push(Arg::Str(p.as_str().into()));
        sql.push_str(&format!(" AND phase = ${}", args.len()));
    }
    if let Some(s) = f.status {
        args.push(Arg::Str(s.as_str().into()));
        sql.push_str(&format!(" AND status = ${}", args.len()));
    }
    if let Some(d) = &f.destination {
        args.push(Arg::Str(d.clone()));
        sql.push_str(&format!(" AND destination = ${}", args.len()));
    }
    // The state is JSON: a quoted key is a close prefilter, IncidentFilter::matches
    // makes it exact.
    if let Some(ip) = &f.ip {
        args.push(Arg::Str(format!("%\"{}\"%", like_escape(ip))));
        sql.push_str(&format!(" AND state LIKE ${} ESCAPE '\\'", args.len()));
    }
    if let Some(c) = &f.cause {
        args.push(Arg::Str(format!("%\"{}\"%", like_escape(c))));
        sql.push_str(&format!(" AND state LIKE ${} ESCAPE '\\'", args.len()));
    }
    if let Some(q) = &f.search {
        args.push(Arg::Str(format!("%{}%", like_escape(&q.to_lowercase()))));
        sql.push_str(&format!(
            " AND LOWER(state) LIKE ${} ESCAPE '\\'",
            args.len()
        ));
    }
    // Open incidents first, then the most recently active.
    sql.push_str(" ORDER BY rank, last_seen DESC, id DESC");
    args.push(Arg::I64(f.limit));
    sql.push_str(&format!(" LIMIT ${}", args.len()));
    args.push(Arg::I64(f.offset));
    sql.push_str(&format!(" OFFSET ${}", args.len()));
    let sql = format!(
        "SELECT i.id, i.state FROM incidents i JOIN ({sql}) page ON page.id = i.id \
         ORDER BY page.rank, page.last_seen DESC, i.id DESC"
    );
    (sql, args)
}

pub(crate) fn event_list_sql(f: &super::EventFilter) -> (String, Vec<Arg>) {
    let mut sql = format!("{EVENT_SELECT} WHERE 1 = 1");
    let mut args = Vec::new();
    if let Some(k) = f.kind {
        args.push(Arg::Str(k.as_str().into()));
        sql.push_str(&format!(" AND e.type = ${}", args.len()));
    }
    if let Some(s) = &f.source {
        args.push(Arg::Str(s.clone()));
        sql.push_str(&format!(" AND s.name = ${}", args.len()));
    }
    if let Some(i) = f.incident {
        args.push(Arg::I64(i));
        sql.push_str(&format!(" AND e.incident_id = ${}", args.len()));
    }
    if let Some(t) = f.since {
        args.push(Arg::I64(super::ms(t)));
        sql.push_str(&format!(" AND e.ts >= ${}", args.len()));
    }
    if let Some(a) = f.after {
        args.push(Arg::I64(a));
        sql.push_str(&format!(" AND e.id > ${}", args.len()));
    }
    args.push(Arg::I64(f.limit));
    sql.push_str(&format!(" ORDER BY e.id LIMIT ${}", args.len()));
    (sql, args)
}

#[derive(FromRow)]
pub(crate) struct CheckRow {
    pub subject: String,
    pub name: String,
    pub verdict: String,
    pub detail: String,
    pub records: String,
    pub checked_at: i64,
}

pub(crate) fn parse_verdict(v: &str) -> crate::checks::Verdict {
    serde_json::from_value(serde_json::Value::String(v.to_string()))
        .unwrap_or(crate::checks::Verdict::Error)
}

impl From<CheckRow> for super::StoredCheck {
    fn from(r: CheckRow) -> Self {
        super::StoredCheck {
            subject: r.subject,
            result: crate::checks::CheckResult::new(
                r.name,
                parse_verdict(&r.verdict),
                r.detail,
                serde_json::from_str(&r.records).unwrap_or_default(),
            ),
            checked_at: from_ms(r.checked_at),
        }
    }
}

#[derive(FromRow)]
pub(crate) struct CheckChangeRow {
    pub id: i64,
    pub subject: String,
    pub name: String,
    pub previous: Option<String>,
    pub verdict: String,
    pub description: String,
    pub at: i64,
}

impl From<CheckChangeRow> for super::StoredCheckChange {
    fn from(r: CheckChangeRow) -> Self {
        super::StoredCheckChange {
            id: r.id,
            subject: r.subject,
            name: r.name,
            previous: r.previous,
            verdict: r.verdict,
            description: r.description,
            at: from_ms(r.at),
        }
    }
}

/// The newest result of every check on a subject.
pub(crate) const LATEST_CHECKS: &str = "SELECT subject, name, verdict, detail, records, checked_at \
    FROM check_results c WHERE subject = $1 AND checked_at = \
    (SELECT MAX(checked_at) FROM check_results WHERE subject = $1 AND name = c.name) ORDER BY name";

pub(crate) const CHECK_HISTORY: &str = "SELECT subject, name, verdict, detail, records, checked_at \
    FROM check_results WHERE subject = $1 ORDER BY checked_at DESC, id DESC LIMIT $2";

pub(crate) const PRUNE_CHECKS: &str = "DELETE FROM check_results WHERE id IN \
    (SELECT id FROM check_results WHERE checked_at < $1 LIMIT 10000)";

pub(crate) fn check_changes_sql(subjects: usize, since: bool) -> String {
    let list: Vec<String> = (1..=subjects).map(|i| format!("${i}")).collect();
    let mut sql = format!(
        "SELECT id, subject, name, previous, verdict, description, at FROM check_changes \
         WHERE subject IN ({})",
        list.join(", ")
    );
    let mut n = subjects;
    if since {
        n += 1;
        sql.push_str(&format!(" AND at >= ${n}"));
    }
    sql.push_str(&format!(" ORDER BY at DESC, id DESC LIMIT ${}", n + 1));
    sql
}

fn like_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}
