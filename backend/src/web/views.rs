//! Page models and their askama templates. Everything a template shows is prepared
//! here as text, so templates stay logic-light and escape everything by default.

use askama::Template;
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use chrono::{DateTime, TimeDelta, Utc};

/// Bumped into static URLs so browsers refetch assets after an upgrade.
pub const ASSET_VERSION: &str = env!("CARGO_PKG_VERSION");

/// What the layout needs on every page.
pub struct Nav {
    pub user: String,
    pub role: &'static str,
    pub admin: bool,
    pub csrf: String,
    pub current: &'static str,
    pub demo: bool,
    pub asset_version: &'static str,
}

/// A time shown in UTC with its relative age.
#[derive(Clone, Debug)]
pub struct When {
    pub iso: String,
    pub utc: String,
    pub age: String,
}

impl When {
    pub fn new(t: DateTime<Utc>, now: DateTime<Utc>) -> Self {
        When {
            iso: t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            utc: t.format("%Y-%m-%d %H:%M UTC").to_string(),
            age: relative(t, now),
        }
    }
}

pub fn relative(t: DateTime<Utc>, now: DateTime<Utc>) -> String {
    let d = now - t;
    if d.num_seconds().abs() < 60 {
        return "just now".into();
    }
    let h = crate::incidents::engine::human(d.abs());
    if d > TimeDelta::zero() {
        format!("{h} ago")
    } else {
        format!("in {h}")
    }
}

