//! ESP webhooks through the real server at `POST /api/v1/ingest/{format}`: each
//! provider's signature verified with keys generated here, wrong signatures, replays and
//! missing keys answered 401 and kept as rejected items; on both backends for the path
//! that stores, SQLite for the rest.

mod support;

use base64::Engine as _;
use chrono::{DateTime, TimeZone, Utc};
use deferwatch::clock::Clock;
use deferwatch::store::SourceKeys;
use deferwatch::web::auth::{hash_token, new_token};
use hmac::{Hmac, Mac};
use p256::ecdsa::SigningKey;
use p256::ecdsa::signature::Signer;
use p256::pkcs8::EncodePublicKey;
use rsa::RsaPrivateKey;
use rsa::pkcs1v15::Pkcs1v15Sign;
use rsa::pkcs8::{EncodePrivateKey, LineEnding};
use serde_json::{Value, json};
use sha1::Sha1;
use sha2::{Digest, Sha256};
use std::sync::LazyLock;
use support::{Backend, TestApp};

static RSA_KEY: LazyLock<RsaPrivateKey> = LazyLock::new(|| {
    RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 2048).expect("RSA key generation")
});

/// The fixtures' time: every signed timestamp below is relative to it.
fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 23, 5, 0, 0).unwrap()
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn fixture(path: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/tests/fixtures/{path}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .expect("fixture")
}

async fn app(backend: Backend) -> TestApp {
    let app = TestApp::spawn(backend).await;
    app.clock.set(now());
    app
}

async fn source(app: &TestApp, name: &str, format: &str, keys: SourceKeys) -> String {
    let token = new_token("dws_");
    let store = &app.state.store;
    store
        .create_source(name, format, &hash_token(&token), app.clock.now())
        .await
        .unwrap();
    assert!(store.set_source_keys(name, &keys).await.unwrap());
    token
}

/// Posts as providers do: the token in the URL, the provider's own headers.
async fn post(
    app: &TestApp,
    format: &str,
    token: &str,
    headers: &[(&str, String)],
    body: Vec<u8>,
) -> (u16, Value) {
    let mut req = app
        .client
        .post(format!("{}/api/v1/ingest/{format}?token={token}", app.base))
        .body(body);
    for (k, v) in headers {
        req = req.header(*k, v);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or_default())
}

/// The rejected items kept for a source, newest last.
async fn rejects(app: &TestApp) -> Vec<Value> {
    let (status, v) = app.get("/api/v1/rejects?limit=100").await;
    assert_eq!(status, 200, "{v}");
    v["rejects"].as_array().cloned().unwrap_or_default()
}

fn assert_refused(status: u16, reply: &Value, words: &str) {
    assert_eq!(status, 401, "{reply}");
    assert_eq!(reply["field"], "signature", "{reply}");
    let reason = reply["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains(words),
        "{reason:?} should mention {words:?}"
    );
}

// ---------------------------------------------------------------- SendGrid

fn sendgrid_key() -> (SigningKey, String) {
    let sk = SigningKey::from_slice(&[0x42; 32]).unwrap();
    let der = p256::PublicKey::from(sk.verifying_key())
        .to_public_key_der()
        .unwrap();
    (sk, b64(der.as_bytes()))
}

fn sendgrid_headers(sk: &SigningKey, ts: i64, body: &[u8]) -> Vec<(&'static str, String)> {
    let ts = ts.to_string();
    let mut signed = ts.as_bytes().to_vec();
    signed.extend_from_slice(body);
    let sig: p256::ecdsa::Signature = sk.sign(&signed);
    vec![
        (
            "x-twilio-email-event-webhook-signature",
            b64(sig.to_der().as_bytes()),
        ),
        ("x-twilio-email-event-webhook-timestamp", ts),
    ]
}

