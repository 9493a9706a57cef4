//! The dashboard over real HTTP: login and setup, sessions, CSRF, roles, every page
//! and action, and bad form input coming back as the form with its error.

mod support;

use deferwatch::store::web::Role;
use support::{Backend, TestApp, event};

/// A browser without JavaScript: keeps cookies, does not follow redirects.
struct Browser {
    client: reqwest::Client,
    base: String,
}

fn field(html: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let start = html
        .find(&marker)
        .unwrap_or_else(|| panic!("no {name} field in:\n{html}"))
        + marker.len();
    html[start..start + html[start..].find('"').unwrap()].to_string()
}

impl Browser {
    fn new(app: &TestApp) -> Browser {
        Browser {
            client: reqwest::Client::builder()
                .cookie_store(true)
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            base: app.base.clone(),
        }
    }

    async fn get(&self, path: &str) -> (u16, String, reqwest::header::HeaderMap) {
        let r = self
            .client
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        let headers = r.headers().clone();
        (status, r.text().await.unwrap(), headers)
    }

    async fn post(
        &self,
        path: &str,
        form: &[(&str, &str)],
    ) -> (u16, String, reqwest::header::HeaderMap) {
        let r = self
            .client
            .post(format!("{}{path}", self.base))
            .form(form)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        let headers = r.headers().clone();
        (status, r.text().await.unwrap(), headers)
    }

    /// Logs in through the form; returns the page's CSRF token for later posts.
    async fn login(&self, user: &str, password: &str) -> u16 {
        let (_, html, _) = self.get("/login").await;
        let csrf = field(&html, "csrf");
        let (status, _, _) = self
            .post(
                "/login",
                &[
                    ("csrf", &csrf),
                    ("username", user),
                    ("password", password),
                    ("next", "/"),
                ],
            )
            .await;
        status
    }

    /// The session's CSRF token, read off any page.
    async fn csrf(&self) -> String {
        let (status, html, _) = self.get("/ips").await;
        assert_eq!(status, 200, "{html}");
        field(&html, "csrf")
    }
}

use deferwatch::clock::Clock;

async fn add_user(app: &TestApp, name: &str, role: Role) {
    app.add_user(name, role).await
}

async fn seed_incident(app: &TestApp) -> i64 {
    app.seed_google_incident().await
}

#[tokio::test]
async fn pages_need_a_login_and_assets_do_not() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    add_user(&app, "alice", Role::Admin).await;
    let b = Browser::new(&app);
    for path in [
        "/",
        "/incidents/1",
        "/ips",
        "/sources",
        "/settings",
        "/incidents/table",
    ] {
        let (status, _, headers) = b.get(path).await;
        assert_eq!(status, 303, "{path}");
        let loc = headers["location"].to_str().unwrap();
        assert!(loc.starts_with("/login?next="), "{path} → {loc}");
    }
    let (status, css, headers) = b.get("/static/app.css").await;
    assert_eq!(status, 200);
    assert!(css.contains(".phase-escalate"));
    assert!(
        headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/css")
    );
    let (status, js, _) = b.get("/static/htmx.min.js").await;
    assert_eq!(status, 200);
    assert!(js.len() > 10_000, "htmx is served from the binary");
}

#[tokio::test]
async fn first_run_setup_creates_an_admin_once() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let b = Browser::new(&app);
    let (status, _, headers) = b.get("/login").await;
    assert_eq!(status, 303);
    assert_eq!(headers["location"], "/setup");
    let (_, html, _) = b.get("/setup").await;
    assert!(html.contains("No user exists yet"));
    let csrf = field(&html, "csrf");
    // A short password is refused with the reason, and the form comes back.
    let (status, html, _) = b
        .post(
            "/setup",
            &[("csrf", &csrf), ("username", "root"), ("password", "short")],
        )
        .await;
    assert_eq!(status, 400);
    assert!(html.contains("password: at least 10 characters"), "{html}");
    let (status, _, headers) = b
        .post(
            "/setup",
            &[
                ("csrf", &csrf),
                ("username", "root"),
                ("password", "a long enough secret"),
            ],
        )
        .await;
    assert_eq!(status, 303, "logged in straight away");
    let cookie = headers
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .find(|c| c.starts_with("dw_session="))
        .expect("session cookie");
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Lax"),
        "{cookie}"
    );
    assert!(!cookie.contains("Secure"), "plain http on loopback");
    let (status, _, _) = b.get("/").await;
    assert_eq!(status, 200);
    // The setup page is gone for everyone else.
    let other = Browser::new(&app);
    let (status, _, headers) = other.get("/setup").await;
    assert_eq!(status, 303);
    assert_eq!(headers["location"], "/login");
    let (_, html, _) = other.get("/login").await;
    let csrf = field(&html, "csrf");
    let (status, _, _) = other
        .post(
            "/setup",
            &[
                ("csrf", &csrf),
                ("username", "mallory"),
                ("password", "another long secret"),
            ],
        )
        .await;
    assert_eq!(status, 403);
    assert_eq!(app.state.store.count_users().await.unwrap(), 1);
}

