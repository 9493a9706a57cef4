//! Outbound notifications end to end: events through the real ingest endpoint, the
//! notifier's passes, and a real HTTP receiver on loopback that records every body and
//! can refuse the first requests with a 500. Both backends.

mod support;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use deferwatch::app::AppState;
use deferwatch::clock::Clock;
use deferwatch::incidents::Phase;
use deferwatch::notify::{self, Event, Format, NotifyConfig, RunReport, Webhook};
use deferwatch::smtp::Classifier;
use deferwatch::store::notify::DeliveryState;
use serde_json::Value;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use support::{Backend, TestApp, event, ts};

/// What the receiver saw: path, content type, body, and the status it answered.
#[derive(Clone, Debug)]
struct Hit {
    path: String,
    content_type: String,
    body: Value,
    status: u16,
}

#[derive(Clone, Default)]
struct Receiver {
    hits: Arc<Mutex<Vec<Hit>>>,
    /// Requests to `/generic` still to refuse with a 500.
    refuse_generic: Arc<Mutex<usize>>,
}

impl Receiver {
    async fn start(refuse_generic: usize) -> (Receiver, String) {
        let r = Receiver {
            refuse_generic: Arc::new(Mutex::new(refuse_generic)),
            ..Receiver::default()
        };
        let app = axum::Router::new()
            .route("/{*path}", axum::routing::post(receive))
            .with_state(r.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (r, base)
    }

    fn hits(&self) -> Vec<Hit> {
        self.hits.lock().unwrap().clone()
    }

    /// Bodies answered with 2xx at paths starting with `prefix`.
    fn delivered(&self, prefix: &str) -> Vec<Value> {
        self.hits()
            .into_iter()
            .filter(|h| h.path.starts_with(prefix) && h.status == 200)
            .map(|h| h.body)
            .collect()
    }
}

async fn receive(
    State(r): State<Receiver>,
    Path(path): Path<String>,
    headers: HeaderMap,
    body: String,
) -> StatusCode {
    let path = format!("/{path}");
    let status = {
        let mut left = r.refuse_generic.lock().unwrap();
        if path == "/generic" && *left > 0 {
            *left -= 1;
            StatusCode::INTERNAL_SERVER_ERROR
        } else {
            StatusCode::OK
        }
    };
    r.hits.lock().unwrap().push(Hit {
        path,
        content_type: headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .into(),
        body: serde_json::from_str(&body).unwrap_or(Value::String(body)),
        status: status.as_u16(),
    });
    status
}

fn webhooks(base: &str) -> Vec<Webhook> {
    vec![
        // Default subscription: persistent and escalate, opened/reopened/recovered.
        Webhook {
            url: format!("{base}/generic"),
            format: Format::Generic,
            phases: vec![Phase::Persistent, Phase::Escalate],
            events: Event::ALL.to_vec(),
        },
        // A Slack-like URL with its token in the path.
        Webhook {
            url: format!("{base}/services/T0001/B0002/s3cretT0ken"),
            format: Format::Slack,
            phases: vec![Phase::Escalate],
            events: vec![Event::Recovered],
        },
        Webhook {
            url: format!("{base}/teams"),
            format: Format::Teams,
            phases: vec![Phase::Cooling],
            events: vec![],
        },
    ]
}

async fn post(app: &TestApp, events: Vec<Value>) {
    let (status, reply) = app
        .post_events(&serde_json::to_string(&events).unwrap())
        .await;
    assert_eq!(status, 200, "{reply}");
}

async fn run(state: &AppState) -> RunReport {
    notify::run_once(state).await.expect("notification pass")
}

fn report(incidents: usize, queued: u64, delivered: usize, retrying: usize) -> RunReport {
    RunReport {
        incidents,
        queued,
        delivered,
        retrying,
        failed: 0,
    }
}

async fn scenario(backend: Backend) {
    let (rx, base) = Receiver::start(2).await;
    let hooks = webhooks(&base);
    let app = TestApp::spawn_with(backend, |cfg| {
        cfg.public_url = Some("https://dw.example".into());
        cfg.notify = NotifyConfig {
            webhooks: hooks.clone(),
            // The background pass stays out of the way; the test drives run_once.
            interval: Duration::from_secs(3600),
            backoff: vec![Duration::from_secs(30), Duration::from_secs(120)],
            max_attempts: 3,
            ..NotifyConfig::default()
        };
    })
    .await;

    // 198.51.100.25 deferred every hour from 04:00 to 11:00, .26 delivering: the
    // incident opens at 04:00, is persistent at 05:00 and cooling at 10:00.
    let mut events = Vec::new();
    for i in 0..8 {
        let at = format!("2026-11-20T{:02}:00:00Z", 4 + i);
        events.push(event(
            "deferred",
            &at,
            "198.51.100.25",
            Some(&format!("d{i}")),
        ));
        events.push(event(
            "delivered",
            &at,
            "198.51.100.26",
            Some(&format!("s{i}")),
        ));
    }
    post(&app, events).await;
    let filter = deferwatch::store::IncidentFilter {
        limit: 10,
        ..Default::default()
    };
    let id = app.state.store.list_incidents(&filter).await.unwrap()[0].id;

    // generic: opened + persistent, both refused with a 500; teams: cooling.
    // Deferred and normal_retry are nobody's phases; slack wants none of these.
    assert_eq!(run(&app.state).await, report(1, 3, 1, 2));
    let refused: Vec<_> = rx.hits().into_iter().filter(|h| h.status == 500).collect();
    assert_eq!(refused.len(), 2);
    assert!(refused.iter().all(|h| h.path == "/generic"));

    let teams = rx.delivered("/teams");
    assert_eq!(teams.len(), 1);
    let card = &teams[0];
    assert_eq!(card["type"], "message");
    let att = &card["attachments"][0];
    assert_eq!(
        att["contentType"],
        "application/vnd.microsoft.card.adaptive"
    );
    assert_eq!(att["content"]["type"], "AdaptiveCard");
    assert_eq!(
        att["content"]["body"][0]["text"],
        format!("Incident #{id} towards google is cooling")
    );
    let facts = &att["content"]["body"][2]["facts"];
    assert_eq!(
        facts[0],
        serde_json::json!({"title": "Destination", "value": "google"})
    );
    assert_eq!(
        facts[1],
        serde_json::json!({"title": "Phase", "value": "cooling"})
    );
    assert_eq!(
        facts[3],
        serde_json::json!({"title": "First seen", "value": "2026-11-20 04:00:00 UTC"})
    );
    assert_eq!(
        att["content"]["body"][3]["text"],
        "entered_phase at 2026-11-20 10:00:00 UTC (deferring for 6h)"
    );
    assert_eq!(
        att["content"]["actions"][0]["url"],
        format!("https://dw.example/incidents/{id}")
    );

    // Not due yet: nothing is sent again, nothing queued twice.
    assert_eq!(run(&app.state).await, report(1, 0, 0, 0));
    assert_eq!(rx.hits().len(), 3);

    // After the first backoff step both are retried and delivered.
    app.clock.set(ts("2026-11-20T12:00:30Z"));
    assert_eq!(run(&app.state).await, report(1, 0, 2, 0));
    let mut generic = rx.delivered("/generic");
    generic.sort_by_key(|b| b["transition"]["at"].as_str().unwrap().to_string());
    assert_eq!(generic.len(), 2);
    let opened = &generic[0];
    assert_eq!(opened["event"], "opened");
    assert_eq!(opened["transition"]["at"], "2026-11-20T04:00:00.000Z");
    assert_eq!(
        opened["transition"]["key"],
        format!("{id}:opened:-:1795147200000")
    );
    let persistent = &generic[1];
    assert_eq!(persistent["event"], "entered_phase");
    assert_eq!(persistent["transition"]["phase"], "persistent");
    // Hourly events jump from deferred straight to persistent.
    assert_eq!(persistent["transition"]["from"], "deferred");
    assert_eq!(persistent["transition"]["at"], "2026-11-20T05:00:00.000Z");
    let inc = &persistent["incident"];
    assert_eq!(inc["id"], id);
    assert_eq!(inc["destination"], "google");
    // The incident as it was when the transition was seen: already cooling.
    assert_eq!(inc["phase"], "cooling");
    assert_eq!(inc["status"], "open");
    assert_eq!(inc["first_seen"], "2026-11-20T04:00:00.000Z");
    assert_eq!(inc["last_seen"], "2026-11-20T11:00:00.000Z");
    assert_eq!(inc["deferred_count"], 8);
    assert!(
        inc["scope"].as_str().unwrap().contains("one source IP"),
        "{inc}"
    );
    assert!(inc["top_cause"].is_string(), "{inc}");
    assert_eq!(
        persistent["url"],
        format!("https://dw.example/incidents/{id}")
    );
    assert!(
        rx.hits()
            .iter()
            .all(|h| h.content_type == "application/json")
    );

    // The delivery log: the refused attempt and the delivery, URL secrets masked.
    let log = notify::list_deliveries(&app.state, 50).await.unwrap();
    assert_eq!(log.len(), 3);
    for d in log.iter().filter(|d| d.webhook.ends_with("/generic")) {
        assert_eq!(d.state, DeliveryState::Delivered);
        assert_eq!(d.attempts, 2);
        assert_eq!(d.last_status, Some(200));
        assert_eq!(d.incident_id, id);
        assert_eq!(d.log.len(), 2);
        assert_eq!(d.log[0].status, Some(500));
        assert_eq!(d.log[0].at, ts("2026-11-20T12:00:00Z"));
        assert_eq!(d.log[1].status, Some(200));
        assert_eq!(d.log[1].at, ts("2026-11-20T12:00:30Z"));
        assert_eq!(d.finished_at, Some(ts("2026-11-20T12:00:30Z")));
        assert_eq!(d.next_attempt_at, None);
    }

    // Escalate, 24 h after the first deferral, seen by two instances sharing the
    // database at once: each transition goes out once.
    app.clock.set(ts("2026-11-21T05:00:00Z"));
    post(
        &app,
        vec![
            event(
                "deferred",
                "2026-11-21T04:00:00Z",
                "198.51.100.25",
                Some("d8"),
            ),
            event(
                "deferred",
                "2026-11-21T04:30:00Z",
                "198.51.100.25",
                Some("d9"),
            ),
        ],
    )
    .await;
    let other = AppState::new(
        app.state.config.clone(),
        app.db.store().await,
        app.clock.clone(),
        Classifier::builtin(),
    )
    .unwrap();
    let before = rx.hits().len();
    let (a, b) = tokio::join!(run(&app.state), run(&other));
    assert_eq!(a.queued + b.queued, 2, "{a:?} {b:?}");
    assert_eq!(a.delivered + b.delivered, 2, "{a:?} {b:?}");
    let new: Vec<Hit> = rx.hits()[before..].to_vec();
    assert_eq!(new.len(), 2, "{new:?}");
    let esc = rx.delivered("/generic").pop().unwrap();
    assert_eq!(esc["transition"]["phase"], "escalate");
    assert_eq!(esc["transition"]["at"], "2026-11-21T04:00:00.000Z");
    assert_eq!(esc["incident"]["phase"], "escalate");
    let slack = rx.delivered("/services/");
    assert_eq!(slack.len(), 1);
    assert_eq!(
        slack[0]["text"],
        format!("Incident #{id} towards google is to escalate")
    );
    let blocks = &slack[0]["blocks"];
    assert_eq!(
        blocks[0]["text"]["text"],
        format!(
            "*<https://dw.example/incidents/{id}|Incident #{id} towards google is to escalate>*\n{}",
            Phase::Escalate.guidance()
        )
    );
    assert_eq!(blocks[1]["fields"][0]["text"], "*Destination*\ngoogle");
    assert_eq!(blocks[1]["fields"][1]["text"], "*Phase*\nescalate");
    assert_eq!(blocks[1]["fields"][4]["text"], "*Deferred*\n10");

    // Deliveries on the affected route, then a quiet period: recovered at 06:45.
    post(
        &app,
        vec![
            event(
                "delivered",
                "2026-11-21T04:45:00Z",
                "198.51.100.25",
                Some("s8"),
            ),
            event(
                "delivered",
                "2026-11-21T04:50:00Z",
                "198.51.100.25",
                Some("s9"),
            ),
        ],
    )
    .await;
    app.clock.set(ts("2026-11-21T07:00:00Z"));
    let swept = app
        .state
        .store
        .sweep(&app.state.engine.get(), app.clock.now())
        .await
        .unwrap();
    assert_eq!(swept.recovered, 1);
    let r = run(&app.state).await;
    assert_eq!((r.queued, r.delivered, r.retrying, r.failed), (2, 2, 0, 0));
    let rec = rx.delivered("/generic").pop().unwrap();
    assert_eq!(rec["event"], "recovered");
    assert_eq!(rec["transition"]["at"], "2026-11-21T06:45:00.000Z");
    assert_eq!(rec["incident"]["status"], "recovered");
    assert_eq!(rec["incident"]["closed_at"], "2026-11-21T06:45:00.000Z");
    let slack = rx.delivered("/services/");
    assert_eq!(slack.len(), 2);
    assert_eq!(
        slack[1]["text"],
        format!("Incident #{id} towards google recovered")
    );

    // Everything once: another pass, even much later, sends nothing.
    app.clock.set(ts("2026-11-21T08:00:00Z"));
    let total = rx.hits().len();
    let r = run(&app.state).await;
    assert_eq!((r.queued, r.delivered, r.retrying), (0, 0, 0));
    assert_eq!(rx.hits().len(), total);
    let mut sent: Vec<(String, String)> = rx
        .hits()
        .into_iter()
        .filter(|h| h.status == 200)
        .map(|h| {
            let what = match h.path.as_str() {
                "/generic" => format!(
                    "{} {}",
                    h.body["event"].as_str().unwrap(),
                    h.body["transition"]["phase"].as_str().unwrap_or("")
                ),
                "/teams" => h.body["attachments"][0]["content"]["body"][0]["text"]
                    .as_str()
                    .unwrap()
                    .to_string(),
                _ => h.body["text"].as_str().unwrap().to_string(),
            };
            (h.path, what)
        })
        .collect();
    sent.sort();
    let want: Vec<(String, String)> = [
        ("/generic", "entered_phase escalate".to_string()),
        ("/generic", "entered_phase persistent".to_string()),
        ("/generic", "opened ".to_string()),
        ("/generic", "recovered recovered".to_string()),
        (
            "/services/T0001/B0002/s3cretT0ken",
            format!("Incident #{id} towards google is to escalate"),
        ),
        (
            "/services/T0001/B0002/s3cretT0ken",
            format!("Incident #{id} towards google recovered"),
        ),
        (
            "/teams",
            format!("Incident #{id} towards google is cooling"),
        ),
    ]
    .into_iter()
    .map(|(p, w)| (p.to_string(), w))
    .collect();
    assert_eq!(sent, want);

    let log = notify::list_deliveries(&app.state, 50).await.unwrap();
    assert_eq!(log.len(), 7);
    assert!(log.iter().all(|d| d.state == DeliveryState::Delivered));
    let slack_rows: Vec<_> = log
        .iter()
        .filter(|d| d.webhook.contains("/services/"))
        .collect();
    assert_eq!(slack_rows.len(), 2);
    for d in slack_rows {
        assert!(!d.webhook.contains("s3cret"), "{}", d.webhook);
        assert!(
            d.webhook.ends_with("/services/T000…/B000…/****"),
            "{}",
            d.webhook
        );
    }
    app.db.drop_db().await;
}

/// A receiver that keeps failing: retried on the backoff schedule, then `failed`,
/// never sent again.
async fn gives_up(backend: Backend) {
    let (rx, base) = Receiver::start(usize::MAX).await;
    let hook = Webhook {
        url: format!("{base}/generic"),
        format: Format::Generic,
        phases: vec![Phase::Persistent],
        events: vec![],
    };
    let app = TestApp::spawn_with(backend, |cfg| {
        cfg.notify = NotifyConfig {
            webhooks: vec![hook],
            interval: Duration::from_secs(3600),
            backoff: vec![Duration::from_secs(30), Duration::from_secs(120)],
            max_attempts: 3,
            ..NotifyConfig::default()
        };
    })
    .await;
    post(
        &app,
        vec![
            event(
                "deferred",
                "2026-11-20T10:00:00Z",
                "198.51.100.25",
                Some("a"),
            ),
            event(
                "deferred",
                "2026-11-20T11:00:00Z",
                "198.51.100.25",
                Some("b"),
            ),
        ],
    )
    .await;
    assert_eq!(run(&app.state).await, report(1, 1, 0, 1));
    // 30 s later (first step), then 2 min after that (second step): the third attempt
    // is the last.
    app.clock.set(ts("2026-11-20T12:00:29Z"));
    assert_eq!(run(&app.state).await.retrying, 0, "not due before 30 s");
    app.clock.set(ts("2026-11-20T12:00:30Z"));
    assert_eq!(run(&app.state).await, report(1, 0, 0, 1));
    app.clock.set(ts("2026-11-20T12:02:30Z"));
    let r = run(&app.state).await;
    assert_eq!((r.delivered, r.retrying, r.failed), (0, 0, 1));
    app.clock.set(ts("2026-11-20T13:00:00Z"));
    let r = run(&app.state).await;
    assert_eq!((r.delivered, r.retrying, r.failed), (0, 0, 0));
    assert_eq!(rx.hits().len(), 3);
    let log = notify::list_deliveries(&app.state, 10).await.unwrap();
    assert_eq!(log.len(), 1);
    let d = &log[0];
    assert_eq!(d.state, DeliveryState::Failed);
    assert_eq!(d.attempts, 3);
    assert_eq!(d.last_status, Some(500));
    assert_eq!(d.last_error.as_deref(), Some("HTTP 500"));
    assert_eq!(
        d.log.iter().map(|a| a.at).collect::<Vec<_>>(),
        vec![
            ts("2026-11-20T12:00:00Z"),
            ts("2026-11-20T12:00:30Z"),
            ts("2026-11-20T12:02:30Z")
        ]
    );
    assert_eq!(d.finished_at, Some(ts("2026-11-20T12:02:30Z")));
    assert_eq!(d.event, "entered_phase");
    assert_eq!(d.phase.as_deref(), Some("persistent"));
    app.db.drop_db().await;
}

/// Nothing listens: the transport error is logged without the URL, and retried.
async fn transport_errors_are_retried(backend: Backend) {
    // Bind and drop, so the port is very likely closed.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let hook = Webhook {
        url: format!("http://127.0.0.1:{port}/hook/s3cret"),
        format: Format::Slack,
        phases: vec![Phase::Persistent],
        events: vec![],
    };
    let app = TestApp::spawn_with(backend, |cfg| {
        cfg.notify = NotifyConfig {
            webhooks: vec![hook],
            interval: Duration::from_secs(3600),
            ..NotifyConfig::default()
        };
    })
    .await;
    post(
        &app,
        vec![
            event(
                "deferred",
                "2026-11-20T10:00:00Z",
                "198.51.100.25",
                Some("a"),
            ),
            event(
                "deferred",
                "2026-11-20T11:00:00Z",
                "198.51.100.25",
                Some("b"),
            ),
        ],
    )
    .await;
    assert_eq!(run(&app.state).await, report(1, 1, 0, 1));
    let d = &notify::list_deliveries(&app.state, 10).await.unwrap()[0];
    assert_eq!(d.state, DeliveryState::Pending);
    assert_eq!(d.last_status, None);
    let err = d.last_error.clone().unwrap();
    assert!(!err.contains("s3cret"), "{err}");
    assert!(!err.is_empty());
    assert_eq!(d.next_attempt_at, Some(ts("2026-11-20T12:00:30Z")));
    assert_eq!(d.webhook, format!("http://127.0.0.1:{port}/hook/****"));
    app.db.drop_db().await;
}

macro_rules! both_backends {
    ($($name:ident),*) => {
        mod sqlite { $(#[tokio::test] async fn $name() { super::$name(super::Backend::Sqlite).await })* }
        mod postgres { $(#[tokio::test] async fn $name() { super::$name(super::Backend::Postgres).await })* }
    };
}

both_backends!(scenario, gives_up, transport_errors_are_retried);
