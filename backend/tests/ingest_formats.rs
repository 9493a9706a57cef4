//! `POST /api/v1/ingest/{format}`: an MTA's own records as it writes them, through the
//! real server, on both backends.

mod support;

use deferwatch::clock::Clock;
use deferwatch::web::auth::{hash_token, new_token};
use support::{Backend, TestApp};

async fn source(app: &TestApp, name: &str, format: &str) -> String {
    let token = new_token("dws_");
    app.state
        .store
        .create_source(name, format, &hash_token(&token), app.clock.now())
        .await
        .unwrap();
    token
}

async fn post(app: &TestApp, format: &str, token: &str, body: &str) -> (u16, serde_json::Value) {
    let r = app
        .client
        .post(format!("{}/api/v1/ingest/{format}", app.base))
        .bearer_auth(token)
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or_default())
}

/// Postfix lines sent in two requests: the `from=` line in the first, the deferral in
/// the second, still tied together by queue id.
async fn postfix_lines_become_an_incident(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let token = source(&app, "edge", "postfix").await;
    let first = "Nov 20 09:00:01 mta1 postfix/qmgr[1003]: 4F1A2B3C40: from=<news@sender.example>, size=1234, nrcpt=1 (queue active)\n";
    let (status, reply) = post(&app, "postfix", &token, first).await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["accepted"], 0);
    assert_eq!(reply["ignored"], 1, "a from= line is no outcome: {reply}");
    let second = "Nov 20 09:00:33 mta1 postfix/smtp[2001]: 4F1A2B3C40: to=<bob@gmail.com>, relay=gmail-smtp-in.l.google.com[142.250.27.26]:25, delay=32, delays=0.1/0/30/2, dsn=4.7.28, status=deferred (host gmail-smtp-in.l.google.com[142.250.27.26] said: 421-4.7.28 Our system has detected an unusual rate of 421-4.7.28 unsolicited mail originating from your IP address. (in reply to end of DATA command))\n\
                  Nov 20 09:00:34 mta1 postfix/smtp[2001]: this line is not a delivery at all\n";
    let (status, reply) = post(&app, "postfix", &token, second).await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["accepted"], 1, "{reply}");
    let id = reply["incident_ids"][0].as_i64().expect("an incident");
    let (_, inc) = app.get(&format!("/api/v1/incidents/{id}")).await;
    assert_eq!(inc["destination"], "google");
    let (_, events) = app.get(&format!("/api/v1/events?incident={id}")).await;
    let ev = &events["events"][0];
    assert_eq!(ev["code"], 421);
    assert_eq!(ev["enhanced"], "4.7.28");
    assert_eq!(ev["stage"], "end_of_data");
    assert_eq!(
        ev["sender"], "news@sender.example",
        "correlated across requests"
    );
    assert_eq!(
        ev["source_ip"],
        serde_json::Value::Null,
        "no mapping: unknown, never a guess"
    );
}

#[tokio::test]
async fn postfix_lines_become_an_incident_sqlite() {
    postfix_lines_become_an_incident(Backend::Sqlite).await;
}

#[tokio::test]
async fn postfix_lines_become_an_incident_postgres() {
    postfix_lines_become_an_incident(Backend::Postgres).await;
}

#[tokio::test]
async fn kumomta_records_and_the_format_checks() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let token = source(&app, "kumo", "kumomta").await;
    let records = [
        r#"{"type":"TransientFailure","id":"k1","sender":"news@sender.example","recipient":"someone@gmail.com","queue":"gmail.com","site":"","size":1047,"response":{"code":421,"enhanced_code":{"class":4,"subject":7,"detail":28},"content":"Our system has detected an unusual rate of unsolicited mail","command":"."},"peer_address":{"name":"gmail-smtp-in.l.google.com","addr":"142.250.27.27"},"timestamp":1763640000,"created":1763639990,"num_attempts":2,"bounce_classification":"Uncategorized","egress_pool":"pool-a","egress_source":"ip-25","source_address":{"address":"198.51.100.25:0"}}"#,
        r#"{"type":"Reception","id":"k2","sender":"news@sender.example","recipient":"x@gmail.com","timestamp":1763640000}"#,
    ]
    .join("\n");
    let (status, reply) = post(&app, "kumomta", &token, &records).await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["accepted"], 1, "{reply}");
    assert_eq!(
        reply["ignored"], 1,
        "Reception is counted and ignored: {reply}"
    );

    // The path must be a served format, and the source's own.
    let (status, reply) = post(&app, "sendmail", &token, &records).await;
    assert_eq!(status, 404, "{reply}");
    let (status, reply) = post(&app, "postfix", &token, "x").await;
    assert_eq!(status, 400);
    assert_eq!(reply["field"], "format");
    let (status, _) = post(&app, "kumomta", "dws_wrong", &records).await;
    assert_eq!(status, 401);
}