async fn sendgrid_signed_events_are_stored_and_forgeries_kept(backend: Backend) {
    let app = app(backend).await;
    let (sk, public) = sendgrid_key();
    let keys = SourceKeys {
        public_key: Some(public),
        ..SourceKeys::default()
    };
    let token = source(&app, "sg", "sendgrid", keys).await;
    let body = fixture("sendgrid/events.json");
    let ts = now().timestamp() - 20;

    let (status, reply) = post(
        &app,
        "sendgrid",
        &token,
        &sendgrid_headers(&sk, ts, &body),
        body.clone(),
    )
    .await;
    assert_eq!(status, 200, "{reply}");
    assert!(reply["accepted"].as_u64().unwrap() >= 2, "{reply}");
    assert!(
        reply["ignored"].as_u64().unwrap() >= 1,
        "opens and clicks are ignored: {reply}"
    );
    let (_, events) = app.get("/api/v1/events?source=sg&type=deferred").await;
    let ev = &events["events"][0];
    assert_eq!(ev["type"], "deferred", "{events}");
    assert!(ev["code"].as_u64().is_some(), "{ev}");

    // The same request again: accepted by the signature, recognised as duplicates.
    let (status, again) = post(
        &app,
        "sendgrid",
        &token,
        &sendgrid_headers(&sk, ts, &body),
        body.clone(),
    )
    .await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["accepted"], 0, "{again}");
    assert_eq!(again["duplicates"], reply["accepted"], "{again}");

    // A tampered body, a signature from another key, a missing header, an old timestamp.
    let mut tampered = body.clone();
    let at = tampered.iter().position(|b| *b == b'4').unwrap();
    tampered[at] = b'5';
    let (status, r) = post(
        &app,
        "sendgrid",
        &token,
        &sendgrid_headers(&sk, ts, &body),
        tampered.clone(),
    )
    .await;
    assert_refused(status, &r, "does not match");
    let other = SigningKey::from_slice(&[0x43; 32]).unwrap();
    let (status, r) = post(
        &app,
        "sendgrid",
        &token,
        &sendgrid_headers(&other, ts, &body),
        body.clone(),
    )
    .await;
    assert_refused(status, &r, "does not match");
    let (status, r) = post(&app, "sendgrid", &token, &[], body.clone()).await;
    assert_refused(
        status,
        &r,
        "missing header x-twilio-email-event-webhook-signature",
    );
    let old = now().timestamp() - 2 * 3600;
    let (status, r) = post(
        &app,
        "sendgrid",
        &token,
        &sendgrid_headers(&sk, old, &body),
        body.clone(),
    )
    .await;
    assert_refused(status, &r, "away from the server clock");

    // Every refused request is kept with its raw payload, attributed to the source.
    let kept: Vec<Value> = rejects(&app)
        .await
        .into_iter()
        .filter(|r| r["field"] == "signature")
        .collect();
    assert_eq!(kept.len(), 4, "{kept:?}");
    assert!(kept.iter().all(|r| r["source"] == "sg"), "{kept:?}");
    let raw_tampered = String::from_utf8(tampered).unwrap();
    assert!(
        kept.iter().any(|r| r["raw"] == raw_tampered.as_str()),
        "{kept:?}"
    );

    // Without the source token, nothing is looked at: 401 naming the token.
    let r = app
        .client
        .post(format!("{}/api/v1/ingest/sendgrid", app.base))
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["field"], "token", "{v}");
}

#[tokio::test]
async fn sendgrid_signed_events_are_stored_and_forgeries_kept_sqlite() {
    sendgrid_signed_events_are_stored_and_forgeries_kept(Backend::Sqlite).await;
}

#[tokio::test]
async fn sendgrid_signed_events_are_stored_and_forgeries_kept_postgres() {
    sendgrid_signed_events_are_stored_and_forgeries_kept(Backend::Postgres).await;
}

// ---------------------------------------------------------------- Mailgun

fn mailgun_signed(key: &str, ts: i64, token: &str) -> Vec<u8> {
    let mut v: Value = serde_json::from_slice(&fixture("mailgun/temporary.json")).unwrap();
    let mut mac = Hmac::<Sha256>::new_from_slice(key.as_bytes()).unwrap();
    mac.update(ts.to_string().as_bytes());
    mac.update(token.as_bytes());
    v["signature"] = json!({
        "timestamp": ts.to_string(),
        "token": token,
        "signature": hex::encode(mac.finalize().into_bytes()),
    });
    serde_json::to_vec(&v).unwrap()
}

