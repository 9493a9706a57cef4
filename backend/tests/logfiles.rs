//! `deferwatch import` and `deferwatch tail` as a user runs them: the real binary on log
//! files, writing to the database or posting to a running server.

mod support;

use chrono::{DateTime, SecondsFormat, TimeDelta, Utc};
use deferwatch::store::{DynStore, EventFilter, IncidentFilter};
use std::io::Write;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;
use support::{Backend, TestApp, TestDb};

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_deferwatch"));
    c.env_remove("DATABASE_URL")
        .env_remove("DEFERWATCH_CONFIG")
        .env_remove("DEFERWATCH_SERVER")
        .env_remove("DEFERWATCH_SOURCE_TOKEN");
    c
}

fn run(db: &str, args: &[&str]) -> Output {
    bin()
        .arg("--database-url")
        .arg(db)
        .args(args)
        .output()
        .expect("run deferwatch")
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "exit {:?}\nstdout: {}\nstderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn rfc(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// A Postfix deferral to Gmail as `postfix/smtp` writes it, with an RFC 3339 time (the
/// year is then part of the line).
fn deferred(t: DateTime<Utc>, n: usize) -> String {
    format!(
        "{} mta1 postfix/smtp[{}]: {:X}: to=<user{n}@gmail.com>, relay=gmail-smtp-in.l.google.com[142.250.27.26]:25, delay=2, delays=0.1/0/1/1, dsn=4.7.28, status=deferred (host gmail-smtp-in.l.google.com[142.250.27.26] said: 421-4.7.28 Our system has detected an unusual rate of 421-4.7.28 unsolicited mail originating from your IP address. (in reply to end of DATA command))\n",
        rfc(t),
        3000 + n,
        0xA000_0000u64 + n as u64
    )
}

fn append(path: &Path, text: &str) {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    f.write_all(text.as_bytes()).unwrap();
    f.sync_all().unwrap();
}

async fn deferred_events(store: &DynStore) -> Vec<deferwatch::event::StoredEvent> {
    store
        .list_events(&EventFilter {
            kind: Some(deferwatch::event::EventType::Deferred),
            limit: 1000,
            ..EventFilter::default()
        })
        .await
        .unwrap()
}

/// Waits until `n` deferrals are stored (bounded), then returns them.
async fn wait_for(store: &DynStore, n: usize) -> Vec<deferwatch::event::StoredEvent> {
    for _ in 0..150 {
        let evs = deferred_events(store).await;
        if evs.len() >= n {
            return evs;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let evs = deferred_events(store).await;
    panic!("waited for {n} deferrals, have {}", evs.len());
}

struct Tail(Child);

impl Drop for Tail {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn tail(db: &str, extra: &[&str], state: &Path, log: &Path) -> Tail {
    let child = bin()
        .arg("--database-url")
        .arg(db)
        .args(["tail", "--format", "postfix", "--flush-interval", "200ms"])
        .args(extra)
        .arg("--state")
        .arg(state)
        .arg(log)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start tail");
    Tail(child)
}

fn source_add(db: &str, name: &str, format: &str) -> String {
    let out = ok(&run(db, &["source", "add", name, "--format", format]));
    out.split_whitespace()
        .find(|w| w.starts_with("dws_"))
        .expect("token printed")
        .to_string()
}

/// Follows a log across rename rotation, copytruncate and a hard kill, and stores every
/// line exactly once.
async fn tail_survives_rotation_and_restart(backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = db.store().await;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("maillog");
    let state = dir.path().join("tail.json");
    source_add(&db.url, "edge", "postfix");
    let t0 = Utc::now() - TimeDelta::hours(3);
    let at = |n: usize| t0 + TimeDelta::seconds(n as i64 * 30);
    let mut n = 0;
    let mut write = |path: &Path, count: usize| {
        for _ in 0..count {
            append(path, &deferred(at(n), n));
            n += 1;
        }
    };
    write(&log, 3);
    let mut child = tail(&db.url, &["--source", "edge", "--from-start"], &state, &log);
    wait_for(&store, 3).await;

    // logrotate's default: rename, the writer keeps its handle a moment, a new file.
    write(&log, 2);
    let rotated = dir.path().join("maillog.1");
    std::fs::rename(&log, &rotated).unwrap();
    write(&rotated, 2);
    tokio::time::sleep(Duration::from_millis(300)).await;
    write(&log, 2);
    wait_for(&store, 9).await;

    // copytruncate: the content copied away, the file emptied in place.
    std::fs::copy(&log, dir.path().join("maillog.2")).unwrap();
    std::fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(&log)
        .unwrap();
    write(&log, 1);
    wait_for(&store, 10).await;

    // A hard kill, lines written while nothing reads, then a restart from the saved
    // position (no --from-start: the position file decides).
    child.0.kill().unwrap();
    child.0.wait().unwrap();
    write(&log, 2);
    child = tail(&db.url, &["--source", "edge"], &state, &log);
    let evs = wait_for(&store, 12).await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    let evs_later = deferred_events(&store).await;
    assert_eq!(evs_later.len(), evs.len(), "nothing stored twice");
    let mut rcpts: Vec<&str> = evs.iter().map(|e| e.recipient.as_str()).collect();
    rcpts.sort_unstable();
    rcpts.dedup();
    assert_eq!(rcpts.len(), 12, "every line once: {rcpts:?}");
    let e = &evs[0];
    assert_eq!((e.code, e.enhanced.as_deref()), (Some(421), Some("4.7.28")));
    assert_eq!(e.destination, "google");
    let incidents = store
        .list_incidents(&IncidentFilter {
            limit: 10,
            ..IncidentFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(incidents.len(), 1, "{incidents:?}");
    assert_eq!(incidents[0].counts.deferred, 12);
    drop(child);
    db.drop_db().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn tail_survives_rotation_and_restart_sqlite() {
    tail_survives_rotation_and_restart(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn tail_survives_rotation_and_restart_postgres() {
    tail_survives_rotation_and_restart(Backend::Postgres).await;
}

fn gzip(path: &Path, text: &str) {
    let f = std::fs::File::create(path).unwrap();
    let mut gz = flate2::write::GzEncoder::new(f, flate2::Compression::default());
    gz.write_all(text.as_bytes()).unwrap();
    gz.finish().unwrap();
}

/// Lines spread over eight hours: Gmail defers for seven, then delivers. Posted live in
/// order or imported afterwards, the incidents come out the same.
fn history(t0: DateTime<Utc>) -> Vec<String> {
    let mut lines = Vec::new();
    for n in 0..28 {
        lines.push(deferred(t0 + TimeDelta::minutes(15 * n as i64), n));
    }
    let t = t0 + TimeDelta::hours(8);
    lines.push(format!(
        "{} mta1 postfix/smtp[4001]: B0000001: to=<user1@gmail.com>, relay=gmail-smtp-in.l.google.com[142.250.27.26]:25, delay=1, delays=0.1/0/0.5/0.4, dsn=2.0.0, status=sent (250 2.0.0 OK  1700000000 a1-20020a0000000000000si1234567qtb.1 - gsmtp)\n",
        rfc(t)
    ));
    lines
}

fn summary(incidents: &[deferwatch::incidents::Incident]) -> Vec<String> {
    let mut v: Vec<String> = incidents
        .iter()
        .map(|i| {
            format!(
                "{} {} {:?} first={} last={} deferred={} delivered={} history={:?}",
                i.destination,
                i.status.as_str(),
                i.phase,
                rfc(i.first_seen),
                rfc(i.last_seen),
                i.counts.deferred,
                i.counts.delivered,
                i.phase_history
                    .iter()
                    .map(|h| (h.to.as_str().to_string(), rfc(h.at)))
                    .collect::<Vec<_>>()
            )
        })
        .collect();
    v.sort();
    v
}

#[tokio::test(flavor = "multi_thread")]
async fn import_backfills_like_live_ingestion_and_never_twice() {
    let t0 = Utc::now() - TimeDelta::hours(10);
    let lines = history(t0);
    let dir = tempfile::tempdir().unwrap();
    // Oldest first: a rotated, compressed file (no .gz name: content decides), then the
    // live file.
    let old = dir.path().join("maillog.1");
    gzip(&old, &lines[..20].concat());
    let cur = dir.path().join("maillog");
    std::fs::write(&cur, lines[20..].concat()).unwrap();

    let db = TestDb::new(Backend::Sqlite).await;
    source_add(&db.url, "edge", "postfix");
    let files = [old.to_str().unwrap(), cur.to_str().unwrap()];
    let mut args = vec![
        "import",
        "--source",
        "edge",
        "--format",
        "postfix",
        "--dry-run",
    ];
    args.extend(files);
    let out = ok(&run(&db.url, &args));
    assert!(out.contains("29 lines"), "{out}");
    assert!(out.contains("28 deferred, 1 delivered"), "{out}");
    assert!(out.contains("nothing stored"), "{out}");
    let store = db.store().await;
    assert!(
        deferred_events(&store).await.is_empty(),
        "a dry run stores nothing"
    );

    args.retain(|a| *a != "--dry-run");
    let out = ok(&run(&db.url, &args));
    assert!(
        out.contains("29 events stored, 0 already stored, 1 incidents"),
        "{out}"
    );
    let out = ok(&run(&db.url, &args));
    assert!(out.contains("0 events stored, 29 already stored"), "{out}");
    let imported = store
        .list_incidents(&IncidentFilter {
            limit: 10,
            ..IncidentFilter::default()
        })
        .await
        .unwrap();

    // The same lines live, each posted when it was written (the server's clock moved
    // along), then the present.
    let app = TestApp::spawn(Backend::Sqlite).await;
    let token = deferwatch::web::auth::new_token("dws_");
    app.state
        .store
        .create_source(
            "edge",
            "postfix",
            &deferwatch::web::auth::hash_token(&token),
            t0,
        )
        .await
        .unwrap();
    for (n, line) in lines.iter().enumerate() {
        let at = if n < 28 {
            t0 + TimeDelta::minutes(15 * n as i64)
        } else {
            t0 + TimeDelta::hours(8)
        };
        app.clock.set(at + TimeDelta::seconds(1));
        let r = app
            .client
            .post(format!("{}/api/v1/ingest/postfix", app.base))
            .bearer_auth(&token)
            .body(line.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 200);
    }
    app.clock.set(Utc::now());
    app.state
        .store
        .sweep(&app.state.engine.get(), Utc::now())
        .await
        .unwrap();
    let live = app
        .state
        .store
        .list_incidents(&IncidentFilter {
            limit: 10,
            ..IncidentFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(summary(&imported), summary(&live));
    assert!(
        summary(&imported)[0].contains("recovered"),
        "a delivery after the deferrals, then two quiet hours: {:?}",
        summary(&imported)
    );
}

#[tokio::test]
async fn import_and_tail_refuse_what_they_cannot_do() {
    let db = TestDb::new(Backend::Sqlite).await;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("maillog");
    std::fs::write(&log, deferred(Utc::now(), 1)).unwrap();
    let log_s = log.to_str().unwrap();
    source_add(&db.url, "edge", "postfix");
    let fails = |args: &[&str], words: &str| {
        let out = run(&db.url, args);
        assert!(!out.status.success(), "{args:?} should fail");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(words),
            "{args:?}: {err:?} should say {words:?}"
        );
    };
    fails(
        &["import", "--source", "nope", "--format", "postfix", log_s],
        "no active source named \"nope\"",
    );
    fails(
        &["import", "--source", "edge", "--format", "exim", log_s],
        "was created for format postfix",
    );
    fails(
        &["import", "--source", "edge", "--format", "sendgrid", log_s],
        "log files can be read for postfix, exim, powermta",
    );
    fails(
        &[
            "import",
            "--source",
            "edge",
            "--format",
            "postfix",
            "/nonexistent/maillog",
        ],
        "/nonexistent/maillog",
    );
    fails(
        &[
            "tail",
            "--source",
            "edge",
            "--format",
            "postfix",
            "--server",
            "http://127.0.0.1:9",
            log_s,
        ],
        "--server needs --token",
    );
    let corrupt = dir.path().join("bad-state.json");
    std::fs::write(&corrupt, "{not json").unwrap();
    fails(
        &[
            "tail",
            "--source",
            "edge",
            "--format",
            "postfix",
            "--state",
            corrupt.to_str().unwrap(),
            log_s,
        ],
        "bad-state.json",
    );
    db.drop_db().await;
}

/// `--server`: the raw lines go to the server, which parses them; a PowerMTA tail
/// resumed in the middle of its file sends the header line again so the records can be
/// read by name.
#[tokio::test(flavor = "multi_thread")]
async fn tail_posts_to_a_server_and_resumes_powermta_with_its_header() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    app.clock.set(Utc::now());
    let token = deferwatch::web::auth::new_token("dws_");
    app.state
        .store
        .create_source(
            "pmta",
            "powermta",
            &deferwatch::web::auth::hash_token(&token),
            Utc::now(),
        )
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let acct = dir.path().join("acct.csv");
    let state = dir.path().join("pos.json");
    let t = |m: i64| {
        (Utc::now() - TimeDelta::minutes(m))
            .format("%Y-%m-%d %H:%M:%S+0000")
            .to_string()
    };
    let record = |m: i64, n: usize| {
        format!(
            "t,{},{},bounce@sender.example,user{n}@yahoo.com,smtp;421 4.7.0 [TSS04] Messages from 192.0.2.7 temporarily deferred,4.7.0 (other or undefined security status),192.0.2.7,67.195.204.72,smtp,vmta-a\r\n",
            t(m),
            t(m + 1)
        )
    };
    append(
        &acct,
        "type,timeLogged,timeQueued,orig,rcpt,dsnDiag,dsnStatus,dlvSourceIp,dlvDestinationIp,dlvType,vmta\r\n",
    );
    append(&acct, &record(30, 1));
    let spawn = || {
        Tail(
            bin()
                .args([
                    "tail",
                    "--source",
                    "pmta",
                    "--format",
                    "powermta",
                    "--flush-interval",
                    "200ms",
                ])
                .args(["--server", &app.base, "--token", &token, "--from-start"])
                .arg("--state")
                .arg(&state)
                .arg(&acct)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        )
    };
    let store = app.state.store.clone();
    let child = spawn();
    let evs = wait_for(&store, 1).await;
    assert_eq!(evs[0].source_ip.as_deref(), Some("192.0.2.7"));
    drop(child);
    // The server forgets the columns it learnt (a restart); the tail resumes mid-file.
    app.state.line_parsers.clear();
    append(&acct, &record(20, 2));
    let _child = spawn();
    let evs = wait_for(&store, 2).await;
    let two = evs
        .iter()
        .find(|e| e.recipient == "user2@yahoo.com")
        .expect("second record");
    assert_eq!(two.code, Some(421));
    assert_eq!(two.enhanced.as_deref(), Some("4.7.0"));
    assert_eq!(two.pool.as_deref(), Some("vmta-a"));
    let rejected = store.list_dead_letters(None, 10).await.unwrap();
    assert!(rejected.is_empty(), "{rejected:?}");
}
