//! The read API: incidents, events, rejected items; health and metrics.

use super::auth::ApiAuth;
use super::error::AppError;
use crate::app::AppState;
use crate::event::{EventType, StoredEvent};
use crate::incidents::model::{Counts, PhaseChange, ReopenRecord, ReplySample};
use crate::incidents::{Incident, Phase, Scope, Status, Thresholds, scope};
use crate::store::{DeadLetter, EventFilter, IncidentFilter};
use crate::time_format;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/incidents", get(list_incidents))
        .route("/api/v1/incidents/{id}", get(show_incident))
        .route("/api/v1/overview", get(show_overview))
        .route("/api/v1/events", get(list_events))
        .route("/api/v1/rejects", get(list_rejects))
        .route("/api/v1/classify", axum::routing::post(classify))
        .route("/api/v1/checks", get(list_checks).post(run_checks))
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
}

#[derive(Serialize)]
pub struct CauseShare {
    pub cause: String,
    pub count: u64,
    pub share: f64,
}

#[derive(Serialize)]
pub struct NextPhase {
    pub phase: Phase,
    /// When the incident enters it if deferrals go on.
    #[serde(with = "time_format")]
    pub at: DateTime<Utc>,
}

#[derive(Serialize)]
pub struct HourBucket {
    #[serde(with = "time_format")]
    pub hour: DateTime<Utc>,
    pub deferred: u32,
    pub delivered: u32,
    pub bounced: u32,
}

#[derive(Serialize)]
pub struct MxHost {
    pub host: String,
    #[serde(flatten)]
    pub counts: Counts,
}

#[derive(Serialize)]
pub struct DomainCount {
    pub domain: String,
    pub deferred: u64,
}

/// An incident as the API shows it.
#[derive(Serialize)]
pub struct IncidentView {
    pub id: i64,
    pub destination: String,
    pub status: Status,
    pub phase: Phase,
    pub guidance: &'static str,
    #[serde(with = "time_format")]
    pub first_seen: DateTime<Utc>,
    #[serde(with = "time_format")]
    pub last_seen: DateTime<Utc>,
    #[serde(with = "time_format::option")]
    pub closed_at: Option<DateTime<Utc>>,
    pub age_seconds: i64,
    pub next_phase: Option<NextPhase>,
    pub deferred_count: u64,
    pub delivered_count: u64,
    pub bounced_count: u64,
    pub recovery_trend: bool,
    pub scope: Scope,
    pub top_causes: Vec<CauseShare>,
    pub stages: std::collections::BTreeMap<String, u64>,
    pub origins: std::collections::BTreeMap<String, u64>,
    pub phase_history: Vec<PhaseChange>,
    pub reopens: Vec<ReopenRecord>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<IncidentDetail>,
    /// Latest checks of the incident's subjects (single-incident view only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub checks: Option<Vec<SubjectChecks>>,
    /// Check changes on those subjects from a day before the first deferral on, to
    /// set next to the deferrals on the timeline.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub check_changes: Option<Vec<crate::store::StoredCheckChange>>,
}

/// The latest checks of one subject of an incident.
#[derive(Serialize)]
pub struct SubjectChecks {
    pub subject: String,
    pub checks: Vec<crate::store::StoredCheck>,
}

#[derive(Serialize)]
pub struct IncidentDetail {
    pub mx_hosts: Vec<MxHost>,
    pub recipient_domains: Vec<DomainCount>,
    pub recipient_domains_other: u64,
    pub replies: Vec<ReplySample>,
    pub replies_other: u64,
    pub hourly: Vec<HourBucket>,
}