#[tokio::test]
async fn mailgun_hmac_tokens_are_single_use() {
    let app = app(Backend::Sqlite).await;
    let key = "key-3ax6xnjp29jd6fds4gc373sgvjxteol0";
    let keys = SourceKeys {
        secret: Some(key.into()),
        ..SourceKeys::default()
    };
    let token = source(&app, "mg", "mailgun", keys).await;
    let ts = now().timestamp() - 5;
    let body = mailgun_signed(
        key,
        ts,
        "a8ce0edb2dd8301dee6c2405235584e45aa91d1e9f979f3de0",
    );
    let (status, reply) = post(&app, "mailgun", &token, &[], body.clone()).await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["accepted"], 1, "{reply}");
    let id = reply["incident_ids"][0].as_i64().expect("an incident");
    let (_, events) = app.get(&format!("/api/v1/events?incident={id}")).await;
    assert_eq!(events["events"][0]["code"], 451, "{events}");
    assert_eq!(events["events"][0]["enhanced"], "4.7.650", "{events}");

    // The captured request replayed: its token was used.
    let (status, r) = post(&app, "mailgun", &token, &[], body).await;
    assert_refused(status, &r, "already used");
    // Signed with another key.
    let forged = mailgun_signed(
        "not-the-key",
        ts,
        "b9ce0edb2dd8301dee6c2405235584e45aa91d1e9f979f3de1",
    );
    let (status, r) = post(&app, "mailgun", &token, &[], forged).await;
    assert_refused(status, &r, "does not match");
    // Validly signed an hour and a half ago: outside the window.
    let late = mailgun_signed(
        key,
        now().timestamp() - 5400,
        "c9ce0edb2dd8301dee6c2405235584e45aa91d1e9f979f3de2",
    );
    let (status, r) = post(&app, "mailgun", &token, &[], late).await;
    assert_refused(status, &r, "away from the server clock");
    assert_eq!(rejects(&app).await.len(), 3);
}

// ---------------------------------------------------------------- Amazon SES via SNS

const TOPIC: &str = "arn:aws:sns:us-east-1:123456789012:ses-events";

fn rsa_sign(version: &str, msg: &[u8]) -> String {
    let sig = match version {
        "1" => RSA_KEY.sign(Pkcs1v15Sign::new::<Sha1>(), &Sha1::digest(msg)),
        _ => RSA_KEY.sign(Pkcs1v15Sign::new::<Sha256>(), &Sha256::digest(msg)),
    };
    b64(&sig.unwrap())
}

fn sns_cert() -> String {
    let pem = RSA_KEY.to_pkcs8_pem(LineEnding::LF).unwrap();
    let kp = rcgen::KeyPair::from_pkcs8_pem_and_sign_algo(&pem, &rcgen::PKCS_RSA_SHA256).unwrap();
    let params =
        rcgen::CertificateParams::new(vec!["sns.us-east-1.amazonaws.com".to_string()]).unwrap();
    params.self_signed(&kp).unwrap().pem()
}

/// An SNS message signed as SNS does: the canonical "Key\nvalue\n" string of its fields.
fn sns(kind: &str, fields: &[(&str, &str)], version: &str) -> Vec<u8> {
    let mut all: Vec<(&str, &str)> = fields.to_vec();
    all.push(("Type", kind));
    all.push(("TopicArn", TOPIC));
    all.sort();
    let canonical: String = all.iter().map(|(k, v)| format!("{k}\n{v}\n")).collect();
    let mut v = json!({
        "SignatureVersion": version,
        "Signature": rsa_sign(version, canonical.as_bytes()),
        "SigningCertURL": "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-abc.pem",
    });
    for (k, val) in all {
        v[k] = Value::String(val.to_string());
    }
    serde_json::to_vec(&v).unwrap()
}

