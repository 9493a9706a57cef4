//! `deferwatch bench`: starts the real server on loopback with a fresh database and
//! drives it over HTTP, then prints throughput and latency percentiles.

use crate::app::AppState;
use crate::clock::{Clock, SystemClock};
use crate::config::Config;
use crate::smtp::Classifier;
use crate::store::{self, ConnectOptions, DynStore, WriteBatch};
use crate::web::auth::{API_TOKEN_PREFIX, SOURCE_TOKEN_PREFIX, hash_token, new_token};
use chrono::{DateTime, TimeDelta, Utc};
use clap::{Args, ValueEnum};
use hdrhistogram::Histogram;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Scenario {
    /// NDJSON batches from a few clients.
    Batch,
    /// One event per request from many concurrent clients.
    Single,
    /// GET /api/v1/incidents over a large seeded database.
    Read,
    /// The dashboard's incidents list and incident pages over the same database.
    Pages,
    All,
}

#[derive(Args, Debug)]
pub struct BenchArgs {
    #[arg(long, value_enum, default_value = "all")]
    pub scenario: Scenario,
    /// How long each ingest scenario runs.
    #[arg(long, default_value = "15s", value_parser = humantime::parse_duration)]
    pub duration: Duration,
    #[arg(long, default_value_t = 500)]
    pub batch_size: usize,
    #[arg(long, default_value_t = 4)]
    pub batch_clients: usize,
    #[arg(long, default_value_t = 64)]
    pub single_clients: usize,
    /// Events stored before the read scenario.
    #[arg(long, default_value_t = 1_000_000)]
    pub seed_events: usize,
    /// Distinct incidents (destinations) among the seeded events.
    #[arg(long, default_value_t = 5_000)]
    pub seed_incidents: usize,
    #[arg(long, default_value_t = 2_000)]
    pub read_requests: usize,
    #[arg(long, default_value_t = 4)]
    pub read_clients: usize,
}

/// A fresh database for one run: a temporary SQLite file, or a new database on the
/// PostgreSQL server of `url` that is dropped afterwards.
struct BenchDb {
    url: String,
    admin: Option<(String, String)>,
    _dir: Option<tempfile::TempDir>,
}

impl BenchDb {
    async fn create(server_url: Option<String>) -> Result<BenchDb, String> {
        match server_url {
            Some(url) if url.starts_with("postgres") => {
                let name = format!("deferwatch_bench_{}", std::process::id());
                let pool = sqlx::PgPool::connect(&url)
                    .await
                    .map_err(|e| format!("cannot reach {}: {e}", store::redact_url(&url)))?;
                sqlx::query(&format!("DROP DATABASE IF EXISTS {name}"))
                    .execute(&pool)
                    .await
                    .map_err(|e| e.to_string())?;
                sqlx::query(&format!("CREATE DATABASE {name}"))
                    .execute(&pool)
                    .await
                    .map_err(|e| e.to_string())?;
                pool.close().await;
                let base = url.rsplit_once('/').map(|(b, _)| b).unwrap_or(&url);
                Ok(BenchDb {
                    url: format!("{base}/{name}"),
                    admin: Some((url.clone(), name)),
                    _dir: None,
                })
            }
            _ => {
                let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
                Ok(BenchDb {
                    url: format!("sqlite://{}/bench.db", dir.path().display()),
                    admin: None,
                    _dir: Some(dir),
                })
            }
        }
    }

    async fn drop_db(self) {
        if let Some((url, name)) = self.admin
            && let Ok(pool) = sqlx::PgPool::connect(&url).await
        {
            let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                .execute(&pool)
                .await;
        }
    }
}

struct Server {
    base: String,
    source_token: String,
    api_token: String,
    store: DynStore,
    state: AppState,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    handle: Option<tokio::task::JoinHandle<()>>,
}

impl Server {
    /// Stops serving and the background sweep before the database goes away.
    async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(h) = self.handle.take() {
            let _ = h.await;
        }
    }
}

