//! PostgreSQL, the production backend. Several app instances may share one database:
//! writers serialise on an advisory lock, and bulk inserts go through `UNNEST` so a
//! batch of events is one statement.

use super::{Backend, ConnectOptions, Result};
use crate::event::NewEvent;
use crate::incidents::Incident;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{PgPool, Postgres, Transaction};
use std::collections::HashSet;
use std::str::FromStr;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations/postgres");

/// Arbitrary but fixed: the key of the advisory lock that serialises incident writers.
const WRITER_LOCK_KEY: i64 = 0x6465_6677_6174_6368; // "defwatch"

pub struct PgStore {
    pub(crate) pool: PgPool,
}

impl PgStore {
    pub async fn connect(url: &str, opts: &ConnectOptions) -> Result<Self> {
        let options = PgConnectOptions::from_str(url)?;
        let pool = PgPoolOptions::new()
            .max_connections(opts.max_connections)
            .acquire_timeout(opts.acquire_timeout)
            .connect_with(options)
            .await?;
        MIGRATOR.run(&pool).await?;
        Ok(PgStore { pool })
    }

    async fn begin_write(&self) -> Result<PgTx> {
        Ok(PgTx {
            tx: self.pool.begin().await?,
        })
    }
}

pub(crate) struct PgTx {
    tx: Transaction<'static, Postgres>,
}

const INSERT_EVENTS: &str = "INSERT INTO events (source_id, dedupe_key, ext_id, type, ts, \
    received_at, recipient, recipient_domain, sender, source_ip, helo, mx_host, mx_ip, \
    destination, response, code, enhanced, stage, cause, action, classification, attempt, \
    pool, message_id, incident_id, raw) \
    SELECT * FROM UNNEST($1::int8[], $2::text[], $3::text[], $4::text[], $5::int8[], \
    $6::int8[], $7::text[], $8::text[], $9::text[], $10::text[], $11::text[], $12::text[], \
    $13::text[], $14::text[], $15::text[], $16::int4[], $17::text[], $18::text[], $19::text[], \
    $20::text[], $21::text[], $22::int4[], $23::text[], $24::text[], $25::int8[], $26::text[]) \
    ON CONFLICT (dedupe_key) DO NOTHING";

/// From this many rows on, events go in with COPY: it streams rows without per-row
/// parameter handling, several times faster than UNNEST for an import's batches. Below
/// it the single UNNEST statement is as quick and keeps its ON CONFLICT guard.
const COPY_MIN_ROWS: usize = 1000;

/// COPY has no ON CONFLICT, and needs none here: the caller holds the writer lock and
/// has already dropped every key that is stored or repeated in the batch.
async fn copy_events(
    tx: &mut Transaction<'static, Postgres>,
    events: &[(&NewEvent, Option<i64>)],
) -> Result<()> {
    let mut copy = tx
        .copy_in_raw(
            "COPY events (source_id, dedupe_key, ext_id, type, ts, received_at, recipient, \
             recipient_domain, sender, source_ip, helo, mx_host, mx_ip, destination, response, \
             code, enhanced, stage, cause, action, classification, attempt, pool, message_id, \
             incident_id, raw) FROM STDIN",
        )
        .await?;
    let mut buf = String::with_capacity(1 << 20);
    for (ev, incident_id) in events {
        let classification = ev
            .classification
            .as_ref()
            .and_then(|c| serde_json::to_string(c).ok());
        let mut row = CopyRow(&mut buf);
        row.int(Some(ev.source_id));
        row.text(Some(&ev.dedupe_key));
        row.text(ev.ext_id.as_deref());
        row.text(Some(ev.kind.as_str()));
        row.int(Some(super::ms(ev.time)));
        row.int(Some(super::ms(ev.received_at)));
        row.text(Some(&ev.recipient));
        row.text(Some(&ev.recipient_domain));
        row.text(ev.sender.as_deref());
        row.text(ev.source_ip.as_deref());
        row.text(ev.helo.as_deref());
        row.text(ev.mx_host.as_deref());
        row.text(ev.mx_ip.as_deref());
        row.text(Some(&ev.destination));
        row.text(ev.response.as_deref());
        row.int(ev.code.map(i64::from));
        row.text(ev.enhanced.as_deref());
        row.text(Some(ev.stage.as_str()));
        row.text(ev.cause().map(|c| c.as_str()));
        row.text(ev.classification.as_ref().map(|c| c.action.as_str()));
        row.text(classification.as_deref());
        row.int(ev.attempt.map(i64::from));
        row.text(ev.pool.as_deref());
        row.text(ev.message_id.as_deref());
        row.int(*incident_id);
        row.last_text(&ev.raw);
        if buf.len() >= 1 << 20 {
            copy.send(buf.as_bytes()).await?;
            buf.clear();
        }
    }
    if !buf.is_empty() {
        copy.send(buf.as_bytes()).await?;
    }
    copy.finish().await?;
    Ok(())
}