#[tokio::test]
async fn ses_through_sns_with_a_pinned_certificate() {
    let app = app(Backend::Sqlite).await;
    let keys = SourceKeys {
        public_key: Some(sns_cert()),
        ..SourceKeys::default()
    };
    let token = source(&app, "ses", "ses", keys).await;
    let message = String::from_utf8(fixture("ses/delivery-delay.json")).unwrap();
    let message = message.trim();
    for version in ["1", "2"] {
        let id = format!("22b80b92-fdea-4c2c-8f9d-bdfb0c7bf32{version}");
        let body = sns(
            "Notification",
            &[
                ("Message", message),
                ("MessageId", &id),
                ("Timestamp", "2026-11-23T04:58:00.000Z"),
            ],
            version,
        );
        let (status, reply) = post(&app, "ses", &token, &[], body).await;
        assert_eq!(status, 200, "version {version}: {reply}");
        assert!(
            reply["accepted"].as_u64().unwrap() + reply["duplicates"].as_u64().unwrap() >= 1,
            "{reply}"
        );
    }
    let (_, events) = app.get("/api/v1/events?source=ses").await;
    assert_eq!(events["events"][0]["type"], "deferred", "{events}");

    // The Message changed after signing.
    let mut forged: Value = serde_json::from_slice(&sns(
        "Notification",
        &[
            ("Message", message),
            ("MessageId", "x1"),
            ("Timestamp", "2026-11-23T04:58:00.000Z"),
        ],
        "2",
    ))
    .unwrap();
    forged["Message"] = Value::String(message.replace("4.4.1", "4.4.2"));
    let (status, r) = post(
        &app,
        "ses",
        &token,
        &[],
        serde_json::to_vec(&forged).unwrap(),
    )
    .await;
    assert_refused(status, &r, "does not match");
    // Raw message delivery carries no signature, so it cannot be accepted.
    let (status, r) = post(&app, "ses", &token, &[], message.as_bytes().to_vec()).await;
    assert_refused(status, &r, "missing");
    // A replayed notification from two hours ago.
    let old = sns(
        "Notification",
        &[
            ("Message", message),
            ("MessageId", "x2"),
            ("Timestamp", "2026-11-23T03:00:00.000Z"),
        ],
        "2",
    );
    let (status, r) = post(&app, "ses", &token, &[], old).await;
    assert_refused(status, &r, "away from the server clock");

    // A validly signed subscription confirmation whose SubscribeURL is not an SNS
    // endpoint: nothing is fetched, the message is kept for the operator, 502.
    let confirm = sns(
        "SubscriptionConfirmation",
        &[
            ("Message", "You have chosen to subscribe to the topic."),
            ("MessageId", "c1"),
            (
                "SubscribeURL",
                "https://attacker.example/?Action=ConfirmSubscription",
            ),
            ("Timestamp", "2026-11-23T04:59:00.000Z"),
            ("Token", "2336412f37fb687f5d51e6e2425c464de"),
        ],
        "1",
    );
    let (status, r) = post(&app, "ses", &token, &[], confirm).await;
    assert_eq!(status, 502, "{r}");
    assert!(
        r["reason"]
            .as_str()
            .unwrap()
            .contains("sns.<region>.amazonaws.com"),
        "{r}"
    );
    let kept = rejects(&app).await;
    assert!(
        kept.iter().any(|k| k["field"] == "SubscribeURL"),
        "{kept:?}"
    );
    assert_eq!(kept.iter().filter(|k| k["field"] == "signature").count(), 3);
}

// ---------------------------------------------------------------- Postal

#[tokio::test]
async fn postal_rsa_signatures() {
    use rsa::pkcs8::EncodePublicKey as _;
    let app = app(Backend::Sqlite).await;
    let public = RSA_KEY
        .to_public_key()
        .to_public_key_pem(LineEnding::LF)
        .unwrap();
    let keys = SourceKeys {
        public_key: Some(public),
        ..SourceKeys::default()
    };
    let token = source(&app, "postal", "postal", keys).await;
    let mut v: Value = serde_json::from_slice(&fixture("postal/delayed.json")).unwrap();
    v["timestamp"] = json!(now().timestamp() as f64 - 12.5);
    let body = serde_json::to_vec(&v).unwrap();
    let sig = vec![("x-postal-signature-256", rsa_sign("2", &body))];
    let (status, reply) = post(&app, "postal", &token, &sig, body.clone()).await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["accepted"], 1, "{reply}");
    // The legacy SHA-1 header alone is accepted too; a wrong one is not.
    let legacy = vec![("x-postal-signature", rsa_sign("1", &body))];
    let (status, reply) = post(&app, "postal", &token, &legacy, body.clone()).await;
    assert_eq!(
        (status, reply["duplicates"].as_u64()),
        (200, Some(1)),
        "{reply}"
    );
    let wrong = vec![("x-postal-signature-256", rsa_sign("1", &body))];
    let (status, r) = post(&app, "postal", &token, &wrong, body).await;
    assert_refused(status, &r, "does not match");
}

