//! The escalation report over the API: download as text, HTML or a complete .eml, send
//! it through the configured relay, and list the sends of an incident.

use super::auth::ApiAuth;
use super::error::AppError;
use crate::app::AppState;
use crate::incidents::Incident;
use crate::report::gather::{self, SendError};
use crate::report::mail::{new_message_id, parse_from};
use axum::extract::{Path, RawQuery, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/incidents/{id}/report", get(download))
        .route("/api/v1/incidents/{id}/report/send", post(send))
        .route("/api/v1/incidents/{id}/report/sends", get(list_sends))
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Text,
    Html,
    Eml,
}

impl std::str::FromStr for Format {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "text" | "txt" => Ok(Format::Text),
            "html" => Ok(Format::Html),
            "eml" => Ok(Format::Eml),
            other => Err(format!("unknown format {other:?}: use text, html or eml")),
        }
    }
}

/// The suggested recipient when none is given: the postmaster of the most deferred
/// recipient domain (RFC 5321 requires every mail domain to have one).
pub fn suggested_recipient(inc: &Incident) -> Option<String> {
    inc.recipient_domains
        .sorted()
        .first()
        .map(|(d, _)| format!("postmaster@{d}"))
}

async fn load(state: &AppState, id: &str) -> Result<Incident, AppError> {
    let id: i64 = id
        .parse()
        .map_err(|_| AppError::bad("id", format!("{id:?} is not an incident id")))?;
    state
        .store
        .incident(id)
        .await?
        .ok_or_else(|| AppError::NotFound(format!("incident {id}")))
}

/// `?format=text|html|eml`, and for eml any number of `to=ADDR` (repeated keys, which
/// serde's query extractor cannot collect).
fn parse_query(query: Option<&str>) -> Result<(Format, Vec<String>), AppError> {
    let mut format = Format::Text;
    let mut to = Vec::new();
    for (k, v) in form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
        match k.as_ref() {
            "format" => format = v.parse().map_err(|e: String| AppError::bad("format", e))?,
            "to" => to.push(v.into_owned()),
            _ => {}
        }
    }
    Ok((format, to))
}

async fn download(
    State(state): State<AppState>,
    _auth: ApiAuth,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<Response, AppError> {
    let (format, to) = parse_query(query.as_deref())?;
    let inc = load(&state, &id).await?;
    render(&state, &inc, format, to).await
}

/// The report of `inc` in `format`, as a download; shared with the dashboard's links.
pub async fn render(
    state: &AppState,
    inc: &Incident,
    format: Format,
    mut to: Vec<String>,
) -> Result<Response, AppError> {
    let report = gather::for_state(state, inc).await?;
    let name = format!("deferwatch-incident-{}", inc.id);
    let (content_type, disposition, body) = match format {
        Format::Text => (
            "text/plain; charset=utf-8",
            format!("inline; filename=\"{name}.txt\""),
            report.to_text().into_bytes(),
        ),
        Format::Html => (
            "text/html; charset=utf-8",
            format!("inline; filename=\"{name}.html\""),
            report
                .to_html()
                .map_err(|e| AppError::Internal(e.to_string()))?
                .into_bytes(),
        ),
        Format::Eml => {
            let cfg = state.effective();
            let from = cfg
                .smtp_from
                .as_deref()
                .filter(|f| !f.trim().is_empty())
                .ok_or_else(|| {
                    AppError::bad(
                        "smtp_from",
                        "an .eml needs a From address: set DEFERWATCH_SMTP_FROM or smtp_from \
                         on the settings page",
                    )
                })?;
            if to.is_empty() {
                to.extend(suggested_recipient(inc));
            }
            let message_id = new_message_id(&parse_from(from).map_err(report_error)?);
            let eml = report
                .to_eml(from, &to, state.clock.now(), &message_id)
                .map_err(report_error)?;
            (
                "message/rfc822",
                format!("attachment; filename=\"{name}.eml\""),
                eml,
            )
        }
    };
    Ok((
        [
            (header::CONTENT_TYPE, content_type.to_string()),
            (header::CONTENT_DISPOSITION, disposition),
        ],
        body,
    )
        .into_response())
}

fn report_error(e: crate::report::ReportError) -> AppError {
    match e {
        crate::report::ReportError::Address { field, reason } => AppError::bad(field, reason),
        other => AppError::Internal(other.to_string()),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SendBody {
    to: Vec<String>,
}

async fn send(
    State(state): State<AppState>,
    ApiAuth(token): ApiAuth,
    Path(id): Path<String>,
    body: Result<Json<SendBody>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, AppError> {
    let Json(body) = body.map_err(|e| {
        AppError::bad(
            "body",
            format!(
                "expected {{\"to\": [\"postmaster@example.com\"]}}: {}",
                e.body_text()
            ),
        )
    })?;
    let inc = load(&state, &id).await?;
    let report = gather::for_state(&state, &inc).await?;
    let cfg = state.effective();
    let username = format!("api:{}", token.name);
    match gather::send_and_record(
        &*state.store,
        &cfg,
        &report,
        inc.id,
        &body.to,
        &username,
        state.clock.now(),
    )
    .await
    {
        Ok((record, outcome)) => Ok(Json(json!({
            "sent": true,
            "message_id": outcome.message_id,
            "relay_response": outcome.relay_response,
            "send": record,
        }))
        .into_response()),
        Err(SendError::Invalid(e)) => Err(report_error(e)),
        Err(SendError::Store(e)) => Err(e.into()),
        // The server's configuration, not the request, is missing something: 409 tells
        // the client that retrying the same request will not help until it is set.
        Err(SendError::NotConfigured { field, reason }) => Ok((
            StatusCode::CONFLICT,
            Json(json!({"error": "not_configured", "field": field, "reason": reason})),
        )
            .into_response()),
        Err(SendError::Relay { record, error }) => Ok((
            StatusCode::BAD_GATEWAY,
            Json(json!({
                "error": "relay_failed",
                "sent": false,
                "reason": error.to_string(),
                "relay_response": error.relay_reply(),
                "send": record,
            })),
        )
            .into_response()),
    }
}

async fn list_sends(
    State(state): State<AppState>,
    _auth: ApiAuth,
    Path(id): Path<String>,
) -> Result<Response, AppError> {
    let inc = load(&state, &id).await?;
    let sends = state.store.list_sends(inc.id).await?;
    Ok(Json(json!({ "sends": sends })).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_and_recipients_from_the_query() {
        assert_eq!(parse_query(None).unwrap(), (Format::Text, vec![]));
        assert_eq!(
            parse_query(Some("format=eml&to=a%40b.example&to=c@d.example")).unwrap(),
            (
                Format::Eml,
                vec!["a@b.example".to_string(), "c@d.example".to_string()]
            )
        );
        let e = parse_query(Some("format=pdf")).unwrap_err();
        assert_eq!(
            e.to_string(),
            "format: unknown format \"pdf\": use text, html or eml"
        );
    }
}
