//! The browser dashboard: thin handlers that load from the store, hand the domain
//! objects to `views`, and render. Every page needs a session; every POST passes the
//! CSRF check in `session::session_layer` and, to change anything, an admin.

use super::error::{AppError, PageError};
use super::session::{self, Admin, LoginOutcome, PRELOGIN_COOKIE, SESSION_COOKIE, Viewer};
use super::views::{self, *};
use crate::app::AppState;
use crate::incidents::{Incident, Phase, Status};
use crate::store::IncidentFilter;
use crate::store::web::{Action, Marks};
use axum::Router;
use axum::extract::{Form, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum_extra::extract::cookie::CookieJar;
use chrono::{DateTime, TimeDelta, Utc};
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap};

type PageResult = Result<Response, PageError>;

pub fn router(state: &AppState) -> Router<AppState> {
    let pages = Router::new()
        .route("/", get(incidents_page))
        .route("/incidents/table", get(incidents_table))
        .route("/incidents/{id}", get(incident_page))
        .route("/incidents/{id}/report.txt", get(report_txt))
        .route("/incidents/{id}/report.eml", get(report_eml))
        .route("/incidents/{id}/report/send", post(send_report))
        .route("/incidents/{id}/note", post(note))
        .route("/incidents/{id}/snooze", post(snooze))
        .route("/incidents/{id}/checks", post(rerun_checks))
        .route("/incidents/{id}/{action}", post(simple_action))
        .route("/events/raw", get(raw_event))
        .route("/ips", get(ips_page))
        .route("/sources", get(sources_page).post(create_source))
        .route("/sources/{name}/rotate", post(rotate_source))
        .route("/sources/{name}/revoke", post(revoke_source))
        .route("/settings", get(settings_page).post(save_settings))
        .route("/login", get(login_form).post(login_submit))
        .route("/logout", post(logout))
        .route("/setup", get(setup_form).post(setup_submit))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            session::session_layer,
        ));
    Router::new()
        .route("/static/{file}", get(static_file))
        .merge(pages)
}

// ------------------------------------------------------------------ static assets

const HTMX: &str = include_str!("../../../static/htmx-2.0.11.min.js");
const APP_CSS: &str = include_str!("../../../static/app.css");
const CHARTS_CSS: &str = include_str!("../../../static/charts.css");

async fn static_file(Path(file): Path<String>) -> Response {
    let (body, ctype) = match file.as_str() {
        "htmx.min.js" => (HTMX, "text/javascript; charset=utf-8"),
        "app.css" => (APP_CSS, "text/css; charset=utf-8"),
        "charts.css" => (CHARTS_CSS, "text/css; charset=utf-8"),
        _ => return (StatusCode::NOT_FOUND, "no such file").into_response(),
    };
    (
        [
            (header::CONTENT_TYPE, ctype),
            // URLs carry the version, so a day of caching never serves a stale asset.
            (header::CACHE_CONTROL, "public, max-age=86400"),
        ],
        body,
    )
        .into_response()
}

// ------------------------------------------------------------------ helpers

fn nav(state: &AppState, s: &crate::store::web::Session, current: &'static str) -> Nav {
    Nav {
        user: s.user.username.clone(),
        role: s.user.role.as_str(),
        admin: s.user.role == crate::store::web::Role::Admin,
        csrf: s.csrf_token.clone(),
        current,
        demo: state.is_demo(),
        asset_version: views::ASSET_VERSION,
    }
}

fn parse_id(id: &str) -> Result<i64, PageError> {
    id.parse()
        .map_err(|_| PageError(AppError::NotFound(format!("incident {id:?}"))))
}

async fn load_incident(state: &AppState, id: i64) -> Result<Incident, PageError> {
    state
        .store
        .incident(id)
        .await?
        .ok_or_else(|| PageError(AppError::NotFound(format!("incident {id}"))))
}

fn see_other(to: &str) -> Response {
    Redirect::to(to).into_response()
}

fn mark_labels(m: &Marks, inc: &Incident, now: DateTime<Utc>) -> Vec<String> {
    let mut v = Vec::new();
    if let (Some(by), Some(at)) = (&m.ack_by, m.ack_at) {
        v.push(format!("acknowledged by {by} {}", views::relative(at, now)));
    }
    if let Some(until) = m.snoozed_until.filter(|u| *u > now) {
        v.push(format!(
            "snoozed until {}",
            until.format("%Y-%m-%d %H:%M UTC")
        ));
    }
    if resolved(m, inc) {
        v.push(format!(
            "resolved by {}",
            m.resolved_by.as_deref().unwrap_or("?")
        ));
    }
    v
}

/// A resolution holds until a deferral newer than it arrives: then the incident needs
/// attention again without anyone having to remember to reopen it.
fn resolved(m: &Marks, inc: &Incident) -> bool {
    m.resolved_at.is_some_and(|at| at >= inc.last_deferral)
}

fn next_boundary_text(
    inc: &Incident,
    th: &crate::incidents::Thresholds,
    now: DateTime<Utc>,
) -> String {
    if !inc.is_open() {
        return String::new();
    }
    match th.next_boundary(inc.age()) {
        Some((phase, _)) => {
            let boundary = match phase {
                Phase::NormalRetry => th.normal_retry,
                Phase::Persistent => th.persistent,
                Phase::Cooling => th.cooling,
                Phase::CoolingExtended => th.cooling_extended,
                _ => th.escalate,
            };
            let at = inc.first_seen + boundary;
            if at > now {
                format!(
                    "{} {}",
                    phase.as_str().replace('_', " "),
                    views::relative(at, now)
                )
            } else {
                format!(
                    "{} once deferrals continue",
                    phase.as_str().replace('_', " ")
                )
            }
        }
        None if inc.recovery_trend => "held by the recovery trend".into(),
        None => "last window reached".into(),
    }
}

fn deferrals_last_hour(inc: &Incident, now: DateTime<Utc>) -> u64 {
    let from = (now - TimeDelta::hours(1)).timestamp().div_euclid(3600) * 3600;
    inc.hourly.range(from..).map(|(_, b)| u64::from(b.d)).sum()
}

// ------------------------------------------------------------------ incidents list

#[derive(Deserialize, Default)]
struct ListQuery {
    phase: Option<String>,
    status: Option<String>,
    destination: Option<String>,
    ip: Option<String>,
    cause: Option<String>,
    q: Option<String>,
    closed: Option<String>,
}

/// Most incidents one list shows; the filters narrow it down.
const LIST_LIMIT: usize = 100;

fn clean(v: &Option<String>) -> Option<String> {
    v.as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.chars().take(200).collect())
}

