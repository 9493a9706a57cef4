//! `POST /api/v1/events`: the native JSON format.

use super::esp::{self, Esp};
use super::json::{Context, parse_batch, split_body};
use super::{IngestError, Rejection};
use crate::app::AppState;
use crate::event::EventType;
use crate::metrics::{EventLabels, SourceLabels};
use crate::store::{EventOutcome, NewReject, WriteBatch};
use crate::web::auth::SourceAuth;
use crate::web::error::AppError;
use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde::Serialize;
use std::time::Instant;

pub fn router(state: &AppState) -> Router<AppState> {
    Router::new()
        .route("/api/v1/events", post(ingest_events))
        .route("/api/v1/ingest/{format}", post(ingest_format))
        .layer(DefaultBodyLimit::max(state.config.max_body_bytes))
}

#[derive(Serialize)]
struct RejectedItem {
    index: usize,
    #[serde(flatten)]
    rejection: Rejection,
}

#[derive(Serialize)]
struct IngestReply {
    accepted: usize,
    duplicates: usize,
    /// Records of kinds that carry no delivery outcome (arrivals, opens, notices):
    /// counted, never an error, so the sender does not retry them forever.
    ignored: usize,
    rejected_count: usize,
    rejected: Vec<RejectedItem>,
    /// Incidents the accepted events were attached to.
    incident_ids: Vec<i64>,
}

async fn ingest_events(
    State(state): State<AppState>,
    SourceAuth(source): SourceAuth,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, AppError> {
    let started = Instant::now();
    let (body, _permit) = admit(&state, body)?;
    let now = state.clock.now();
    let ndjson = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.contains("ndjson") || ct.contains("jsonl"));

    let text = match std::str::from_utf8(&body) {
        Ok(t) => t,
        Err(e) => {
            let reason = format!("the body is not UTF-8 ({e})");
            keep_rejected_body(&state, source.id, &body, "body", &reason, now).await?;
            return Err(AppError::bad("body", reason));
        }
    };
    let items = match split_body(text, ndjson, state.config.max_batch_events) {
        Ok(items) => items,
        Err(e @ IngestError::Body(_)) => {
            keep_rejected_body(&state, source.id, &body, "body", &e.to_string(), now).await?;
            return Err(e.into());
        }
        Err(e) => return Err(e.into()),
    };

    let ctx = context(&state, source.id, now);
    let (batch, rejected) = parse_batch(&items, &ctx);
    let rejected: Vec<RejectedItem> = rejected
        .into_iter()
        .map(|(index, rejection)| RejectedItem { index, rejection })
        .collect();
    commit_and_reply(&state, &source, started, batch, rejected, 0).await
}

/// What every adapter validates and classifies with.
fn context(state: &AppState, source_id: i64, now: chrono::DateTime<chrono::Utc>) -> Context<'_> {
    Context {
        source_id,
        classifier: &state.classifier,
        now,
        max_future_skew: chrono::TimeDelta::from_std(state.config.max_future_skew)
            .unwrap_or(chrono::TimeDelta::hours(1)),
    }
}

/// The body within its limit and a slot among the requests in flight: past the limit,
/// load is shed at once rather than queued.
fn admit(
    state: &AppState,
    body: Result<Bytes, BytesRejection>,
) -> Result<(Bytes, tokio::sync::OwnedSemaphorePermit), AppError> {
    let body = body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            AppError::TooLarge {
                field: "body".into(),
                reason: format!(
                    "request body over the {} byte limit",
                    state.config.max_body_bytes
                ),
            }
        } else {
            AppError::bad("body", e.body_text())
        }
    })?;
    let permit = state
        .ingest_slots
        .clone()
        .try_acquire_owned()
        .map_err(|_| AppError::Unavailable {
            reason: "too many ingest requests in flight".into(),
        })?;
    Ok((body, permit))
}

