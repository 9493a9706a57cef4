//! `deferwatch import` and `deferwatch tail`: MTA log files into stored events.
//!
//! Both read lines in log order into the format's line parser and store what it makes
//! the same way the HTTP ingest does (`Store::record_events`: dedupe, incident engine by
//! event time, rejects kept). `import` reads whole files, parsing on a thread of its own
//! while the previous batch is written, so parsing and the database overlap on two
//! cores. `tail` follows one file and either writes to the database itself or posts the
//! raw lines to a server's `POST /api/v1/ingest/{format}`; its position is saved only
//! after a batch is stored, and the store's content dedupe makes a re-read batch harmless.

use super::follow::{FollowError, Follower, StartAt};
use super::json::Context;
use super::mta::{LineParser, LogSourceMap, Parsed};
use crate::event::EventType;
use crate::incidents::Engine;
use crate::smtp::Classifier;
use crate::store::{DynStore, EventOutcome, NewReject, Source, StoreError, WriteBatch};
use chrono::{DateTime, TimeDelta, Utc};
use serde::Serialize;
use std::collections::BTreeSet;
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Events per import transaction: large enough that per-commit costs (an fsync, the
/// incident rows) vanish, small enough to bound memory at a few tens of MB.
pub const IMPORT_BATCH_EVENTS: usize = 20_000;

#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Follow(#[from] FollowError),
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The server refused the lines for a reason retrying cannot fix.
    #[error("the server refused the lines: {0}")]
    Refused(String),
    #[error("{0}")]
    Usage(String),
}

/// What a run read and stored.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Counts {
    pub lines: u64,
    pub deferred: u64,
    pub delivered: u64,
    pub bounced: u64,
    /// Records that carry no delivery outcome (arrivals, queue bookkeeping, notices).
    pub ignored: u64,
    pub rejected: u64,
    /// Events written by this run.
    pub stored: u64,
    /// Events already stored (a re-import, an overlapping tail).
    pub duplicates: u64,
    pub incidents: BTreeSet<i64>,
}

impl Counts {
    pub fn events(&self) -> u64 {
        self.deferred + self.delivered + self.bounced
    }

    fn add_parsed(
        &mut self,
        parsed: impl IntoIterator<Item = Parsed>,
        source_id: i64,
        now: DateTime<Utc>,
        batch: &mut WriteBatch,
    ) {
        for p in parsed {
            match p {
                Parsed::Event(ev) => {
                    match ev.kind {
                        EventType::Deferred => self.deferred += 1,
                        EventType::Delivered => self.delivered += 1,
                        EventType::Bounced => self.bounced += 1,
                    }
                    batch.events.push(ev);
                }
                Parsed::Ignored { .. } => self.ignored += 1,
                Parsed::Rejected { rejection, raw } => {
                    self.rejected += 1;
                    batch.rejects.push(NewReject {
                        source_id: Some(source_id),
                        received_at: now,
                        index: None,
                        field: rejection.field,
                        reason: rejection.reason,
                        raw,
                    });
                }
            }
        }
    }

    fn add_outcomes(&mut self, outcomes: &[crate::store::BatchOutcome]) {
        for o in outcomes.iter().flat_map(|b| b.events.iter()) {
            match o {
                EventOutcome::Stored { incident_id } => {
                    self.stored += 1;
                    self.incidents.extend(*incident_id);
                }
                EventOutcome::Duplicate => self.duplicates += 1,
            }
        }
    }
}

/// The formats whose logs can be read from files.
pub const FILE_FORMATS: &[&str] = &["postfix", "exim", "powermta"];

/// Finds the source by name and checks it was created for `format`.
pub async fn source_for(store: &DynStore, name: &str, format: &str) -> Result<Source, LogError> {
    if !FILE_FORMATS.contains(&format) {
        return Err(LogError::Usage(format!(
            "--format {format}: log files can be read for {}",
            FILE_FORMATS.join(", ")
        )));
    }
    let source = store
        .list_sources()
        .await?
        .into_iter()
        .find(|s| s.name == name && s.revoked_at.is_none())
        .ok_or_else(|| {
            LogError::Usage(format!(
                "no active source named {name:?}: create it with `deferwatch source add {name} --format {format}`"
            ))
        })?;
    if source.format != format {
        return Err(LogError::Usage(format!(
            "source {name:?} was created for format {}, not {format}",
            source.format
        )));
    }
    Ok(source)
}