async fn build_table(
    state: &AppState,
    q: &ListQuery,
) -> Result<(IncidentsTable, ListFilters), PageError> {
    let now = state.clock.now();
    let phase = clean(&q.phase).and_then(|p| p.parse::<Phase>().ok());
    let status = clean(&q.status).and_then(|s| s.parse::<Status>().ok());
    let show_closed = status.is_some() || clean(&q.closed).is_some();
    let filter = IncidentFilter {
        phase,
        status,
        destination: clean(&q.destination).map(|d| d.to_ascii_lowercase()),
        ip: clean(&q.ip),
        cause: clean(&q.cause),
        search: clean(&q.q),
        limit: LIST_LIMIT as i64 + 1,
        offset: 0,
    };
    let mut incidents: Vec<Incident> = state
        .store
        .list_incidents(&filter)
        .await?
        .into_iter()
        .filter(|i| filter.matches(i))
        .collect();
    let truncated = incidents.len() > LIST_LIMIT;
    incidents.truncate(LIST_LIMIT);
    let ids: Vec<i64> = incidents.iter().map(|i| i.id).collect();
    let marks = state.store.marks(&ids).await?;
    let engine = state.engine.get();
    let th = &engine.thresholds;
    let (mut attention, mut later, mut closed) = (Vec::new(), Vec::new(), Vec::new());
    let mut causes: Vec<String> = Vec::new();
    for inc in &incidents {
        let m = marks.get(&inc.id).cloned().unwrap_or_default();
        let scope = crate::incidents::scope(inc);
        let top = inc.top_causes();
        for (c, _) in &top {
            if !causes.contains(c) {
                causes.push(c.clone());
            }
        }
        let row = IncidentRow {
            id: inc.id,
            destination: inc.destination.clone(),
            phase: inc.phase.as_str().into(),
            open: inc.is_open() && !resolved(&m, inc),
            status: inc.status.as_str().into(),
            age: crate::incidents::engine::human(inc.age()),
            next_boundary: next_boundary_text(inc, th, now),
            deferred: inc.counts.deferred,
            delivered: inc.counts.delivered,
            rate: format!("{}/h", deferrals_last_hour(inc, now)),
            scope: scope.summary.clone(),
            cause: top
                .first()
                .map(|(c, n)| format!("{c} ({n})"))
                .unwrap_or_else(|| "—".into()),
            stage: inc.dominant_stage().unwrap_or("unknown").to_string(),
            marks: mark_labels(&m, inc, now),
            first_seen: When::new(inc.first_seen, now),
            last_seen: When::new(inc.last_seen, now),
            spark: super::charts::sparkline(&inc.hourly, now, 96, 20),
        };
        if !row.open {
            if show_closed {
                closed.push(row);
            }
        } else if m.ack_at.is_some() || m.snoozed_until.is_some_and(|u| u > now) {
            later.push(row);
        } else {
            attention.push(row);
        }
    }
    // Escalate first, then the oldest phase: the most urgent at the top.
    attention.sort_by(|a, b| {
        phase_rank(&b.phase)
            .cmp(&phase_rank(&a.phase))
            .then(b.deferred.cmp(&a.deferred))
    });
    let query = serde_urlencoded(q);
    let mk = |values: Vec<(String, String)>, current: &Option<String>| -> Vec<Opt> {
        values
            .into_iter()
            .map(|(value, label)| Opt {
                selected: current.as_deref() == Some(value.as_str()),
                value,
                label,
            })
            .collect()
    };
    let mut cause_opts: Vec<String> = crate::smtp::Cause::ALL
        .iter()
        .map(|c| c.as_str().to_string())
        .collect();
    for c in causes {
        if !cause_opts.contains(&c) {
            cause_opts.push(c);
        }
    }
    let filters = ListFilters {
        phase: clean(&q.phase).unwrap_or_default(),
        status: clean(&q.status).unwrap_or_default(),
        destination: clean(&q.destination).unwrap_or_default(),
        ip: clean(&q.ip).unwrap_or_default(),
        cause: clean(&q.cause).unwrap_or_default(),
        q: clean(&q.q).unwrap_or_default(),
        phases: mk(
            Phase::ALL
                .iter()
                .map(|p| (p.as_str().to_string(), p.as_str().replace('_', " ")))
                .collect(),
            &clean(&q.phase),
        ),
        statuses: mk(
            Status::ALL
                .iter()
                .map(|s| (s.as_str().to_string(), s.as_str().to_string()))
                .collect(),
            &clean(&q.status),
        ),
        causes: mk(
            cause_opts.into_iter().map(|c| (c.clone(), c)).collect(),
            &clean(&q.cause),
        ),
        active: [&q.phase, &q.status, &q.destination, &q.ip, &q.cause, &q.q]
            .iter()
            .any(|v| clean(v).is_some()),
    };
    Ok((
        IncidentsTable {
            attention,
            later,
            closed,
            query,
            refreshed: now.format("%H:%M:%S UTC").to_string(),
            truncated,
            show_closed,
        },
        filters,
    ))
}

fn phase_rank(p: &str) -> usize {
    p.parse::<Phase>().map(|p| p as usize).unwrap_or(0)
}

fn serde_urlencoded(q: &ListQuery) -> String {
    let mut s = form_urlencoded::Serializer::new(String::new());
    for (k, v) in [
        ("phase", &q.phase),
        ("status", &q.status),
        ("destination", &q.destination),
        ("ip", &q.ip),
        ("cause", &q.cause),
        ("q", &q.q),
        ("closed", &q.closed),
    ] {
        if let Some(v) = clean(v) {
            s.append_pair(k, &v);
        }
    }
    s.finish()
}

async fn incidents_page(
    State(state): State<AppState>,
    Viewer(s): Viewer,
    Query(q): Query<ListQuery>,
) -> PageResult {
    let (table, filters) = build_table(&state, &q).await?;
    let has_sources = !state.store.list_sources().await?.is_empty();
    Ok(views::render(&IncidentsPage {
        nav: nav(&state, &s, "incidents"),
        filters,
        table,
        has_sources,
        public_url: public_url(&state),
    }))
}

fn public_url(state: &AppState) -> String {
    state
        .config
        .public_url
        .clone()
        .unwrap_or_else(|| format!("http://{}", state.config.listen))
}

async fn incidents_table(
    State(state): State<AppState>,
    Viewer(_): Viewer,
    Query(q): Query<ListQuery>,
) -> PageResult {
    let (table, _) = build_table(&state, &q).await?;
    Ok(views::render(&table))
}

// ------------------------------------------------------------------ incident page

#[derive(Deserialize)]
struct FlashQuery {
    done: Option<String>,
}

async fn incident_page(
    State(state): State<AppState>,
    Viewer(s): Viewer,
    Path(id): Path<String>,
    Query(fq): Query<FlashQuery>,
) -> PageResult {
    let id = parse_id(&id)?;
    let flash = fq.done.map(|d| match d.as_str() {
        "checks re-run" => "Checks ran; results below.".to_string(),
        other => format!("Recorded: {}.", other.chars().take(40).collect::<String>()),
    });
    let page = incident_view(&state, &s, id, flash, None).await?;
    Ok(views::render(&page))
}

