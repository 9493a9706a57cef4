//! The embedded default: one SQLite file, WAL journal, `synchronous = FULL` so an
//! acknowledged commit survives power loss, not just a crash of the process.

use super::{Backend, ConnectOptions, Result, StoreError};
use crate::event::NewEvent;
use crate::incidents::Incident;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Sqlite, SqlitePool, Transaction};
use std::collections::HashSet;
use std::str::FromStr;
use std::time::Duration;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations/sqlite");

pub struct SqliteStore {
    pub(crate) pool: SqlitePool,
}

impl SqliteStore {
    pub async fn connect(url: &str, opts: &ConnectOptions) -> Result<Self> {
        let options = SqliteConnectOptions::from_str(url)
            .map_err(|_| StoreError::UnsupportedUrl(url.to_string()))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10))
            // A 64 MiB page cache per connection keeps the incident states and the
            // hot index pages in memory; SQLite's default is 2 MiB.
            .pragma("cache_size", "-65536")
            // Statement journals of the multi-row inserts stay in memory instead of
            // spilling to temporary files: a few MB at most, and rolled back with the
            // transaction anyway.
            .pragma("temp_store", "memory");
        let path = options.get_filename();
        if let Some(dir) = path.parent()
            && !dir.as_os_str().is_empty()
            && path.to_str() != Some(":memory:")
        {
            std::fs::create_dir_all(dir).map_err(|e| {
                StoreError::Unavailable(format!("cannot create {}: {e}", dir.display()))
            })?;
        }
        let pool = SqlitePoolOptions::new()
            .max_connections(opts.max_connections.max(2))
            .acquire_timeout(opts.acquire_timeout)
            .connect_with(options)
            .await?;
        MIGRATOR.run(&pool).await?;
        Ok(SqliteStore { pool })
    }

    async fn begin_write(&self) -> Result<SqliteTx> {
        // IMMEDIATE takes the write lock up front: a deferred transaction that reads
        // and then writes fails with SQLITE_BUSY instead of waiting when another
        // process (the CLI) wrote in between.
        Ok(SqliteTx {
            tx: self.pool.begin_with("BEGIN IMMEDIATE").await?,
        })
    }
}

pub(crate) struct SqliteTx {
    tx: Transaction<'static, Sqlite>,
}

const EVENT_COLUMNS: &str = "source_id, dedupe_key, ext_id, type, ts, received_at, \
    recipient, recipient_domain, sender, source_ip, helo, mx_host, mx_ip, destination, \
    response, code, enhanced, stage, cause, action, classification, attempt, pool, \
    message_id, incident_id, raw";
const EVENT_PARAMS: usize = 26;
/// Rows per INSERT statement: each statement is one round trip to sqlx's SQLite worker
/// thread, which costs more than the row itself. 26 × 256 = 6,656 bound parameters,
/// well under SQLite's limit of 32,766.
const EVENT_ROWS_PER_STATEMENT: usize = 256;

/// `INSERT … VALUES (…), (…) …` for `rows` rows; the full-size text is built once.
fn insert_events_sql(rows: usize) -> std::borrow::Cow<'static, str> {
    static FULL: std::sync::LazyLock<String> =
        std::sync::LazyLock::new(|| build_insert_events(EVENT_ROWS_PER_STATEMENT));
    if rows == EVENT_ROWS_PER_STATEMENT {
        std::borrow::Cow::Borrowed(FULL.as_str())
    } else {
        std::borrow::Cow::Owned(build_insert_events(rows))
    }
}

fn build_insert_events(rows: usize) -> String {
    let mut sql = format!("INSERT INTO events ({EVENT_COLUMNS}) VALUES ");
    for r in 0..rows {
        sql.push_str(if r == 0 { "(" } else { ", (" });
        // Anonymous `?`: sqlx looks up every parameter's name, and SQLite finds a
        // numbered one (`?123`) by a linear scan, quadratic over a statement this long.
        for c in 0..EVENT_PARAMS {
            sql.push_str(if c == 0 { "?" } else { ", ?" });
        }
        sql.push(')');
    }
    sql.push_str(" ON CONFLICT (dedupe_key) DO NOTHING");
    sql
}

fn json_list(items: &[&str]) -> String {
    serde_json::to_string(items).unwrap_or_else(|_| "[]".into())
}

super::common::impl_write_tx!(SqliteTx, {
    async fn lock_writer(&mut self) -> Result<()> {
        // BEGIN IMMEDIATE already holds the database's single write lock.
        Ok(())
    }

    async fn existing_keys(&mut self, keys: &[&str]) -> Result<HashSet<String>> {
        // json_each keeps the statement text fixed whatever the batch size, so it is
        // prepared once and cached.
        let rows: Vec<(String,)> = sqlx::query_as(
            "SELECT dedupe_key FROM events WHERE dedupe_key IN (SELECT value FROM json_each($1))",
        )
        .bind(json_list(keys))
        .fetch_all(&mut *self.tx)
        .await?;
        Ok(rows.into_iter().map(|(k,)| k).collect())
    }

    async fn latest_incidents(&mut self, destinations: &[&str]) -> Result<Vec<Incident>> {
        let rows: Vec<super::rows::IncidentRow> = sqlx::query_as(
            "SELECT id, state FROM incidents WHERE id IN (SELECT MAX(id) FROM incidents \
             WHERE destination IN (SELECT value FROM json_each($1)) GROUP BY destination)",
        )
        .bind(json_list(destinations))
        .fetch_all(&mut *self.tx)
        .await?;
        rows.into_iter().map(|r| r.into_incident()).collect()
    }

    async fn insert_events(&mut self, events: &[(&NewEvent, Option<i64>)]) -> Result<()> {
        for chunk in events.chunks(EVENT_ROWS_PER_STATEMENT) {
            let sql = insert_events_sql(chunk.len());
            let mut q = sqlx::query(&sql);
            for (ev, incident_id) in chunk {
                let classification = ev
                    .classification
                    .as_ref()
                    .and_then(|c| serde_json::to_string(c).ok());
                // `&str` binds borrow from the batch; `&String` ones would copy every
                // text into the arguments first.
                q = q
                    .bind(ev.source_id)
                    .bind(ev.dedupe_key.as_str())
                    .bind(ev.ext_id.as_deref())
                    .bind(ev.kind.as_str())
                    .bind(super::ms(ev.time))
                    .bind(super::ms(ev.received_at))
                    .bind(ev.recipient.as_str())
                    .bind(ev.recipient_domain.as_str())
                    .bind(ev.sender.as_deref())
                    .bind(ev.source_ip.as_deref())
                    .bind(ev.helo.as_deref())
                    .bind(ev.mx_host.as_deref())
                    .bind(ev.mx_ip.as_deref())
                    .bind(ev.destination.as_str())
                    .bind(ev.response.as_deref())
                    .bind(ev.code.map(i32::from))
                    .bind(ev.enhanced.as_deref())
                    .bind(ev.stage.as_str())
                    .bind(ev.cause().map(|c| c.as_str()))
                    .bind(ev.classification.as_ref().map(|c| c.action.as_str()))
                    .bind(classification)
                    .bind(ev.attempt)
                    .bind(ev.pool.as_deref())
                    .bind(ev.message_id.as_deref())
                    .bind(*incident_id)
                    .bind(ev.raw.as_str());
            }
            q.execute(&mut *self.tx).await?;
        }
        Ok(())
    }
});

super::common::impl_store!(SqliteStore, Backend::Sqlite, {});

impl_web_store!(SqliteStore);

impl_notify_store!(SqliteStore);

impl_report_store!(SqliteStore);