async fn start(url: &str) -> Result<Server, String> {
    let cfg = Config {
        database_url: url.to_string(),
        db_max_connections: 16,
        // The benchmark measures ingest and reads; DNS checks would also send its
        // synthetic IPs to real resolvers.
        checks: crate::config::ChecksConfig {
            enabled: false,
            ..Default::default()
        },
        ..Config::default()
    };
    let store = store::connect(
        url,
        &ConnectOptions {
            max_connections: cfg.db_max_connections,
            ..ConnectOptions::default()
        },
    )
    .await
    .map_err(|e| e.to_string())?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let source_token = new_token(SOURCE_TOKEN_PREFIX);
    store
        .create_source("bench", "json", &hash_token(&source_token), clock.now())
        .await
        .map_err(|e| e.to_string())?;
    let api_token = new_token(API_TOKEN_PREFIX);
    store
        .create_api_token("bench", &hash_token(&api_token), clock.now())
        .await
        .map_err(|e| e.to_string())?;
    let state = AppState::new(cfg, store.clone(), clock, Classifier::builtin())
        .map_err(|e| e.to_string())?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| e.to_string())?;
    let base = format!(
        "http://{}",
        listener.local_addr().map_err(|e| e.to_string())?
    );
    let s = state.clone();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let handle = tokio::spawn(async move {
        let _ = crate::app::serve(s, listener, async {
            let _ = stopped.await;
        })
        .await;
    });
    Ok(Server {
        base,
        source_token,
        api_token,
        store,
        state,
        stop: Some(stop),
        handle: Some(handle),
    })
}

const REPLIES: &[(&str, &str)] = &[
    (
        "aspmx.l.google.com",
        "421-4.7.28 Our system has detected an unusual rate of unsolicited mail originating from your IP address. To protect our users from spam, mail sent from your IP address has been temporarily rate limited. 4.7.28 https://support.google.com/mail/answer/188131 - gsmtp",
    ),
    (
        "example-com.mail.protection.outlook.com",
        "451 4.7.650 The mail server [198.51.100.25] has been temporarily rate limited due to IP reputation. For e-mail delivery information, see https://aka.ms/postmaster (S775) [Name=Protocol Filter Agent]",
    ),
    (
        "mta5.am0.yahoodns.net",
        "421 4.7.0 [TSS04] Messages from 198.51.100.25 temporarily deferred due to unexpected volume or user complaints - 4.16.55.1; see https://postmaster.yahooinc.com/error-codes",
    ),
    (
        "mx.example.net",
        "450 4.2.0 <user@example.net>: Recipient address rejected: Greylisted, see http://postgrey.schweikert.ch/help/example.net.html",
    ),
    (
        "mx.example.org",
        "421 4.3.2 Service not available, closing transmission channel",
    ),
];

/// A plausible event as NDJSON text; `n` makes it unique.
fn event_json(n: u64, at: DateTime<Utc>, destination: Option<usize>) -> String {
    let (mx, reply) = REPLIES[(n % REPLIES.len() as u64) as usize];
    let kind = match n % 20 {
        0..=11 => "deferred",
        12..=18 => "delivered",
        _ => "bounced",
    };
    let domain = match destination {
        Some(d) => format!("d{d}.example"),
        None => "example.com".to_string(),
    };
    let (mx, response) = if kind == "delivered" {
        (mx, "250 2.0.0 OK".to_string())
    } else if kind == "bounced" {
        (
            mx,
            "550 5.1.1 The email account that you tried to reach does not exist".to_string(),
        )
    } else {
        (mx, reply.to_string())
    };
    let mx = if destination.is_some() {
        format!("mx.{domain}")
    } else {
        mx.to_string()
    };
    serde_json::json!({
        "id": format!("bench-{n}"),
        "type": kind,
        "timestamp": crate::time_format::fmt(at),
        "recipient": format!("user{}@{domain}", n % 997),
        "sender": "news@sender.example",
        "source_ip": format!("198.51.100.{}", 10 + n % 8),
        "helo": "mail.sender.example",
        "mx_host": mx,
        "mx_ip": "203.0.113.10",
        "response": response,
        "attempt": n % 5,
        "message_id": format!("<{n}@sender.example>"),
    })
    .to_string()
}