#[tokio::test]
async fn wrong_passwords_are_throttled() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    add_user(&app, "alice", Role::Admin).await;
    let b = Browser::new(&app);
    for _ in 0..deferwatch::web::session::MAX_FAILURES_PER_USER {
        assert_eq!(b.login("alice", "wrong password!").await, 401);
    }
    // Even the right password waits now.
    assert_eq!(b.login("alice", "correct horse battery").await, 429);
    // Fifteen minutes later it works again.
    app.clock
        .set(app.clock.now() + chrono::TimeDelta::minutes(16));
    assert_eq!(b.login("alice", "correct horse battery").await, 303);
}

#[tokio::test]
async fn state_changes_need_the_csrf_token_and_an_admin() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let id = seed_incident(&app).await;
    add_user(&app, "alice", Role::Admin).await;
    add_user(&app, "victor", Role::Viewer).await;
    let admin = Browser::new(&app);
    assert_eq!(admin.login("alice", "correct horse battery").await, 303);
    let csrf = admin.csrf().await;
    let ack = format!("/incidents/{id}/ack");

    let (status, html, _) = admin.post(&ack, &[]).await;
    assert_eq!(status, 403, "no token");
    assert!(html.contains("reload the page"), "{html}");
    let (status, _, _) = admin.post(&ack, &[("csrf", "0000")]).await;
    assert_eq!(status, 403, "wrong token");
    let r = admin
        .client
        .post(format!("{}{ack}", admin.base))
        .header("sec-fetch-site", "cross-site")
        .form(&[("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403, "cross-site");
    assert!(app.state.store.activity(id, 10).await.unwrap().is_empty());

    let viewer = Browser::new(&app);
    assert_eq!(viewer.login("victor", "correct horse battery").await, 303);
    let vcsrf = viewer.csrf().await;
    let (status, html, _) = viewer.post(&ack, &[("csrf", &vcsrf)]).await;
    assert_eq!(status, 403);
    assert!(html.contains("viewers can look"), "{html}");
    let (status, page, _) = viewer.get(&format!("/incidents/{id}")).await;
    assert_eq!(status, 200);
    assert!(page.contains("actions need an admin"));
    for path in ["/sources", "/settings"] {
        assert_eq!(viewer.get(path).await.0, 403, "{path} is for admins");
    }

    // The htmx header works as well as the form field.
    let r = admin
        .client
        .post(format!("{}{ack}", admin.base))
        .header("x-csrf-token", &csrf)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    let (_, page, _) = admin.get(&format!("/incidents/{id}")).await;
    assert!(page.contains("acknowledged by alice"), "mark shown");
    assert!(
        page.contains("<td>alice</td><td><strong>acknowledged</strong>"),
        "activity entry"
    );

    // Logging out ends the session on the server, not just in the browser.
    let (status, _, _) = admin.post("/logout", &[("csrf", &csrf)]).await;
    assert_eq!(status, 303);
    assert_eq!(admin.get("/").await.0, 303);
}

#[tokio::test]
async fn actions_are_recorded_and_bad_input_comes_back_with_the_reason() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let id = seed_incident(&app).await;
    add_user(&app, "alice", Role::Admin).await;
    let b = Browser::new(&app);
    b.login("alice", "correct horse battery").await;
    let csrf = b.csrf().await;
    let base = format!("/incidents/{id}");

    let (status, html, _) = b
        .post(
            &format!("{base}/snooze"),
            &[("csrf", &csrf), ("until", "2026-11-19T10:00")],
        )
        .await;
    assert_eq!(status, 400);
    assert!(html.contains("must be in the future"), "{html}");
    assert!(
        html.contains("name=\"until\""),
        "the incident page and its forms come back"
    );
    assert!(html.contains("Nothing was changed"));
    let (status, html, _) = b
        .post(
            &format!("{base}/snooze"),
            &[("csrf", &csrf), ("until", "tomorrow")],
        )
        .await;
    assert_eq!(status, 400);
    assert!(html.contains("is not a time like"), "{html}");
    let (status, html, _) = b
        .post(&format!("{base}/note"), &[("csrf", &csrf), ("note", "   ")])
        .await;
    assert_eq!(status, 400);
    assert!(html.contains("write something"), "{html}");
    assert_eq!(
        b.post("/incidents/999999/ack", &[("csrf", &csrf)]).await.0,
        404
    );

    assert_eq!(
        b.post(
            &format!("{base}/snooze"),
            &[("csrf", &csrf), ("until", "2026-11-20T18:30")]
        )
        .await
        .0,
        303
    );
    assert_eq!(
        b.post(
            &format!("{base}/note"),
            &[
                ("csrf", &csrf),
                ("note", "Paused .25 towards Google <script>")
            ]
        )
        .await
        .0,
        303
    );
    assert_eq!(
        b.post(&format!("{base}/resolve"), &[("csrf", &csrf)])
            .await
            .0,
        303
    );
    let (_, page, _) = b.get(&base).await;
    assert!(
        page.contains("snoozed until 2026-11-20 18:30 UTC"),
        "snooze mark"
    );
    assert!(page.contains("resolved by alice"));
    assert!(
        page.contains("Paused .25 towards Google &#60;script&#62;")
            || page.contains("Paused .25 towards Google &lt;script&gt;"),
        "note escaped"
    );
    assert!(!page.contains("Google <script>"));
    let log = app.state.store.activity(id, 10).await.unwrap();
    let actions: Vec<&str> = log.iter().map(|a| a.action.as_str()).collect();
    assert_eq!(actions, ["resolved", "note", "snoozed"]);
    assert!(log.iter().all(|a| a.username == "alice"));

    // A resolved incident leaves the default list; a new deferral brings it back.
    let (_, list, _) = b.get("/").await;
    assert!(
        !list.contains(&format!("href=\"/incidents/{id}\"")),
        "resolved: not listed by default"
    );
    app.clock
        .set(app.clock.now() + chrono::TimeDelta::minutes(5));
    let later = (app.clock.now() + chrono::TimeDelta::minutes(1)).to_rfc3339();
    let (s, _) = app
        .post_events(&event("deferred", &later, "198.51.100.25", Some("again")).to_string())
        .await;
    assert_eq!(s, 200);
    let (_, list, _) = b.get("/").await;
    assert!(
        list.contains(&format!("href=\"/incidents/{id}\"")),
        "back after a new deferral"
    );
}

#[tokio::test]
async fn the_incident_list_filters_and_refreshes_without_losing_them() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let id = seed_incident(&app).await;
    add_user(&app, "alice", Role::Viewer).await;
    let b = Browser::new(&app);
    b.login("alice", "correct horse battery").await;
    let (status, html, _) = b.get("/").await;
    assert_eq!(status, 200);
    assert!(html.contains(&format!("href=\"/incidents/{id}\"")));
    assert!(html.contains("badge phase-cooling"), "7 h: cooling");
    assert!(html.contains("one source IP"), "scope summary: {html}");
    assert!(html.contains("<svg"), "sparkline");
    assert!(html.contains("hx-trigger=\"every 30s\""));

    let (_, html, _) = b.get("/?ip=198.51.100.26").await;
    assert!(
        !html.contains(&format!("href=\"/incidents/{id}\"")),
        "198.51.100.26 delivered: not part of this incident"
    );
    let (_, html, _) = b.get("/?ip=203.0.113.9").await;
    assert!(html.contains("No incident matches"));
    let (_, html, _) = b.get("/?q=unusual+rate&phase=cooling").await;
    assert!(html.contains(&format!("href=\"/incidents/{id}\"")));
    assert!(
        html.contains("hx-get=\"/incidents/table?phase=cooling&#38;q=unusual+rate\""),
        "refresh keeps the filters"
    );
    let (status, part, _) = b.get("/incidents/table?phase=escalate").await;
    assert_eq!(status, 200);
    assert!(!part.contains("<html"), "a fragment");
    assert!(part.contains("No incident matches"));
}

