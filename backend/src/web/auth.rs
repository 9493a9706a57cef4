//! Token authentication for machines: source tokens for ingest, API tokens for reads.
//! Tokens are 192 random bits, so a plain SHA-256 is the right hash to store: there is
//! nothing to brute-force, and lookups by hash stay a single indexed query.

use super::error::AppError;
use crate::app::AppState;
use crate::store::{ApiToken, Source};
use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub const SOURCE_TOKEN_PREFIX: &str = "dws_";
pub const API_TOKEN_PREFIX: &str = "dwa_";

pub fn new_token(prefix: &str) -> String {
    format!("{prefix}{}", hex::encode(rand::random::<[u8; 24]>()))
}

pub fn hash_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// The token of a request: `Authorization: Bearer …`, else `?token=…` (most webhook
/// senders cannot add headers).
fn presented_token(parts: &Parts) -> Option<String> {
    if let Some(v) = parts
        .headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        let v = v.trim();
        if v.len() > 7 && v[..7].eq_ignore_ascii_case("bearer ") {
            return Some(v[7..].trim().to_string());
        }
    }
    parts.uri.query().and_then(|q| {
        q.split('&')
            .filter_map(|kv| kv.split_once('='))
            .find(|(k, _)| *k == "token")
            .map(|(_, v)| v.to_string())
    })
}

/// Verified tokens, kept briefly so the hot ingest path does not query the database for
/// every request. A revoked token stops working within the TTL.
pub struct TokenCache {
    ttl: Duration,
    sources: Mutex<HashMap<String, (Instant, Source)>>,
    api: Mutex<HashMap<String, (Instant, ApiToken)>>,
}

const CACHE_CAP: usize = 10_000;

impl TokenCache {
    pub fn new(ttl: Duration) -> Self {
        TokenCache {
            ttl,
            sources: Mutex::new(HashMap::new()),
            api: Mutex::new(HashMap::new()),
        }
    }

    fn get<T: Clone>(&self, map: &Mutex<HashMap<String, (Instant, T)>>, hash: &str) -> Option<T> {
        let map = map.lock().unwrap_or_else(|e| e.into_inner());
        map.get(hash)
            .filter(|(at, _)| at.elapsed() < self.ttl)
            .map(|(_, v)| v.clone())
    }

    fn put<T>(&self, map: &Mutex<HashMap<String, (Instant, T)>>, hash: String, v: T) {
        let mut map = map.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() >= CACHE_CAP {
            map.clear();
        }
        map.insert(hash, (Instant::now(), v));
    }
}

/// An authenticated event source.
pub struct SourceAuth(pub Source);

impl FromRequestParts<AppState> for SourceAuth {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, AppError> {
        let token = presented_token(parts).ok_or_else(|| {
            AppError::unauthorized(
                "missing source token: send Authorization: Bearer <token> or ?token=<token>",
            )
        })?;
        let hash = hash_token(&token);
        if let Some(s) = state.tokens.get(&state.tokens.sources, &hash) {
            return Ok(SourceAuth(s));
        }
        match state.store.source_by_token(&hash).await? {
            Some(s) => {
                state.tokens.put(&state.tokens.sources, hash, s.clone());
                Ok(SourceAuth(s))
            }
            None => Err(AppError::unauthorized("unknown or revoked source token")),
        }
    }
}

/// A client of the read API.
pub struct ApiAuth(pub ApiToken);

impl FromRequestParts<AppState> for ApiAuth {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, AppError> {
        let token = presented_token(parts).ok_or_else(|| {
            AppError::unauthorized("missing API token: send Authorization: Bearer <token>")
        })?;
        let hash = hash_token(&token);
        if let Some(t) = state.tokens.get(&state.tokens.api, &hash) {
            return Ok(ApiAuth(t));
        }
        match state.store.api_token_by_hash(&hash).await? {
            Some(t) => {
                state.tokens.put(&state.tokens.api, hash, t.clone());
                Ok(ApiAuth(t))
            }
            None => Err(AppError::unauthorized("unknown or revoked API token")),
        }
    }
}
