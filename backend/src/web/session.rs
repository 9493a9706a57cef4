//! People in the browser: argon2 passwords, sessions in the database, CSRF tokens and
//! login throttling. Machines use the bearer tokens of `auth.rs` instead.

use super::error::{AppError, PageError};
use crate::app::AppState;
use crate::store::web::{Role, Session};
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum_extra::extract::cookie::{Cookie, CookieJar, SameSite};
use chrono::TimeDelta;

pub const SESSION_COOKIE: &str = "dw_session";
/// Double-submit token for the forms used before there is a session (login, setup).
pub const PRELOGIN_COOKIE: &str = "dw_prelogin";
pub const CSRF_HEADER: &str = "x-csrf-token";
pub const CSRF_FIELD: &str = "csrf";

/// Failed logins allowed per username, and per client address, in `THROTTLE_WINDOW`.
pub const MAX_FAILURES_PER_USER: i64 = 5;
pub const MAX_FAILURES_PER_CLIENT: i64 = 20;
pub const THROTTLE_WINDOW: TimeDelta = TimeDelta::minutes(15);
/// Largest form body the CSRF check buffers; settings and notes are far smaller.
const MAX_FORM_BYTES: usize = 64 * 1024;
pub const MIN_PASSWORD_LEN: usize = 10;

pub fn hash_password(password: &str) -> Result<String, AppError> {
    let salt = SaltString::generate(&mut argon2::password_hash::rand_core::OsRng);
    argon2::Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| AppError::Internal(format!("argon2: {e}")))
}

pub fn verify_password(password: &str, stored: &str) -> bool {
    PasswordHash::new(stored).is_ok_and(|h| {
        argon2::Argon2::default()
            .verify_password(password.as_bytes(), &h)
            .is_ok()
    })
}

/// Why a new username or password is refused.
pub fn validate_credentials(username: &str, password: &str) -> Result<(), (&'static str, String)> {
    let ok_name = !username.is_empty()
        && username.len() <= 64
        && username
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '@'));
    if !ok_name {
        return Err((
            "username",
            "1 to 64 characters: letters, digits, '.', '_', '-', '@'".into(),
        ));
    }
    if password.chars().count() < MIN_PASSWORD_LEN {
        return Err((
            "password",
            format!("at least {MIN_PASSWORD_LEN} characters"),
        ));
    }
    if password.len() > 1024 {
        return Err(("password", "at most 1024 bytes".into()));
    }
    Ok(())
}

/// A cookie for this deployment: `Secure` when the dashboard is served over HTTPS
/// (the configured public URL, or a TLS-terminating proxy saying so).
pub fn cookie(
    state: &AppState,
    headers: &HeaderMap,
    name: &'static str,
    value: String,
) -> Cookie<'static> {
    let https = state
        .config
        .public_url
        .as_deref()
        .is_some_and(|u| u.starts_with("https://"))
        || headers
            .get("x-forwarded-proto")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.eq_ignore_ascii_case("https"));
    Cookie::build((name, value))
        .path("/")
        .http_only(true)
        .same_site(SameSite::Lax)
        .secure(https)
        .build()
}

/// The session of the request, put there by `session_layer`.
#[derive(Clone)]
pub struct CurrentSession(pub Option<Session>);

/// Any logged-in user.
pub struct Viewer(pub Session);

/// A logged-in admin: every state change needs one.
pub struct Admin(pub Session);

fn session_of(parts: &Parts) -> Option<Session> {
    parts
        .extensions
        .get::<CurrentSession>()
        .and_then(|s| s.0.clone())
}

impl FromRequestParts<AppState> for Viewer {
    type Rejection = PageError;
    async fn from_request_parts(parts: &mut Parts, _: &AppState) -> Result<Self, PageError> {
        session_of(parts)
            .map(Viewer)
            .ok_or_else(|| PageError(login_redirect(parts)))
    }
}

impl FromRequestParts<AppState> for Admin {
    type Rejection = PageError;
    async fn from_request_parts(parts: &mut Parts, _: &AppState) -> Result<Self, PageError> {
        let s = session_of(parts).ok_or_else(|| PageError(login_redirect(parts)))?;
        if s.user.role != Role::Admin {
            return Err(PageError(AppError::Forbidden(
                "viewers can look but not change anything; ask an admin".into(),
            )));
        }
        Ok(Admin(s))
    }
}

fn login_redirect(parts: &Parts) -> AppError {
    let next = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "/".into());
    AppError::LoginRequired { next }
}

