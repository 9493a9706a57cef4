//! Posting one queued notification, and what its answer means for the next attempt.

use super::config::NotifyConfig;
use crate::store::notify::{AttemptRecord, DeliveryState};
use chrono::{DateTime, Utc};
use std::sync::OnceLock;
use std::time::Instant;

/// What came back from one POST.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answer {
    Status {
        code: u16,
        body: String,
    },
    /// No HTTP answer: connect, TLS or timeout failure.
    Transport(String),
}

/// Whether an answer is worth another attempt. 2xx is delivered. Timeouts, throttling
/// (408, 429), server errors and transport failures are passing; any other answer
/// (a revoked Slack hook answers 403/404, a malformed one 400, a moved one 3xx) will
/// not change by asking again, so it fails at once rather than after half an hour.
fn retryable(a: &Answer) -> bool {
    match a {
        Answer::Transport(_) => true,
        Answer::Status { code, .. } => matches!(code, 408 | 429 | 500..=599),
    }
}

/// The attempt as the log keeps it, with the notification's next state: the backoff
/// schedule counts this attempt, and the last allowed attempt fails for good.
pub fn decide(
    cfg: &NotifyConfig,
    attempts_before: u32,
    answer: &Answer,
    at: DateTime<Utc>,
    duration_ms: i64,
) -> AttemptRecord {
    let attempts = attempts_before + 1;
    let (status, error) = match answer {
        Answer::Status { code, body } => (
            Some(*code),
            (!(200..300).contains(code)).then(|| {
                let body = body.trim();
                if body.is_empty() {
                    format!("HTTP {code}")
                } else {
                    format!("HTTP {code}: {}", truncate(body, 200))
                }
            }),
        ),
        Answer::Transport(e) => (None, Some(e.clone())),
    };
    let (state, next_attempt_at) = if error.is_none() {
        (DeliveryState::Delivered, None)
    } else if retryable(answer) && attempts < cfg.max_attempts {
        let delay = chrono::TimeDelta::from_std(cfg.backoff_after(attempts))
            .unwrap_or(chrono::TimeDelta::minutes(30));
        (DeliveryState::Pending, Some(at + delay))
    } else {
        (DeliveryState::Failed, None)
    };
    AttemptRecord {
        at,
        status,
        error,
        duration_ms,
        state,
        next_attempt_at,
    }
}

fn truncate(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

static CLIENT: OnceLock<reqwest::Client> = OnceLock::new();

/// One client for the process: its connection pool and TLS roots are reused. The
/// timeout is set per request from the configuration.
fn client() -> Result<reqwest::Client, reqwest::Error> {
    if let Some(c) = CLIENT.get() {
        return Ok(c.clone());
    }
    let c = reqwest::Client::builder()
        // A redirected POST turns into a GET on most 30x; a webhook that moved must
        // be configured with its new URL, which the failure says.
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("Deferwatch/", env!("CARGO_PKG_VERSION")))
        .build()?;
    Ok(CLIENT.get_or_init(|| c).clone())
}

/// POSTs the stored JSON body. Errors never carry the URL: it holds the webhook's
/// secret and ends up in the delivery log.
pub async fn post(url: &str, payload: &str, timeout: std::time::Duration) -> (Answer, i64) {
    let started = Instant::now();
    let answer = match client() {
        Err(e) => Answer::Transport(error_chain(&e.without_url())),
        Ok(c) => {
            let sent = c
                .post(url)
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(payload.to_string())
                .timeout(timeout)
                .send()
                .await;
            match sent {
                Err(e) => Answer::Transport(error_chain(&e.without_url())),
                Ok(resp) => {
                    let code = resp.status().as_u16();
                    // The body matters only to explain a refusal; a short read bound
                    // keeps a chatty receiver from holding the worker.
                    let body = if resp.status().is_success() {
                        String::new()
                    } else {
                        tokio::time::timeout(timeout, resp.text())
                            .await
                            .ok()
                            .and_then(Result::ok)
                            .unwrap_or_default()
                    };
                    Answer::Status { code, body }
                }
            }
        }
    };
    let ms = i64::try_from(started.elapsed().as_millis()).unwrap_or(i64::MAX);
    (answer, ms)
}

/// reqwest's own message is terse ("error sending request"); the causes say why.
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut src = e.source();
    while let Some(s) = src {
        let m = s.to_string();
        if !out.contains(&m) {
            out.push_str(": ");
            out.push_str(&m);
        }
        src = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn answers_decide_the_next_attempt() {
        let cfg = NotifyConfig {
            backoff: vec![Duration::from_secs(30), Duration::from_secs(120)],
            max_attempts: 3,
            ..NotifyConfig::default()
        };
        let at: DateTime<Utc> = "2026-11-20T12:00:00Z".parse().unwrap();
        let st = |code: u16, body: &str| Answer::Status {
            code,
            body: body.into(),
        };
        let cases = [
            (0, st(200, ""), DeliveryState::Delivered, None, None),
            (0, st(204, ""), DeliveryState::Delivered, None, None),
            (
                0,
                st(500, " oops \n"),
                DeliveryState::Pending,
                Some("2026-11-20T12:00:30Z"),
                Some("HTTP 500: oops"),
            ),
            (
                1,
                st(429, ""),
                DeliveryState::Pending,
                Some("2026-11-20T12:02:00Z"),
                Some("HTTP 429"),
            ),
            (
                1,
                Answer::Transport("connection refused".into()),
                DeliveryState::Pending,
                Some("2026-11-20T12:02:00Z"),
                Some("connection refused"),
            ),
            (
                2,
                st(503, ""),
                DeliveryState::Failed,
                None,
                Some("HTTP 503"),
            ),
            (
                0,
                st(404, "no_service"),
                DeliveryState::Failed,
                None,
                Some("HTTP 404: no_service"),
            ),
            (
                0,
                st(302, ""),
                DeliveryState::Failed,
                None,
                Some("HTTP 302"),
            ),
        ];
        for (before, answer, state, next, error) in cases {
            let r = decide(&cfg, before, &answer, at, 12);
            assert_eq!(r.state, state, "{answer:?}");
            assert_eq!(
                r.next_attempt_at,
                next.map(|n| n.parse::<DateTime<Utc>>().unwrap()),
                "{answer:?}"
            );
            assert_eq!(r.error.as_deref(), error, "{answer:?}");
            assert_eq!(r.duration_ms, 12);
        }
        let long = "x".repeat(500);
        let r = decide(&cfg, 0, &st(500, &long), at, 0);
        assert_eq!(r.error.unwrap().len(), "HTTP 500: ".len() + 200);
    }
}