pub fn utc_seconds(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

pub fn urlencode(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// Renders a template, turning a rendering failure into a 500 page.
pub fn render<T: Template>(t: &T) -> Response {
    match t.render() {
        Ok(html) => Html(html).into_response(),
        Err(e) => {
            let id = format!("{:016x}", rand::random::<u64>());
            tracing::error!(error_id = %id, cause = %e, "template failed");
            error_page(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Something went wrong on our side.",
                Some(&id),
            )
        }
    }
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage<'a> {
    status: String,
    message: &'a str,
    error_id: Option<&'a str>,
}

pub fn error_page(status: StatusCode, message: &str, error_id: Option<&str>) -> Response {
    let page = ErrorPage {
        status: format!(
            "{} {}",
            status.as_u16(),
            status.canonical_reason().unwrap_or("")
        ),
        message,
        error_id,
    };
    let body = page
        .render()
        .unwrap_or_else(|_| format!("{} {message}", status.as_u16()));
    (status, Html(body)).into_response()
}

#[derive(Template)]
#[template(path = "login.html")]
pub struct LoginPage {
    pub setup: bool,
    pub error: Option<String>,
    pub csrf: String,
    pub next: String,
    pub username: String,
}

// ---------------------------------------------------------------- incidents list

pub struct Opt {
    pub value: String,
    pub label: String,
    pub selected: bool,
}

pub struct ListFilters {
    pub phase: String,
    pub status: String,
    pub destination: String,
    pub ip: String,
    pub cause: String,
    pub q: String,
    pub phases: Vec<Opt>,
    pub statuses: Vec<Opt>,
    pub causes: Vec<Opt>,
    pub active: bool,
}

pub struct IncidentRow {
    pub id: i64,
    pub destination: String,
    pub phase: String,
    pub open: bool,
    pub status: String,
    pub age: String,
    pub next_boundary: String,
    pub deferred: u64,
    pub delivered: u64,
    pub rate: String,
    pub scope: String,
    pub cause: String,
    pub stage: String,
    pub marks: Vec<String>,
    pub first_seen: When,
    pub last_seen: When,
    pub spark: super::charts::Sparkline,
}

#[derive(Template)]
#[template(path = "incidents.html")]
pub struct IncidentsPage {
    pub nav: Nav,
    pub filters: ListFilters,
    pub table: IncidentsTable,
    pub has_sources: bool,
    pub public_url: String,
}

#[derive(Template)]
#[template(path = "partials/incidents_table.html")]
pub struct IncidentsTable {
    pub attention: Vec<IncidentRow>,
    pub later: Vec<IncidentRow>,
    pub closed: Vec<IncidentRow>,
    pub query: String,
    pub refreshed: String,
    pub truncated: bool,
    pub show_closed: bool,
}

// ---------------------------------------------------------------- incident page

pub struct IpRow {
    pub ip: String,
    pub deferred: u64,
    pub delivered: u64,
    pub ptr: CheckCell,
    pub helo_names: String,
    pub helo: CheckCell,
    pub blocklists: CheckCell,
}

/// One check verdict in a grid cell: a short text, the full explanation on hover.
pub struct CheckCell {
    pub verdict: String,
    pub text: String,
    pub detail: String,
}

impl CheckCell {
    pub fn unknown() -> Self {
        CheckCell {
            verdict: "none".into(),
            text: "not checked".into(),
            detail: "no check has run on this IP yet".into(),
        }
    }
}

pub struct NameCount {
    pub name: String,
    pub deferred: u64,
    pub delivered: u64,
}

pub struct ReplyRow {
    pub text: String,
    pub code: String,
    pub count: u64,
    pub cause: String,
    pub stage: String,
    pub first_seen: When,
    pub last_seen: When,
    pub raw_url: String,
}

pub struct CheckRow {
    pub name: String,
    pub verdict: String,
    pub detail: String,
    pub records: Vec<String>,
    pub checked_at: When,
}

pub struct SubjectPanel {
    pub subject: String,
    pub checks: Vec<CheckRow>,
}

pub struct ChangeRow {
    pub at: When,
    pub subject: String,
    pub description: String,
    pub verdict: String,
}

pub struct ActivityRow {
    pub at: When,
    pub user: String,
    pub action: String,
    pub detail: String,
}

pub struct SendRow {
    pub at: When,
    pub user: String,
    pub to: String,
    pub ok: bool,
    pub message_id: String,
    pub relay: String,
}

pub struct StepRow {
    pub kind: String,
    pub text: String,
}

#[derive(Template)]
#[template(path = "incident.html")]
pub struct IncidentPage {
    pub nav: Nav,
    pub id: i64,
    pub destination: String,
    pub phase: String,
    pub status: String,
    pub open: bool,
    pub guidance: String,
    pub first_seen: When,
    pub last_seen: When,
    pub closed_at: Option<When>,
    pub age: String,
    pub next_boundary: String,
    pub recovery_trend: bool,
    pub deferred: u64,
    pub delivered: u64,
    pub bounced: u64,
    pub scope_summary: String,
    pub stage_scope: String,
    pub marks: Vec<String>,
    pub acknowledged: bool,
    pub snoozed: bool,
    pub resolved: bool,
    pub timeline: super::charts::Timeline,
    pub affected: Vec<IpRow>,
    pub unaffected: Vec<IpRow>,
    pub mx_hosts: Vec<NameCount>,
    pub domains: Vec<NameCount>,
    pub domains_other: u64,
    pub stages: Vec<NameCount>,
    pub causes: Vec<NameCount>,
    pub replies: Vec<ReplyRow>,
    pub replies_other: u64,
    pub checks: Vec<SubjectPanel>,
    pub changes: Vec<ChangeRow>,
    pub checks_enabled: bool,
    pub steps: Vec<StepRow>,
    pub report_subject: String,
    /// Recipients offered for the report: the destination's postmaster, then the
    /// configured report recipients.
    pub suggested: Vec<String>,
    pub send_to: String,
    pub smtp_ready: bool,
    pub sends: Vec<SendRow>,
    pub report_text: String,
    pub activity: Vec<ActivityRow>,
    pub snooze_default: String,
    pub flash: Option<String>,
    /// Why the last form on this page was refused.
    pub error: Option<String>,
}

// ---------------------------------------------------------------- sending IPs

pub struct IpGridRow {
    pub ip: String,
    pub helo: String,
    pub last_seen: When,
    pub cells: Vec<CheckCell>,
    pub last_change: Option<ChangeRow>,
    pub incidents: Vec<(i64, String, String)>,
}

#[derive(Template)]
#[template(path = "ips.html")]
pub struct IpsPage {
    pub nav: Nav,
    pub columns: Vec<String>,
    pub rows: Vec<IpGridRow>,
}

// ---------------------------------------------------------------- sources

pub struct SourceRow {
    pub name: String,
    pub format: String,
    pub created: When,
    pub last_event: Option<When>,
    pub events_24h: i64,
    pub rejected: i64,
    pub revoked: bool,
    pub verification: String,
}

pub struct RejectRow {
    pub id: i64,
    pub source: String,
    pub received: When,
    pub field: String,
    pub reason: String,
    pub raw: String,
}

#[derive(Template)]
#[template(path = "sources.html")]
pub struct SourcesPage {
    pub nav: Nav,
    pub sources: Vec<SourceRow>,
    pub rejects: Vec<RejectRow>,
    pub formats: Vec<&'static str>,
    pub new_token: Option<super::pages::NewToken>,
    pub error: Option<String>,
    pub form_name: String,
    pub ingest_url: String,
}

// ---------------------------------------------------------------- settings

pub struct SettingField {
    pub name: &'static str,
    pub label: &'static str,
    pub help: &'static str,
    pub value: String,
    pub error: Option<String>,
    pub multiline: bool,
}

pub struct WebhookRow {
    pub url: String,
    pub format: String,
    pub triggers: String,
}

pub struct DeliveryRow {
    pub at: When,
    pub incident_id: i64,
    pub what: String,
    pub webhook: String,
    pub state: String,
    pub attempts: u32,
    pub last: String,
}

#[derive(Template)]
#[template(path = "settings.html")]
pub struct SettingsPage {
    pub webhooks: Vec<WebhookRow>,
    pub deliveries: Vec<DeliveryRow>,
    pub nav: Nav,
    pub groups: Vec<(&'static str, Vec<SettingField>)>,
    pub saved: bool,
    pub has_errors: bool,
    pub updated: Option<String>,
}