fn parser_for(format: &str, map: LogSourceMap) -> Result<Box<dyn LineParser + Send>, LogError> {
    super::http::new_parser(format, map)
        .map(|(_, p)| p)
        .ok_or_else(|| LogError::Usage(format!("--format {format}: not a line format")))
}

/// What `import` needs besides the files.
pub struct ImportJob {
    pub format: String,
    pub source_id: i64,
    pub map: LogSourceMap,
    pub classifier: Arc<Classifier>,
    pub now: DateTime<Utc>,
    pub max_future_skew: TimeDelta,
    /// None: parse only (`--dry-run`).
    pub store: Option<(DynStore, Engine)>,
    pub batch_events: usize,
}

/// Reads every file in order (gzip accepted) and stores its events.
pub async fn import(job: ImportJob, files: Vec<PathBuf>) -> Result<Counts, LogError> {
    let mut parser = parser_for(&job.format, job.map.clone())?;
    for f in &files {
        // Fail before anything is stored when a file is missing.
        std::fs::metadata(f).map_err(|source| LogError::Io {
            path: f.clone(),
            source,
        })?;
    }
    let (tx, mut rx) = tokio::sync::mpsc::channel::<(WriteBatch, Counts)>(2);
    let classifier = job.classifier.clone();
    let (source_id, now, skew, batch_events) = (
        job.source_id,
        job.now,
        job.max_future_skew,
        job.batch_events.max(1),
    );
    let dry_run = job.store.is_none();
    // Named, so that a profile tells parsing from storing.
    let reader = std::thread::Builder::new()
        .name("import-parse".into())
        .spawn(move || -> Result<(), LogError> {
            let ctx = Context {
                source_id,
                classifier: &classifier,
                now,
                max_future_skew: skew,
            };
            let mut batch = WriteBatch::default();
            let mut counts = Counts::default();
            let mut line = String::new();
            let mut parsed = Vec::new();
            for path in &files {
                let io = |source| LogError::Io {
                    path: path.clone(),
                    source,
                };
                let mut r = super::follow::open_log(path).map_err(io)?;
                loop {
                    line.clear();
                    let mut buf = std::mem::take(&mut line).into_bytes();
                    let n = r.read_until(b'\n', &mut buf).map_err(io)?;
                    line = match String::from_utf8(buf) {
                        Ok(s) => s,
                        Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
                    };
                    if n == 0 {
                        break;
                    }
                    counts.lines += 1;
                    let text = line.trim_end_matches(['\n', '\r']);
                    if text.is_empty() {
                        continue;
                    }
                    parser.feed_line_into(text, &ctx, &mut parsed);
                    counts.add_parsed(parsed.drain(..), source_id, now, &mut batch);
                    if dry_run {
                        // Nothing to store: keep memory flat.
                        batch.events.clear();
                        batch.rejects.clear();
                    } else if batch.events.len() + batch.rejects.len() >= batch_events {
                        let full = std::mem::take(&mut batch);
                        if tx
                            .blocking_send((full, std::mem::take(&mut counts)))
                            .is_err()
                        {
                            return Ok(());
                        }
                    }
                }
            }
            let rest = parser.finish();
            counts.add_parsed(rest, source_id, now, &mut batch);
            if dry_run {
                batch = WriteBatch::default();
            }
            let _ = tx.blocking_send((batch, counts));
            Ok(())
        })
        .map_err(|e| LogError::Usage(format!("cannot start the reader thread: {e}")))?;
    let mut total = Counts::default();
    while let Some((batch, counts)) = rx.recv().await {
        merge(&mut total, counts);
        if let Some((store, engine)) = &job.store
            && !(batch.events.is_empty() && batch.rejects.is_empty())
        {
            let outcomes = store
                .record_events(std::slice::from_ref(&batch), engine, job.now)
                .await?;
            total.add_outcomes(&outcomes);
        }
    }
    reader
        .join()
        .map_err(|_| LogError::Usage("the log reader thread panicked".into()))??;
    if let Some((store, engine)) = &job.store {
        // Event time drove the incidents; now let the present close what went quiet.
        store.sweep(engine, job.now).await?;
    }
    Ok(total)
}