// ---------------------------------------------------------------- Mandrill

#[tokio::test]
async fn mandrill_signs_the_configured_url() {
    let app = app(Backend::Sqlite).await;
    let key = "mandrill-webhook-key";
    let url = "https://deferwatch.example.com/api/v1/ingest/mandrill?token=abc";
    let keys = SourceKeys {
        secret: Some(key.into()),
        webhook_url: Some(url.into()),
        ..SourceKeys::default()
    };
    let token = source(&app, "md", "mandrill", keys).await;
    let events = String::from_utf8(fixture("mandrill/events.json")).unwrap();
    let body = form_urlencoded::Serializer::new(String::new())
        .append_pair("mandrill_events", &events)
        .finish();
    let sign = |signed_url: &str| {
        let mut mac = Hmac::<Sha1>::new_from_slice(key.as_bytes()).unwrap();
        mac.update(signed_url.as_bytes());
        mac.update(b"mandrill_events");
        mac.update(events.as_bytes());
        vec![("x-mandrill-signature", b64(&mac.finalize().into_bytes()))]
    };
    let form = (
        "content-type",
        "application/x-www-form-urlencoded".to_string(),
    );
    let mut headers = sign(url);
    headers.push(form.clone());
    let (status, reply) = post(
        &app,
        "mandrill",
        &token,
        &headers,
        body.clone().into_bytes(),
    )
    .await;
    assert_eq!(status, 200, "{reply}");
    assert!(reply["accepted"].as_u64().unwrap() >= 3, "{reply}");
    // Signed for another URL (a proxy rewrote it, or a forger guessed).
    let mut headers = sign("https://elsewhere.example/hook");
    headers.push(form);
    let (status, r) = post(&app, "mandrill", &token, &headers, body.into_bytes()).await;
    assert_refused(status, &r, "does not match");
}

// ---------------------------------------------------------------- SparkPost, Brevo

#[tokio::test]
async fn unsigned_providers_use_the_token_and_optional_credentials() {
    let app = app(Backend::Sqlite).await;
    let sp = source(
        &app,
        "sp",
        "sparkpost",
        SourceKeys {
            secret: Some("hook:s3cret".into()),
            ..SourceKeys::default()
        },
    )
    .await;
    let body = fixture("sparkpost/events.json");
    let basic = |cred: &str| vec![("authorization", format!("Basic {}", b64(cred.as_bytes())))];
    let (status, reply) = post(&app, "sparkpost", &sp, &basic("hook:s3cret"), body.clone()).await;
    assert_eq!(status, 200, "{reply}");
    assert!(reply["accepted"].as_u64().unwrap() >= 1, "{reply}");
    let (status, r) = post(&app, "sparkpost", &sp, &basic("hook:wrong"), body.clone()).await;
    assert_refused(status, &r, "do not match");
    let (status, r) = post(&app, "sparkpost", &sp, &[], body).await;
    assert_refused(status, &r, "missing header authorization");

    // Brevo with no credentials configured: the token alone, here as Brevo's bearer.
    let brevo = source(&app, "brevo", "brevo", SourceKeys::default()).await;
    let r = app
        .client
        .post(format!("{}/api/v1/ingest/brevo", app.base))
        .bearer_auth(&brevo)
        .body(fixture("brevo/deferred.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["accepted"], 1, "{v}");
}

#[tokio::test]
async fn a_signing_source_without_its_key_refuses_everything() {
    let app = app(Backend::Sqlite).await;
    // Created behind the validation's back (an older database, a hand edit).
    let token = source(&app, "bare", "mailgun", SourceKeys::default()).await;
    let body = mailgun_signed(
        "any",
        now().timestamp(),
        "d9ce0edb2dd8301dee6c2405235584e45aa91d1e9f979f3de3",
    );
    let (status, r) = post(&app, "mailgun", &token, &[], body).await;
    assert_refused(status, &r, "has no signing key");
    // And a source of one format cannot post another.
    let (status, r) = post(&app, "sendgrid", &token, &[], b"[]".to_vec()).await;
    assert_eq!(status, 400, "{r}");
    assert_eq!(r["field"], "format", "{r}");
}