fn pct(h: &Histogram<u64>, q: f64) -> f64 {
    h.value_at_quantile(q) as f64 / 1000.0
}

fn report(
    name: &str,
    unit: &str,
    count: u64,
    elapsed: Duration,
    h: &Histogram<u64>,
    requests: u64,
) {
    println!(
        "{name:<34} {:>10.0} {unit}/s   requests {requests:>7}   latency ms p50 {:>7.2}  p95 {:>7.2}  p99 {:>7.2}  max {:>7.2}",
        count as f64 / elapsed.as_secs_f64(),
        pct(h, 0.50),
        pct(h, 0.95),
        pct(h, 0.99),
        h.max() as f64 / 1000.0,
    );
}

async fn ingest_load(
    srv: &Server,
    clients: usize,
    per_request: usize,
    duration: Duration,
    counter: Arc<AtomicU64>,
) -> Result<(u64, Duration, Histogram<u64>, u64), String> {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(clients)
        .build()
        .map_err(|e| e.to_string())?;
    let started = Instant::now();
    let deadline = started + duration;
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let client = client.clone();
        let url = format!("{}/api/v1/events", srv.base);
        let token = srv.source_token.clone();
        let counter = counter.clone();
        tasks.push(tokio::spawn(async move {
            let mut h = Histogram::<u64>::new(3).expect("valid histogram");
            let (mut events, mut requests) = (0u64, 0u64);
            while Instant::now() < deadline {
                let first = counter.fetch_add(per_request as u64, Ordering::Relaxed);
                let now = Utc::now();
                let body: String = (first..first + per_request as u64)
                    .map(|n| {
                        event_json(n, now - TimeDelta::seconds((n % 3600) as i64), None) + "\n"
                    })
                    .collect();
                let t = Instant::now();
                let resp = client
                    .post(&url)
                    .bearer_auth(&token)
                    .header("content-type", "application/x-ndjson")
                    .body(body)
                    .send()
                    .await
                    .map_err(|e| e.to_string())?;
                let status = resp.status();
                let text = resp.text().await.map_err(|e| e.to_string())?;
                if !status.is_success() {
                    return Err(format!("ingest answered {status}: {text}"));
                }
                let _ = h.record(t.elapsed().as_micros() as u64);
                events += per_request as u64;
                requests += 1;
            }
            Ok::<_, String>((events, requests, h))
        }));
    }
    let mut total = Histogram::<u64>::new(3).expect("valid histogram");
    let (mut events, mut requests) = (0, 0);
    for t in tasks {
        let (e, r, h) = t.await.map_err(|e| e.to_string())??;
        events += e;
        requests += r;
        total.add(h).map_err(|e| e.to_string())?;
    }
    Ok((events, started.elapsed(), total, requests))
}

async fn seed(srv: &Server, events: usize, destinations: usize) -> Result<Duration, String> {
    let started = Instant::now();
    let now = Utc::now();
    let ctx = crate::ingest::json::Context {
        source_id: 1,
        classifier: &srv.state.classifier,
        now,
        max_future_skew: TimeDelta::hours(1),
    };
    // Destination by destination, in time order, as an MTA's log would replay: each
    // destination's incident spans 5 to 48 hours so that every phase is present.
    let destinations = destinations.max(1);
    let per = events.div_ceil(destinations);
    let chunk = 5_000;
    let mut batch = WriteBatch::default();
    let mut n = 10_000_000u64;
    for d in 0..destinations {
        let span = 172_800 * ((d % 10) as i64 + 1) / 10;
        for i in 0..per {
            let at = now - TimeDelta::seconds(span - span * i as i64 / per as i64);
            let raw = event_json(n, at, Some(d));
            batch
                .events
                .push(crate::ingest::json::parse_event(&raw, &ctx).map_err(|r| r.reason)?);
            n += 1;
            if batch.events.len() >= chunk {
                srv.store
                    .record_events(&[std::mem::take(&mut batch)], &srv.state.engine.get(), now)
                    .await
                    .map_err(|e| e.to_string())?;
            }
        }
    }
    if !batch.events.is_empty() {
        srv.store
            .record_events(&[batch], &srv.state.engine.get(), now)
            .await
            .map_err(|e| e.to_string())?;
    }
    Ok(started.elapsed())
}

