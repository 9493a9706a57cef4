//! One storage suite, run on SQLite and on PostgreSQL: both backends must behave the
//! same. PostgreSQL comes from DEFERWATCH_TEST_PG_URL (default 127.0.0.1:5432) and is
//! never skipped: without it these tests fail.

mod support;

use chrono::{DateTime, TimeDelta, Utc};
use deferwatch::event::{EventType, NewEvent};
use deferwatch::incidents::{Engine, Phase, Status, Thresholds};
use deferwatch::ingest::json::{Context, parse_event};
use deferwatch::smtp::Classifier;
use deferwatch::store::{
    DynStore, EventFilter, EventOutcome, IncidentFilter, NewReject, StoreError, WriteBatch,
};
use support::{Backend, TestDb, event, ts};

static CLASSIFIER: std::sync::LazyLock<Classifier> = std::sync::LazyLock::new(Classifier::builtin);

fn build(source_id: i64, v: &serde_json::Value, now: DateTime<Utc>) -> NewEvent {
    let ctx = Context {
        source_id,
        classifier: &CLASSIFIER,
        now,
        max_future_skew: TimeDelta::hours(1),
    };
    parse_event(&v.to_string(), &ctx).expect("valid test event")
}

fn engine() -> Engine {
    Engine::new(Thresholds::default())
}

async fn all_incidents(store: &DynStore) -> Vec<deferwatch::incidents::Incident> {
    store
        .list_incidents(&IncidentFilter {
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap()
}

async fn all_events(store: &DynStore) -> Vec<deferwatch::event::StoredEvent> {
    store
        .list_events(&EventFilter {
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap()
}

async fn with_source(store: &DynStore) -> i64 {
    store
        .create_source("mta1", "json", "hash-of-token", ts("2026-11-20T00:00:00Z"))
        .await
        .unwrap()
        .id
}

macro_rules! contract {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(#[tokio::test] async fn $name() {
                let db = super::TestDb::new(super::Backend::Sqlite).await;
                super::$name(db.store().await).await;
                db.drop_db().await;
            })*
        }
        mod postgres {
            $(#[tokio::test] async fn $name() {
                let db = super::TestDb::new(super::Backend::Postgres).await;
                super::$name(db.store().await).await;
                db.drop_db().await;
            })*
        }
    };
}

contract!(
    sources_and_tokens,
    events_are_stored_once_and_grouped,
    batches_in_one_group_commit_share_dedupe,
    a_failed_commit_writes_nothing,
    incident_list_filters_and_orders,
    event_list_filters_and_pages,
    rejects_are_kept_with_their_payload,
    sweep_recovers_and_stales_due_incidents_only,
    retention_prunes_events_but_keeps_incidents,
    reopening_across_commits,
    reclassify_moves_causes_with_new_rules,
    users_sessions_and_login_failures,
    incident_marks_activity_and_settings,
    sending_ips_histogram_and_report_sends,
    large_batches_keep_every_field_exactly,
);

