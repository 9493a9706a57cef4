//! Shared test support: fresh databases on both backends, and the real server on a
//! random loopback port.
#![allow(dead_code)]

use chrono::{DateTime, Utc};
use deferwatch::app::AppState;
use deferwatch::clock::{Clock, ManualClock};
use deferwatch::config::Config;
use deferwatch::smtp::Classifier;
use deferwatch::store::{self, ConnectOptions, DynStore};
use deferwatch::web::auth::{hash_token, new_token};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// The PostgreSQL server tests create their databases on.
pub fn pg_admin_url() -> String {
    std::env::var("DEFERWATCH_TEST_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// A database that exists for one test.
pub struct TestDb {
    pub url: String,
    pg_name: Option<String>,
    _dir: Option<tempfile::TempDir>,
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

impl TestDb {
    pub async fn new(backend: Backend) -> TestDb {
        match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().expect("temp dir");
                TestDb {
                    url: format!("sqlite://{}/test.db", dir.path().display()),
                    pg_name: None,
                    _dir: Some(dir),
                }
            }
            Backend::Postgres => {
                let admin = pg_admin_url();
                // Never skipped silently: without PostgreSQL the suite fails, naming
                // what it tried to reach.
                let pool = sqlx::PgPool::connect(&admin).await.unwrap_or_else(|e| {
                    panic!(
                        "PostgreSQL tests need a server at {admin} (set DEFERWATCH_TEST_PG_URL): {e}"
                    )
                });
                let name = format!(
                    "dw_test_{}_{}_{}",
                    std::process::id(),
                    COUNTER.fetch_add(1, Ordering::Relaxed),
                    rand::random::<u32>()
                );
                sqlx::query(&format!("CREATE DATABASE {name}"))
                    .execute(&pool)
                    .await
                    .expect("create test database");
                pool.close().await;
                let base = admin.rsplit_once('/').map(|(b, _)| b).unwrap_or(&admin);
                TestDb {
                    url: format!("{base}/{name}"),
                    pg_name: Some(name),
                    _dir: None,
                }
            }
        }
    }

    pub async fn store(&self) -> DynStore {
        store::connect(&self.url, &ConnectOptions::default())
            .await
            .expect("connect to test database")
    }

    pub async fn drop_db(self) {
        if let Some(name) = &self.pg_name
            && let Ok(pool) = sqlx::PgPool::connect(&pg_admin_url()).await
        {
            let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                .execute(&pool)
                .await;
        }
    }
}

pub fn ts(s: &str) -> DateTime<Utc> {
    s.parse().expect("test timestamp")
}

pub struct TestApp {
    pub base: String,
    pub client: reqwest::Client,
    pub source_token: String,
    pub api_token: String,
    pub state: AppState,
    pub clock: Arc<ManualClock>,
    pub db: TestDb,
}

impl TestApp {
    pub async fn spawn(backend: Backend) -> TestApp {
        Self::spawn_with(backend, |_| {}).await
    }

    pub async fn spawn_with(backend: Backend, tweak: impl FnOnce(&mut Config)) -> TestApp {
        let db = TestDb::new(backend).await;
        let store = db.store().await;
        Self::spawn_on(db, store, tweak).await
    }

    pub async fn spawn_on(db: TestDb, store: DynStore, tweak: impl FnOnce(&mut Config)) -> TestApp {
        let clock = Arc::new(ManualClock::new(ts("2026-11-20T12:00:00Z")));
        let mut cfg = Config {
            database_url: db.url.clone(),
            // Tests that want checks point them at a loopback DNS server; no test
            // ever queries the machine's resolver.
            checks: deferwatch::config::ChecksConfig {
                enabled: false,
                ..Default::default()
            },
            ..Config::default()
        };
        tweak(&mut cfg);
        let now = clock.now();
        let source_token = new_token("dws_");
        store
            .create_source("mta1", "json", &hash_token(&source_token), now)
            .await
            .expect("create source");
        let api_token = new_token("dwa_");
        store
            .create_api_token("reader", &hash_token(&api_token), now)
            .await
            .expect("create api token");
        let state =
            AppState::new(cfg, store, clock.clone(), Classifier::builtin()).expect("app state");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind loopback");
        let base = format!("http://{}", listener.local_addr().unwrap());
        let s = state.clone();
        tokio::spawn(async move {
            deferwatch::app::serve(s, listener, std::future::pending())
                .await
                .unwrap();
        });
        TestApp {
            base,
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap(),
            source_token,
            api_token,
            state,
            clock,
            db,
        }
    }

    pub async fn post_events(&self, body: &str) -> (u16, serde_json::Value) {
        let resp = self
            .client
            .post(format!("{}/api/v1/events", self.base))
            .bearer_auth(&self.source_token)
            .body(body.to_string())
            .send()
            .await
            .expect("post events");
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(serde_json::Value::Null))
    }

    /// A dashboard user with the password `correct horse battery`.
    pub async fn add_user(&self, name: &str, role: deferwatch::store::web::Role) {
        let hash = deferwatch::web::session::hash_password("correct horse battery").unwrap();
        self.state
            .store
            .create_user(name, &hash, role, self.clock.now())
            .await
            .unwrap();
    }

    /// An incident towards Google through the real ingest endpoint: 198.51.100.25
    /// deferred hourly from 04:00 to 11:00 on 2026-11-20 while 198.51.100.26 delivers.
    pub async fn seed_google_incident(&self) -> i64 {
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
        let (status, reply) = self
            .post_events(&serde_json::to_string(&events).unwrap())
            .await;
        assert_eq!(status, 200, "{reply}");
        reply["incident_ids"][0].as_i64().expect("an incident")
    }

    pub async fn get(&self, path: &str) -> (u16, serde_json::Value) {
        let resp = self
            .client
            .get(format!("{}{path}", self.base))
            .bearer_auth(&self.api_token)
            .send()
            .await
            .expect("get");
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(serde_json::Value::Null))
    }
}

/// One event as the native JSON format, with the fields a test usually varies.
pub fn event(kind: &str, at: &str, ip: &str, id: Option<&str>) -> serde_json::Value {
    let response = match kind {
        "deferred" => {
            "host aspmx.l.google.com[142.250.27.27] said: 421-4.7.28 Our system has detected an unusual rate of unsolicited mail originating from your IP address. (in reply to RCPT TO command)"
        }
        "delivered" => "250 2.0.0 OK 1700000000 gsmtp",
        _ => "550-5.1.1 The email account that you tried to reach does not exist.",
    };
    let mut v = serde_json::json!({
        "type": kind,
        "timestamp": at,
        "recipient": "someone@gmail.com",
        "sender": "news@sender.example",
        "source_ip": ip,
        "helo": "mail.sender.example",
        "mx_host": "aspmx.l.google.com",
        "mx_ip": "142.250.27.27",
        "response": response,
    });
    if let Some(id) = id {
        v["id"] = id.into();
    }
    v
}

pub fn ndjson(events: &[serde_json::Value]) -> String {
    events.iter().map(|e| e.to_string() + "\n").collect()
}