async fn read_load(srv: &Server, args: &BenchArgs) -> Result<(Duration, Histogram<u64>), String> {
    let client = reqwest::Client::new();
    let started = Instant::now();
    let per_client = args.read_requests.div_ceil(args.read_clients.max(1));
    let mut tasks = Vec::new();
    for c in 0..args.read_clients.max(1) {
        let client = client.clone();
        let base = srv.base.clone();
        let token = srv.api_token.clone();
        tasks.push(tokio::spawn(async move {
            let mut h = Histogram::<u64>::new(3).expect("valid histogram");
            for i in 0..per_client {
                // The first page as the dashboard asks for it, and filtered pages.
                let url = match (c + i) % 3 {
                    0 => format!("{base}/api/v1/incidents"),
                    1 => format!("{base}/api/v1/incidents?status=open&limit=100"),
                    _ => format!("{base}/api/v1/incidents?phase=escalate&offset=50"),
                };
                let t = Instant::now();
                let resp = client
                    .get(&url)
                    .bearer_auth(&token)
                    .send()
                    .await
                    .map_err(|e| e.to_string())?;
                let status = resp.status();
                let _ = resp.bytes().await.map_err(|e| e.to_string())?;
                if !status.is_success() {
                    return Err(format!("{url} answered {status}"));
                }
                let _ = h.record(t.elapsed().as_micros() as u64);
            }
            Ok::<_, String>(h)
        }));
    }
    let mut total = Histogram::<u64>::new(3).expect("valid histogram");
    for t in tasks {
        total
            .add(t.await.map_err(|e| e.to_string())??)
            .map_err(|e| e.to_string())?;
    }
    Ok((started.elapsed(), total))
}

/// A logged-in admin for the page scenario, made directly in the store.
async fn bench_session(srv: &Server) -> Result<String, String> {
    let now = Utc::now();
    let hash = crate::web::session::hash_password("bench password").map_err(|e| e.to_string())?;
    let user = srv
        .store
        .create_user("bench", &hash, crate::store::web::Role::Admin, now)
        .await
        .map_err(|e| e.to_string())?;
    let token = new_token("dwu_");
    srv.store
        .create_session(
            &hash_token(&token),
            user.id,
            "bench-csrf",
            now,
            now + TimeDelta::hours(1),
        )
        .await
        .map_err(|e| e.to_string())?;
    Ok(format!("{}={token}", crate::web::session::SESSION_COOKIE))
}

/// GETs `paths` round-robin as a logged-in browser would; returns the latencies and
/// the largest body seen.
async fn page_load(
    srv: &Server,
    args: &BenchArgs,
    cookie: &str,
    paths: &[String],
) -> Result<(Duration, Histogram<u64>, usize), String> {
    let client = reqwest::Client::new();
    let started = Instant::now();
    let per_client = args.read_requests.div_ceil(args.read_clients.max(1));
    let paths = Arc::new(paths.to_vec());
    let mut tasks = Vec::new();
    for c in 0..args.read_clients.max(1) {
        let (client, base, cookie, paths) = (
            client.clone(),
            srv.base.clone(),
            cookie.to_string(),
            paths.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut h = Histogram::<u64>::new(3).expect("valid histogram");
            let mut max_bytes = 0usize;
            for i in 0..per_client {
                let url = format!("{base}{}", paths[(c + i * 7) % paths.len()]);
                let t = Instant::now();
                let resp = client
                    .get(&url)
                    .header(reqwest::header::COOKIE, &cookie)
                    .send()
                    .await
                    .map_err(|e| e.to_string())?;
                let status = resp.status();
                let body = resp.bytes().await.map_err(|e| e.to_string())?;
                if !status.is_success() {
                    return Err(format!("{url} answered {status}"));
                }
                let _ = h.record(t.elapsed().as_micros() as u64);
                max_bytes = max_bytes.max(body.len());
            }
            Ok::<_, String>((h, max_bytes))
        }));
    }
    let mut total = Histogram::<u64>::new(3).expect("valid histogram");
    let mut max_bytes = 0;
    for t in tasks {
        let (h, m) = t.await.map_err(|e| e.to_string())??;
        total.add(h).map_err(|e| e.to_string())?;
        max_bytes = max_bytes.max(m);
    }
    Ok((started.elapsed(), total, max_bytes))
}