fn merge(total: &mut Counts, c: Counts) {
    total.lines += c.lines;
    total.deferred += c.deferred;
    total.delivered += c.delivered;
    total.bounced += c.bounced;
    total.ignored += c.ignored;
    total.rejected += c.rejected;
    total.stored += c.stored;
    total.duplicates += c.duplicates;
    total.incidents.extend(c.incidents);
}

/// Where `tail` sends what it reads. One value per run, so the size difference between
/// the variants costs nothing.
#[allow(clippy::large_enum_variant)]
pub enum TailSink {
    /// Parse here and write to the database.
    Store {
        store: DynStore,
        engine: Engine,
        source_id: i64,
        map: LogSourceMap,
        classifier: Arc<Classifier>,
        max_future_skew: TimeDelta,
    },
    /// Post the raw lines to a server, which parses them with the source's map.
    Server {
        client: reqwest::Client,
        /// `…/api/v1/ingest/{format}`.
        url: String,
        token: String,
    },
}

pub struct TailJob {
    pub path: PathBuf,
    pub state_path: PathBuf,
    pub format: String,
    pub start: StartAt,
    pub batch_lines: usize,
    /// How long to wait for more lines before sending a partial batch.
    pub flush_interval: Duration,
    pub clock: Arc<dyn crate::clock::Clock>,
}

/// Follows the file until `stop` resolves; returns what was sent.
pub async fn tail(
    job: TailJob,
    sink: TailSink,
    stop: impl std::future::Future<Output = ()>,
) -> Result<Counts, LogError> {
    let mut follower = Follower::open(&job.path, &job.state_path, job.start)?;
    let mut parser = match &sink {
        TailSink::Store { map, .. } => Some(parser_for(&job.format, map.clone())?),
        TailSink::Server { .. } => None,
    };
    let mut total = Counts::default();
    // PowerMTA names its columns once, in the file's first line: a tail resumed in the
    // middle of the file (or a server that restarted) needs that line again.
    let mut header = if job.format == "powermta" {
        powermta_header(&job.path)
    } else {
        None
    };
    // Fed to a local parser before its first batch.
    let mut header_unfed = header.is_some();
    tokio::pin!(stop);
    loop {
        let mut lines = tokio::select! {
            r = follower.next_batch(job.batch_lines.max(1), job.flush_interval) => r?,
            () = &mut stop => break,
        };
        if lines.is_empty() {
            continue;
        }
        total.lines += lines.len() as u64;
        if job.format == "powermta" {
            if let Some(h) = lines.iter().rev().find(|l| is_powermta_header(l)) {
                header = Some(h.clone());
            }
            if let (TailSink::Server { .. }, Some(h)) = (&sink, &header)
                && !lines.first().is_some_and(|l| is_powermta_header(l))
            {
                lines.insert(0, h.clone());
            }
        }
        match &sink {
            TailSink::Store {
                store,
                engine,
                source_id,
                classifier,
                max_future_skew,
                ..
            } => {
                let now = job.clock.now();
                let ctx = Context {
                    source_id: *source_id,
                    classifier,
                    now,
                    max_future_skew: *max_future_skew,
                };
                let mut batch = WriteBatch::default();
                if let Some(p) = parser.as_mut() {
                    if header_unfed && let Some(h) = &header {
                        p.feed_line(h, &ctx);
                        header_unfed = false;
                    }
                    for l in &lines {
                        let parsed = p.feed_line(l, &ctx);
                        total.add_parsed(parsed, *source_id, now, &mut batch);
                    }
                }
                let outcomes = store_with_retry(store, engine, &batch, &job.clock).await?;
                total.add_outcomes(&outcomes);
            }
            TailSink::Server { client, url, token } => {
                post_with_retry(client, url, token, &lines, &mut total).await?;
            }
        }
        // Only now is the batch durable: a crash before this line re-reads it.
        follower.commit()?;
    }
    Ok(total)
}

fn is_powermta_header(line: &str) -> bool {
    line.trim_start_matches('\u{feff}').starts_with("type,")
}