/// The incident page again with the reason a form was refused, as a 400.
async fn incident_form_error(
    state: &AppState,
    s: &crate::store::web::Session,
    id: &str,
    error: String,
) -> PageResult {
    incident_refused(state, s, id, StatusCode::BAD_REQUEST, error, None).await
}

async fn incident_refused(
    state: &AppState,
    s: &crate::store::web::Session,
    id: &str,
    status: StatusCode,
    error: String,
    send_to: Option<String>,
) -> PageResult {
    let id = parse_id(id)?;
    let mut page = incident_view(state, s, id, None, Some(error)).await?;
    if let Some(to) = send_to {
        page.send_to = to;
    }
    Ok((status, views::render(&page)).into_response())
}

async fn incident_view(
    state: &AppState,
    s: &crate::store::web::Session,
    id: i64,
    flash: Option<String>,
    error: Option<String>,
) -> Result<IncidentPage, PageError> {
    let state = state.clone();
    let inc = load_incident(&state, id).await?;
    let now = state.clock.now();
    let engine = state.engine.get();
    let th = &engine.thresholds;
    let marks = state
        .store
        .marks(&[id])
        .await?
        .remove(&id)
        .unwrap_or_default();
    let subjects = crate::check_runner::subject_keys(&inc);
    let mut stored_checks = Vec::new();
    let mut panels = Vec::new();
    let mut by_subject: HashMap<String, Vec<crate::store::StoredCheck>> = HashMap::new();
    for subj in &subjects {
        let checks = state.store.latest_checks(subj).await?;
        if !checks.is_empty() {
            panels.push(SubjectPanel {
                subject: subj.clone(),
                checks: checks
                    .iter()
                    .map(|c| CheckRow {
                        name: c.result.name.clone(),
                        verdict: c.result.verdict.as_str().into(),
                        detail: c.result.detail.clone(),
                        records: c.result.records.clone(),
                        checked_at: When::new(c.checked_at, now),
                    })
                    .collect(),
            });
        }
        by_subject.insert(subj.clone(), checks.clone());
        stored_checks.extend(checks);
    }
    let changes = state
        .store
        .check_changes(&subjects, Some(inc.first_seen - TimeDelta::days(1)), 200)
        .await?;
    let scope = crate::incidents::scope(&inc);

    // Timeline: per-cause bins from the stored events; the hourly aggregate when
    // retention has pruned them.
    let end = if inc.is_open() {
        now.max(inc.last_seen)
    } else {
        inc.last_seen
    };
    let span = end - inc.first_seen;
    let bin = super::charts::bin_width_for(span);
    let rows = state
        .store
        .incident_histogram(id, bin.num_milliseconds())
        .await?;
    let bins = timeline_bins(&inc, &rows, bin);
    let check_marks: Vec<(DateTime<Utc>, String)> = changes
        .iter()
        .map(|c| (c.at, format!("{}: {}", c.subject, c.description)))
        .collect();
    let timeline = super::charts::timeline(&super::charts::TimelineInput {
        bins: &bins,
        bin_width: bin,
        first_seen: inc.first_seen,
        end,
        thresholds: th,
        phase_changes: &inc.phase_history,
        check_changes: &check_marks,
    });

    let verdict_cell = |ip: &str, names: &[&str]| -> CheckCell {
        let checks = by_subject.get(ip);
        let picked: Vec<&crate::store::StoredCheck> = checks
            .map(|cs| {
                cs.iter()
                    .filter(|c| {
                        names.iter().any(|n| {
                            c.result.name == *n
                                || (n.ends_with(':') && c.result.name.starts_with(n))
                        })
                    })
                    .collect()
            })
            .unwrap_or_default();
        if picked.is_empty() {
            return CheckCell::unknown();
        }
        let worst = picked
            .iter()
            .map(|c| c.result.verdict)
            .fold(crate::checks::Verdict::None, |a, b| a.worst(b));
        let detail = picked
            .iter()
            .map(|c| format!("{}: {}", c.result.name, c.result.detail))
            .collect::<Vec<_>>()
            .join("; ");
        // Short enough to sit side by side: the name or the listing, the rest on hover.
        let text = if names.iter().any(|n| n.ends_with(':')) {
            let listed: Vec<&str> = picked
                .iter()
                .filter(|c| c.result.verdict == crate::checks::Verdict::Fail)
                .map(|c| c.result.name.trim_start_matches("dnsbl:"))
                .collect();
            if listed.is_empty() {
                format!("not listed ({} zones)", picked.len())
            } else {
                format!("listed: {}", listed.join(", "))
            }
        } else {
            let record = picked
                .iter()
                .find(|c| c.result.name == names[0])
                .and_then(|c| c.result.records.first())
                .map(|r| r.trim_end_matches('.').to_string());
            match record {
                Some(r) if names[0] == "ptr" => format!("{} {r}", worst.as_str()),
                _ => worst.as_str().to_string(),
            }
        };
        CheckCell {
            verdict: worst.as_str().into(),
            text,
            detail,
        }
    };
    let ip_rows = |ips: &[String]| -> Vec<IpRow> {
        ips.iter()
            .map(|ip| {
                let r = inc.routes.get(ip);
                IpRow {
                    ip: ip.clone(),
                    deferred: r.map(|r| r.counts.deferred).unwrap_or(0),
                    delivered: r.map(|r| r.counts.delivered).unwrap_or(0),
                    ptr: verdict_cell(ip, &["ptr", "fcrdns"]),
                    helo_names: r.map(|r| r.helos.join(", ")).unwrap_or_default(),
                    helo: verdict_cell(ip, &["helo"]),
                    blocklists: verdict_cell(ip, &["dnsbl:"]),
                }
            })
            .collect()
    };
    let affected = ip_rows(&scope.affected_source_ips);
    let unaffected = ip_rows(&scope.unaffected_source_ips);

    let overview = state.overview();
    let steps = crate::incidents::advice::next_steps(&crate::incidents::advice::AdviceInput {
        incident: &inc,
        scope: &scope,
        checks: &stored_checks,
        changes: &changes,
        thresholds: th,
        overview: overview.as_deref(),
        now,
    });
    let cfg = state.effective();
    let samples = crate::report::gather::sample_events(&*state.store, &inc).await?;
    let report = crate::report::build(&crate::report::ReportInput {
        incident: &inc,
        checks: &stored_checks,
        changes: &changes,
        events: &samples,
        thresholds: th,
        now,
        sender: crate::report::gather::sender(&cfg),
    });
    let activity = state.store.activity(id, 200).await?;
    let sends = state.store.list_sends(id).await?;
    let mut suggested: Vec<String> = super::reports_api::suggested_recipient(&inc)
        .into_iter()
        .collect();
    for r in &cfg.report_recipients {
        if !suggested.contains(r) {
            suggested.push(r.clone());
        }
    }
    let mut replies = inc.replies.clone();
    replies.sort_by_key(|r| std::cmp::Reverse(r.count));
    let page = IncidentPage {
        nav: nav(&state, s, "incidents"),
        error,
        id,
        destination: inc.destination.clone(),
        phase: inc.phase.as_str().into(),
        status: inc.status.as_str().into(),
        open: inc.is_open(),
        guidance: inc.phase.guidance().into(),
        first_seen: When::new(inc.first_seen, now),
        last_seen: When::new(inc.last_seen, now),
        closed_at: inc.closed_at.map(|c| When::new(c, now)),
        age: crate::incidents::engine::human(inc.age()),
        next_boundary: next_boundary_text(&inc, th, now),
        recovery_trend: inc.recovery_trend,
        deferred: inc.counts.deferred,
        delivered: inc.counts.delivered,
        bounced: inc.counts.bounced,
        scope_summary: scope.summary.clone(),
        stage_scope: format!("{:?}", scope.stage).to_lowercase(),
        marks: mark_labels(&marks, &inc, now),
        acknowledged: marks.ack_at.is_some(),
        snoozed: marks.snoozed_until.is_some_and(|u| u > now),
        resolved: resolved(&marks, &inc),
        timeline,
        affected,
        unaffected,
        mx_hosts: inc
            .mx_hosts
            .iter()
            .map(|(h, c)| NameCount {
                name: h.clone(),
                deferred: c.deferred,
                delivered: c.delivered,
            })
            .collect(),
        domains: inc
            .recipient_domains
            .sorted()
            .into_iter()
            .take(20)
            .map(|(d, n)| NameCount {
                name: d.to_string(),
                deferred: n,
                delivered: 0,
            })
            .collect(),
        domains_other: inc.recipient_domains.other
            + inc
                .recipient_domains
                .sorted()
                .iter()
                .skip(20)
                .map(|(_, n)| n)
                .sum::<u64>(),
        stages: count_list(&inc.stages),
        causes: count_list(&inc.causes),
        replies: replies
            .iter()
            .take(20)
            .map(|r| ReplyRow {
                text: r.text.clone(),
                code: [r.code.map(|c| c.to_string()), r.enhanced.clone()]
                    .into_iter()
                    .flatten()
                    .collect::<Vec<_>>()
                    .join(" "),
                count: r.count,
                cause: r.cause.clone().unwrap_or_else(|| "unclassified".into()),
                stage: r.stage.clone(),
                first_seen: When::new(r.first_seen, now),
                last_seen: When::new(r.last_seen, now),
                raw_url: format!("/events/raw?key={}", views::urlencode(&r.example_event)),
            })
            .collect(),
        replies_other: inc.replies_other + replies.iter().skip(20).map(|r| r.count).sum::<u64>(),
        checks: panels,
        changes: changes
            .iter()
            .map(|c| ChangeRow {
                at: When::new(c.at, now),
                subject: c.subject.clone(),
                description: c.description.clone(),
                verdict: c.verdict.clone(),
            })
            .collect(),
        checks_enabled: state.checks().enabled(),
        steps: steps
            .iter()
            .map(|s| StepRow {
                kind: match s.kind {
                    crate::incidents::advice::StepKind::Do => "do",
                    crate::incidents::advice::StepKind::Dont => "dont",
                    crate::incidents::advice::StepKind::Watch => "watch",
                }
                .into(),
                text: s.text.clone(),
            })
            .collect(),
        send_to: suggested.first().cloned().unwrap_or_default(),
        suggested,
        smtp_ready: cfg.smtp_url.is_some() && cfg.smtp_from.is_some(),
        sends: sends
            .into_iter()
            .map(|r| SendRow {
                at: When::new(r.at, now),
                user: r.username,
                to: r.recipients.join(", "),
                ok: r.ok,
                message_id: r.message_id,
                relay: r.relay_response,
            })
            .collect(),
        report_subject: report.subject.clone(),
        report_text: report.to_text(),
        activity: activity
            .into_iter()
            .map(|a| ActivityRow {
                at: When::new(a.at, now),
                user: a.username,
                action: a.action,
                detail: a.detail,
            })
            .collect(),
        snooze_default: (now + TimeDelta::hours(4))
            .format("%Y-%m-%dT%H:%M")
            .to_string(),
        flash,
    };
    Ok(page)
}