async fn sources_and_tokens(store: DynStore) {
    let now = ts("2026-11-20T00:00:00Z");
    let s = store
        .create_source("mta1", "json", "h1", now)
        .await
        .unwrap();
    assert_eq!(s.name, "mta1");
    assert!(matches!(
        store.create_source("mta1", "json", "h2", now).await,
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(store.source_by_token("h1").await.unwrap().unwrap().id, s.id);
    assert!(store.source_by_token("nope").await.unwrap().is_none());
    assert!(store.rotate_source_token("mta1", "h3").await.unwrap());
    assert!(store.source_by_token("h1").await.unwrap().is_none());
    assert!(store.source_by_token("h3").await.unwrap().is_some());
    assert!(store.revoke_source("mta1", now).await.unwrap());
    assert!(store.source_by_token("h3").await.unwrap().is_none());
    assert!(!store.revoke_source("mta1", now).await.unwrap());

    let t = store.create_api_token("reader", "a1", now).await.unwrap();
    assert_eq!(
        store.api_token_by_hash("a1").await.unwrap().unwrap().id,
        t.id
    );
    assert!(store.revoke_api_token("reader", now).await.unwrap());
    assert!(store.api_token_by_hash("a1").await.unwrap().is_none());
    assert_eq!(store.list_api_tokens().await.unwrap().len(), 1);
    assert_eq!(store.list_sources().await.unwrap().len(), 1);
}

async fn events_are_stored_once_and_grouped(store: DynStore) {
    let src = with_source(&store).await;
    let now = ts("2026-11-20T12:00:00Z");
    let evs = vec![
        build(
            src,
            &event(
                "deferred",
                "2026-11-20T10:00:00Z",
                "198.51.100.25",
                Some("a"),
            ),
            now,
        ),
        build(
            src,
            &event(
                "deferred",
                "2026-11-20T11:10:00Z",
                "198.51.100.25",
                Some("b"),
            ),
            now,
        ),
        build(
            src,
            &event(
                "delivered",
                "2026-11-20T11:20:00Z",
                "198.51.100.26",
                Some("c"),
            ),
            now,
        ),
        // The same id twice in one batch counts once.
        build(
            src,
            &event(
                "deferred",
                "2026-11-20T11:10:00Z",
                "198.51.100.25",
                Some("b"),
            ),
            now,
        ),
    ];
    let out = store
        .record_events(
            &[WriteBatch {
                events: evs.clone(),
                rejects: vec![],
            }],
            &engine(),
            now,
        )
        .await
        .unwrap();
    let stored: Vec<_> = out[0]
        .events
        .iter()
        .filter(|o| matches!(o, EventOutcome::Stored { .. }))
        .collect();
    assert_eq!(stored.len(), 3);
    assert_eq!(out[0].events[3], EventOutcome::Duplicate);
    let EventOutcome::Stored {
        incident_id: Some(id),
    } = out[0].events[0]
    else {
        panic!("first deferral not attached: {:?}", out[0].events[0]);
    };
    // Resending everything changes nothing.
    let again = store
        .record_events(
            &[WriteBatch {
                events: evs,
                rejects: vec![],
            }],
            &engine(),
            now,
        )
        .await
        .unwrap();
    assert!(
        again[0]
            .events
            .iter()
            .all(|o| *o == EventOutcome::Duplicate)
    );

    let inc = store.incident(id).await.unwrap().unwrap();
    assert_eq!(inc.destination, "google");
    assert_eq!(inc.counts.deferred, 2);
    assert_eq!(inc.counts.delivered, 1);
    assert_eq!(inc.phase, Phase::Persistent);
    assert_eq!(inc.first_seen, ts("2026-11-20T10:00:00Z"));
    assert_eq!(inc.last_seen, ts("2026-11-20T11:20:00Z"));
    let events = all_events(&store).await;
    assert_eq!(events.len(), 3);
    assert_eq!(events[0].incident_id, Some(id));
    assert_eq!(events[0].code, Some(421));
    assert_eq!(events[0].raw["id"], "a");
    assert_eq!(events[0].source, "mta1");
    assert_eq!(
        store.list_sources().await.unwrap()[0].last_event_at,
        Some(now)
    );
}

async fn batches_in_one_group_commit_share_dedupe(store: DynStore) {
    let src = with_source(&store).await;
    let now = ts("2026-11-20T12:00:00Z");
    let a = build(
        src,
        &event("deferred", "2026-11-20T10:00:00Z", "198.51.100.25", None),
        now,
    );
    let b = build(
        src,
        &event("deferred", "2026-11-20T10:05:00Z", "198.51.100.25", None),
        now,
    );
    let batches = vec![
        WriteBatch {
            events: vec![a.clone(), b],
            rejects: vec![],
        },
        WriteBatch {
            events: vec![a],
            rejects: vec![],
        },
    ];
    let out = store.record_events(&batches, &engine(), now).await.unwrap();
    assert!(matches!(out[0].events[0], EventOutcome::Stored { .. }));
    assert!(matches!(out[0].events[1], EventOutcome::Stored { .. }));
    assert_eq!(out[1].events, vec![EventOutcome::Duplicate]);
    let list = all_incidents(&store).await;
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].counts.deferred, 2);
}