impl IncidentView {
    pub fn new(inc: Incident, th: &Thresholds, with_detail: bool) -> Self {
        let total = inc.counts.deferred.max(1) as f64;
        let top_causes = inc
            .top_causes()
            .into_iter()
            .map(|(cause, count)| CauseShare {
                cause,
                count,
                share: (count as f64 / total * 1000.0).round() / 1000.0,
            })
            .collect();
        let next_phase = (inc.status == Status::Open)
            .then(|| th.next_boundary(inc.age()))
            .flatten()
            .map(|(phase, left)| NextPhase {
                phase,
                at: inc.last_seen + left,
            });
        let detail = with_detail.then(|| {
            let mut replies = inc.replies.clone();
            replies.sort_by_key(|r| std::cmp::Reverse(r.count));
            IncidentDetail {
                mx_hosts: inc
                    .mx_hosts
                    .iter()
                    .map(|(h, c)| MxHost {
                        host: h.clone(),
                        counts: c.clone(),
                    })
                    .collect(),
                recipient_domains: inc
                    .recipient_domains
                    .sorted()
                    .into_iter()
                    .map(|(d, n)| DomainCount {
                        domain: d.to_string(),
                        deferred: n,
                    })
                    .collect(),
                recipient_domains_other: inc.recipient_domains.other,
                replies,
                replies_other: inc.replies_other,
                hourly: inc
                    .hourly
                    .iter()
                    .map(|(h, b)| HourBucket {
                        hour: time_format::from_millis(h * 1000),
                        deferred: b.d,
                        delivered: b.s,
                        bounced: b.b,
                    })
                    .collect(),
            }
        });
        IncidentView {
            id: inc.id,
            scope: scope(&inc),
            destination: inc.destination.clone(),
            status: inc.status,
            phase: inc.phase,
            guidance: inc.phase.guidance(),
            first_seen: inc.first_seen,
            last_seen: inc.last_seen,
            closed_at: inc.closed_at,
            age_seconds: inc.age().num_seconds(),
            next_phase,
            deferred_count: inc.counts.deferred,
            delivered_count: inc.counts.delivered,
            bounced_count: inc.counts.bounced,
            recovery_trend: inc.recovery_trend,
            top_causes,
            stages: inc.stages,
            origins: inc.origins,
            phase_history: inc.phase_history,
            reopens: inc.reopens,
            detail,
            checks: None,
            check_changes: None,
        }
    }
}

fn parse_opt<T: std::str::FromStr>(
    v: Option<&str>,
    field: &str,
    allowed: &str,
) -> Result<Option<T>, AppError> {
    v.filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<T>()
                .map_err(|_| AppError::bad(field, format!("{s:?} is not one of {allowed}")))
        })
        .transpose()
}

fn limit(v: Option<i64>, default: i64, max: i64) -> Result<i64, AppError> {
    match v {
        None => Ok(default),
        Some(n) if (1..=max).contains(&n) => Ok(n),
        Some(n) => Err(AppError::bad(
            "limit",
            format!("{n} is not between 1 and {max}"),
        )),
    }
}

#[derive(Deserialize)]
struct IncidentQuery {
    phase: Option<String>,
    status: Option<String>,
    destination: Option<String>,
    limit: Option<i64>,
    offset: Option<i64>,
}

#[derive(Serialize)]
struct IncidentList {
    incidents: Vec<IncidentView>,
    limit: i64,
    offset: i64,
    has_more: bool,
}

