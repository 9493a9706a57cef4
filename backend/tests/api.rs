//! The HTTP surface against the real server on a loopback port, on both backends.

mod support;

use serde_json::json;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use support::{Backend, TestApp, event, ndjson};

macro_rules! on_both {
    ($($name:ident),* $(,)?) => {
        mod sqlite { $(#[tokio::test] async fn $name() { super::$name(super::Backend::Sqlite).await })* }
        mod postgres { $(#[tokio::test] async fn $name() { super::$name(super::Backend::Postgres).await })* }
    };
}

on_both!(
    ingest_accepts_object_array_and_ndjson,
    resending_never_double_counts,
    bad_items_are_rejected_with_field_and_kept,
    authentication_is_required_everywhere,
    limits_answer_413_with_a_json_reason,
    read_api_filters_validate_and_paginate,
    concurrent_single_event_requests_are_all_committed,
    the_sweep_recovers_an_incident_without_a_new_event,
    metrics_and_health,
    classify_endpoint_takes_one_or_many,
    overview_points_at_the_sender_when_one_ip_is_deferred_everywhere,
);

async fn ingest_accepts_object_array_and_ndjson(b: Backend) {
    let app = TestApp::spawn(b).await;
    let one = event(
        "deferred",
        "2026-11-20T10:00:00Z",
        "198.51.100.25",
        Some("1"),
    );
    let (s, r) = app.post_events(&one.to_string()).await;
    assert_eq!((s, r["accepted"].as_u64()), (200, Some(1)), "{r}");
    let arr = json!([
        event(
            "deferred",
            "2026-11-20T10:20:00Z",
            "198.51.100.25",
            Some("2")
        ),
        event(
            "delivered",
            "2026-11-20T10:25:00Z",
            "198.51.100.26",
            Some("3")
        ),
    ]);
    let (s, r) = app.post_events(&arr.to_string()).await;
    assert_eq!((s, r["accepted"].as_u64()), (200, Some(2)), "{r}");
    let nd = ndjson(&[
        event(
            "deferred",
            "2026-11-20T11:05:00Z",
            "198.51.100.25",
            Some("4"),
        ),
        event(
            "bounced",
            "2026-11-20T11:06:00Z",
            "198.51.100.25",
            Some("5"),
        ),
    ]);
    let (s, r) = app.post_events(&nd).await;
    assert_eq!((s, r["accepted"].as_u64()), (200, Some(2)), "{r}");
    let id = r["incident_ids"][0].as_i64().expect("incident id");

    let (s, inc) = app.get(&format!("/api/v1/incidents/{id}")).await;
    assert_eq!(s, 200);
    assert_eq!(inc["destination"], "google");
    assert_eq!(inc["status"], "open");
    assert_eq!(inc["phase"], "persistent");
    assert_eq!(inc["first_seen"], "2026-11-20T10:00:00.000Z");
    assert_eq!(inc["last_seen"], "2026-11-20T11:06:00.000Z");
    assert_eq!(inc["deferred_count"], 3);
    assert_eq!(inc["delivered_count"], 1);
    assert_eq!(inc["bounced_count"], 1);
    assert_eq!(
        inc["scope"]["summary"],
        "one source IP, one recipient domain, after RCPT TO"
    );
    assert_eq!(
        inc["scope"]["affected_source_ips"],
        json!(["198.51.100.25"])
    );
    assert_eq!(
        inc["scope"]["unaffected_source_ips"],
        json!(["198.51.100.26"])
    );
    assert_eq!(inc["top_causes"][0]["count"], 3);
    let phases: Vec<&str> = inc["phase_history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["to"].as_str().unwrap())
        .collect();
    assert_eq!(phases, ["deferred", "normal_retry", "persistent"]);
    assert_eq!(inc["next_phase"]["phase"], "cooling");
    assert_eq!(inc["next_phase"]["at"], "2026-11-20T16:00:00.000Z");
    let replies = inc["detail"]["replies"].as_array().unwrap();
    assert_eq!(replies[0]["count"], 3);
    assert!(
        replies[0]["text"]
            .as_str()
            .unwrap()
            .contains("unusual rate")
    );

    // The event keeps its raw payload and parsed reply.
    let (_, evs) = app
        .get(&format!("/api/v1/events?incident={id}&type=deferred"))
        .await;
    let first = &evs["events"][0];
    assert_eq!(first["code"], 421);
    assert_eq!(first["enhanced"], "4.7.28");
    assert_eq!(first["stage"], "rcpt");
    assert_eq!(first["raw"]["id"], "1");
    assert_eq!(first["mx_ip"], "142.250.27.27");
    app.db.drop_db().await;
}

async fn resending_never_double_counts(b: Backend) {
    let app = TestApp::spawn(b).await;
    let with_ids = ndjson(&[
        event(
            "deferred",
            "2026-11-20T10:00:00Z",
            "198.51.100.25",
            Some("x1"),
        ),
        event(
            "deferred",
            "2026-11-20T10:01:00Z",
            "198.51.100.25",
            Some("x2"),
        ),
    ]);
    let no_ids = ndjson(&[event(
        "deferred",
        "2026-11-20T10:02:00Z",
        "198.51.100.25",
        None,
    )]);
    for body in [&with_ids, &no_ids] {
        let (s, r) = app.post_events(body).await;
        assert_eq!(s, 200);
        assert_eq!(r["duplicates"], 0, "{r}");
    }
    let (s, r) = app.post_events(&with_ids).await;
    assert_eq!(
        (s, r["accepted"].as_u64(), r["duplicates"].as_u64()),
        (200, Some(0), Some(2))
    );
    let (_, r) = app.post_events(&no_ids).await;
    assert_eq!(
        (r["accepted"].as_u64(), r["duplicates"].as_u64()),
        (Some(0), Some(1))
    );
    let (_, list) = app.get("/api/v1/incidents").await;
    assert_eq!(list["incidents"][0]["deferred_count"], 3);
    app.db.drop_db().await;
}

async fn bad_items_are_rejected_with_field_and_kept(b: Backend) {
    let app = TestApp::spawn(b).await;
    let mut no_ts = event("deferred", "x", "198.51.100.25", Some("bad-ts"));
    no_ts["timestamp"] = "yesterday at noon".into();
    let mut bad_ip = event("deferred", "2026-11-20T10:00:00Z", "198.51.100.25", None);
    bad_ip["source_ip"] = "300.1.1.1".into();
    let mut future = event("deferred", "2026-11-25T10:00:00Z", "198.51.100.25", None);
    future["id"] = "future".into();
    let mut no_response = event("deferred", "2026-11-20T10:00:00Z", "198.51.100.25", None);
    no_response.as_object_mut().unwrap().remove("response");
    let mut code_type = event("deferred", "2026-11-20T10:00:00Z", "198.51.100.25", None);
    code_type["code"] = json!({"x": 1});
    let body = ndjson(&[
        event(
            "deferred",
            "2026-11-20T10:00:00Z",
            "198.51.100.25",
            Some("ok"),
        ),
        no_ts,
        bad_ip,
        future,
        no_response,
        code_type,
        json!({"type": "deferred"}),
    ]) + "{not json\n";
    let (s, r) = app.post_events(&body).await;
    assert_eq!(s, 200, "{r}");
    assert_eq!(r["accepted"], 1);
    assert_eq!(r["rejected_count"], 7);
    let rej = r["rejected"].as_array().unwrap();
    let fields: Vec<(u64, Option<&str>)> = rej
        .iter()
        .map(|x| (x["index"].as_u64().unwrap(), x["field"].as_str()))
        .collect();
    assert_eq!(
        fields,
        vec![
            (1, Some("timestamp")),
            (2, Some("source_ip")),
            (3, Some("timestamp")),
            (4, Some("response")),
            (5, Some("code")),
            (6, Some("timestamp")),
            (7, None),
        ]
    );
    assert_eq!(rej[0]["id"], "bad-ts");
    assert!(
        rej[2]["reason"]
            .as_str()
            .unwrap()
            .contains("ahead of the server clock")
    );
    assert!(
        rej[6]["reason"]
            .as_str()
            .unwrap()
            .starts_with("invalid JSON")
    );

    // Everything rejected: 422, and still kept.
    let (s, r) = app.post_events(r#"{"type":"sent"}"#).await;
    assert_eq!(s, 422, "{r}");
    assert_eq!(r["rejected"][0]["field"], "type");
    // A body that is not events at all: 400 naming the body, kept too.
    let (s, r) = app.post_events("[1, 2").await;
    assert_eq!((s, r["field"].as_str()), (400, Some("body")), "{r}");

    let (_, dl) = app.get("/api/v1/rejects?limit=100").await;
    let dl = dl["rejects"].as_array().unwrap();
    assert_eq!(dl.len(), 9);
    assert!(dl[0]["raw"].as_str().unwrap().contains("yesterday at noon"));
    assert_eq!(dl[8]["raw"], "[1, 2");
    assert_eq!(dl[8]["source"], "mta1");
    app.db.drop_db().await;
}

async fn authentication_is_required_everywhere(b: Backend) {
    let app = TestApp::spawn(b).await;
    let url = format!("{}/api/v1/events", app.base);
    let body = event("deferred", "2026-11-20T10:00:00Z", "198.51.100.25", None).to_string();
    let r = app
        .client
        .post(&url)
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let j: serde_json::Value = r.json().await.unwrap();
    assert_eq!(j["field"], "token");
    let r = app
        .client
        .post(&url)
        .bearer_auth("dws_wrong")
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    // ?token= works for webhook senders that cannot set headers.
    let r = app
        .client
        .post(format!("{url}?token={}", app.source_token))
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // Reads need an API token; a source token is not one.
    for path in [
        "/api/v1/incidents",
        "/api/v1/events",
        "/api/v1/rejects",
        "/metrics",
        "/api/v1/incidents/1",
    ] {
        let r = app
            .client
            .get(format!("{}{path}", app.base))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401, "{path}");
        let r = app
            .client
            .get(format!("{}{path}", app.base))
            .bearer_auth(&app.source_token)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401, "{path} with a source token");
    }
    app.db.drop_db().await;
}

async fn limits_answer_413_with_a_json_reason(b: Backend) {
    let app = TestApp::spawn_with(b, |c| {
        c.max_body_bytes = 4096;
        c.max_batch_events = 3;
    })
    .await;
    let big = "x".repeat(5000);
    let (s, r) = app.post_events(&big).await;
    assert_eq!(s, 413);
    assert_eq!(r["field"], "body");
    assert!(r["reason"].as_str().unwrap().contains("4096"), "{r}");
    let four = ndjson(
        &(0..4)
            .map(|i| {
                event(
                    "deferred",
                    "2026-11-20T10:00:00Z",
                    "198.51.100.25",
                    Some(&i.to_string()),
                )
            })
            .collect::<Vec<_>>(),
    );
    let (s, r) = app.post_events(&four).await;
    assert_eq!(s, 413);
    assert!(r["reason"].as_str().unwrap().contains("limit is 3"), "{r}");
    let (_, list) = app.get("/api/v1/incidents").await;
    assert_eq!(list["incidents"].as_array().unwrap().len(), 0);
    app.db.drop_db().await;
}

async fn read_api_filters_validate_and_paginate(b: Backend) {
    let app = TestApp::spawn(b).await;
    let mut evs = Vec::new();
    for i in 0..30 {
        let mut e = event(
            "deferred",
            "2026-11-20T10:00:00Z",
            "198.51.100.25",
            Some(&format!("e{i}")),
        );
        e["recipient"] = format!("u@d{}.example", i % 3).into();
        e["mx_host"] = format!("mx.d{}.example", i % 3).into();
        evs.push(e);
    }
    app.post_events(&ndjson(&evs)).await;
    let (s, r) = app.get("/api/v1/incidents?limit=2").await;
    assert_eq!(s, 200);
    assert_eq!(r["incidents"].as_array().unwrap().len(), 2);
    assert_eq!(r["has_more"], true);
    let (_, r) = app.get("/api/v1/incidents?destination=d1.example").await;
    assert_eq!(r["incidents"][0]["deferred_count"], 10);
    let (_, r) = app
        .get("/api/v1/incidents?status=open&phase=deferred")
        .await;
    assert_eq!(r["incidents"].as_array().unwrap().len(), 3);
    let (s, r) = app.get("/api/v1/incidents?phase=panic").await;
    assert_eq!((s, r["field"].as_str()), (400, Some("phase")));
    let (s, r) = app.get("/api/v1/incidents?limit=0").await;
    assert_eq!((s, r["field"].as_str()), (400, Some("limit")));
    let (s, _) = app.get("/api/v1/incidents/999999").await;
    assert_eq!(s, 404);
    let (s, r) = app.get("/api/v1/incidents/abc").await;
    assert_eq!((s, r["field"].as_str()), (400, Some("id")));
    let (s, r) = app.get("/api/v1/events?since=noon").await;
    assert_eq!((s, r["field"].as_str()), (400, Some("since")));

    let mut ids = Vec::new();
    let mut path = "/api/v1/events?limit=12&source=mta1".to_string();
    loop {
        let (_, page) = app.get(&path).await;
        ids.extend(
            page["events"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["id"].as_i64().unwrap()),
        );
        match page["next_cursor"].as_i64() {
            Some(c) => path = format!("/api/v1/events?limit=12&source=mta1&after={c}"),
            None => break,
        }
    }
    assert_eq!(ids.len(), 30);
    app.db.drop_db().await;
}

async fn concurrent_single_event_requests_are_all_committed(b: Backend) {
    let app = Arc::new(TestApp::spawn(b).await);
    let mut tasks = Vec::new();
    for i in 0..64 {
        let app = app.clone();
        tasks.push(tokio::spawn(async move {
            let e = event(
                "deferred",
                "2026-11-20T10:00:00Z",
                "198.51.100.25",
                Some(&format!("c{i}")),
            );
            app.post_events(&e.to_string()).await
        }));
    }
    for t in tasks {
        let (s, r) = t.await.unwrap();
        assert_eq!((s, r["accepted"].as_u64()), (200, Some(1)), "{r}");
    }
    let (_, list) = app.get("/api/v1/incidents").await;
    assert_eq!(list["incidents"].as_array().unwrap().len(), 1);
    assert_eq!(list["incidents"][0]["deferred_count"], 64);
    let app = Arc::into_inner(app).unwrap();
    app.db.drop_db().await;
}

async fn the_sweep_recovers_an_incident_without_a_new_event(b: Backend) {
    let app = TestApp::spawn_with(b, |c| c.sweep_interval = Duration::from_millis(50)).await;
    let body = ndjson(&[
        event(
            "deferred",
            "2026-11-20T10:00:00Z",
            "198.51.100.25",
            Some("1"),
        ),
        event(
            "delivered",
            "2026-11-20T10:30:00Z",
            "198.51.100.25",
            Some("2"),
        ),
    ]);
    app.post_events(&body).await;
    app.clock.set(support::ts("2026-11-20T12:29:00Z"));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (_, list) = app.get("/api/v1/incidents").await;
    assert_eq!(list["incidents"][0]["status"], "open");
    app.clock.set(support::ts("2026-11-20T12:30:00Z"));
    let mut status = String::new();
    for _ in 0..100 {
        let (_, list) = app.get("/api/v1/incidents").await;
        status = list["incidents"][0]["status"].as_str().unwrap().to_string();
        if status == "recovered" {
            assert_eq!(
                list["incidents"][0]["closed_at"],
                "2026-11-20T12:30:00.000Z"
            );
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(status, "recovered");
    app.db.drop_db().await;
}

async fn metrics_and_health(b: Backend) {
    let app = TestApp::spawn(b).await;
    app.post_events(&ndjson(&[
        event(
            "deferred",
            "2026-11-20T10:00:00Z",
            "198.51.100.25",
            Some("1"),
        ),
        json!({"type": "nope"}),
    ]))
    .await;
    let r = app
        .client
        .get(format!("{}/metrics", app.base))
        .bearer_auth(&app.api_token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let text = r.text().await.unwrap();
    for line in [
        r#"deferwatch_events_ingested_total{type="deferred",source="mta1"} 1"#,
        r#"deferwatch_events_rejected_total{source="mta1"} 1"#,
        r#"deferwatch_open_incidents{phase="deferred"} 1"#,
        "deferwatch_ingest_latency_seconds_count 1",
    ] {
        assert!(text.contains(line), "missing {line} in\n{text}");
    }
    let r = app
        .client
        .get(format!("{}/healthz", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    app.db.drop_db().await;
}

/// A TCP relay to PostgreSQL that can be cut, to take the database away from a
/// running server without touching the shared PostgreSQL instance.
struct Relay {
    addr: std::net::SocketAddr,
    up: Arc<AtomicBool>,
    conns: Arc<std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>>,
}

impl Relay {
    async fn start(target: String) -> Relay {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let up = Arc::new(AtomicBool::new(true));
        let conns: Arc<std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>> = Arc::default();
        let (u, c) = (up.clone(), conns.clone());
        tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                if !u.load(Ordering::SeqCst) {
                    drop(inbound);
                    continue;
                }
                let target = target.clone();
                let h = tokio::spawn(async move {
                    if let Ok(mut out) = tokio::net::TcpStream::connect(target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut out).await;
                    }
                });
                c.lock().unwrap().push(h);
            }
        });
        Relay { addr, up, conns }
    }

    fn cut(&self) {
        self.up.store(false, Ordering::SeqCst);
        for h in self.conns.lock().unwrap().drain(..) {
            h.abort();
        }
    }

    fn restore(&self) {
        self.up.store(true, Ordering::SeqCst);
    }
}

#[tokio::test]
async fn postgres_down_answers_503_and_writes_nothing_half() {
    let db = support::TestDb::new(Backend::Postgres).await;
    let admin = support::pg_admin_url();
    let host_port = admin
        .split('@')
        .nth(1)
        .and_then(|r| r.split('/').next())
        .unwrap_or("127.0.0.1:5432")
        .to_string();
    let relay = Relay::start(host_port.clone()).await;
    let relayed_url = db.url.replace(&host_port, &relay.addr.to_string());
    let store = deferwatch::store::connect(
        &relayed_url,
        &deferwatch::store::ConnectOptions {
            max_connections: 4,
            acquire_timeout: Duration::from_secs(2),
        },
    )
    .await
    .unwrap();
    let direct = db.store().await;
    let app = TestApp::spawn_on(db, store, |c| c.retry_after_secs = 7).await;
    // Warm the token cache so the outage hits the commit, not authentication.
    let (s, _) = app
        .post_events(
            &event(
                "deferred",
                "2026-11-20T09:00:00Z",
                "198.51.100.25",
                Some("warm"),
            )
            .to_string(),
        )
        .await;
    assert_eq!(s, 200);

    relay.cut();
    let body = ndjson(&[
        event(
            "deferred",
            "2026-11-20T10:00:00Z",
            "198.51.100.25",
            Some("d1"),
        ),
        event(
            "deferred",
            "2026-11-20T10:01:00Z",
            "198.51.100.25",
            Some("d2"),
        ),
    ]);
    let resp = app
        .client
        .post(format!("{}/api/v1/events", app.base))
        .bearer_auth(&app.source_token)
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 503);
    assert_eq!(resp.headers()["retry-after"], "7");
    let j: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(j["error"], "unavailable");
    let health = app
        .client
        .get(format!("{}/healthz", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 503);
    let events = direct
        .list_events(&deferwatch::store::EventFilter {
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(events.len(), 1, "only the warm-up event is stored");

    relay.restore();
    let mut stored = None;
    for _ in 0..20 {
        let (s, r) = app.post_events(&body).await;
        if s == 200 {
            stored = Some(r);
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let r = stored.expect("ingest works again once the database is back");
    // Nothing of the failed attempt was half-written: both events are new now.
    assert_eq!(
        (r["accepted"].as_u64(), r["duplicates"].as_u64()),
        (Some(2), Some(0))
    );
    let list = direct
        .list_incidents(&deferwatch::store::IncidentFilter {
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(list[0].counts.deferred, 3);
    app.db.drop_db().await;
}

async fn classify_endpoint_takes_one_or_many(b: Backend) {
    let app = TestApp::spawn(b).await;
    let post = |body: serde_json::Value| {
        app.client
            .post(format!("{}/api/v1/classify", app.base))
            .bearer_auth(&app.api_token)
            .json(&body)
            .send()
    };
    let yahoo = "421 4.7.0 [TSS04] Messages from 198.51.100.25 temporarily deferred due to unexpected volume or user complaints - 4.16.55.1; see https://postmaster.yahooinc.com/error-codes";
    let r: serde_json::Value = post(json!(yahoo)).await.unwrap().json().await.unwrap();
    assert_eq!(r["cause"], "reputation");
    assert_eq!(r["reference"], "TSS04");
    assert_eq!(r["provider"], "Yahoo");
    assert_eq!(r["origin"], "remote");
    let r: serde_json::Value = post(json!([
        {"text": "450 4.2.0 Greylisted, see http://postgrey.schweikert.ch/help/example.com.html", "mx_host": "mx.example.com"},
        "connect to mx.example.net[203.0.113.9]:25: Connection timed out",
        "550 5.7.1 Service unavailable; try again later"
    ]))
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    let causes: Vec<&str> = r
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["cause"].as_str().unwrap())
        .collect();
    assert_eq!(causes, ["greylisting", "network", "permanent"]);
    assert_eq!(r[1]["origin"], "local");
    let resp = post(json!({"nope": 1})).await.unwrap();
    assert_eq!(resp.status(), 400);
    let j: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(j["field"], "body");
    let resp = app
        .client
        .post(format!("{}/api/v1/classify", app.base))
        .json(&json!("421 x"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    app.db.drop_db().await;
}

async fn overview_points_at_the_sender_when_one_ip_is_deferred_everywhere(b: Backend) {
    let app = TestApp::spawn(b).await;
    let mut evs = Vec::new();
    for (i, (domain, mx)) in [
        ("gmail.com", "aspmx.l.google.com"),
        ("outlook.com", "outlook-com.olc.protection.outlook.com"),
        ("yahoo.com", "mta5.am0.yahoodns.net"),
    ]
    .iter()
    .enumerate()
    {
        let mut e = event(
            "deferred",
            "2026-11-20T10:00:00Z",
            "198.51.100.25",
            Some(&format!("o{i}")),
        );
        e["recipient"] = format!("x@{domain}").into();
        e["mx_host"] = (*mx).into();
        evs.push(e);
    }
    app.post_events(&ndjson(&evs)).await;
    let (s, o) = app.get("/api/v1/overview").await;
    assert_eq!(s, 200);
    assert_eq!(o["sender_side_suspected"], true, "{o}");
    assert_eq!(o["sender_wide_ips"][0]["ip"], "198.51.100.25");
    assert_eq!(
        o["sender_wide_ips"][0]["destinations"],
        json!(["google", "microsoft", "yahoo"])
    );
    assert_eq!(o["open_incidents"], 3);
    assert_eq!(o["open_by_phase"]["deferred"], 3);
    assert_eq!(o["truncated"], false);
    app.db.drop_db().await;
}
