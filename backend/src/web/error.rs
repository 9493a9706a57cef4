//! The one HTTP error type: every handler error becomes a JSON body naming the field
//! and the reason, with the status a client can act on.

use crate::ingest::IngestError;
use crate::store::StoreError;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("{reason}")]
    Unauthorized { reason: String },
    /// A webhook whose provider signature (or credentials) did not verify.
    #[error("{reason}")]
    BadSignature { reason: String },
    /// Something we depend on answered with an error (an SNS subscription endpoint).
    #[error("{reason}")]
    BadGateway { reason: String },
    #[error("{field}: {reason}")]
    BadRequest { field: String, reason: String },
    #[error("{field}: {reason}")]
    TooLarge { field: String, reason: String },
    #[error("{0} not found")]
    NotFound(String),
    /// A page needs a session; `next` is where to go after logging in.
    #[error("login required")]
    LoginRequired { next: String },
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    TooManyRequests(String),
    /// Database down or overloaded: the client should retry later; nothing was written.
    /// `Retry-After` is added to every 503 by the router (`app::retry_after`).
    #[error("{reason}")]
    Unavailable { reason: String },
    #[error("internal error")]
    Internal(String),
}

impl AppError {
    pub fn bad(field: &str, reason: impl Into<String>) -> Self {
        AppError::BadRequest {
            field: field.into(),
            reason: reason.into(),
        }
    }

    pub fn unauthorized(reason: impl Into<String>) -> Self {
        AppError::Unauthorized {
            reason: reason.into(),
        }
    }
}

impl From<StoreError> for AppError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Unavailable(reason) => AppError::Unavailable {
                reason: format!("database unavailable: {reason}"),
            },
            StoreError::Conflict(what) => AppError::bad("name", format!("{what} already exists")),
            other => AppError::Internal(other.to_string()),
        }
    }
}

impl From<IngestError> for AppError {
    fn from(e: IngestError) -> Self {
        match e {
            IngestError::Body(reason) => AppError::bad("body", reason),
            e @ IngestError::TooManyEvents { .. } => AppError::TooLarge {
                field: "body".into(),
                reason: e.to_string(),
            },
            IngestError::Unavailable(reason) => AppError::Unavailable {
                reason: format!("not stored, retry later: {reason}"),
            },
            IngestError::Store(reason) => AppError::Internal(reason),
        }
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let (status, body) = match &self {
            AppError::Unauthorized { reason } => (
                StatusCode::UNAUTHORIZED,
                json!({"error": "unauthorized", "field": "token", "reason": reason}),
            ),
            AppError::BadSignature { reason } => (
                StatusCode::UNAUTHORIZED,
                json!({"error": "bad_signature", "field": "signature", "reason": reason}),
            ),
            AppError::BadGateway { reason } => (
                StatusCode::BAD_GATEWAY,
                json!({"error": "bad_gateway", "reason": reason}),
            ),
            AppError::BadRequest { field, reason } => (
                StatusCode::BAD_REQUEST,
                json!({"error": "bad_request", "field": field, "reason": reason}),
            ),
            AppError::TooLarge { field, reason } => (
                StatusCode::PAYLOAD_TOO_LARGE,
                json!({"error": "payload_too_large", "field": field, "reason": reason}),
            ),
            AppError::LoginRequired { .. } => (
                StatusCode::UNAUTHORIZED,
                json!({"error": "unauthorized", "field": "session", "reason": "login required"}),
            ),
            AppError::Forbidden(reason) => (
                StatusCode::FORBIDDEN,
                json!({"error": "forbidden", "reason": reason}),
            ),
            AppError::TooManyRequests(reason) => (
                StatusCode::TOO_MANY_REQUESTS,
                json!({"error": "too_many_requests", "reason": reason}),
            ),
            AppError::NotFound(what) => (
                StatusCode::NOT_FOUND,
                json!({"error": "not_found", "reason": format!("{what} not found")}),
            ),
            AppError::Unavailable { reason, .. } => (
                StatusCode::SERVICE_UNAVAILABLE,
                json!({"error": "unavailable", "reason": reason}),
            ),
            AppError::Internal(cause) => {
                // The cause is logged once with an id; the client sees only the id.
                let id = format!("{:016x}", rand::random::<u64>());
                tracing::error!(error_id = %id, cause = %cause, "internal error");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    json!({"error": "internal", "reason": "internal error", "error_id": id}),
                )
            }
        };
        let mut resp = (status, axum::Json(body)).into_response();
        if status == StatusCode::UNAUTHORIZED {
            resp.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        resp
    }
}

/// The same errors for the browser: an HTML page (or, for an htmx request, a redirect
/// htmx understands) instead of JSON.
#[derive(Debug)]
pub struct PageError(pub AppError);

impl<E: Into<AppError>> From<E> for PageError {
    fn from(e: E) -> Self {
        PageError(e.into())
    }
}

impl AppError {
    pub fn status(&self) -> StatusCode {
        match self {
            AppError::Unauthorized { .. }
            | AppError::LoginRequired { .. }
            | AppError::BadSignature { .. } => StatusCode::UNAUTHORIZED,
            AppError::BadGateway { .. } => StatusCode::BAD_GATEWAY,
            AppError::BadRequest { .. } => StatusCode::BAD_REQUEST,
            AppError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            AppError::NotFound(_) => StatusCode::NOT_FOUND,
            AppError::Forbidden(_) => StatusCode::FORBIDDEN,
            AppError::TooManyRequests(_) => StatusCode::TOO_MANY_REQUESTS,
            AppError::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            AppError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        if let AppError::LoginRequired { next } = &self.0 {
            let location = format!("/login?next={}", super::views::urlencode(next));
            let mut resp = axum::response::Redirect::to(&location).into_response();
            // A redirect inside an htmx swap would put the login form into a table
            // cell; HX-Redirect makes the whole page go there.
            if let Ok(v) = HeaderValue::from_str(&location) {
                resp.headers_mut().insert("hx-redirect", v);
            }
            return resp;
        }
        let status = self.0.status();
        let (message, error_id) = match &self.0 {
            AppError::Internal(cause) => {
                let id = format!("{:016x}", rand::random::<u64>());
                tracing::error!(error_id = %id, cause = %cause, "internal error");
                ("Something went wrong on our side.".to_string(), Some(id))
            }
            other => (other.to_string(), None),
        };
        super::views::error_page(status, &message, error_id.as_deref())
    }
}