async fn a_failed_commit_writes_nothing(store: DynStore) {
    let src = with_source(&store).await;
    let now = ts("2026-11-20T12:00:00Z");
    let good = build(
        src,
        &event(
            "deferred",
            "2026-11-20T10:00:00Z",
            "198.51.100.25",
            Some("g"),
        ),
        now,
    );
    // An unknown source violates the foreign key only when the events are inserted,
    // after the incident was written: the whole transaction must roll back.
    let bad = build(
        9999,
        &event(
            "deferred",
            "2026-11-20T10:01:00Z",
            "198.51.100.25",
            Some("b"),
        ),
        now,
    );
    let err = store
        .record_events(
            &[WriteBatch {
                events: vec![good, bad],
                rejects: vec![],
            }],
            &engine(),
            now,
        )
        .await;
    assert!(err.is_err());
    assert!(all_incidents(&store).await.is_empty());
    assert!(all_events(&store).await.is_empty());
}

fn to_domain(v: serde_json::Value, domain: &str, mx: &str) -> serde_json::Value {
    let mut v = v;
    v["recipient"] = format!("x@{domain}").into();
    v["mx_host"] = mx.into();
    v["response"] = "421 4.3.2 Service not available".into();
    v
}

async fn incident_list_filters_and_orders(store: DynStore) {
    let src = with_source(&store).await;
    let now = ts("2026-11-21T12:00:00Z");
    let mut evs = Vec::new();
    // d1: a 2-hour incident (persistent); d2: a 10-minute one (deferred); d3: recovered.
    for (i, m) in [0, 60, 120].iter().enumerate() {
        let t = ts("2026-11-21T08:00:00Z") + TimeDelta::minutes(*m);
        evs.push(build(
            src,
            &to_domain(
                event(
                    "deferred",
                    &deferwatch::time_format::fmt(t),
                    "198.51.100.25",
                    Some(&format!("d1-{i}")),
                ),
                "d1.example",
                "mx.d1.example",
            ),
            now,
        ));
    }
    evs.push(build(
        src,
        &to_domain(
            event(
                "deferred",
                "2026-11-21T11:50:00Z",
                "198.51.100.25",
                Some("d2"),
            ),
            "d2.example",
            "mx.d2.example",
        ),
        now,
    ));
    evs.push(build(
        src,
        &to_domain(
            event(
                "deferred",
                "2026-11-21T01:00:00Z",
                "198.51.100.25",
                Some("d3a"),
            ),
            "d3.example",
            "mx.d3.example",
        ),
        now,
    ));
    evs.push(build(
        src,
        &to_domain(
            event(
                "delivered",
                "2026-11-21T01:10:00Z",
                "198.51.100.25",
                Some("d3b"),
            ),
            "d3.example",
            "mx.d3.example",
        ),
        now,
    ));
    evs.push(build(
        src,
        &to_domain(
            event(
                "delivered",
                "2026-11-21T04:00:00Z",
                "198.51.100.25",
                Some("d3c"),
            ),
            "d3.example",
            "mx.d3.example",
        ),
        now,
    ));
    store
        .record_events(
            &[WriteBatch {
                events: evs,
                rejects: vec![],
            }],
            &engine(),
            now,
        )
        .await
        .unwrap();
    let all = all_incidents(&store).await;
    let order: Vec<(&str, Status)> = all
        .iter()
        .map(|i| (i.destination.as_str(), i.status))
        .collect();
    // Open first, most recently active first; closed after.
    assert_eq!(
        order,
        vec![
            ("d2.example", Status::Open),
            ("d1.example", Status::Open),
            ("d3.example", Status::Recovered)
        ]
    );
    let persistent = store
        .list_incidents(&IncidentFilter {
            phase: Some(Phase::Persistent),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(persistent.len(), 1);
    assert_eq!(persistent[0].destination, "d1.example");
    let d3 = store
        .list_incidents(&IncidentFilter {
            destination: Some("d3.example".into()),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(d3[0].status, Status::Recovered);
    let page2 = store
        .list_incidents(&IncidentFilter {
            limit: 1,
            offset: 1,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(page2[0].destination, "d1.example");
    let mut by_phase = store.open_incidents_by_phase().await.unwrap();
    by_phase.sort();
    assert_eq!(
        by_phase,
        vec![("deferred".to_string(), 1), ("persistent".to_string(), 1)]
    );
}

async fn event_list_filters_and_pages(store: DynStore) {
    let src = with_source(&store).await;
    let now = ts("2026-11-20T12:00:00Z");
    let evs: Vec<NewEvent> = (0..25)
        .map(|i| {
            let kind = if i % 5 == 0 { "delivered" } else { "deferred" };
            let t = ts("2026-11-20T10:00:00Z") + TimeDelta::minutes(i);
            build(
                src,
                &event(
                    kind,
                    &deferwatch::time_format::fmt(t),
                    "198.51.100.25",
                    Some(&format!("e{i}")),
                ),
                now,
            )
        })
        .collect();
    store
        .record_events(
            &[WriteBatch {
                events: evs,
                rejects: vec![],
            }],
            &engine(),
            now,
        )
        .await
        .unwrap();
    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let page = store
            .list_events(&EventFilter {
                kind: Some(EventType::Deferred),
                after,
                limit: 7,
                ..Default::default()
            })
            .await
            .unwrap();
        if page.is_empty() {
            break;
        }
        after = page.last().map(|e| e.id);
        seen.extend(page.into_iter().map(|e| e.ext_id.unwrap()));
    }
    assert_eq!(seen.len(), 20);
    assert!(seen.windows(2).all(|w| w[0] != w[1]));
    let since = store
        .list_events(&EventFilter {
            since: Some(ts("2026-11-20T10:20:00Z")),
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(since.len(), 5);
    let none = store
        .list_events(&EventFilter {
            source: Some("other".into()),
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(none.is_empty());
}

async fn rejects_are_kept_with_their_payload(store: DynStore) {
    let src = with_source(&store).await;
    let now = ts("2026-11-20T12:00:00Z");
    let reject = NewReject {
        source_id: Some(src),
        received_at: now,
        index: Some(3),
        field: Some("timestamp".into()),
        reason: "not an RFC 3339 time".into(),
        raw: r#"{"type":"deferred","timestamp":"yesterday"}"#.into(),
    };
    store
        .record_events(
            &[WriteBatch {
                events: vec![],
                rejects: vec![reject],
            }],
            &engine(),
            now,
        )
        .await
        .unwrap();
    let list = store.list_dead_letters(None, 10).await.unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].source.as_deref(), Some("mta1"));
    assert_eq!(list[0].field.as_deref(), Some("timestamp"));
    assert_eq!(list[0].index, Some(3));
    assert!(list[0].raw.contains("yesterday"));
    assert!(
        store
            .list_dead_letters(Some(list[0].id), 10)
            .await
            .unwrap()
            .is_empty()
    );
}

async fn sweep_recovers_and_stales_due_incidents_only(store: DynStore) {
    let src = with_source(&store).await;
    let now = ts("2026-11-20T12:00:00Z");
    let mk = |kind, at: &str, domain: &str, id: &str| {
        build(
            src,
            &to_domain(
                event(kind, at, "198.51.100.25", Some(id)),
                domain,
                &format!("mx.{domain}"),
            ),
            now,
        )
    };
    let evs = vec![
        // r.example: deliveries resume at 11:00 → recovered at 13:00.
        mk("deferred", "2026-11-20T10:00:00Z", "r.example", "r1"),
        mk("delivered", "2026-11-20T11:00:00Z", "r.example", "r2"),
        // s.example: nothing after 11:30 → stale at 2026-11-21T11:30.
        mk("deferred", "2026-11-20T11:30:00Z", "s.example", "s1"),
    ];
    store
        .record_events(
            &[WriteBatch {
                events: evs,
                rejects: vec![],
            }],
            &engine(),
            now,
        )
        .await
        .unwrap();
    let r = store
        .sweep(&engine(), ts("2026-11-20T12:59:00Z"))
        .await
        .unwrap();
    assert_eq!((r.examined, r.recovered, r.stale), (0, 0, 0));
    let r = store
        .sweep(&engine(), ts("2026-11-20T13:00:00Z"))
        .await
        .unwrap();
    assert_eq!((r.examined, r.recovered, r.stale), (1, 1, 0));
    let r = store
        .sweep(&engine(), ts("2026-11-21T11:30:00Z"))
        .await
        .unwrap();
    assert_eq!((r.examined, r.recovered, r.stale), (1, 0, 1));
    let list = all_incidents(&store).await;
    let r_inc = list.iter().find(|i| i.destination == "r.example").unwrap();
    assert_eq!(r_inc.status, Status::Recovered);
    assert_eq!(r_inc.closed_at, Some(ts("2026-11-20T13:00:00Z")));
    let s_inc = list.iter().find(|i| i.destination == "s.example").unwrap();
    assert_eq!(s_inc.status, Status::Stale);
    assert_eq!(s_inc.phase_history.last().unwrap().to, Phase::Stale);
    assert!(store.open_incidents_by_phase().await.unwrap().is_empty());
}

async fn retention_prunes_events_but_keeps_incidents(store: DynStore) {
    let src = with_source(&store).await;
    let old = ts("2026-10-01T00:00:00Z");
    let new = ts("2026-11-20T00:00:00Z");
    let e_old = build(
        src,
        &event(
            "deferred",
            "2026-09-30T23:00:00Z",
            "198.51.100.25",
            Some("old"),
        ),
        old,
    );
    let e_new = build(
        src,
        &event(
            "deferred",
            "2026-11-19T23:00:00Z",
            "198.51.100.25",
            Some("new"),
        ),
        new,
    );
    store
        .record_events(
            &[WriteBatch {
                events: vec![e_old],
                rejects: vec![],
            }],
            &engine(),
            old,
        )
        .await
        .unwrap();
    store
        .record_events(
            &[WriteBatch {
                events: vec![e_new],
                rejects: vec![],
            }],
            &engine(),
            new,
        )
        .await
        .unwrap();
    let r = store.prune(new - TimeDelta::days(30)).await.unwrap();
    assert_eq!(r.events, 1);
    let left = all_events(&store).await;
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].ext_id.as_deref(), Some("new"));
    assert_eq!(all_incidents(&store).await.len(), 2);
}

async fn reopening_across_commits(store: DynStore) {
    let src = with_source(&store).await;
    let now = ts("2026-11-21T00:00:00Z");
    let one = |kind, at: &str, id: &str| WriteBatch {
        events: vec![build(src, &event(kind, at, "198.51.100.25", Some(id)), now)],
        rejects: vec![],
    };
    let e = engine();
    for b in [
        one("deferred", "2026-11-20T10:00:00Z", "1"),
        one("delivered", "2026-11-20T10:30:00Z", "2"),
    ] {
        store.record_events(&[b], &e, now).await.unwrap();
    }
    store.sweep(&e, ts("2026-11-20T12:30:00Z")).await.unwrap();
    // Within the reopen window: the same incident, reopened.
    let out = store
        .record_events(&[one("deferred", "2026-11-20T15:00:00Z", "3")], &e, now)
        .await
        .unwrap();
    let EventOutcome::Stored {
        incident_id: Some(id),
    } = out[0].events[0]
    else {
        panic!()
    };
    let inc = store.incident(id).await.unwrap().unwrap();
    assert_eq!(inc.status, Status::Open);
    assert_eq!(inc.reopens.len(), 1);
    assert_eq!(inc.reopens[0].recovered_at, ts("2026-11-20T12:30:00Z"));
    assert_eq!(all_incidents(&store).await.len(), 1);
}

async fn reclassify_moves_causes_with_new_rules(store: DynStore) {
    let src = with_source(&store).await;
    let now = ts("2026-11-20T12:00:00Z");
    let mut e1 = event(
        "deferred",
        "2026-11-20T10:00:00Z",
        "198.51.100.25",
        Some("1"),
    );
    e1["response"] = "451 4.3.0 Acme gateway code AX-17".into();
    let e2 = event(
        "deferred",
        "2026-11-20T10:05:00Z",
        "198.51.100.25",
        Some("2"),
    );
    let out = store
        .record_events(
            &[WriteBatch {
                events: vec![build(src, &e1, now), build(src, &e2, now)],
                rejects: vec![],
            }],
            &engine(),
            now,
        )
        .await
        .unwrap();
    let EventOutcome::Stored {
        incident_id: Some(id),
    } = out[0].events[0]
    else {
        panic!()
    };
    let before = store.incident(id).await.unwrap().unwrap();
    let acme_before = before
        .replies
        .iter()
        .find(|r| r.text.contains("Acme"))
        .unwrap()
        .cause
        .clone();
    assert_ne!(acme_before.as_deref(), Some("rate_limit"));

    let rules = r#"
[[rule]]
id = "acme.ax17"
pattern = 'Acme gateway code AX-17'
cause = "rate_limit"
explanation = "Acme documents AX-17 as its per-sender rate limit."
source = "test"
example = "451 4.3.0 Acme gateway code AX-17"
"#;
    let classifier = Classifier::with_user_rules(rules, "acme.toml").unwrap();
    let page = store
        .reclassify_page(0, 1000, &classifier, &engine(), now)
        .await
        .unwrap();
    assert_eq!(page.examined, 2);
    assert_eq!(page.cause_changed, 1);
    assert_eq!(page.changed, 1, "the Gmail reply keeps its classification");
    let after = store.incident(id).await.unwrap().unwrap();
    assert_eq!(after.causes.get("rate_limit"), Some(&2));
    let acme = after
        .replies
        .iter()
        .find(|r| r.text.contains("Acme"))
        .unwrap();
    assert_eq!(acme.cause.as_deref(), Some("rate_limit"));
    let evs = all_events(&store).await;
    assert_eq!(evs[0].cause.map(|c| c.as_str()), Some("rate_limit"));
    assert_eq!(evs[0].classification.as_ref().unwrap()["rule"], "acme.ax17");
    // Nothing left after the last page; a second run changes nothing.
    let end = store
        .reclassify_page(page.last_id.unwrap(), 1000, &classifier, &engine(), now)
        .await
        .unwrap();
    assert_eq!(end.last_id, None);
    let again = store
        .reclassify_page(0, 1000, &classifier, &engine(), now)
        .await
        .unwrap();
    assert_eq!(again.changed, 0);
}

async fn users_sessions_and_login_failures(store: DynStore) {
    use deferwatch::store::web::Role;
    let now = ts("2026-11-20T12:00:00Z");
    assert_eq!(store.count_users().await.unwrap(), 0);
    let first = store
        .create_first_user("root", "h1", now)
        .await
        .unwrap()
        .expect("first user");
    assert_eq!(first.role, Role::Admin);
    assert!(
        store
            .create_first_user("other", "h2", now)
            .await
            .unwrap()
            .is_none(),
        "only while none exists"
    );
    store
        .create_user("victor", "h3", Role::Viewer, now)
        .await
        .unwrap();
    assert!(matches!(
        store.create_user("victor", "h4", Role::Admin, now).await,
        Err(StoreError::Conflict(_))
    ));
    let (u, hash) = store.user_credentials("victor").await.unwrap().unwrap();
    assert_eq!((u.role, hash.as_str()), (Role::Viewer, "h3"));
    assert!(store.user_credentials("nobody").await.unwrap().is_none());

    store
        .create_session("sess-hash", u.id, "csrf-1", now, now + TimeDelta::hours(1))
        .await
        .unwrap();
    let s = store
        .session("sess-hash", now)
        .await
        .unwrap()
        .expect("live session");
    assert_eq!(
        (s.user.username.as_str(), s.csrf_token.as_str()),
        ("victor", "csrf-1")
    );
    assert!(
        store
            .session("sess-hash", now + TimeDelta::hours(2))
            .await
            .unwrap()
            .is_none(),
        "expired"
    );
    assert_eq!(
        store
            .prune_sessions(now + TimeDelta::hours(2))
            .await
            .unwrap(),
        1
    );
    store
        .create_session("sess-2", u.id, "csrf-2", now, now + TimeDelta::hours(1))
        .await
        .unwrap();
    assert!(store.set_password("victor", "h5").await.unwrap());
    assert!(
        store.session("sess-2", now).await.unwrap().is_none(),
        "a new password ends sessions"
    );
    assert_eq!(
        store
            .list_users()
            .await
            .unwrap()
            .iter()
            .map(|u| u.username.as_str())
            .collect::<Vec<_>>(),
        ["root", "victor"]
    );

    for i in 0..3 {
        store
            .record_login_failure("victor", "10.0.0.1", now + TimeDelta::minutes(i))
            .await
            .unwrap();
    }
    store
        .record_login_failure("root", "10.0.0.1", now)
        .await
        .unwrap();
    let f = store
        .login_failures("victor", "10.0.0.1", now)
        .await
        .unwrap();
    assert_eq!((f.by_username, f.by_client), (3, 4));
    let f = store
        .login_failures("victor", "10.0.0.1", now + TimeDelta::minutes(2))
        .await
        .unwrap();
    assert_eq!(f.by_username, 1, "only failures inside the window");
    store.clear_login_failures("victor").await.unwrap();
    assert_eq!(
        store
            .login_failures("victor", "x", now)
            .await
            .unwrap()
            .by_username,
        0
    );
    assert!(store.delete_user("victor").await.unwrap());
    assert!(!store.delete_user("victor").await.unwrap());
}

async fn incident_marks_activity_and_settings(store: DynStore) {
    use deferwatch::store::web::Action;
    let src = with_source(&store).await;
    let now = ts("2026-11-20T12:00:00Z");
    let ev = build(
        src,
        &event(
            "deferred",
            "2026-11-20T10:00:00Z",
            "198.51.100.25",
            Some("a"),
        ),
        now,
    );
    let out = store
        .record_events(
            &[WriteBatch {
                events: vec![ev],
                rejects: vec![],
            }],
            &engine(),
            now,
        )
        .await
        .unwrap();
    let EventOutcome::Stored {
        incident_id: Some(id),
    } = out[0].events[0]
    else {
        panic!("an incident");
    };
    assert!(store.marks(&[id]).await.unwrap().is_empty());
    assert!(
        store
            .apply_action(id, &Action::Acknowledge, "alice", now)
            .await
            .unwrap()
    );
    let until = now + TimeDelta::hours(4);
    assert!(
        store
            .apply_action(id, &Action::Snooze(until), "bob", now)
            .await
            .unwrap()
    );
    assert!(
        store
            .apply_action(id, &Action::Note("paused .25".into()), "alice", now)
            .await
            .unwrap()
    );
    assert!(
        !store
            .apply_action(id + 1000, &Action::Acknowledge, "alice", now)
            .await
            .unwrap()
    );
    let m = store.marks(&[id, id + 1000]).await.unwrap();
    let m = &m[&id];
    assert_eq!((m.ack_by.as_deref(), m.ack_at), (Some("alice"), Some(now)));
    assert_eq!(
        (m.snoozed_by.as_deref(), m.snoozed_until),
        (Some("bob"), Some(until))
    );
    assert!(
        store
            .apply_action(id, &Action::Unsnooze, "bob", now)
            .await
            .unwrap()
    );
    assert_eq!(store.marks(&[id]).await.unwrap()[&id].snoozed_until, None);
    let log = store.activity(id, 10).await.unwrap();
    assert_eq!(
        log.iter()
            .map(|a| (a.action.as_str(), a.username.as_str()))
            .collect::<Vec<_>>(),
        [
            ("unsnoozed", "bob"),
            ("note", "alice"),
            ("snoozed", "bob"),
            ("acknowledged", "alice")
        ]
    );
    assert_eq!(log[1].detail, "paused .25");

    assert!(store.setting("runtime").await.unwrap().is_none());
    store
        .put_setting("runtime", "{\"a\":1}", "alice", now)
        .await
        .unwrap();
    store
        .put_setting("runtime", "{\"a\":2}", "bob", now)
        .await
        .unwrap();
    assert_eq!(
        store.setting("runtime").await.unwrap().as_deref(),
        Some("{\"a\":2}")
    );
}

async fn sending_ips_histogram_and_report_sends(store: DynStore) {
    use deferwatch::store::reports::NewReportSend;
    let src = with_source(&store).await;
    let now = ts("2026-11-20T12:00:00Z");
    let mut e1 = event(
        "deferred",
        "2026-11-20T10:00:00Z",
        "198.51.100.25",
        Some("a"),
    );
    e1["helo"] = "old.example".into();
    let mut e2 = event(
        "deferred",
        "2026-11-20T10:20:00Z",
        "198.51.100.25",
        Some("b"),
    );
    e2["helo"] = "new.example".into();
    let e3 = event(
        "delivered",
        "2026-11-20T11:10:00Z",
        "198.51.100.26",
        Some("c"),
    );
    let events = vec![
        build(src, &e1, now),
        build(src, &e2, now),
        build(src, &e3, now),
    ];
    let out = store
        .record_events(
            &[WriteBatch {
                events,
                rejects: vec![],
            }],
            &engine(),
            now,
        )
        .await
        .unwrap();
    let EventOutcome::Stored {
        incident_id: Some(id),
    } = out[0].events[0]
    else {
        panic!("an incident");
    };
    let ips = store.sending_ips().await.unwrap();
    assert_eq!(ips.len(), 2);
    assert_eq!(ips[0].ip, "198.51.100.25");
    assert_eq!(ips[0].first_seen, ts("2026-11-20T10:00:00Z"));
    assert_eq!(ips[0].last_seen, ts("2026-11-20T10:20:00Z"));
    assert_eq!(
        ips[0].helo.as_deref(),
        Some("new.example"),
        "the latest HELO"
    );

    let hist = store.incident_histogram(id, 3_600_000).await.unwrap();
    let deferred: Vec<(i64, i64)> = hist
        .iter()
        .filter(|h| h.kind == "deferred")
        .map(|h| (h.bin, h.count))
        .collect();
    assert_eq!(
        deferred,
        [(ts("2026-11-20T10:00:00Z").timestamp_millis(), 2)]
    );
    let key = all_incidents(&store).await[0].replies[0]
        .example_event
        .clone();
    let raw = store
        .event_raw(&key)
        .await
        .unwrap()
        .expect("the reply's example event");
    assert!(raw.contains("unusual rate"), "{raw}");
    assert!(store.event_raw("no-such-key").await.unwrap().is_none());

    let to = vec!["postmaster@gmail.com".to_string()];
    let sent = store
        .record_send(&NewReportSend {
            incident_id: id,
            at: now,
            username: "alice",
            recipients: &to,
            message_id: "<m1@example>",
            ok: true,
            relay_response: "250 2.0.0 queued",
        })
        .await
        .unwrap();
    assert!(sent.ok);
    let sends = store.list_sends(id).await.unwrap();
    assert_eq!(sends.len(), 1);
    assert_eq!(
        (sends[0].recipients.clone(), sends[0].message_id.as_str()),
        (to, "<m1@example>")
    );
}

/// An import-sized batch takes the bulk path (COPY on PostgreSQL, multi-row INSERTs on
/// SQLite): every field must come back byte for byte, including the characters COPY's
/// text format escapes, NULLs, and a reply spread over lines.
async fn large_batches_keep_every_field_exactly(store: DynStore) {
    let src = with_source(&store).await;
    let now = ts("2026-11-20T12:00:00Z");
    let n = 2_500;
    let events: Vec<NewEvent> = (0..n)
        .map(|i| {
            let mut v = event("deferred", "2026-11-20T10:00:00Z", "198.51.100.25", None);
            v["recipient"] = format!("user{i}@gmail.com").into();
            v["response"] = format!(
                "421-4.7.28 line one\\ with a backslash {i}\n421-4.7.28 tab\there\r\n421 4.7.28 last"
            )
            .into();
            if i % 2 == 0 {
                v["helo"] = serde_json::Value::Null;
                v["pool"] = "pool\\N".into();
            }
            build(src, &v, now)
        })
        .collect();
    let batch = WriteBatch {
        events: events.clone(),
        rejects: Vec::new(),
    };
    let out = store
        .record_events(std::slice::from_ref(&batch), &engine(), now)
        .await
        .unwrap();
    assert_eq!(out[0].events.len(), n);
    assert!(out[0].events.iter().all(|o| matches!(
        o,
        EventOutcome::Stored {
            incident_id: Some(_)
        }
    )));
    let mut stored = Vec::new();
    let mut after = None;
    loop {
        let page = store
            .list_events(&EventFilter {
                limit: 1000,
                after,
                ..Default::default()
            })
            .await
            .unwrap();
        let Some(last) = page.last() else { break };
        after = Some(last.id);
        stored.extend(page);
    }
    assert_eq!(stored.len(), n);
    for (s, e) in stored.iter().zip(&events) {
        assert_eq!(s.recipient, e.recipient);
        assert_eq!(s.response, e.response);
        assert_eq!(s.helo, e.helo);
        assert_eq!(s.pool, e.pool);
        assert_eq!(s.code, e.code);
        assert_eq!(s.enhanced, e.enhanced);
        assert_eq!(s.timestamp, e.time);
        assert_eq!(
            s.raw,
            serde_json::from_str::<serde_json::Value>(&e.raw).unwrap()
        );
        assert!(s.classification.is_some());
    }
    // The same batch again: all duplicates, nothing added.
    let again = store
        .record_events(std::slice::from_ref(&batch), &engine(), now)
        .await
        .unwrap();
    assert!(
        again[0]
            .events
            .iter()
            .all(|o| *o == EventOutcome::Duplicate)
    );
    let incidents = all_incidents(&store).await;
    assert_eq!(incidents.len(), 1);
    assert_eq!(incidents[0].counts.deferred, n as u64);
}