fn count_list(m: &BTreeMap<String, u64>) -> Vec<NameCount> {
    let mut v: Vec<NameCount> = m
        .iter()
        .map(|(k, n)| NameCount {
            name: k.clone(),
            deferred: *n,
            delivered: 0,
        })
        .collect();
    v.sort_by_key(|n| std::cmp::Reverse(n.deferred));
    v
}

fn timeline_bins(
    inc: &Incident,
    rows: &[crate::store::web::HistogramRow],
    bin: TimeDelta,
) -> Vec<super::charts::TimelineBin> {
    let mut bins: BTreeMap<i64, super::charts::TimelineBin> = BTreeMap::new();
    fn entry(
        bins: &mut BTreeMap<i64, super::charts::TimelineBin>,
        ms: i64,
    ) -> &mut super::charts::TimelineBin {
        bins.entry(ms)
            .or_insert_with(|| super::charts::TimelineBin {
                start: crate::time_format::from_millis(ms),
                deferred_by_cause: Vec::new(),
                delivered: 0,
                bounced: 0,
            })
    }
    if rows.is_empty() {
        // Events pruned: the hourly aggregate, without causes.
        let bin_ms = bin.num_milliseconds().max(1);
        for (hour, b) in &inc.hourly {
            let ms = (hour * 1000).div_euclid(bin_ms) * bin_ms;
            let e = entry(&mut bins, ms);
            if b.d > 0 {
                push_cause(&mut e.deferred_by_cause, "deferred", u64::from(b.d));
            }
            e.delivered += u64::from(b.s);
            e.bounced += u64::from(b.b);
        }
    }
    for r in rows {
        let e = entry(&mut bins, r.bin);
        let n = r.count.max(0) as u64;
        match r.kind.as_str() {
            "deferred" => push_cause(&mut e.deferred_by_cause, &r.cause, n),
            "delivered" => e.delivered += n,
            _ => e.bounced += n,
        }
    }
    bins.into_values().collect()
}

fn push_cause(v: &mut Vec<(String, u64)>, cause: &str, n: u64) {
    match v.iter_mut().find(|(c, _)| c == cause) {
        Some((_, m)) => *m += n,
        None => v.push((cause.to_string(), n)),
    }
}

async fn report_eml(
    State(state): State<AppState>,
    Viewer(_): Viewer,
    Path(id): Path<String>,
) -> PageResult {
    let id = parse_id(&id)?;
    let inc = load_incident(&state, id).await?;
    Ok(
        super::reports_api::render(&state, &inc, super::reports_api::Format::Eml, Vec::new())
            .await?,
    )
}