/// Stores a parsed request and answers with what became of each item.
async fn commit_and_reply(
    state: &AppState,
    source: &crate::store::Source,
    started: Instant,
    batch: WriteBatch,
    rejected: Vec<RejectedItem>,
    ignored: usize,
) -> Result<Response, AppError> {
    let kinds: Vec<EventType> = batch.events.iter().map(|e| e.kind).collect();
    let outcome = state.committer.submit(batch).await.inspect_err(|_| {
        state.metrics.commit_errors.inc();
    })?;

    if !outcome.opened.is_empty() && state.checks().enabled() {
        queue_checks(state, outcome.opened.clone());
    }
    let mut reply = IngestReply {
        accepted: 0,
        duplicates: 0,
        ignored,
        rejected_count: rejected.len(),
        rejected,
        incident_ids: Vec::new(),
    };
    let mut stored_by_kind = [0u64; 3];
    for (i, o) in outcome.events.iter().enumerate() {
        match o {
            EventOutcome::Stored { incident_id } => {
                reply.accepted += 1;
                stored_by_kind[kinds[i] as usize] += 1;
                if let Some(id) = incident_id
                    && !reply.incident_ids.contains(id)
                {
                    reply.incident_ids.push(*id);
                }
            }
            EventOutcome::Duplicate => reply.duplicates += 1,
        }
    }
    for kind in EventType::ALL {
        let n = stored_by_kind[kind as usize];
        if n > 0 {
            state
                .metrics
                .events_ingested
                .get_or_create(&EventLabels {
                    r#type: kind.as_str().into(),
                    source: source.name.clone(),
                })
                .inc_by(n);
        }
    }
    let labels = SourceLabels {
        source: source.name.clone(),
    };
    if reply.duplicates > 0 {
        state
            .metrics
            .events_duplicate
            .get_or_create(&labels)
            .inc_by(reply.duplicates as u64);
    }
    if reply.rejected_count > 0 {
        state
            .metrics
            .events_rejected
            .get_or_create(&labels)
            .inc_by(reply.rejected_count as u64);
    }
    state
        .metrics
        .ingest_latency
        .observe(started.elapsed().as_secs_f64());
    // Nothing stored and something rejected: the request as a whole was wrong.
    let status = if reply.accepted + reply.duplicates == 0 && reply.rejected_count > 0 {
        StatusCode::UNPROCESSABLE_ENTITY
    } else {
        StatusCode::OK
    };
    Ok((status, Json(reply)).into_response())
}

/// Checks for newly opened incidents run in the background; the ingest answer never
/// waits for DNS.
fn queue_checks(state: &AppState, opened: Vec<i64>) {
    let state = state.clone();
    tokio::spawn(async move {
        for id in opened {
            match state.store.incident(id).await {
                Ok(Some(inc)) => state
                    .checks()
                    .enqueue(crate::check_runner::subjects_for(&inc)),
                Ok(None) => {}
                Err(e) => tracing::warn!(incident = id, error = %e, "cannot queue checks"),
            }
        }
    });
}

/// The MTA formats served at `POST /api/v1/ingest/{format}`.
pub const MTA_FORMATS: &[&str] = &["kumomta", "postfix", "exim", "powermta"];

/// Every format a source can be created for: the native JSON, the MTAs', the ESPs'.
pub fn source_formats() -> Vec<&'static str> {
    let mut all = vec!["json"];
    all.extend_from_slice(MTA_FORMATS);
    all.extend(super::esp::Esp::ALL.iter().map(|e| e.as_str()));
    all
}

/// Line parsers kept per source between requests, so a Postfix `from=` line and the
/// `status=` line of the same queue id may arrive in different requests.
type BoxedParser = Box<dyn super::mta::LineParser + Send>;

#[derive(Default)]
pub struct LineParsers(
    std::sync::Mutex<std::collections::HashMap<(i64, &'static str), BoxedParser>>,
);

impl LineParsers {
    /// Forgets every source's parser state, as a restart does (queue ids, PowerMTA
    /// columns): what the senders must cope with anyway.
    pub fn clear(&self) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }
}