/// One row of COPY's text format: tab-separated columns, `\N` for NULL, and backslash,
/// tab, newline and carriage return escaped. Written by hand because sqlx streams COPY
/// data as bytes and no maintained crate encodes this format for it.
struct CopyRow<'a>(&'a mut String);

impl CopyRow<'_> {
    fn int(&mut self, v: Option<i64>) {
        use std::fmt::Write;
        match v {
            Some(n) => {
                let _ = write!(self.0, "{n}");
            }
            None => self.0.push_str("\\N"),
        }
        self.0.push('\t');
    }

    fn text(&mut self, v: Option<&str>) {
        match v {
            Some(t) => self.escaped(t),
            None => self.0.push_str("\\N"),
        }
        self.0.push('\t');
    }

    fn last_text(&mut self, t: &str) {
        self.escaped(t);
        self.0.push('\n');
    }

    fn escaped(&mut self, t: &str) {
        let mut rest = t;
        while let Some(i) = rest.find(['\\', '\t', '\n', '\r']) {
            self.0.push_str(&rest[..i]);
            self.0.push_str(match rest.as_bytes()[i] {
                b'\\' => "\\\\",
                b'\t' => "\\t",
                b'\n' => "\\n",
                _ => "\\r",
            });
            rest = &rest[i + 1..];
        }
        self.0.push_str(rest);
    }
}

super::common::impl_write_tx!(PgTx, {
    async fn lock_writer(&mut self) -> Result<()> {
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(WRITER_LOCK_KEY)
            .execute(&mut *self.tx)
            .await?;
        Ok(())
    }

    async fn existing_keys(&mut self, keys: &[&str]) -> Result<HashSet<String>> {
        let rows: Vec<(String,)> =
            sqlx::query_as("SELECT dedupe_key FROM events WHERE dedupe_key = ANY($1)")
                .bind(keys)
                .fetch_all(&mut *self.tx)
                .await?;
        Ok(rows.into_iter().map(|(k,)| k).collect())
    }

    async fn latest_incidents(&mut self, destinations: &[&str]) -> Result<Vec<Incident>> {
        let rows: Vec<super::rows::IncidentRow> = sqlx::query_as(
            "SELECT id, state FROM incidents WHERE id IN (SELECT MAX(id) FROM incidents \
             WHERE destination = ANY($1) GROUP BY destination)",
        )
        .bind(destinations)
        .fetch_all(&mut *self.tx)
        .await?;
        rows.into_iter().map(|r| r.into_incident()).collect()
    }

    async fn insert_events(&mut self, events: &[(&NewEvent, Option<i64>)]) -> Result<()> {
        if events.len() >= COPY_MIN_ROWS {
            return copy_events(&mut self.tx, events).await;
        }
        macro_rules! col {
            ($f:expr) => {
                events.iter().map($f).collect::<Vec<_>>()
            };
        }
        sqlx::query(INSERT_EVENTS)
            .bind(col!(|(e, _)| e.source_id))
            .bind(col!(|(e, _)| e.dedupe_key.as_str()))
            .bind(col!(|(e, _)| e.ext_id.as_deref()))
            .bind(col!(|(e, _)| e.kind.as_str()))
            .bind(col!(|(e, _)| super::ms(e.time)))
            .bind(col!(|(e, _)| super::ms(e.received_at)))
            .bind(col!(|(e, _)| e.recipient.as_str()))
            .bind(col!(|(e, _)| e.recipient_domain.as_str()))
            .bind(col!(|(e, _)| e.sender.as_deref()))
            .bind(col!(|(e, _)| e.source_ip.as_deref()))
            .bind(col!(|(e, _)| e.helo.as_deref()))
            .bind(col!(|(e, _)| e.mx_host.as_deref()))
            .bind(col!(|(e, _)| e.mx_ip.as_deref()))
            .bind(col!(|(e, _)| e.destination.as_str()))
            .bind(col!(|(e, _)| e.response.as_deref()))
            .bind(col!(|(e, _)| e.code.map(i32::from)))
            .bind(col!(|(e, _)| e.enhanced.as_deref()))
            .bind(col!(|(e, _)| e.stage.as_str()))
            .bind(col!(|(e, _)| e.cause().map(|c| c.as_str())))
            .bind(col!(|(e, _)| e
                .classification
                .as_ref()
                .map(|c| c.action.as_str())))
            .bind(col!(|(e, _)| e
                .classification
                .as_ref()
                .and_then(|c| serde_json::to_string(c).ok())))
            .bind(col!(|(e, _)| e.attempt))
            .bind(col!(|(e, _)| e.pool.as_deref()))
            .bind(col!(|(e, _)| e.message_id.as_deref()))
            .bind(col!(|(_, i)| *i))
            .bind(col!(|(e, _)| e.raw.as_str()))
            .execute(&mut *self.tx)
            .await?;
        Ok(())
    }
});

super::common::impl_store!(PgStore, Backend::Postgres, {});

impl_web_store!(PgStore);

impl_notify_store!(PgStore);

impl_report_store!(PgStore);