#[tokio::test]
async fn the_incident_page_shows_scope_replies_checks_steps_and_report() {
    for backend in [Backend::Sqlite, Backend::Postgres] {
        let app = TestApp::spawn(backend).await;
        let id = seed_incident(&app).await;
        add_user(&app, "alice", Role::Admin).await;
        let b = Browser::new(&app);
        b.login("alice", "correct horse battery").await;
        let (status, html, _) = b.get(&format!("/incidents/{id}")).await;
        assert_eq!(status, 200, "{backend:?}");
        let affected = html.find("Affected sending IPs").unwrap();
        let unaffected = html.find("Unaffected sending IPs").unwrap();
        assert!(html[affected..unaffected].contains("198.51.100.25"));
        assert!(html[unaffected..].contains("198.51.100.26"));
        assert!(
            html.contains("421-4.7.28 Our system has detected an unusual rate"),
            "reply text"
        );
        assert!(html.contains("Next steps"));
        assert!(
            html.contains("198.51.100.25") && html.contains("Do not"),
            "steps name the IP and what not to do"
        );
        assert!(html.contains("id=\"report-text\""));
        assert!(html.contains("role=\"img\""), "timeline SVG");
        assert!(html.contains("2026-11-20 04:00 UTC"), "times in UTC");
        // The raw payload of a reply, on demand.
        let key = field_attr(&html, "hx-get=\"/events/raw?key=");
        let r = b
            .client
            .get(format!("{}/events/raw?key={key}", b.base))
            .header("hx-request", "true")
            .send()
            .await
            .unwrap();
        let frag = r.text().await.unwrap();
        assert!(
            frag.starts_with("<pre>") && frag.contains("unusual rate"),
            "{frag}"
        );
        let (status, txt, headers) = b.get(&format!("/incidents/{id}/report.txt")).await;
        assert_eq!(status, 200);
        assert!(
            headers["content-disposition"]
                .to_str()
                .unwrap()
                .contains(&format!("deferwatch-incident-{id}.txt"))
        );
        assert!(txt.contains("198.51.100.25") && txt.contains("421-4.7.28"));
        assert_eq!(b.get("/incidents/abc").await.0, 404);
        assert_eq!(b.get("/incidents/424242").await.0, 404);
    }
}

