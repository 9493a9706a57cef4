//! The escalation report through a real SMTP server: aiosmtpd on loopback
//! (`tests/smtp_sink.py`, installed by `.ci/run`) receives what the API and the CLI
//! send, and the assertions read the received message as Python's MIME parser sees it.
//! Both storage backends.

mod support;

use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use support::{Backend, TestApp};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// Issue 7's labels, each at the start of a line of the text body.
const LABELS: [&str; 10] = [
    "Source IP",
    "HELO/EHLO",
    "Destination domain",
    "Remote MX",
    "First seen",
    "Last seen",
    "Response",
    "Scope",
    "Retry pattern",
    "Sender checks",
];
const FROM: &str = "Deferwatch Reports <reports@sender.example>";
const REFUSED: &str = "refuse@gmail.com";
/// The reply text the test relay gives for `REFUSED`.
const REFUSAL: &str =
    "550 5.7.1 <refuse@gmail.com>: Recipient address rejected: report refused by test relay";

struct Sink {
    child: Child,
    dir: tempfile::TempDir,
    port: u16,
}

impl Sink {
    async fn start() -> Sink {
        let dir = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/smtp_sink.py");
        let mut child = Command::new("python3")
            .arg(&script)
            .arg(port.to_string())
            .arg(dir.path())
            .args(["--refuse", REFUSED])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("python3 runs tests/smtp_sink.py (pip install aiosmtpd)");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let first = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
            .await
            .expect("the SMTP sink starts within 30 s");
        assert_eq!(
            first.unwrap().as_deref(),
            Some("ready"),
            "the SMTP sink did not start: is aiosmtpd installed (python3 -m pip install aiosmtpd)?"
        );
        Sink { child, dir, port }
    }

    fn url(&self) -> String {
        format!("smtp://127.0.0.1:{}", self.port)
    }

    fn path(&self, n: usize, ext: &str) -> PathBuf {
        self.dir.path().join(format!("{n}.{ext}"))
    }