#[derive(Deserialize)]
struct SendForm {
    #[serde(default)]
    to: String,
}

/// Sending is a deliberate act: the operator names the recipients, and nothing is
/// called sent that the relay did not accept. A refusal comes back with the relay's
/// reply and the recipients filled in, ready to retry.
async fn send_report(
    State(state): State<AppState>,
    Admin(s): Admin,
    Path(id): Path<String>,
    Form(f): Form<SendForm>,
) -> PageResult {
    use crate::report::gather::{SendError, send_and_record};
    let n = parse_id(&id)?;
    let inc = load_incident(&state, n).await?;
    let to: Vec<String> =
        f.to.split([',', ';', ' ', '\n'])
            .map(str::trim)
            .filter(|a| !a.is_empty())
            .map(str::to_string)
            .collect();
    if to.is_empty() {
        return incident_form_error(
            &state,
            &s,
            &id,
            "Send to: name at least one recipient.".into(),
        )
        .await;
    }
    let report = build_report(&state, &inc).await?;
    let cfg = state.effective();
    let now = state.clock.now();
    let user = s.user.username.clone();
    match send_and_record(&*state.store, &cfg, &report, n, &to, &user, now).await {
        Ok((record, _)) => {
            state
                .store
                .apply_action(
                    n,
                    &Action::ReportSent(format!(
                        "to {}; {}; relay: {}",
                        to.join(", "),
                        record.message_id,
                        record.relay_response
                    )),
                    &user,
                    now,
                )
                .await?;
            Ok(see_other(&format!("/incidents/{n}?done=report+sent")))
        }
        Err(SendError::Relay { record, error }) => {
            state
                .store
                .apply_action(
                    n,
                    &Action::ReportNotSent(format!(
                        "to {}; relay: {}",
                        to.join(", "),
                        record.relay_response
                    )),
                    &user,
                    now,
                )
                .await?;
            incident_refused(
                &state,
                &s,
                &id,
                StatusCode::BAD_GATEWAY,
                format!("Not sent: {error}. Retry below once the relay accepts it."),
                Some(f.to.clone()),
            )
            .await
        }
        Err(SendError::NotConfigured { field, reason }) => {
            incident_form_error(&state, &s, &id, format!("{field}: {reason}.")).await
        }
        Err(SendError::Invalid(e)) => {
            incident_refused(
                &state,
                &s,
                &id,
                StatusCode::BAD_REQUEST,
                format!("Send to: {e}."),
                Some(f.to.clone()),
            )
            .await
        }
        Err(SendError::Store(e)) => Err(e.into()),
    }
}

async fn report_txt(
    State(state): State<AppState>,
    Viewer(_): Viewer,
    Path(id): Path<String>,
) -> PageResult {
    let id = parse_id(&id)?;
    let inc = load_incident(&state, id).await?;
    let report = build_report(&state, &inc).await?;
    let filename = format!("deferwatch-incident-{id}.txt");
    Ok((
        [
            (
                header::CONTENT_TYPE,
                "text/plain; charset=utf-8".to_string(),
            ),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{filename}\""),
            ),
        ],
        report.to_text(),
    )
        .into_response())
}

/// The escalation report of an incident with its current checks: the one builder the
/// page download, the API and the CLI share.
pub async fn build_report(
    state: &AppState,
    inc: &Incident,
) -> Result<crate::report::EscalationReport, AppError> {
    Ok(crate::report::gather::for_state(state, inc).await?)
}

#[derive(Deserialize)]
struct RawQuery {
    key: String,
}

async fn raw_event(
    State(state): State<AppState>,
    Viewer(_): Viewer,
    headers: HeaderMap,
    Query(q): Query<RawQuery>,
) -> PageResult {
    let raw = state.store.event_raw(&q.key).await?.ok_or_else(|| {
        PageError(AppError::NotFound(
            "event (retention may have pruned it)".into(),
        ))
    })?;
    let pretty = serde_json::from_str::<serde_json::Value>(&raw)
        .and_then(|v| serde_json::to_string_pretty(&v))
        .unwrap_or(raw);
    if headers.contains_key("hx-request") {
        // A fragment for the <details> it opens in.
        return Ok(views::render(&RawFragment { raw: pretty }));
    }
    Ok((
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        pretty,
    )
        .into_response())
}

#[derive(askama::Template)]
#[template(source = "<pre>{{ raw }}</pre>", ext = "html")]
struct RawFragment {
    raw: String,
}

// ------------------------------------------------------------------ actions

async fn act(
    state: &AppState,
    s: &crate::store::web::Session,
    id: &str,
    action: Action,
) -> PageResult {
    let id = parse_id(id)?;
    let now = state.clock.now();
    if !state
        .store
        .apply_action(id, &action, &s.user.username, now)
        .await?
    {
        return Err(PageError(AppError::NotFound(format!("incident {id}"))));
    }
    Ok(see_other(&format!(
        "/incidents/{id}?done={}",
        views::urlencode(action.name())
    )))
}

/// The actions that carry no form fields: `ack`, `unsnooze`, `resolve`, `reopen`.
async fn simple_action(
    State(state): State<AppState>,
    Admin(s): Admin,
    Path((id, name)): Path<(String, String)>,
) -> PageResult {
    let action = match name.as_str() {
        "ack" => Action::Acknowledge,
        "unsnooze" => Action::Unsnooze,
        "resolve" => Action::Resolve,
        "reopen" => Action::Reopen,
        other => return Err(PageError(AppError::NotFound(format!("action {other:?}")))),
    };
    act(&state, &s, &id, action).await
}

#[derive(Deserialize)]
struct NoteForm {
    #[serde(default)]
    note: String,
}

/// Longest note kept; a pasted transcript fits, a pasted log file does not.
const MAX_NOTE: usize = 4000;

async fn note(
    State(state): State<AppState>,
    Admin(s): Admin,
    Path(id): Path<String>,
    Form(f): Form<NoteForm>,
) -> PageResult {
    let text = f.note.trim();
    if text.is_empty() {
        return incident_form_error(
            &state,
            &s,
            &id,
            "Note: write something to add a note.".into(),
        )
        .await;
    }
    if text.chars().count() > MAX_NOTE {
        return incident_form_error(
            &state,
            &s,
            &id,
            format!("Note: at most {MAX_NOTE} characters."),
        )
        .await;
    }
    act(&state, &s, &id, Action::Note(text.to_string())).await
}

#[derive(Deserialize)]
struct SnoozeForm {
    #[serde(default)]
    until: String,
}