fn field_attr(html: &str, marker: &str) -> String {
    let start = html.find(marker).expect(marker) + marker.len();
    html[start..start + html[start..].find('"').unwrap()].to_string()
}

#[tokio::test]
async fn sources_page_creates_rotates_and_revokes_tokens() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    add_user(&app, "alice", Role::Admin).await;
    let b = Browser::new(&app);
    b.login("alice", "correct horse battery").await;
    let csrf = b.csrf().await;
    let (status, html, _) = b
        .post(
            "/sources",
            &[("csrf", &csrf), ("name", "bad name!"), ("format", "json")],
        )
        .await;
    assert_eq!(status, 400);
    assert!(html.contains("name: 1 to 64 characters"), "{html}");
    let (status, html, _) = b
        .post(
            "/sources",
            &[("csrf", &csrf), ("name", "mta1"), ("format", "json")],
        )
        .await;
    assert_eq!(status, 400);
    assert!(html.contains("already exists"));
    let (status, html, _) = b
        .post(
            "/sources",
            &[
                ("csrf", &csrf),
                ("name", "postfix-edge"),
                ("format", "json"),
            ],
        )
        .await;
    assert_eq!(status, 200);
    let start = html.find("<pre id=\"new-token\">").unwrap() + "<pre id=\"new-token\">".len();
    let token = html[start..start + html[start..].find('<').unwrap()].to_string();
    assert!(token.starts_with("dws_"));
    // The token works for ingest, and is never shown again.
    let post = |t: String| {
        let c = app.client.clone();
        let url = format!("{}/api/v1/events", app.base);
        async move {
            c.post(url)
                .bearer_auth(t)
                .body(
                    event(
                        "deferred",
                        "2026-11-20T11:00:00Z",
                        "198.51.100.25",
                        Some("x1"),
                    )
                    .to_string(),
                )
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    assert_eq!(post(token.clone()).await, 200);
    let (_, html, _) = b.get("/sources").await;
    assert!(!html.contains(&token));
    assert!(html.contains("postfix-edge"));
    // A rejected item shows with its raw payload.
    let r = app
        .client
        .post(format!("{}/api/v1/events", app.base))
        .bearer_auth(&token)
        .body(r#"{"type":"deferred","timestamp":"not a time","recipient":"a@b.example"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 422);
    let (_, html, _) = b.get("/sources").await;
    assert!(html.contains("not a time"), "dead letter payload shown");
    let (status, _, _) = b
        .post("/sources/postfix-edge/revoke", &[("csrf", &csrf)])
        .await;
    assert_eq!(status, 303);
    app.clock
        .set(app.clock.now() + chrono::TimeDelta::minutes(1));
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    let (status, html, _) = b
        .post("/sources/postfix-edge/rotate", &[("csrf", &csrf)])
        .await;
    assert_eq!(status, 200);
    assert!(html.contains("new-token"));
    assert_eq!(
        b.post("/sources/nope/revoke", &[("csrf", &csrf)]).await.0,
        404
    );
}

#[tokio::test]
async fn webhook_sources_take_their_keys_on_the_sources_page() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    add_user(&app, "alice", Role::Admin).await;
    let b = Browser::new(&app);
    b.login("alice", "correct horse battery").await;
    let csrf = b.csrf().await;
    // Mailgun signs with an HMAC key: without one the source could never verify.
    let (status, html, _) = b
        .post(
            "/sources",
            &[("csrf", &csrf), ("name", "mg"), ("format", "mailgun")],
        )
        .await;
    assert_eq!(status, 400);
    assert!(html.contains("format mailgun needs --secret KEY"), "{html}");
    let (status, html, _) = b
        .post(
            "/sources",
            &[
                ("csrf", &csrf),
                ("name", "mg"),
                ("format", "mailgun"),
                ("secret", "key-abc123"),
            ],
        )
        .await;
    assert_eq!(status, 200, "{html}");
    // The URL to paste at the provider carries the token; the secret is never echoed.
    let start = html.find("<code id=\"new-url\">").unwrap() + "<code id=\"new-url\">".len();
    let url = &html[start..start + html[start..].find('<').unwrap()];
    let (path, token) = url.split_once("?token=").expect("token in the URL");
    assert!(path.ends_with("/api/v1/ingest/mailgun"), "{url}");
    assert!(token.starts_with("dws_") && token.len() == 52, "{url}");
    assert!(!html.contains("key-abc123"));
    let (_, html, _) = b.get("/sources").await;
    assert!(html.contains("token + HMAC-SHA256 signature"), "{html}");
    // A key the format does not use is refused rather than silently ignored.
    let (status, html, _) = b
        .post(
            "/sources",
            &[
                ("csrf", &csrf),
                ("name", "edge"),
                ("format", "postfix"),
                ("secret", "x"),
            ],
        )
        .await;
    assert_eq!(status, 400);
    assert!(html.contains("does not sign its requests"), "{html}");
}

#[tokio::test]
async fn settings_are_validated_saved_and_applied() {
    let app = TestApp::spawn(Backend::Postgres).await;
    add_user(&app, "alice", Role::Admin).await;
    let b = Browser::new(&app);
    b.login("alice", "correct horse battery").await;
    let (status, html, _) = b.get("/settings").await;
    assert_eq!(status, 200);
    let csrf = field(&html, "csrf");
    let mut form = vec![
        ("csrf", csrf.clone()),
        ("normal_retry", "15m".to_string()),
        ("persistent", "2h".to_string()),
        ("cooling", "1h".to_string()),
        ("cooling_extended", "12h".to_string()),
        ("escalate", "1day".to_string()),
        ("quiet_period", "2h".to_string()),
        ("dnsbl", "zen.spamhaus.org".to_string()),
        ("rhsbl", String::new()),
        ("check_interval", "1h".to_string()),
        ("nameservers", "127.0.0.1".to_string()),
        ("report_recipients", String::new()),
        ("smtp_url", String::new()),
        ("smtp_from", String::new()),
        ("sender_org", "Example News".to_string()),
    ];
    let as_pairs = |f: &Vec<(&'static str, String)>| -> Vec<(&'static str, String)> { f.clone() };
    let r = b
        .client
        .post(format!("{}/settings", b.base))
        .form(&as_pairs(&form))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let html = r.text().await.unwrap();
    assert!(html.contains("Nothing was saved"));
    assert!(html.contains("must increase"), "cooling before persistent");
    assert!(html.contains("is not IP:port"));
    assert!(
        html.contains("value=\"Example News\""),
        "the form comes back as typed"
    );
    assert_eq!(
        app.state.engine.get().thresholds.persistent,
        chrono::TimeDelta::hours(1)
    );

    form[3].1 = "6h".into();
    form[10].1 = "127.0.0.1:5353".into();
    let r = b
        .client
        .post(format!("{}/settings", b.base))
        .form(&as_pairs(&form))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(
        app.state.engine.get().thresholds.persistent,
        chrono::TimeDelta::hours(2)
    );
    assert_eq!(
        app.state.effective().sender_org.as_deref(),
        Some("Example News")
    );
    let saved = app
        .state
        .store
        .setting(deferwatch::web::settings::SETTINGS_KEY)
        .await
        .unwrap()
        .expect("stored");
    assert!(saved.contains("127.0.0.1:5353"));
    let (_, html, _) = b.get("/settings?done=saved").await;
    assert!(html.contains("Saved."));
    assert!(html.contains("2h"));
}

#[tokio::test]
async fn the_ips_page_lists_every_sending_ip_with_its_incidents() {
    let app = TestApp::spawn(Backend::Postgres).await;
    let id = seed_incident(&app).await;
    add_user(&app, "victor", Role::Viewer).await;
    let b = Browser::new(&app);
    b.login("victor", "correct horse battery").await;
    let (status, html, _) = b.get("/ips").await;
    assert_eq!(status, 200);
    let row25 = html.find(">198.51.100.25<").expect(".25 listed");
    let row26 = html.find(">198.51.100.26<").expect(".26 listed");
    assert!(
        html[row25..row26].contains(&format!("/incidents/{id}")),
        "open incident of .25"
    );
    assert!(html.contains("mail.sender.example"), "HELO");
    assert!(
        html.contains("dnsbl:zen.spamhaus.org"),
        "a column per blocklist"
    );
}

#[tokio::test]
async fn the_settings_page_shows_webhooks_masked_and_their_delivery_log() {
    use deferwatch::notify::config::{Event, Format, NotifyConfig, Webhook};
    // A loopback port nobody listens on: every attempt fails at the transport.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let app = TestApp::spawn_with(Backend::Sqlite, |cfg| {
        cfg.notify = NotifyConfig {
            webhooks: vec![Webhook {
                url: format!("http://127.0.0.1:{port}/services/T0001/B0002/s3cretT0ken"),
                format: Format::Slack,
                phases: vec![deferwatch::incidents::Phase::Cooling],
                events: vec![Event::Opened],
            }],
            interval: std::time::Duration::from_secs(3600),
            ..NotifyConfig::default()
        };
    })
    .await;
    let id = seed_incident(&app).await;
    deferwatch::notify::run_once(&app.state).await.unwrap();
    add_user(&app, "alice", Role::Admin).await;
    let b = Browser::new(&app);
    b.login("alice", "correct horse battery").await;
    let (status, html, _) = b.get("/settings").await;
    assert_eq!(status, 200);
    assert!(
        !html.contains("s3cretT0ken"),
        "the hook's secret never reaches the page"
    );
    assert!(html.contains("****"), "masked URL shown");
    assert!(html.contains("slack"));
    assert!(
        html.contains(&format!("href=\"/incidents/{id}\"")),
        "delivery log row"
    );
    assert!(
        html.contains(">pending<"),
        "retrying after a transport error"
    );
}