pub async fn run(args: &BenchArgs, server_url: Option<String>) -> Result<(), String> {
    let db = BenchDb::create(server_url).await?;
    let backend = if db.admin.is_some() {
        "postgres"
    } else {
        "sqlite"
    };
    println!(
        "deferwatch bench: backend {backend}, {} cores, server and load generator in one process on 127.0.0.1",
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    let result = async {
        let srv = start(&db.url).await?;
        let counter = Arc::new(AtomicU64::new(0));
        if matches!(args.scenario, Scenario::Batch | Scenario::All) {
            let (events, elapsed, h, requests) =
                ingest_load(&srv, args.batch_clients, args.batch_size, args.duration, counter.clone()).await?;
            report(
                &format!("ingest ndjson x{} ({} clients)", args.batch_size, args.batch_clients),
                "events",
                events,
                elapsed,
                &h,
                requests,
            );
        }
        if matches!(args.scenario, Scenario::Single | Scenario::All) {
            let (events, elapsed, h, requests) =
                ingest_load(&srv, args.single_clients, 1, args.duration, counter.clone()).await?;
            report(
                &format!("ingest single event ({} clients)", args.single_clients),
                "req",
                events,
                elapsed,
                &h,
                requests,
            );
        }
        if matches!(args.scenario, Scenario::Read | Scenario::Pages | Scenario::All) {
            let took = seed(&srv, args.seed_events, args.seed_incidents).await?;
            let incidents = srv
                .store
                .list_incidents(&crate::store::IncidentFilter { limit: 1_000_000, ..Default::default() })
                .await
                .map_err(|e| e.to_string())?
                .len();
            println!(
                "seeded {} events into {incidents} incidents in {:.1}s ({:.0} events/s, store only)",
                args.seed_events,
                took.as_secs_f64(),
                args.seed_events as f64 / took.as_secs_f64()
            );
            if args.scenario != Scenario::Pages {
                let (elapsed, h) = read_load(&srv, args).await?;
                report(
                    &format!("GET /api/v1/incidents ({} clients)", args.read_clients),
                    "req",
                    h.len(),
                    elapsed,
                    &h,
                    h.len(),
                );
            }
        }
        if matches!(args.scenario, Scenario::Pages | Scenario::All) {
            let cookie = bench_session(&srv).await?;
            let ids: Vec<i64> = srv
                .store
                .list_incidents(&crate::store::IncidentFilter { limit: 1_000_000, ..Default::default() })
                .await
                .map_err(|e| e.to_string())?
                .iter()
                .map(|i| i.id)
                .collect();
            for (label, paths) in [
                ("GET / (incidents list)", vec!["/".to_string(), "/?status=open".into(), "/?phase=escalate".into()]),
                (
                    "GET /incidents/{id}",
                    ids.iter().step_by((ids.len() / 200).max(1)).map(|id| format!("/incidents/{id}")).collect(),
                ),
            ] {
                let (elapsed, h, max_bytes) = page_load(&srv, args, &cookie, &paths).await?;
                report(&format!("{label} ({} clients)", args.read_clients), "req", h.len(), elapsed, &h, h.len());
                println!("  largest page: {:.1} KB before compression", max_bytes as f64 / 1024.0);
            }
        }
        Ok::<_, String>(srv)
    }
    .await;
    let result = match result {
        Ok(srv) => {
            srv.shutdown().await;
            Ok(())
        }
        Err(e) => Err(e),
    };
    db.drop_db().await;
    result
}