    /// Message `n` (1-based) as the sink parsed it, once it has arrived.
    async fn message(&self, n: usize) -> Value {
        let path = self.path(n, "json");
        for _ in 0..200 {
            if let Ok(text) = tokio::fs::read_to_string(&path).await {
                return serde_json::from_str(&text).unwrap();
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("message {n} never reached the SMTP sink");
    }

    async fn received(&self) -> usize {
        let mut n = 0;
        let mut rd = tokio::fs::read_dir(self.dir.path()).await.unwrap();
        while let Some(e) = rd.next_entry().await.unwrap() {
            if e.file_name().to_string_lossy().ends_with(".eml") {
                n += 1;
            }
        }
        n
    }

    async fn stop(mut self) {
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
    }
}

async fn seed_incident(app: &TestApp) -> i64 {
    app.seed_google_incident().await
}

fn assert_labelled(text: &str) {
    for label in LABELS {
        assert!(
            text.lines().any(|l| l.starts_with(&format!("{label}:"))),
            "no {label:?} line in\n{text}"
        );
    }
    // The fields' exact values as the seeded events carried them.
    for needle in [
        "Source IP:      198.51.100.25\n",
        "HELO/EHLO:      mail.sender.example\n",
        "Destination domain: gmail.com (8 deferred)\n",
        "Remote MX:          aspmx.l.google.com (IP 142.250.27.27): 8 deferred, 8\n",
        "First seen: 2026-11-20 04:00:00 UTC (first deferral)\n",
        "Last seen:  2026-11-20 11:00:00 UTC (latest deferral)\n",
        "Scope: One source IP, one recipient domain, after RCPT TO\n",
        "Retry pattern: 8 deferrals over 7h, one every 1h on average;",
        "Sender checks: none recorded for this incident yet\n",
        // The reply verbatim, Postfix's wrapping included, never re-wrapped.
        "\nhost aspmx.l.google.com[142.250.27.27] said: 421-4.7.28 Our system has detected an unusual rate of unsolicited mail originating from your IP address. (in reply to RCPT TO command)\n",
        "C: RCPT TO:<someone@gmail.com>\nS: host aspmx.l.google.com[142.250.27.27] said: 421-4.7.28",
    ] {
        assert!(text.contains(needle), "missing {needle:?} in\n{text}");
    }
}

async fn api_get(app: &TestApp, path: &str) -> reqwest::Response {
    app.client
        .get(format!("{}{path}", app.base))
        .bearer_auth(&app.api_token)
        .send()
        .await
        .unwrap()
}

async fn api_send(app: &TestApp, id: i64, body: Value) -> (u16, Value) {
    let r = app
        .client
        .post(format!("{}/api/v1/incidents/{id}/report/send", app.base))
        .bearer_auth(&app.api_token)
        .json(&body)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

fn cli(app: &TestApp, sink: &Sink) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_deferwatch"));
    c.env_remove("DEFERWATCH_CONFIG")
        .env("DATABASE_URL", &app.db.url)
        .env("DEFERWATCH_SMTP_URL", sink.url())
        .env("DEFERWATCH_SMTP_FROM", FROM)
        .env("USER", "oncall")
        .kill_on_drop(true);
    c
}

async fn run(mut c: Command, args: &[&str]) -> (bool, String, String) {
    let out = tokio::time::timeout(Duration::from_secs(120), c.args(args).output())
        .await
        .expect("the CLI finishes")
        .unwrap();
    (
        out.status.success(),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

async fn report_by_email(backend: Backend) {
    let sink = Sink::start().await;
    let url = sink.url();
    let app = TestApp::spawn_with(backend, |cfg| {
        cfg.smtp_url = Some(url);
        cfg.smtp_from = Some(FROM.into());
        cfg.sender_org = Some("Example Sender Ltd".into());
    })
    .await;
    let id = seed_incident(&app).await;

    // Downloads.
    let r = api_get(&app, &format!("/api/v1/incidents/{id}/report?format=text")).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "text/plain; charset=utf-8");
    let text = r.text().await.unwrap();
    assert!(text.starts_with("Subject: Persistent 421 deferrals from 198.51.100.25 to gmail.com since 2026-11-20 04:00 UTC\n"), "{text}");
    assert_labelled(&text);

    let r = api_get(&app, &format!("/api/v1/incidents/{id}/report?format=html")).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "text/html; charset=utf-8");
    let html = r.text().await.unwrap();
    for label in LABELS {
        assert!(html.contains(&format!("{label}:")), "{label} in\n{html}");
    }

    let r = api_get(&app, &format!("/api/v1/incidents/{id}/report?format=eml")).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "message/rfc822");
    assert_eq!(
        r.headers()["content-disposition"],
        format!("attachment; filename=\"deferwatch-incident-{id}.eml\"").as_str()
    );
    let eml = r.text().await.unwrap();
    assert!(eml.contains("\r\nTo: postmaster@gmail.com\r\n"), "{eml}");
    assert!(
        eml.contains("Content-Type: multipart/alternative;"),
        "{eml}"
    );

    let r = api_get(&app, &format!("/api/v1/incidents/{id}/report?format=pdf")).await;
    assert_eq!(r.status(), 400);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["field"], "format", "{body}");
    let r = api_get(&app, "/api/v1/incidents/999/report").await;
    assert_eq!(r.status(), 404);
    let r = app
        .client
        .get(format!("{}/api/v1/incidents/{id}/report", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401, "the report needs an API token");

    // Sent through the API and received by the relay.
    let (status, sent) = api_send(&app, id, json!({"to": ["postmaster@gmail.com"]})).await;
    assert_eq!(status, 200, "{sent}");
    assert_eq!(sent["sent"], true);
    assert_eq!(sent["relay_response"], "250 2.0.0 Ok: queued as SINK1");
    let message_id = sent["message_id"].as_str().unwrap().to_string();
    assert!(
        message_id.starts_with("<deferwatch.") && message_id.ends_with("@sender.example>"),
        "{message_id}"
    );
    let m = sink.message(1).await;
    assert_eq!(m["mail_from"], "reports@sender.example");
    assert_eq!(m["rcpt_tos"], json!(["postmaster@gmail.com"]));
    let h = &m["headers"];
    assert_eq!(h["From"], FROM);
    assert_eq!(h["To"], "postmaster@gmail.com");
    assert_eq!(
        h["Subject"],
        "Persistent 421 deferrals from 198.51.100.25 to gmail.com since 2026-11-20 04:00 UTC"
    );
    assert_eq!(h["Message-ID"], message_id.as_str());
    // The app's clock, to the second.
    assert_eq!(h["Date"], "Fri, 20 Nov 2026 12:00:00 +0000");
    assert_eq!(h["MIME-Version"], "1.0");
    assert_eq!(m["content_type"], "multipart/alternative");
    assert_eq!(m["defects"], json!([]));
    let parts = m["parts"].as_array().unwrap();
    assert_eq!(parts.len(), 2, "{m}");
    assert_eq!(parts[0]["content_type"], "text/plain");
    assert_eq!(parts[0]["charset"], "utf-8");
    assert_eq!(parts[1]["content_type"], "text/html");
    let body = parts[0]["content"].as_str().unwrap();
    assert!(body.starts_with("Hello postmaster team,\n"), "{body}");
    assert!(body.contains("We are Example Sender Ltd."), "{body}");
    assert_labelled(body);
    let html = parts[1]["content"].as_str().unwrap();
    for label in LABELS {
        assert!(html.contains(&format!("{label}:")), "{label} in\n{html}");
    }
    assert!(
        html.contains("aspmx.l.google.com (IP 142.250.27.27)"),
        "{html}"
    );

    // Recorded on the incident.
    let r = api_get(&app, &format!("/api/v1/incidents/{id}/report/sends")).await;
    assert_eq!(r.status(), 200);
    let sends: Value = r.json().await.unwrap();
    let s = &sends["sends"][0];
    assert_eq!(s["ok"], true, "{sends}");
    assert_eq!(s["username"], "api:reader");
    assert_eq!(s["recipients"], json!(["postmaster@gmail.com"]));
    assert_eq!(s["message_id"], message_id.as_str());
    assert_eq!(s["relay_response"], "250 2.0.0 Ok: queued as SINK1");
    assert_eq!(s["at"], "2026-11-20T12:00:00.000Z");

    // Requests refused before any relay is asked: 4xx naming the field, nothing recorded.
    for (body, field) in [
        (json!({"to": ["not an address"]}), "to"),
        (json!({"to": []}), "to"),
        (json!({"to": "postmaster@gmail.com"}), "body"),
        (json!({"recipients": ["postmaster@gmail.com"]}), "body"),
    ] {
        let (status, reply) = api_send(&app, id, body.clone()).await;
        assert_eq!(status, 400, "{body} → {reply}");
        assert_eq!(reply["field"], field, "{body} → {reply}");
    }
    let (status, _) = api_send(&app, 999, json!({"to": ["postmaster@gmail.com"]})).await;
    assert_eq!(status, 404);

    // The relay refuses: 502 with its reply, recorded as failed, nothing delivered.
    let (status, reply) = api_send(&app, id, json!({"to": [REFUSED]})).await;
    assert_eq!(status, 502, "{reply}");
    assert_eq!(reply["sent"], false);
    assert_eq!(reply["relay_response"], REFUSAL, "{reply}");
    assert_eq!(reply["send"]["ok"], false);
    let sends = app.state.store.list_sends(id).await.unwrap();
    assert_eq!(sends.len(), 2);
    assert!(!sends[0].ok);
    assert_eq!(sends[0].relay_response, REFUSAL);
    assert_eq!(sends[0].recipients, vec![REFUSED.to_string()]);
    assert!(sends[1].ok);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(sink.received().await, 1, "a refused message was delivered");

    // The CLI: the same report on stdout, and sent through the same relay.
    let (ok, out, err) = run(cli(&app, &sink), &["report", &id.to_string()]).await;
    assert!(ok, "{err}");
    assert!(
        out.starts_with("Subject: Persistent 421 deferrals"),
        "{out}"
    );
    assert_labelled(&out);
    let (ok, out, err) = run(
        cli(&app, &sink),
        &["report", &id.to_string(), "--format", "eml"],
    )
    .await;
    assert!(ok, "{err}");
    assert!(
        out.contains("Content-Type: multipart/alternative;"),
        "{out}"
    );
    assert!(out.contains("\r\nTo: postmaster@gmail.com\r\n"), "{out}");
    let (ok, out, err) = run(
        cli(&app, &sink),
        &[
            "report",
            "send",
            &id.to_string(),
            "--to",
            "postmaster@gmail.com",
            "--to",
            "abuse@gmail.com",
        ],
    )
    .await;
    assert!(ok, "{err}");
    assert!(
        out.contains("relay answered: 250 2.0.0 Ok: queued as SINK2"),
        "{out}"
    );
    let m = sink.message(2).await;
    assert_eq!(
        m["rcpt_tos"],
        json!(["postmaster@gmail.com", "abuse@gmail.com"])
    );
    assert_eq!(m["headers"]["To"], "postmaster@gmail.com, abuse@gmail.com");
    assert_eq!(m["content_type"], "multipart/alternative");
    assert_labelled(m["parts"][0]["content"].as_str().unwrap());
    let (ok, _, err) = run(
        cli(&app, &sink),
        &["report", "send", &id.to_string(), "--to", REFUSED],
    )
    .await;
    assert!(!ok, "a refused send fails the command");
    assert!(err.contains(REFUSAL), "{err}");
    let sends = app.state.store.list_sends(id).await.unwrap();
    assert_eq!(sends.len(), 4);
    assert_eq!(
        sends
            .iter()
            .map(|s| (s.username.as_str(), s.ok))
            .collect::<Vec<_>>(),
        vec![
            ("cli:oncall", false),
            ("cli:oncall", true),
            ("api:reader", false),
            ("api:reader", true)
        ]
    );
    assert_eq!(
        sends[1].recipients,
        vec!["postmaster@gmail.com".to_string(), "abuse@gmail.com".into()]
    );
    assert_eq!(sink.received().await, 2);

    sink.stop().await;
    app.db.drop_db().await;
}

#[tokio::test]
async fn report_by_email_sqlite() {
    report_by_email(Backend::Sqlite).await;
}

#[tokio::test]
async fn report_by_email_postgres() {
    report_by_email(Backend::Postgres).await;
}

/// Without a relay configured nothing is attempted: 409 naming the setting.
#[tokio::test]
async fn sending_needs_a_relay() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let id = seed_incident(&app).await;
    let (status, reply) = api_send(&app, id, json!({"to": ["postmaster@gmail.com"]})).await;
    assert_eq!(status, 409, "{reply}");
    assert_eq!(reply["field"], "smtp_url");
    assert!(app.state.store.list_sends(id).await.unwrap().is_empty());
    let r = api_get(&app, &format!("/api/v1/incidents/{id}/report?format=eml")).await;
    assert_eq!(r.status(), 400);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["field"], "smtp_from");
}