/// A line parser for `format`, mapping what its lines carry through the source's map.
pub fn new_parser(
    format: &str,
    map: super::mta::LogSourceMap,
) -> Option<(&'static str, Box<dyn super::mta::LineParser + Send>)> {
    match format {
        "postfix" => Some(("postfix", Box::new(super::postfix::PostfixParser::new(map)))),
        "exim" => Some(("exim", Box::new(super::exim::EximParser::new(map)))),
        "powermta" => Some((
            "powermta",
            Box::new(super::powermta::PowerMtaParser::new(map)),
        )),
        _ => None,
    }
}

/// `POST /api/v1/ingest/{format}`: an MTA's own records as it writes them. The source
/// must have been created for that format.
async fn ingest_format(
    State(state): State<AppState>,
    SourceAuth(source): SourceAuth,
    axum::extract::Path(format): axum::extract::Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, AppError> {
    let started = Instant::now();
    let esp = format.parse::<Esp>().ok();
    if esp.is_none() && !MTA_FORMATS.contains(&format.as_str()) {
        return Err(AppError::NotFound(format!(
            "ingest format {format:?} (served: {}; the native JSON format is POST /api/v1/events)",
            source_formats()[1..].join(", ")
        )));
    }
    if source.format != format {
        return Err(AppError::bad(
            "format",
            format!(
                "source {:?} was created for format {:?}: post to /api/v1/ingest/{} or create a source with --format {format}",
                source.name, source.format, source.format
            ),
        ));
    }
    let (body, _permit) = admit(&state, body)?;
    let now = state.clock.now();
    if let Some(esp) = esp {
        return ingest_esp(&state, &source, esp, &headers, &body, started).await;
    }
    let text = match std::str::from_utf8(&body) {
        Ok(t) => t,
        Err(e) => {
            let reason = format!("the body is not UTF-8 ({e})");
            keep_rejected_body(&state, source.id, &body, "body", &reason, now).await?;
            return Err(AppError::bad("body", reason));
        }
    };
    let map = state
        .config
        .log_sources
        .get(&source.name)
        .cloned()
        .unwrap_or_default();
    let ctx = context(&state, source.id, now);
    // Each parsed record with the index of the item (JSON record or line) it came from.
    let mut parsed: Vec<(usize, super::mta::Parsed)> = Vec::new();
    if format == "kumomta" {
        let ndjson = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|ct| ct.contains("ndjson") || ct.contains("jsonl"));
        let items = match split_body(text, ndjson, state.config.max_batch_events) {
            Ok(items) => items,
            Err(e @ IngestError::Body(_)) => {
                keep_rejected_body(&state, source.id, &body, "body", &e.to_string(), now).await?;
                return Err(e.into());
            }
            Err(e) => return Err(e.into()),
        };
        for (i, item) in items.iter().enumerate() {
            for p in super::kumomta::parse_record(item, &ctx, &map) {
                parsed.push((i, p));
            }
        }
    } else {
        let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
        if lines.len() > state.config.max_batch_events {
            return Err(IngestError::TooManyEvents {
                got: lines.len(),
                max: state.config.max_batch_events,
            }
            .into());
        }
        let mut parsers = state
            .line_parsers
            .0
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let Some((name, fresh)) = new_parser(&format, map) else {
            return Err(AppError::NotFound(format!("ingest format {format:?}")));
        };
        let parser = parsers.entry((source.id, name)).or_insert(fresh);
        for (i, line) in lines.iter().enumerate() {
            for p in parser.feed_line(line, &ctx) {
                parsed.push((i, p));
            }
        }
    }
    let mut batch = WriteBatch::default();
    let mut rejected = Vec::new();
    let mut ignored = 0;
    for (index, p) in parsed {
        match p {
            super::mta::Parsed::Event(ev) => batch.events.push(ev),
            super::mta::Parsed::Ignored { .. } => ignored += 1,
            super::mta::Parsed::Rejected { rejection, raw } => {
                batch.rejects.push(NewReject {
                    source_id: Some(source.id),
                    received_at: now,
                    index: Some(index),
                    field: rejection.field.clone(),
                    reason: rejection.reason.clone(),
                    raw,
                });
                rejected.push(RejectedItem { index, rejection });
            }
        }
    }
    commit_and_reply(&state, &source, started, batch, rejected, ignored).await
}