/// `[sources.NAME]` maps what Postfix lines carry (the master.cf transport's
/// `syslog_name`, the sender domain) to the sending IP and HELO; unmapped lines keep
/// the IP unknown.
#[tokio::test]
async fn a_log_source_map_names_the_sending_ip() {
    let map: deferwatch::ingest::mta::LogSourceMap = toml::from_str(
        r#"
        [transports.postfix-ip2]
        ip = "192.0.2.2"
        helo = "mta2.example.com"
        [sender_domains."news.example.com"]
        ip = "192.0.2.3"
        helo = "mta3.example.com"
        "#,
    )
    .expect("map");
    let app = TestApp::spawn_with(Backend::Sqlite, |cfg| {
        cfg.log_sources.insert("edge".into(), map);
    })
    .await;
    let token = source(&app, "edge", "postfix").await;
    let lines = "Nov 20 09:00:01 mta1 postfix-ip2/smtp[2001]: 5A1B2C3D40: to=<bob@gmail.com>, relay=gmail-smtp-in.l.google.com[142.250.27.26]:25, delay=2, delays=0.1/0/1/1, dsn=4.7.28, status=deferred (host gmail-smtp-in.l.google.com[142.250.27.26] said: 421 4.7.28 Try again later (in reply to end of DATA command))\n\
        Nov 20 09:00:02 mta1 postfix/qmgr[1003]: 6A1B2C3D40: from=<list@news.example.com>, size=1234, nrcpt=1 (queue active)\n\
        Nov 20 09:00:03 mta1 postfix/smtp[2002]: 6A1B2C3D40: to=<carol@yahoo.com>, relay=mta5.am0.yahoodns.net[67.195.204.72]:25, delay=2, delays=0.1/0/1/1, dsn=4.7.0, status=deferred (host mta5.am0.yahoodns.net[67.195.204.72] said: 421 4.7.0 [TSS04] Messages from 192.0.2.3 temporarily deferred (in reply to MAIL FROM command))\n\
        Nov 20 09:00:04 mta1 postfix/smtp[2003]: 7A1B2C3D40: to=<dave@outlook.com>, relay=outlook-com.olc.protection.outlook.com[52.101.8.35]:25, delay=2, delays=0.1/0/1/1, dsn=4.7.650, status=deferred (host outlook-com.olc.protection.outlook.com[52.101.8.35] said: 451 4.7.650 The mail server has been temporarily rate limited due to IP reputation. (in reply to MAIL FROM command))\n";
    let (status, reply) = post(&app, "postfix", &token, lines).await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["accepted"], 3, "{reply}");
    let (_, events) = app.get("/api/v1/events?source=edge").await;
    let by_rcpt = |r: &str| {
        events["events"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["recipient"] == r)
            .cloned()
            .unwrap_or_default()
    };
    let bob = by_rcpt("bob@gmail.com");
    assert_eq!(bob["source_ip"], "192.0.2.2", "by transport: {bob}");
    assert_eq!(bob["helo"], "mta2.example.com");
    let carol = by_rcpt("carol@yahoo.com");
    assert_eq!(carol["source_ip"], "192.0.2.3", "by sender domain: {carol}");
    assert_eq!(carol["helo"], "mta3.example.com");
    let dave = by_rcpt("dave@outlook.com");
    assert_eq!(
        dave["source_ip"],
        serde_json::Value::Null,
        "unmapped: {dave}"
    );
}