async fn list_incidents(
    State(state): State<AppState>,
    _auth: ApiAuth,
    q: Result<Query<IncidentQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<IncidentList>, AppError> {
    let Query(q) = q.map_err(|e| AppError::bad("query", e.body_text()))?;
    let phases =
        "deferred, normal_retry, persistent, cooling, cooling_extended, escalate, recovered, stale";
    let limit = limit(q.limit, 50, 500)?;
    let offset = q.offset.unwrap_or(0);
    if offset < 0 {
        return Err(AppError::bad("offset", "must not be negative"));
    }
    let filter = IncidentFilter {
        phase: parse_opt(q.phase.as_deref(), "phase", phases)?,
        status: parse_opt(q.status.as_deref(), "status", "open, recovered, stale")?,
        destination: q
            .destination
            .filter(|d| !d.is_empty())
            .map(|d| d.to_ascii_lowercase()),
        // One more than asked tells whether there is a next page.
        limit: limit + 1,
        offset,
        ..Default::default()
    };
    let mut incidents = state.store.list_incidents(&filter).await?;
    let has_more = incidents.len() as i64 > limit;
    incidents.truncate(limit as usize);
    let engine = state.engine.get();
    let th = &engine.thresholds;
    Ok(Json(IncidentList {
        incidents: incidents
            .into_iter()
            .map(|i| IncidentView::new(i, th, false))
            .collect(),
        limit,
        offset,
        has_more,
    }))
}

/// Most open incidents the overview reads; beyond that the overview says so.
const OVERVIEW_LIMIT: i64 = 5000;

/// `GET /api/v1/overview`: open incidents by phase, and whether the sender side is
/// the common factor (one IP deferred by several destinations, or the MTA's own
/// failures towards several).
async fn show_overview(
    State(state): State<AppState>,
    _auth: ApiAuth,
) -> Result<Json<serde_json::Value>, AppError> {
    let mut open = state
        .store
        .list_incidents(&IncidentFilter {
            status: Some(Status::Open),
            limit: OVERVIEW_LIMIT + 1,
            ..Default::default()
        })
        .await?;
    let truncated = open.len() as i64 > OVERVIEW_LIMIT;
    open.truncate(OVERVIEW_LIMIT as usize);
    let mut v = serde_json::to_value(crate::incidents::overview(&open)).unwrap_or_default();
    v["truncated"] = truncated.into();
    Ok(Json(v))
}

async fn show_incident(
    State(state): State<AppState>,
    _auth: ApiAuth,
    Path(id): Path<String>,
) -> Result<Json<IncidentView>, AppError> {
    let id: i64 = id
        .parse()
        .map_err(|_| AppError::bad("id", format!("{id:?} is not an incident id")))?;
    let inc = state
        .store
        .incident(id)
        .await?
        .ok_or_else(|| AppError::NotFound(format!("incident {id}")))?;
    let subjects = crate::check_runner::subject_keys(&inc);
    let since = inc.first_seen - chrono::TimeDelta::days(1);
    let mut checks = Vec::with_capacity(subjects.len());
    for s in &subjects {
        checks.push(SubjectChecks {
            subject: s.clone(),
            checks: state.store.latest_checks(s).await?,
        });
    }
    let changes = state
        .store
        .check_changes(&subjects, Some(since), 200)
        .await?;
    let mut view = IncidentView::new(inc, &state.engine.get().thresholds, true);
    view.checks = Some(checks);
    view.check_changes = Some(changes);
    Ok(Json(view))
}

#[derive(Deserialize)]
struct EventQuery {
    #[serde(rename = "type")]
    kind: Option<String>,
    source: Option<String>,
    incident: Option<i64>,
    since: Option<String>,
    after: Option<i64>,
    limit: Option<i64>,
}

#[derive(Serialize)]
struct EventList {
    events: Vec<StoredEvent>,
    /// Pass as `after` for the next page; null at the end.
    next_cursor: Option<i64>,
}

async fn list_events(
    State(state): State<AppState>,
    _auth: ApiAuth,
    q: Result<Query<EventQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<EventList>, AppError> {
    let Query(q) = q.map_err(|e| AppError::bad("query", e.body_text()))?;
    let limit = limit(q.limit, 100, 1000)?;
    let since = q
        .since
        .as_deref()
        .filter(|s| !s.is_empty())
        .map(|s| {
            DateTime::parse_from_rfc3339(s)
                .map(|t| t.with_timezone(&Utc))
                .map_err(|_| AppError::bad("since", format!("{s:?} is not an RFC 3339 time")))
        })
        .transpose()?;
    let filter = EventFilter {
        kind: parse_opt::<EventType>(q.kind.as_deref(), "type", "deferred, delivered, bounced")?,
        source: q.source.filter(|s| !s.is_empty()),
        incident: q.incident,
        since,
        after: q.after,
        limit: limit + 1,
    };
    let mut events = state.store.list_events(&filter).await?;
    let more = events.len() as i64 > limit;
    events.truncate(limit as usize);
    let next_cursor = if more {
        events.last().map(|e| e.id)
    } else {
        None
    };
    Ok(Json(EventList {
        events,
        next_cursor,
    }))
}

#[derive(Deserialize)]
struct RejectQuery {
    after: Option<i64>,
    limit: Option<i64>,
}

#[derive(Serialize)]
struct RejectList {
    rejects: Vec<DeadLetter>,
    next_cursor: Option<i64>,
}

async fn list_rejects(
    State(state): State<AppState>,
    _auth: ApiAuth,
    q: Result<Query<RejectQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<RejectList>, AppError> {
    let Query(q) = q.map_err(|e| AppError::bad("query", e.body_text()))?;
    let limit = limit(q.limit, 100, 1000)?;
    let mut rejects = state.store.list_dead_letters(q.after, limit + 1).await?;
    let more = rejects.len() as i64 > limit;
    rejects.truncate(limit as usize);
    let next_cursor = if more {
        rejects.last().map(|r| r.id)
    } else {
        None
    };
    Ok(Json(RejectList {
        rejects,
        next_cursor,
    }))
}

#[derive(Deserialize)]
struct ChecksQuery {
    subject: Option<String>,
    limit: Option<i64>,
}

#[derive(Serialize)]
struct ChecksView {
    subject: String,
    latest: Vec<crate::store::StoredCheck>,
    history: Vec<crate::store::StoredCheck>,
    changes: Vec<crate::store::StoredCheckChange>,
}

/// `GET /api/v1/checks?subject=…`: the latest result of each check, the history and
/// the changes.
async fn list_checks(
    State(state): State<AppState>,
    _auth: ApiAuth,
    q: Result<Query<ChecksQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<ChecksView>, AppError> {
    let Query(q) = q.map_err(|e| AppError::bad("query", e.body_text()))?;
    let subject = q
        .subject
        .map(|s| s.trim().to_ascii_lowercase())
        .filter(|s| !s.is_empty())
        .ok_or_else(|| AppError::bad("subject", "required: an IP address or a domain"))?;
    let subject = subject
        .parse::<std::net::IpAddr>()
        .map(|ip| ip.to_string())
        .unwrap_or(subject);
    let limit = limit(q.limit, 200, 2000)?;
    Ok(Json(ChecksView {
        latest: state.store.latest_checks(&subject).await?,
        history: state.store.check_history(&subject, limit).await?,
        changes: state
            .store
            .check_changes(std::slice::from_ref(&subject), None, limit)
            .await?,
        subject,
    }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CheckRequest {
    ip: Option<String>,
    domain: Option<String>,
    helo: Option<String>,
    sender_domain: Option<String>,
    #[serde(default)]
    dkim_selectors: Vec<String>,
}

/// `POST /api/v1/checks`: run the checks for an IP (`{"ip", "helo"?, "sender_domain"?}`)
/// or a domain (`{"domain"}`) now, store them, and return them with what changed.
async fn run_checks(
    State(state): State<AppState>,
    _auth: ApiAuth,
    body: Result<Json<CheckRequest>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<serde_json::Value>, AppError> {
    use crate::check_runner::{CheckSubject, RunError};
    let Json(req) = body.map_err(|e| AppError::bad("body", e.body_text()))?;
    let subject = match (req.ip.as_deref(), req.domain.as_deref()) {
        (Some(ip), None) => CheckSubject::Ip {
            ip: ip
                .trim()
                .parse()
                .map_err(|_| AppError::bad("ip", format!("{ip:?} is not an IP address")))?,
            helo: req.helo.filter(|h| !h.trim().is_empty()),
            sender_domain: req.sender_domain.filter(|d| !d.trim().is_empty()),
            dkim_selectors: req.dkim_selectors.clone(),
        },
        (None, Some(d)) if crate::checks::names::hostname_syntax(d.trim()).is_ok() => {
            CheckSubject::Domain {
                domain: d.trim().trim_end_matches('.').to_ascii_lowercase(),
                dkim_selectors: req.dkim_selectors.clone(),
            }
        }
        (None, Some(d)) => {
            return Err(AppError::bad(
                "domain",
                format!("{d:?} is not a domain name"),
            ));
        }
        _ => return Err(AppError::bad("ip", "give either \"ip\" or \"domain\"")),
    };
    let (report, changes) = state
        .checks()
        .run_now(&subject)
        .await
        .map_err(|e| match e {
            RunError::Disabled => AppError::bad(
                "checks",
                "checks are disabled in the configuration (checks.enabled = false)",
            ),
            RunError::Store(e) => e.into(),
            RunError::Checker(e) => AppError::Internal(e.to_string()),
        })?;
    let mut v = serde_json::to_value(&report).unwrap_or_default();
    v["changes"] = serde_json::to_value(&changes).unwrap_or_default();
    Ok(Json(v))
}

/// Most replies one classify request may carry.
const MAX_CLASSIFY: usize = 10_000;

#[derive(Deserialize)]
#[serde(untagged)]
enum ClassifyItem {
    Text(String),
    Object {
        text: String,
        mx_host: Option<String>,
    },
}

#[derive(Deserialize)]
#[serde(untagged)]
enum ClassifyBody {
    Many(Vec<ClassifyItem>),
    One(ClassifyItem),
}

/// `POST /api/v1/classify`: a reply text (or `{text, mx_host}`), or a list of them.
async fn classify(
    State(state): State<AppState>,
    _auth: ApiAuth,
    body: Result<Json<ClassifyBody>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<serde_json::Value>, AppError> {
    let Json(body) = body.map_err(|e| {
        AppError::bad(
            "body",
            format!(
                "expected a reply text, {{\"text\": …, \"mx_host\": …}} or a list of them: {}",
                e.body_text()
            ),
        )
    })?;
    let one = |item: &ClassifyItem| {
        let (text, mx) = match item {
            ClassifyItem::Text(t) => (t.as_str(), None),
            ClassifyItem::Object { text, mx_host } => (text.as_str(), mx_host.as_deref()),
        };
        serde_json::to_value(state.classifier.classify_text(text, mx)).unwrap_or_default()
    };
    Ok(Json(match body {
        ClassifyBody::One(item) => one(&item),
        ClassifyBody::Many(items) if items.len() > MAX_CLASSIFY => {
            return Err(AppError::TooLarge {
                field: "body".into(),
                reason: format!("{} replies; the limit is {MAX_CLASSIFY}", items.len()),
            });
        }
        ClassifyBody::Many(items) => items.iter().map(one).collect(),
    }))
}

async fn healthz(State(state): State<AppState>) -> impl IntoResponse {
    let backend = match state.store.backend() {
        crate::store::Backend::Sqlite => "sqlite",
        crate::store::Backend::Postgres => "postgres",
    };
    match state.store.ping().await {
        Ok(()) => (
            StatusCode::OK,
            Json(serde_json::json!({"status": "ok", "database": "ok", "backend": backend})),
        ),
        Err(e) => {
            tracing::warn!(error = %e, "health check: database unreachable");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(
                    serde_json::json!({"status": "unavailable", "database": "unreachable", "backend": backend}),
                ),
            )
        }
    }
}

async fn metrics(
    State(state): State<AppState>,
    _auth: ApiAuth,
) -> Result<impl IntoResponse, AppError> {
    let by_phase = state.store.open_incidents_by_phase().await?;
    state.metrics.set_open_incidents(&by_phase);
    Ok((
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.encode(),
    ))
}