/// The dashboard's send form: a deliberate act with a named recipient, recorded on the
/// incident, and a refusal shown with the relay's reply and ready to retry.
#[tokio::test]
async fn report_sent_from_the_incident_page() {
    let sink = Sink::start().await;
    let url = sink.url();
    let app = TestApp::spawn_with(Backend::Sqlite, |cfg| {
        cfg.smtp_url = Some(url);
        cfg.smtp_from = Some(FROM.into());
    })
    .await;
    let id = seed_incident(&app).await;
    app.add_user("alice", deferwatch::store::web::Role::Admin)
        .await;
    let b = reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let field = |html: &str, name: &str| {
        let m = format!("name=\"{name}\" value=\"");
        let i = html.find(&m).unwrap() + m.len();
        html[i..i + html[i..].find('"').unwrap()].to_string()
    };
    let login = b
        .get(format!("{}/login", app.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let r = b
        .post(format!("{}/login", app.base))
        .form(&[
            ("csrf", field(&login, "csrf").as_str()),
            ("username", "alice"),
            ("password", "correct horse battery"),
            ("next", "/"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    let page_url = format!("{}/incidents/{id}", app.base);
    let page = b.get(&page_url).send().await.unwrap().text().await.unwrap();
    assert_eq!(
        field(&page, "to"),
        "postmaster@gmail.com",
        "the destination's postmaster is suggested"
    );
    let csrf = field(&page, "csrf");
    let send = |to: &'static str| {
        let (b, url, csrf) = (b.clone(), format!("{page_url}/report/send"), csrf.clone());
        async move {
            b.post(url)
                .form(&[("csrf", csrf.as_str()), ("to", to)])
                .send()
                .await
                .unwrap()
        }
    };

    let r = send("postmaster@gmail.com").await;
    assert_eq!(r.status(), 303);
    let msg = sink.message(1).await;
    assert!(msg.to_string().contains("postmaster@gmail.com"), "{msg}");
    let page = b
        .get(format!("{page_url}?done=report+sent"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        page.contains("<strong>report sent</strong>"),
        "activity entry"
    );
    assert!(page.contains("class=\"v-pass\">sent<"), "send record shown");

    let r = send(REFUSED).await;
    assert_eq!(r.status(), 502);
    let page = r.text().await.unwrap();
    assert!(page.contains("Not sent"), "{page}");
    assert!(
        page.contains("Recipient address rejected: report refused by test relay"),
        "the relay's reply is shown"
    );
    assert_eq!(field(&page, "to"), REFUSED, "kept for a retry");
    assert!(page.contains("class=\"v-fail\">not sent<"));
    assert_eq!(sink.received().await, 1, "nothing more was delivered");

    let r = send("not an address").await;
    assert_eq!(r.status(), 400);
    let sends = app.state.store.list_sends(id).await.unwrap();
    assert_eq!(sends.len(), 2, "the bad address never reached the relay");
    sink.stop().await;
}

/// The scheduled digest: sent to the report recipients when due, once per interval,
/// and again after the interval has passed.
#[tokio::test]
async fn the_digest_goes_to_the_on_call_list_once_per_interval() {
    use deferwatch::clock::Clock;
    use deferwatch::report::digest_job::{DigestRun, run_due};
    let sink = Sink::start().await;
    let url = sink.url();
    let app = TestApp::spawn_with(Backend::Postgres, |cfg| {
        cfg.smtp_url = Some(url);
        cfg.smtp_from = Some(FROM.into());
        cfg.report_recipients = vec!["oncall@example.com".into()];
        cfg.digest_interval = Some(Duration::from_secs(24 * 3600));
        cfg.public_url = Some("https://dw.example".into());
    })
    .await;
    let id = seed_incident(&app).await;
    let run = run_due(&app.state).await.unwrap();
    assert!(matches!(run, DigestRun::Sent { .. }), "{run:?}");
    let msg = sink.message(1).await;
    assert_eq!(msg["rcpt_tos"], json!(["oncall@example.com"]));
    assert_eq!(
        msg["headers"]["Subject"],
        "Deferwatch digest: 1 open incident, 0 to escalate, 1 new"
    );
    let body = msg["parts"][0]["content"].as_str().unwrap();
    assert!(body.contains("\ncooling (1)\n"), "{body}");
    assert!(
        body.contains(&format!("https://dw.example/incidents/{id}")),
        "{body}"
    );
    assert!(body.contains("First digest."));

    // Not again within the interval, even after a restart (the time is stored).
    assert!(matches!(
        run_due(&app.state).await.unwrap(),
        DigestRun::NotDue(_)
    ));
    app.clock
        .set(app.clock.now() + chrono::TimeDelta::hours(25));
    let run = run_due(&app.state).await.unwrap();
    assert!(matches!(run, DigestRun::Sent { .. }), "{run:?}");
    let body = sink.message(2).await["parts"][0]["content"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        body.contains("Covering 2026-11-20 12:00 UTC to 2026-11-21 13:00 UTC."),
        "{body}"
    );
    assert!(body.contains("New since the last digest (0)"), "{body}");
    sink.stop().await;
}