/// An ESP webhook: the provider's signature first (a failure is kept as a rejected item
/// and answered 401, which providers retry), then its events.
async fn ingest_esp(
    state: &AppState,
    source: &crate::store::Source,
    esp: Esp,
    headers: &HeaderMap,
    body: &[u8],
    started: Instant,
) -> Result<Response, AppError> {
    let now = state.clock.now();
    let tolerance = chrono::TimeDelta::from_std(state.config.webhook_tolerance)
        .unwrap_or(chrono::TimeDelta::hours(1));
    if let Err(e) = state
        .webhooks
        .verify(esp, source, headers, body, now, tolerance)
        .await
    {
        let reason = format!("{esp} signature: {e}");
        keep_rejected_body(state, source.id, body, "signature", &reason, now).await?;
        return Err(AppError::BadSignature { reason });
    }
    let ctx = context(state, source.id, now);
    let parsed = esp.parse(body, &ctx);
    if parsed.len() > state.config.max_batch_events {
        return Err(IngestError::TooManyEvents {
            got: parsed.len(),
            max: state.config.max_batch_events,
        }
        .into());
    }
    let mut batch = WriteBatch::default();
    let mut rejected = Vec::new();
    let mut ignored = 0;
    for p in parsed {
        match p {
            esp::Parsed::Event(ev) => batch.events.push(ev),
            esp::Parsed::Ignored { .. } => ignored += 1,
            esp::Parsed::Rejected {
                index,
                field,
                reason,
                raw,
            } => {
                batch.rejects.push(NewReject {
                    source_id: Some(source.id),
                    received_at: now,
                    index: Some(index),
                    field: field.clone(),
                    reason: reason.clone(),
                    raw,
                });
                rejected.push(RejectedItem {
                    index,
                    rejection: Rejection {
                        field,
                        reason,
                        ext_id: None,
                    },
                });
            }
            esp::Parsed::SubscriptionConfirmation {
                topic_arn,
                subscribe_url,
                ..
            } => {
                // Only reached with a verified signature: SNS itself asks to confirm.
                return match state.webhooks.confirm_subscription(&subscribe_url).await {
                    Ok(()) => {
                        tracing::info!(source = %source.name, topic = %topic_arn, "SNS subscription confirmed");
                        Ok((
                            StatusCode::OK,
                            Json(serde_json::json!({"subscription": "confirmed", "topic_arn": topic_arn})),
                        )
                            .into_response())
                    }
                    Err(reason) => {
                        let reason = format!(
                            "SNS subscription to {topic_arn} not confirmed: {reason}; confirm it by opening the SubscribeURL of the kept message"
                        );
                        keep_rejected_body(state, source.id, body, "SubscribeURL", &reason, now)
                            .await?;
                        Err(AppError::BadGateway { reason })
                    }
                };
            }
        }
    }
    commit_and_reply(state, source, started, batch, rejected, ignored).await
}

/// Keeps a whole request body as one rejected item (unreadable, a bad signature, an
/// unconfirmed subscription), so the operator can see what the sender sent. Capped: the
/// point is inspection, not archiving garbage.
async fn keep_rejected_body(
    state: &AppState,
    source_id: i64,
    body: &[u8],
    field: &str,
    reason: &str,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<(), AppError> {
    const KEEP: usize = 1024 * 1024;
    let raw = String::from_utf8_lossy(&body[..body.len().min(KEEP)]).replace('\0', "\u{FFFD}");
    let batch = WriteBatch {
        events: Vec::new(),
        rejects: vec![NewReject {
            source_id: Some(source_id),
            received_at: now,
            index: None,
            field: Some(field.into()),
            reason: reason.to_string(),
            raw,
        }],
    };
    state.committer.submit(batch).await?;
    Ok(())
}