/// Looks the session up once per request and enforces CSRF on every state change:
/// the request must not come from another site, and must carry the session's token
/// (header for htmx, form field otherwise), or the pre-login cookie's for login/setup.
pub async fn session_layer(
    State(state): State<AppState>,
    jar: CookieJar,
    req: Request,
    next: Next,
) -> Response {
    let now = state.clock.now();
    let session = match jar.get(SESSION_COOKIE) {
        Some(c) => match state
            .store
            .session(&super::auth::hash_token(c.value()), now)
            .await
        {
            Ok(s) => s,
            Err(e) => return PageError(e.into()).into_response(),
        },
        None => None,
    };
    let mut req = req;
    req.extensions_mut().insert(CurrentSession(session.clone()));
    if matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS) {
        return next.run(req).await;
    }
    if cross_site(req.headers()) {
        return PageError(AppError::Forbidden("cross-site request refused".into())).into_response();
    }
    let expected = match &session {
        Some(s) => Some(s.csrf_token.clone()),
        None => jar.get(PRELOGIN_COOKIE).map(|c| c.value().to_string()),
    };
    let header_token = req
        .headers()
        .get(CSRF_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let (req, presented) = match header_token {
        Some(t) => (req, Some(t)),
        None => match form_token(req).await {
            Ok(pair) => pair,
            Err(resp) => return resp,
        },
    };
    match (expected, presented) {
        (Some(e), Some(p)) if crate::ingest::esp::constant_time_eq(e.as_bytes(), p.as_bytes()) => {
            next.run(req).await
        }
        _ => PageError(AppError::Forbidden(
            "the form expired or did not come from this dashboard: reload the page and try again"
                .into(),
        ))
        .into_response(),
    }
}

fn cross_site(headers: &HeaderMap) -> bool {
    if let Some(site) = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok()) {
        return site == "cross-site";
    }
    // Older browsers: compare Origin with Host.
    match (
        headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()),
        headers.get(header::HOST).and_then(|v| v.to_str().ok()),
    ) {
        (Some(origin), Some(host)) => {
            let o = origin
                .strip_prefix("https://")
                .or_else(|| origin.strip_prefix("http://"))
                .unwrap_or(origin);
            origin != "null" && o != host
        }
        (Some(origin), None) => origin == "null",
        _ => false,
    }
}

/// Buffers a form body to read its `csrf` field, then hands the body on unchanged.
async fn form_token(req: Request) -> Result<(Request, Option<String>), Response> {
    let (parts, body) = req.into_parts();
    let bytes = match axum::body::to_bytes(body, MAX_FORM_BYTES).await {
        Ok(b) => b,
        Err(_) => {
            return Err(PageError(AppError::TooLarge {
                field: "body".into(),
                reason: format!("forms are limited to {MAX_FORM_BYTES} bytes"),
            })
            .into_response());
        }
    };
    let token = form_urlencoded::parse(&bytes)
        .find(|(k, _)| k == CSRF_FIELD)
        .map(|(_, v)| v.into_owned());
    Ok((
        Request::from_parts(parts, axum::body::Body::from(bytes)),
        token,
    ))
}

/// The outcome of a login attempt.
pub enum LoginOutcome {
    Ok { token: String },
    Invalid,
    Throttled { retry_in: TimeDelta },
}

pub async fn login(
    state: &AppState,
    username: &str,
    password: &str,
    client: &str,
) -> Result<LoginOutcome, AppError> {
    let now = state.clock.now();
    let since = now - THROTTLE_WINDOW;
    let f = state.store.login_failures(username, client, since).await?;
    if f.by_username >= MAX_FAILURES_PER_USER || f.by_client >= MAX_FAILURES_PER_CLIENT {
        return Ok(LoginOutcome::Throttled {
            retry_in: THROTTLE_WINDOW,
        });
    }
    let creds = state.store.user_credentials(username).await?;
    // Verify against a fixed hash when the user does not exist, so the answer takes as
    // long either way and does not reveal which names exist.
    let (user, ok) = match creds {
        Some((user, hash)) => {
            let ok = verify_password(password, &hash);
            (Some(user), ok)
        }
        None => {
            verify_password(password, DUMMY_HASH);
            (None, false)
        }
    };
    match (user, ok) {
        (Some(user), true) => {
            state.store.clear_login_failures(username).await?;
            let token = super::auth::new_token("dwu_");
            let csrf = hex::encode(rand::random::<[u8; 24]>());
            let ttl = TimeDelta::from_std(state.config.session_ttl).unwrap_or(TimeDelta::days(7));
            state
                .store
                .create_session(
                    &super::auth::hash_token(&token),
                    user.id,
                    &csrf,
                    now,
                    now + ttl,
                )
                .await?;
            Ok(LoginOutcome::Ok { token })
        }
        _ => {
            state
                .store
                .record_login_failure(username, client, now)
                .await?;
            Ok(LoginOutcome::Invalid)
        }
    }
}

/// An argon2 hash of a random password nobody knows.
const DUMMY_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$0Z3s7b5zv8tQb8l0d2mB7l3r9YkqkS4w8cZ8O7Ck7yQ";

/// The client address for throttling: the TCP peer. Behind a reverse proxy every
/// client shares the proxy's address, so the per-username limit is the one that bites.
pub fn client_of(req_parts: &axum::http::Extensions) -> String {
    req_parts
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0.ip().to_string())
        .unwrap_or_else(|| "unknown".into())
}