/// The header line of a PowerMTA accounting file, if its first line is one.
fn powermta_header(path: &Path) -> Option<String> {
    let mut first = String::new();
    super::follow::open_log(path)
        .ok()?
        .read_line(&mut first)
        .ok()?;
    let first = first.trim_end_matches(['\n', '\r']);
    is_powermta_header(first).then(|| first.to_string())
}

/// Backoff between retries while the database or the server is unavailable: the lines
/// stay unacknowledged in the file, so waiting loses nothing.
const RETRY_BACKOFF: [u64; 6] = [1, 2, 5, 10, 30, 60];

async fn store_with_retry(
    store: &DynStore,
    engine: &Engine,
    batch: &WriteBatch,
    clock: &Arc<dyn crate::clock::Clock>,
) -> Result<Vec<crate::store::BatchOutcome>, LogError> {
    let mut attempt = 0;
    loop {
        match store
            .record_events(std::slice::from_ref(batch), engine, clock.now())
            .await
        {
            Err(StoreError::Unavailable(m)) => {
                let wait = RETRY_BACKOFF[attempt.min(RETRY_BACKOFF.len() - 1)];
                tracing::warn!(error = %m, retry_in_s = wait, "database unavailable; will retry the batch");
                tokio::time::sleep(Duration::from_secs(wait)).await;
                attempt += 1;
            }
            other => return Ok(other?),
        }
    }
}

#[derive(serde::Deserialize, Default)]
struct ServerReply {
    #[serde(default)]
    accepted: u64,
    #[serde(default)]
    duplicates: u64,
    #[serde(default)]
    ignored: u64,
    #[serde(default)]
    rejected_count: u64,
    #[serde(default)]
    incident_ids: Vec<i64>,
}

async fn post_with_retry(
    client: &reqwest::Client,
    url: &str,
    token: &str,
    lines: &[String],
    total: &mut Counts,
) -> Result<(), LogError> {
    let mut body = lines.join("\n");
    body.push('\n');
    let mut attempt = 0;
    loop {
        let r = client
            .post(url)
            .bearer_auth(token)
            .header("content-type", "text/plain; charset=utf-8")
            .body(body.clone())
            .send()
            .await;
        let retry_in = match r {
            Ok(resp) if resp.status().is_success() || resp.status().as_u16() == 422 => {
                let reply: ServerReply = resp.json().await.unwrap_or_default();
                total.stored += reply.accepted;
                total.duplicates += reply.duplicates;
                total.ignored += reply.ignored;
                total.rejected += reply.rejected_count;
                total.incidents.extend(reply.incident_ids);
                return Ok(());
            }
            Ok(resp) if resp.status().as_u16() == 503 || resp.status().as_u16() == 429 => resp
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(RETRY_BACKOFF[attempt.min(RETRY_BACKOFF.len() - 1)]),
            Ok(resp) if resp.status().is_server_error() => {
                RETRY_BACKOFF[attempt.min(RETRY_BACKOFF.len() - 1)]
            }
            Ok(resp) => {
                let status = resp.status();
                let text = resp.text().await.unwrap_or_default();
                return Err(LogError::Refused(format!("{status}: {text}")));
            }
            Err(e) => {
                let wait = RETRY_BACKOFF[attempt.min(RETRY_BACKOFF.len() - 1)];
                tracing::warn!(error = %e, retry_in_s = wait, "server unreachable; will retry the batch");
                wait
            }
        };
        tokio::time::sleep(Duration::from_secs(retry_in.min(300))).await;
        attempt += 1;
    }
}

/// The default position file for tailing `path` as `source`: in the data directory,
/// named after both, so two tails of one file for two sources do not share one.
pub fn default_state_path(data_dir: &Path, source: &str, path: &Path) -> PathBuf {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(path.to_string_lossy().as_bytes());
    data_dir.join(format!("tail-{source}-{}.json", &hex::encode(digest)[..12]))
}

/// Parse rate for a run, for the CLI's summary line.
pub fn rate(n: u64, since: Instant) -> f64 {
    let s = since.elapsed().as_secs_f64();
    if s > 0.0 { n as f64 / s } else { 0.0 }
}