/// `datetime-local` sends `YYYY-MM-DDTHH:MM`, read as UTC like every time shown here.
pub fn parse_until(v: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>, String> {
    let v = v.trim();
    let t = chrono::NaiveDateTime::parse_from_str(v, "%Y-%m-%dT%H:%M")
        .or_else(|_| chrono::NaiveDateTime::parse_from_str(v, "%Y-%m-%dT%H:%M:%S"))
        .map_err(|_| format!("{v:?} is not a time like 2026-11-23T18:00 (UTC)"))?
        .and_utc();
    if t <= now {
        return Err("must be in the future".into());
    }
    if t > now + TimeDelta::days(30) {
        return Err("at most 30 days ahead".into());
    }
    Ok(t)
}

async fn snooze(
    State(state): State<AppState>,
    Admin(s): Admin,
    Path(id): Path<String>,
    Form(f): Form<SnoozeForm>,
) -> PageResult {
    match parse_until(&f.until, state.clock.now()) {
        Ok(until) => act(&state, &s, &id, Action::Snooze(until)).await,
        Err(reason) => {
            incident_form_error(&state, &s, &id, format!("Snooze until: {reason}.")).await
        }
    }
}

async fn rerun_checks(
    State(state): State<AppState>,
    Admin(s): Admin,
    Path(id): Path<String>,
) -> PageResult {
    let n = parse_id(&id)?;
    let inc = load_incident(&state, n).await?;
    let runner = state.checks();
    if !runner.enabled() {
        return Err(PageError(AppError::bad(
            "checks",
            "checks are disabled in the configuration",
        )));
    }
    let mut summary = Vec::new();
    for subject in crate::check_runner::subjects_for(&inc) {
        match runner.run_now(&subject).await {
            Ok((report, changes)) => {
                let failing = report
                    .checks
                    .iter()
                    .filter(|r| r.verdict == crate::checks::Verdict::Fail)
                    .count();
                summary.push(format!(
                    "{}: {} checks, {} failing, {} changed",
                    report.subject,
                    report.checks.len(),
                    failing,
                    changes.len()
                ));
            }
            Err(e) => summary.push(format!("{}: {e}", subject.key())),
        }
    }
    act(&state, &s, &id, Action::RerunChecks(summary.join("; "))).await
}

// ------------------------------------------------------------------ sending IPs

async fn ips_page(State(state): State<AppState>, Viewer(s): Viewer) -> PageResult {
    let now = state.clock.now();
    let ips = state.store.sending_ips().await?;
    let open = state
        .store
        .list_incidents(&IncidentFilter {
            status: Some(Status::Open),
            limit: 5000,
            ..Default::default()
        })
        .await?;
    let cfg = state.effective();
    let mut columns: Vec<String> = vec!["ptr".into(), "fcrdns".into(), "helo".into()];
    columns.extend(cfg.checks.dnsbl.iter().map(|z| format!("dnsbl:{}", z.zone)));
    let mut rows = Vec::with_capacity(ips.len());
    for ip in ips {
        let checks = state.store.latest_checks(&ip.ip).await?;
        let cells = columns
            .iter()
            .map(|col| match checks.iter().find(|c| &c.result.name == col) {
                Some(c) => CheckCell {
                    verdict: c.result.verdict.as_str().into(),
                    text: c.result.verdict.as_str().into(),
                    detail: c.result.detail.clone(),
                },
                None => CheckCell::unknown(),
            })
            .collect();
        let last_change = state
            .store
            .check_changes(std::slice::from_ref(&ip.ip), None, 1)
            .await?
            .into_iter()
            .next()
            .map(|c| ChangeRow {
                at: When::new(c.at, now),
                subject: c.subject,
                description: c.description,
                verdict: c.verdict,
            });
        let incidents = open
            .iter()
            .filter(|i| i.routes.get(&ip.ip).is_some_and(|r| r.counts.deferred > 0))
            .map(|i| (i.id, i.destination.clone(), i.phase.as_str().to_string()))
            .collect();
        rows.push(IpGridRow {
            helo: ip.helo.clone().unwrap_or_default(),
            last_seen: When::new(ip.last_seen, now),
            ip: ip.ip,
            cells,
            last_change,
            incidents,
        });
    }
    Ok(views::render(&IpsPage {
        nav: nav(&state, &s, "ips"),
        columns,
        rows,
    }))
}

// ------------------------------------------------------------------ sources

/// The URL a source's sender posts to: ESPs cannot add headers, so theirs carries the
/// token as `?token=`.
pub fn ingest_url_for(base: &str, format: &str, token: &str) -> String {
    if format == "json" {
        format!("{base}/api/v1/events")
    } else if format.parse::<crate::ingest::esp::Esp>().is_ok() {
        format!("{base}/api/v1/ingest/{format}?token={token}")
    } else {
        format!("{base}/api/v1/ingest/{format}")
    }
}

/// A new or rotated token, shown once, with where to send events.
pub struct NewToken {
    pub name: String,
    pub token: String,
    pub url: String,
}

async fn sources_view(
    state: &AppState,
    s: &crate::store::web::Session,
    new_token: Option<NewToken>,
    error: Option<String>,
    form_name: String,
) -> Result<SourcesPage, PageError> {
    let now = state.clock.now();
    let sources = state.store.list_sources().await?;
    let activity = state
        .store
        .source_activity(now - TimeDelta::hours(24))
        .await?;
    let rejects = state.store.list_dead_letters(None, 50).await?;
    Ok(SourcesPage {
        nav: nav(state, s, "sources"),
        sources: sources
            .into_iter()
            .map(|src| {
                let (events, rejected) = activity.get(&src.name).copied().unwrap_or((0, 0));
                SourceRow {
                    created: When::new(src.created_at, now),
                    last_event: src.last_event_at.map(|t| When::new(t, now)),
                    events_24h: events,
                    rejected,
                    revoked: src.revoked_at.is_some(),
                    verification: verification_label(&src),
                    name: src.name,
                    format: src.format,
                }
            })
            .collect(),
        rejects: rejects
            .into_iter()
            .rev()
            .map(|d| RejectRow {
                id: d.id,
                source: d.source.unwrap_or_else(|| "(no valid token)".into()),
                received: When::new(d.received_at, now),
                field: d.field.unwrap_or_default(),
                reason: d.reason,
                raw: d.raw.chars().take(8192).collect(),
            })
            .collect(),
        formats: crate::ingest::http::source_formats(),
        new_token,
        error,
        form_name,
        ingest_url: format!("{}/api/v1/events", public_url(state)),
    })
}

/// What, beside the token, authenticates a source's requests.
fn verification_label(src: &crate::store::Source) -> String {
    let Ok(esp) = src.format.parse::<crate::ingest::esp::Esp>() else {
        return "token".into();
    };
    use crate::ingest::esp::Esp;
    let k = &src.keys;
    match esp {
        Esp::Sendgrid if k.public_key.is_some() => "token + ECDSA signature".into(),
        Esp::Postal if k.public_key.is_some() => "token + RSA signature".into(),
        Esp::Mailgun if k.secret.is_some() => "token + HMAC-SHA256 signature".into(),
        Esp::Mandrill if k.secret.is_some() && k.webhook_url.is_some() => {
            "token + HMAC-SHA1 signature".into()
        }
        Esp::Ses if k.public_key.is_some() => "token + SNS signature (pinned key)".into(),
        Esp::Ses => "token + SNS signature".into(),
        Esp::Sparkpost | Esp::Brevo if k.secret.is_some() => "token + credentials".into(),
        Esp::Sparkpost | Esp::Brevo => "token".into(),
        _ => "key missing: requests are refused".into(),
    }
}

async fn sources_page(State(state): State<AppState>, Admin(s): Admin) -> PageResult {
    Ok(views::render(
        &sources_view(&state, &s, None, None, String::new()).await?,
    ))
}

#[derive(Deserialize)]
struct SourceForm {
    #[serde(default)]
    name: String,
    #[serde(default)]
    format: String,
    #[serde(default)]
    secret: String,
    #[serde(default)]
    public_key: String,
    #[serde(default)]
    webhook_url: String,
}

fn valid_source_name(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= 64
        && n.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

async fn create_source(
    State(state): State<AppState>,
    Admin(s): Admin,
    Form(f): Form<SourceForm>,
) -> PageResult {
    let name = f.name.trim().to_string();
    let bad = |msg: String| async {
        let mut page = sources_view(&state, &s, None, Some(msg), name.clone()).await?;
        page.form_name = name.clone();
        Ok::<Response, PageError>((StatusCode::BAD_REQUEST, views::render(&page)).into_response())
    };
    if !valid_source_name(&name) {
        return bad("name: 1 to 64 characters: letters, digits, '.', '_', '-'".into()).await;
    }
    let formats = crate::ingest::http::source_formats();
    if !formats.contains(&f.format.as_str()) {
        return bad(format!(
            "format: {:?} is not one of {}",
            f.format,
            formats.join(", ")
        ))
        .await;
    }
    let keys = crate::store::SourceKeys {
        secret: Some(f.secret.trim().to_string()).filter(|v| !v.is_empty()),
        public_key: Some(f.public_key.trim().to_string()).filter(|v| !v.is_empty()),
        webhook_url: Some(f.webhook_url.trim().to_string()).filter(|v| !v.is_empty()),
    };
    if let Err(e) = crate::ingest::webhook::check_keys(&f.format, &keys) {
        return bad(e).await;
    }
    let token = super::auth::new_token(super::auth::SOURCE_TOKEN_PREFIX);
    match state
        .store
        .create_source(
            &name,
            &f.format,
            &super::auth::hash_token(&token),
            state.clock.now(),
        )
        .await
    {
        Ok(_) => {
            state.store.set_source_keys(&name, &keys).await?;
            let shown = NewToken {
                url: ingest_url_for(&public_url(&state), &f.format, &token),
                name,
                token,
            };
            Ok(views::render(
                &sources_view(&state, &s, Some(shown), None, String::new()).await?,
            ))
        }
        Err(crate::store::StoreError::Conflict(_)) => {
            bad(format!("name: a source called {name:?} already exists")).await
        }
        Err(e) => Err(e.into()),
    }
}

async fn rotate_source(
    State(state): State<AppState>,
    Admin(s): Admin,
    Path(name): Path<String>,
) -> PageResult {
    let token = super::auth::new_token(super::auth::SOURCE_TOKEN_PREFIX);
    if !state
        .store
        .rotate_source_token(&name, &super::auth::hash_token(&token))
        .await?
    {
        return Err(PageError(AppError::NotFound(format!("source {name:?}"))));
    }
    let format = state
        .store
        .list_sources()
        .await?
        .into_iter()
        .find(|src| src.name == name)
        .map_or_else(|| "json".to_string(), |src| src.format);
    let shown = NewToken {
        url: ingest_url_for(&public_url(&state), &format, &token),
        name,
        token,
    };
    Ok(views::render(
        &sources_view(&state, &s, Some(shown), None, String::new()).await?,
    ))
}

async fn revoke_source(
    State(state): State<AppState>,
    Admin(_): Admin,
    Path(name): Path<String>,
) -> PageResult {
    if !state.store.revoke_source(&name, state.clock.now()).await? {
        return Err(PageError(AppError::NotFound(format!("source {name:?}"))));
    }
    Ok(see_other("/sources"))
}

// ------------------------------------------------------------------ settings

async fn settings_view(
    state: &AppState,
    s: &crate::store::web::Session,
    values: &BTreeMap<String, String>,
    errors: &[(String, String)],
    saved: bool,
    updated: Option<String>,
) -> Result<SettingsPage, PageError> {
    let now = state.clock.now();
    let webhooks = state
        .config
        .notify
        .webhooks
        .iter()
        .map(|w| WebhookRow {
            url: crate::notify::config::mask_url(&w.url),
            format: w.format.as_str().to_string(),
            triggers: w
                .events
                .iter()
                .map(|e| e.as_str().to_string())
                .chain(w.phases.iter().map(|p| p.as_str().to_string()))
                .collect::<Vec<_>>()
                .join(", "),
        })
        .collect();
    let deliveries = crate::notify::list_deliveries(state, 50)
        .await
        .map_err(|e| AppError::Internal(e.to_string()))?
        .into_iter()
        .map(|d| DeliveryRow {
            at: When::new(d.last_attempt_at.unwrap_or(d.created_at), now),
            incident_id: d.incident_id,
            what: match &d.phase {
                Some(p) => format!("{} {p}", d.event),
                None => d.event.clone(),
            },
            webhook: d.webhook,
            state: d.state.as_str().into(),
            attempts: d.attempts,
            last: match (d.last_status, d.last_error) {
                (_, Some(e)) => e,
                (Some(st), None) => format!("HTTP {st}"),
                (None, None) => match d.next_attempt_at {
                    Some(n) => format!("next attempt {}", views::relative(n, now)),
                    None => String::new(),
                },
            },
        })
        .collect();
    let mut groups: Vec<(&'static str, Vec<SettingField>)> = Vec::new();
    for spec in super::settings::FIELDS {
        let field = SettingField {
            name: spec.name,
            label: spec.label,
            help: spec.help,
            value: values.get(spec.name).cloned().unwrap_or_default(),
            error: {
                let e: Vec<&str> = errors
                    .iter()
                    .filter(|(f, _)| f == spec.name)
                    .map(|(_, r)| r.as_str())
                    .collect();
                (!e.is_empty()).then(|| e.join("; "))
            },
            multiline: spec.multiline,
        };
        match groups.iter_mut().find(|(g, _)| *g == spec.group) {
            Some((_, v)) => v.push(field),
            None => groups.push((spec.group, vec![field])),
        }
    }
    Ok(SettingsPage {
        webhooks,
        deliveries,
        nav: nav(state, s, "settings"),
        groups,
        saved,
        has_errors: !errors.is_empty(),
        updated,
    })
}

async fn settings_page(
    State(state): State<AppState>,
    Admin(s): Admin,
    Query(fq): Query<FlashQuery>,
) -> PageResult {
    let values = super::settings::current_values(&state.effective());
    let updated = state
        .store
        .setting(super::settings::SETTINGS_KEY)
        .await?
        .map(|_| "in this dashboard".to_string());
    Ok(views::render(
        &settings_view(&state, &s, &values, &[], fq.done.is_some(), updated).await?,
    ))
}

async fn save_settings(
    State(state): State<AppState>,
    Admin(s): Admin,
    Form(form): Form<BTreeMap<String, String>>,
) -> PageResult {
    let values: BTreeMap<String, String> = super::settings::FIELDS
        .iter()
        .map(|f| {
            (
                f.name.to_string(),
                form.get(f.name).cloned().unwrap_or_default(),
            )
        })
        .collect();
    let mut cfg = (*state.effective()).clone();
    if let Err(errors) = super::settings::apply(&values, &mut cfg) {
        let page = settings_view(&state, &s, &values, &errors, false, None).await?;
        return Ok((StatusCode::BAD_REQUEST, views::render(&page)).into_response());
    }
    let doc = serde_json::to_string(&super::settings::RuntimeSettings {
        values: values.clone(),
    })
    .map_err(|e| AppError::Internal(e.to_string()))?;
    state
        .store
        .put_setting(
            super::settings::SETTINGS_KEY,
            &doc,
            &s.user.username,
            state.clock.now(),
        )
        .await?;
    state
        .reconfigure(cfg)
        .map_err(|e| AppError::Internal(format!("checks: {e}")))?;
    Ok(see_other("/settings?done=saved"))
}

// ------------------------------------------------------------------ login, setup

#[derive(Deserialize, Default)]
struct NextQuery {
    next: Option<String>,
}

/// Only local paths: a login link must not send the user to another site.
fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(n) if n.starts_with('/') && !n.starts_with("//") && !n.contains('\\') => n.to_string(),
        _ => "/".into(),
    }
}

fn prelogin(state: &AppState, headers: &HeaderMap, jar: CookieJar) -> (CookieJar, String) {
    match jar.get(PRELOGIN_COOKIE).map(|c| c.value().to_string()) {
        Some(t) if t.len() == 48 => (jar, t),
        _ => {
            let t = hex::encode(rand::random::<[u8; 24]>());
            let c = session::cookie(state, headers, PRELOGIN_COOKIE, t.clone());
            (jar.add(c), t)
        }
    }
}

async fn login_form(
    State(state): State<AppState>,
    headers: HeaderMap,
    jar: CookieJar,
    Query(q): Query<NextQuery>,
) -> PageResult {
    if state.store.count_users().await? == 0 {
        return Ok(see_other("/setup"));
    }
    let (jar, csrf) = prelogin(&state, &headers, jar);
    let page = LoginPage {
        setup: false,
        error: None,
        csrf,
        next: safe_next(q.next.as_deref()),
        username: String::new(),
    };
    Ok((jar, views::render(&page)).into_response())
}

#[derive(Deserialize)]
struct LoginForm {
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    next: String,
    #[serde(default, rename = "csrf")]
    _csrf: String,
}

async fn login_submit(
    State(state): State<AppState>,
    headers: HeaderMap,
    jar: CookieJar,
    ext: axum::http::Extensions,
    Form(f): Form<LoginForm>,
) -> PageResult {
    let client = session::client_of(&ext);
    let username = f.username.trim().to_string();
    let outcome = session::login(&state, &username, &f.password, &client).await?;
    let (jar, csrf) = prelogin(&state, &headers, jar);
    let again = |status: StatusCode, msg: String, jar: CookieJar| {
        let page = LoginPage {
            setup: false,
            error: Some(msg),
            csrf: csrf.clone(),
            next: safe_next(Some(&f.next)),
            username: username.clone(),
        };
        (status, jar, views::render(&page)).into_response()
    };
    match outcome {
        LoginOutcome::Ok { token } => {
            let jar = jar
                .remove(axum_extra::extract::cookie::Cookie::from(PRELOGIN_COOKIE))
                .add(session::cookie(&state, &headers, SESSION_COOKIE, token));
            Ok((jar, see_other(&safe_next(Some(&f.next)))).into_response())
        }
        LoginOutcome::Invalid => Ok(again(
            StatusCode::UNAUTHORIZED,
            "Wrong username or password.".into(),
            jar,
        )),
        LoginOutcome::Throttled { retry_in } => {
            let mut resp = again(
                StatusCode::TOO_MANY_REQUESTS,
                format!(
                    "Too many failed logins. Try again in {}.",
                    crate::incidents::engine::human(retry_in)
                ),
                jar,
            );
            resp.headers_mut().insert(
                header::RETRY_AFTER,
                HeaderValue::from(retry_in.num_seconds().max(1) as u64),
            );
            Ok(resp)
        }
    }
}

async fn logout(State(state): State<AppState>, jar: CookieJar) -> PageResult {
    if let Some(c) = jar.get(SESSION_COOKIE) {
        state
            .store
            .delete_session(&super::auth::hash_token(c.value()))
            .await?;
    }
    let jar = jar.remove(axum_extra::extract::cookie::Cookie::from(SESSION_COOKIE));
    Ok((jar, see_other("/login")).into_response())
}

async fn setup_form(
    State(state): State<AppState>,
    headers: HeaderMap,
    jar: CookieJar,
) -> PageResult {
    if state.store.count_users().await? > 0 {
        return Ok(see_other("/login"));
    }
    let (jar, csrf) = prelogin(&state, &headers, jar);
    let page = LoginPage {
        setup: true,
        error: None,
        csrf,
        next: "/".into(),
        username: String::new(),
    };
    Ok((jar, views::render(&page)).into_response())
}

async fn setup_submit(
    State(state): State<AppState>,
    headers: HeaderMap,
    jar: CookieJar,
    ext: axum::http::Extensions,
    Form(f): Form<LoginForm>,
) -> PageResult {
    let username = f.username.trim().to_string();
    if let Err((field, reason)) = session::validate_credentials(&username, &f.password) {
        let (jar, csrf) = prelogin(&state, &headers, jar);
        let page = LoginPage {
            setup: true,
            error: Some(format!("{field}: {reason}")),
            csrf,
            next: "/".into(),
            username,
        };
        return Ok((StatusCode::BAD_REQUEST, jar, views::render(&page)).into_response());
    }
    let hash = session::hash_password(&f.password)?;
    if state
        .store
        .create_first_user(&username, &hash, state.clock.now())
        .await?
        .is_none()
    {
        return Err(PageError(AppError::Forbidden(
            "the dashboard is already set up: log in instead".into(),
        )));
    }
    login_submit(
        State(state),
        headers,
        jar,
        ext,
        Form(LoginForm {
            username,
            password: f.password,
            next: "/".into(),
            _csrf: String::new(),
        }),
    )
    .await
}
