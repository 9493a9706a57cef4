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
