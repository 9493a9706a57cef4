//! Fixture payloads for every provider and record type, and signature checks with real
//! keys made here: ECDSA P-256 (SendGrid), RSA 2048 (Postal, SNS), HMAC secrets.

use super::*;
use crate::smtp::{Cause, Classifier};
use axum::http::HeaderValue;
use chrono::TimeZone;
use p256::ecdsa::SigningKey;
use p256::ecdsa::signature::Signer;
use p256::pkcs8::EncodePublicKey;
use proptest::prelude::*;
use rsa::RsaPrivateKey;
use rsa::pkcs1v15::Pkcs1v15Sign;
use rsa::pkcs8::{EncodePrivateKey, LineEnding};
use sha1::Sha1;
use sha2::{Digest, Sha256};
use std::sync::LazyLock;

static CLASSIFIER: LazyLock<Classifier> = LazyLock::new(Classifier::builtin);
/// One RSA key for the whole test binary: generation is the slow part in debug builds.
static RSA_KEY: LazyLock<RsaPrivateKey> = LazyLock::new(|| {
    RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 2048).expect("RSA key generation")
});
/// A self-signed certificate for that key, standing in for SNS's signing certificate.
static SNS_CERT: LazyLock<String> = LazyLock::new(|| {
    let pem = RSA_KEY.to_pkcs8_pem(LineEnding::LF).unwrap();
    let kp = rcgen::KeyPair::from_pkcs8_pem_and_sign_algo(&pem, &rcgen::PKCS_RSA_SHA256).unwrap();
    let params =
        rcgen::CertificateParams::new(vec!["sns.us-east-1.amazonaws.com".to_string()]).unwrap();
    params.self_signed(&kp).unwrap().pem()
});

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 23, 5, 0, 0).unwrap()
}

fn ctx() -> Context<'static> {
    Context {
        source_id: 7,
        classifier: &CLASSIFIER,
        now: now(),
        max_future_skew: TimeDelta::hours(1),
    }
}

fn tolerance() -> TimeDelta {
    TimeDelta::minutes(5)
}

fn fixture(path: &str) -> Vec<u8> {
    let full = format!("{}/tests/fixtures/{path}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&full).unwrap_or_else(|e| panic!("{full}: {e}"))
}

fn events(parsed: &[Parsed]) -> Vec<&NewEvent> {
    parsed
        .iter()
        .filter_map(|p| match p {
            Parsed::Event(e) => Some(e),
            _ => None,
        })
        .collect()
}

fn ignored(parsed: &[Parsed]) -> Vec<&str> {
    parsed
        .iter()
        .filter_map(|p| match p {
            Parsed::Ignored { kind } => Some(kind.as_str()),
            _ => None,
        })
        .collect()
}

fn rejected(parsed: &[Parsed]) -> Vec<(usize, Option<&str>, &str)> {
    parsed
        .iter()
        .filter_map(|p| match p {
            Parsed::Rejected {
                index,
                field,
                reason,
                ..
            } => Some((*index, field.as_deref(), reason.as_str())),
            _ => None,
        })
        .collect()
}

fn one(parsed: &[Parsed]) -> &NewEvent {
    let evs = events(parsed);
    assert_eq!(evs.len(), 1, "{parsed:?}");
    evs[0]
}

fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        h.insert(
            axum::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            HeaderValue::from_str(v).unwrap(),
        );
    }
    h
}

fn b64e(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

// ---------------------------------------------------------------- SendGrid

#[test]
fn sendgrid_events() {
    let parsed = sendgrid::parse(&fixture("sendgrid/events.json"), &ctx());
    let evs = events(&parsed);
    assert_eq!(evs.len(), 4, "{parsed:?}");
    let d = evs[0];
    assert_eq!(d.kind, EventType::Deferred);
    assert_eq!(d.recipient, "example@test.com");
    assert_eq!(d.code, Some(421));
    assert_eq!(d.enhanced.as_deref(), Some("4.7.28"));
    assert_eq!(d.attempt, Some(5));
    assert_eq!(d.source_ip.as_deref(), Some("168.1.1.1"));
    assert_eq!(d.ext_id.as_deref(), Some("t7LEShmowp86DTdUW8M-GQ=="));
    assert_eq!(
        d.message_id.as_deref(),
        Some("14c5d75ce93.dfd.64b469@ismtpd-555")
    );
    assert_eq!(d.time.timestamp(), 1513299569);
    assert!(d.classification.is_some());
    assert!(d.raw.contains("t7LEShmowp86DTdUW8M-GQ=="));
    let ok = evs[1];
    assert_eq!(ok.kind, EventType::Delivered);
    assert_eq!(ok.pool.as_deref(), Some("transactional"));
    assert!(ok.classification.is_none());
    let b = evs[2];
    assert_eq!(b.kind, EventType::Bounced);
    assert_eq!(b.code, Some(550));
    assert_eq!(b.enhanced.as_deref(), Some("5.1.1"));
    assert_eq!(evs[3].kind, EventType::Bounced);
    assert_eq!(evs[3].enhanced.as_deref(), Some("5.7.1"));
    assert_eq!(ignored(&parsed), ["open", "dropped"]);
    let r = rejected(&parsed);
    assert_eq!(r.len(), 1);
    assert_eq!((r[0].0, r[0].1), (6, Some("recipient")));
    // Distinct events, distinct keys; the same payload again, the same keys.
    let again = sendgrid::parse(&fixture("sendgrid/events.json"), &ctx());
    let keys: Vec<_> = evs.iter().map(|e| e.dedupe_key.clone()).collect();
    let keys2: Vec<_> = events(&again)
        .iter()
        .map(|e| e.dedupe_key.clone())
        .collect();
    assert_eq!(keys, keys2);
    let mut uniq = keys.clone();
    uniq.dedup();
    assert_eq!(uniq.len(), keys.len());
}

#[test]
fn sendgrid_not_an_array_is_one_rejection() {
    let parsed = sendgrid::parse(b"{\"event\":\"deferred\"", &ctx());
    assert_eq!(rejected(&parsed).len(), 1);
}

/// SendGrid's own published test vector (sendgrid-python, test_eventwebhook.py).
#[test]
fn sendgrid_official_vector() {
    let key = sendgrid::public_key("MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE83T4O/n84iotIvIW4mdBgQ/7dAfSmpqIM8kF9mN1flpVKS3GRqe62gw+2fNNRaINXvVpiglSI8eNEc6wEA3F+g==").unwrap();
    let body = "[{\"email\":\"hello@world.com\",\"event\":\"dropped\",\"reason\":\"Bounced Address\",\"sg_event_id\":\"ZHJvcC0xMDk5NDkxOS1MUnpYbF9OSFN0T0doUTRrb2ZTbV9BLTA\",\"sg_message_id\":\"LRzXl_NHStOGhQ4kofSm_A.filterdrecv-p3mdw1-756b745b58-kmzbl-18-5F5FC76C-9.0\",\"smtp-id\":\"<LRzXl_NHStOGhQ4kofSm_A@ismtpd0039p1iad1.sendgrid.net>\",\"timestamp\":1600112492}]\r\n";
    let h = headers(&[
        (
            sendgrid::SIGNATURE_HEADER,
            "MEUCIGHQVtGj+Y3LkG9fLcxf3qfI10QysgDWmMOVmxG0u6ZUAiEAyBiXDWzM+uOe5W0JuG+luQAbPIqHh89M15TluLtEZtM=",
        ),
        (sendgrid::TIMESTAMP_HEADER, "1600112502"),
    ]);
    let then = Utc.timestamp_opt(1600112502, 0).unwrap();
    sendgrid::verify(body.as_bytes(), &h, &key, then, tolerance()).unwrap();
    // The same request today is a replay.
    assert!(matches!(
        sendgrid::verify(body.as_bytes(), &h, &key, now(), tolerance()),
        Err(SignatureError::Replayed { .. })
    ));
}

#[test]
fn sendgrid_signature() {
    let sk = SigningKey::from_slice(&[0x42; 32]).unwrap();
    let der = p256::PublicKey::from(sk.verifying_key())
        .to_public_key_der()
        .unwrap();
    let key_b64 = b64e(der.as_bytes());
    let key = sendgrid::public_key(&key_b64).unwrap();
    let pem = format!("-----BEGIN PUBLIC KEY-----\n{key_b64}\n-----END PUBLIC KEY-----\n");
    assert_eq!(sendgrid::public_key(&pem).unwrap(), key);
    let body = fixture("sendgrid/events.json");
    let sign = |ts: &str, body: &[u8]| {
        let mut m = ts.as_bytes().to_vec();
        m.extend_from_slice(body);
        let sig: p256::ecdsa::Signature = sk.sign(&m);
        b64e(sig.to_der().as_bytes())
    };
    let ts = now().timestamp().to_string();
    let h = headers(&[
        (sendgrid::SIGNATURE_HEADER, &sign(&ts, &body)),
        (sendgrid::TIMESTAMP_HEADER, &ts),
    ]);
    sendgrid::verify(&body, &h, &key, now(), tolerance()).unwrap();

    // Tampered body.
    let mut tampered = body.clone();
    tampered[10] ^= 1;
    assert_eq!(
        sendgrid::verify(&tampered, &h, &key, now(), tolerance()),
        Err(SignatureError::Mismatch)
    );
    // Timestamp header changed: the signature covers it.
    let mut h2 = h.clone();
    h2.insert(
        sendgrid::TIMESTAMP_HEADER,
        HeaderValue::from_static("1763873001"),
    );
    assert_eq!(
        sendgrid::verify(&body, &h2, &key, now(), tolerance()),
        Err(SignatureError::Mismatch)
    );
    // Another key.
    let other = SigningKey::from_slice(&[0x43; 32]).unwrap();
    assert_eq!(
        sendgrid::verify(&body, &h, other.verifying_key(), now(), tolerance()),
        Err(SignatureError::Mismatch)
    );
    // Missing header.
    let no_sig = headers(&[(sendgrid::TIMESTAMP_HEADER, &ts)]);
    let e = sendgrid::verify(&body, &no_sig, &key, now(), tolerance()).unwrap_err();
    assert!(
        e.to_string()
            .contains("x-twilio-email-event-webhook-signature"),
        "{e}"
    );
    // Garbage signature.
    let bad = headers(&[
        (sendgrid::SIGNATURE_HEADER, "bm90IGEgc2lnbmF0dXJl"),
        (sendgrid::TIMESTAMP_HEADER, &ts),
    ]);
    assert!(matches!(
        sendgrid::verify(&body, &bad, &key, now(), tolerance()),
        Err(SignatureError::Malformed { .. })
    ));
    // Validly signed but old: replayed outside the window.
    let old = (now() - TimeDelta::minutes(6)).timestamp().to_string();
    let h_old = headers(&[
        (sendgrid::SIGNATURE_HEADER, &sign(&old, &body)),
        (sendgrid::TIMESTAMP_HEADER, &old),
    ]);
    let e = sendgrid::verify(&body, &h_old, &key, now(), tolerance()).unwrap_err();
    assert!(
        matches!(e, SignatureError::Replayed { age_secs: 360, .. }),
        "{e}"
    );
    // Inside the window it passes.
    let recent = (now() - TimeDelta::minutes(4)).timestamp().to_string();
    let h_recent = headers(&[
        (sendgrid::SIGNATURE_HEADER, &sign(&recent, &body)),
        (sendgrid::TIMESTAMP_HEADER, &recent),
    ]);
    sendgrid::verify(&body, &h_recent, &key, now(), tolerance()).unwrap();
    assert!(matches!(
        sendgrid::public_key("bm90IGEga2V5"),
        Err(SignatureError::BadKey(_))
    ));
}

// ---------------------------------------------------------------- Mailgun

fn mailgun_signed(path: &str, key: &str, ts: i64) -> Vec<u8> {
    use hmac::{Hmac, Mac};
    let mut v: Value = serde_json::from_slice(&fixture(path)).unwrap();
    let token = v["signature"]["token"].as_str().unwrap().to_string();
    let mut mac = Hmac::<Sha256>::new_from_slice(key.as_bytes()).unwrap();
    mac.update(ts.to_string().as_bytes());
    mac.update(token.as_bytes());
    v["signature"]["timestamp"] = Value::String(ts.to_string());
    v["signature"]["signature"] = Value::String(hex::encode(mac.finalize().into_bytes()));
    serde_json::to_vec(&v).unwrap()
}

#[test]
fn mailgun_events() {
    let d = mailgun::parse(&fixture("mailgun/temporary.json"), &ctx());
    let d = one(&d);
    assert_eq!(d.kind, EventType::Deferred);
    assert_eq!(d.code, Some(451));
    assert_eq!(d.enhanced.as_deref(), Some("4.7.650"));
    assert_eq!(
        d.response.as_deref(),
        Some(
            "451 4.7.650 The mail server [209.61.151.224] has been temporarily rate limited due to IP reputation."
        )
    );
    assert_eq!(d.attempt, Some(3));
    assert_eq!(d.source_ip.as_deref(), Some("209.61.151.224"));
    assert_eq!(d.sender.as_deref(), Some("bounce+abc@mg.example.net"));
    assert_eq!(
        d.mx_host.as_deref(),
        Some("example-com.mail.protection.outlook.com")
    );
    assert_eq!(d.destination, "microsoft");
    assert_eq!(d.message_id.as_deref(), Some("20251123.abc@mg.example.net"));
    assert_eq!(d.time.timestamp_millis(), 1763872990123);
    assert!(
        d.ext_id
            .as_deref()
            .unwrap()
            .starts_with("Fs7-5t81S2ms6uGxwbYLXw@")
    );

    let b = mailgun::parse(&fixture("mailgun/permanent.json"), &ctx());
    let b = one(&b);
    assert_eq!(b.kind, EventType::Bounced);
    assert_eq!((b.code, b.enhanced.as_deref()), (Some(550), Some("5.1.1")));
    assert_eq!(b.destination, "google");

    let ok = mailgun::parse(&fixture("mailgun/delivered.json"), &ctx());
    let ok = one(&ok);
    assert_eq!(ok.kind, EventType::Delivered);
    assert_eq!(ok.code, Some(250));

    // Mailgun's internal 498 "No MX": the description is the text.
    let nomx = mailgun::parse(&fixture("mailgun/no-mx.json"), &ctx());
    let nomx = one(&nomx);
    assert_eq!(nomx.code, Some(498));
    assert_eq!(nomx.response.as_deref(), Some("498 No MX for nomx.example"));

    let open = mailgun::parse(&fixture("mailgun/opened.json"), &ctx());
    assert_eq!(ignored(&open), ["opened"]);
    assert_eq!(rejected(&mailgun::parse(b"[]", &ctx())).len(), 1);
}

#[test]
fn mailgun_signature() {
    let key = "key-3ax6xnjp29jd6fds4gc373sgvjxteol0";
    let ts = now().timestamp();
    let body = mailgun_signed("mailgun/temporary.json", key, ts);
    let signed = mailgun::verify(&body, key, now(), tolerance()).unwrap();
    assert_eq!(signed.timestamp, ts);
    assert_eq!(signed.token.len(), 50);
    // Wrong key.
    assert_eq!(
        mailgun::verify(&body, "another-key", now(), tolerance()),
        Err(SignatureError::Mismatch)
    );
    // Tampered signed value: the token.
    let mut v: Value = serde_json::from_slice(&body).unwrap();
    v["signature"]["token"] = Value::String("x".repeat(50));
    assert_eq!(
        mailgun::verify(&serde_json::to_vec(&v).unwrap(), key, now(), tolerance()),
        Err(SignatureError::Mismatch)
    );
    // Missing signature object.
    let mut v: Value = serde_json::from_slice(&body).unwrap();
    v.as_object_mut().unwrap().remove("signature");
    let e = mailgun::verify(&serde_json::to_vec(&v).unwrap(), key, now(), tolerance()).unwrap_err();
    assert_eq!(e, SignatureError::Missing("the signature object".into()));
    // Replayed: valid signature, old timestamp.
    let old = mailgun_signed("mailgun/temporary.json", key, ts - 3600);
    assert!(matches!(
        mailgun::verify(&old, key, now(), tolerance()),
        Err(SignatureError::Replayed { age_secs: 3600, .. })
    ));
}

// ---------------------------------------------------------------- SES via SNS

const TOPIC: &str = "arn:aws:sns:us-east-1:123456789012:ses-events";
const CERT_URL: &str = "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-abc.pem";

fn rsa_sign_sha1(msg: &[u8]) -> String {
    b64e(
        &RSA_KEY
            .sign(Pkcs1v15Sign::new::<Sha1>(), &Sha1::digest(msg))
            .unwrap(),
    )
}

fn rsa_sign_sha256(msg: &[u8]) -> String {
    b64e(
        &RSA_KEY
            .sign(Pkcs1v15Sign::new::<Sha256>(), &Sha256::digest(msg))
            .unwrap(),
    )
}

/// An SNS notification around `message`, signed as SNS does (canonical string built
/// here independently of the code under test).
fn sns_notification(
    message: &str,
    version: &str,
    timestamp: &str,
    subject: Option<&str>,
) -> Vec<u8> {
    let id = "22b80b92-fdea-4c2c-8f9d-bdfb0c7bf324";
    let mut canonical = format!("Message\n{message}\nMessageId\n{id}\n");
    if let Some(s) = subject {
        canonical.push_str(&format!("Subject\n{s}\n"));
    }
    canonical.push_str(&format!(
        "Timestamp\n{timestamp}\nTopicArn\n{TOPIC}\nType\nNotification\n"
    ));
    let sig = match version {
        "1" => rsa_sign_sha1(canonical.as_bytes()),
        _ => rsa_sign_sha256(canonical.as_bytes()),
    };
    let mut v = serde_json::json!({
        "Type": "Notification",
        "MessageId": id,
        "TopicArn": TOPIC,
        "Message": message,
        "Timestamp": timestamp,
        "SignatureVersion": version,
        "Signature": sig,
        "SigningCertURL": CERT_URL,
        "UnsubscribeURL": "https://sns.us-east-1.amazonaws.com/?Action=Unsubscribe&SubscriptionArn=x",
    });
    if let Some(s) = subject {
        v["Subject"] = Value::String(s.to_string());
    }
    serde_json::to_vec_pretty(&v).unwrap()
}

fn fixture_text(path: &str) -> String {
    String::from_utf8(fixture(path)).unwrap().trim().to_string()
}

#[test]
fn ses_delivery_delay_through_sns() {
    let body = sns_notification(
        &fixture_text("ses/delivery-delay.json"),
        "2",
        "2026-11-23T04:59:00.000Z",
        None,
    );
    let parsed = ses::parse(&body, &ctx());
    let evs = events(&parsed);
    assert_eq!(evs.len(), 2, "{parsed:?}");
    assert!(evs.iter().all(|e| e.kind == EventType::Deferred));
    assert_eq!(evs[0].recipient, "recipient@example.com");
    assert_eq!(evs[0].code, Some(421));
    assert_eq!(evs[0].enhanced.as_deref(), Some("4.4.1"));
    assert_eq!(
        evs[0].response.as_deref(),
        Some("421 4.4.1 Unable to connect to remote host")
    );
    assert_eq!(evs[0].sender.as_deref(), Some("sender@example.com"));
    assert_eq!(evs[0].message_id.as_deref(), Some("abc123@example.com"));
    assert_eq!(evs[0].time.to_rfc3339(), "2026-11-23T04:30:00+00:00");
    assert_eq!(evs[1].recipient, "second@example.org");
    assert_eq!(evs[1].enhanced.as_deref(), Some("4.7.0"));
    assert_ne!(evs[0].dedupe_key, evs[1].dedupe_key);
    assert!(evs[0].raw.contains("DeliveryDelay"));
}

#[test]
fn ses_other_events_raw_delivery() {
    let d = ses::parse(&fixture("ses/delivery.json"), &ctx());
    let d = one(&d);
    assert_eq!(d.kind, EventType::Delivered);
    assert_eq!(d.mx_ip.as_deref(), Some("203.0.113.25"));
    assert_eq!(d.code, Some(250));

    let b = ses::parse(&fixture("ses/bounce-permanent.json"), &ctx());
    let b = one(&b);
    assert_eq!(b.kind, EventType::Bounced);
    assert_eq!((b.code, b.enhanced.as_deref()), (Some(550), Some("5.1.1")));

    let t = ses::parse(&fixture("ses/bounce-transient.json"), &ctx());
    let t = one(&t);
    assert_eq!(t.kind, EventType::Deferred);
    assert_eq!((t.code, t.enhanced.as_deref()), (Some(452), Some("4.2.2")));
    assert_eq!(t.cause(), Some(Cause::Mailbox));

    assert_eq!(
        ignored(&ses::parse(&fixture("ses/open.json"), &ctx())),
        ["Open"]
    );
    let unsub = serde_json::json!({"Type": "UnsubscribeConfirmation", "Message": "x"});
    assert_eq!(
        ignored(&ses::parse(unsub.to_string().as_bytes(), &ctx())),
        ["sns:UnsubscribeConfirmation"]
    );
    // A notification whose Message is not JSON.
    let bad = sns_notification("not json", "1", "2026-11-23T04:59:00.000Z", None);
    assert_eq!(rejected(&ses::parse(&bad, &ctx())).len(), 1);
}

#[test]
fn ses_subscription_confirmation() {
    let parsed = ses::parse(&fixture("ses/subscription-confirmation.json"), &ctx());
    match parsed.as_slice() {
        [
            Parsed::SubscriptionConfirmation {
                topic_arn,
                subscribe_url,
                token,
            },
        ] => {
            assert_eq!(topic_arn, "arn:aws:sns:us-west-2:123456789012:MyTopic");
            assert!(
                subscribe_url
                    .starts_with("https://sns.us-west-2.amazonaws.com/?Action=ConfirmSubscription")
            );
            assert!(token.starts_with("2336412f"));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn sns_signature_versions_and_confirmation() {
    let key = ses::key_from_cert_pem(SNS_CERT.as_bytes(), now()).unwrap();
    let msg = fixture_text("ses/delivery-delay.json");
    for version in ["1", "2"] {
        for subject in [None, Some("Amazon SES Email Event Notification")] {
            let body = sns_notification(&msg, version, "2026-11-23T04:58:00.000Z", subject);
            ses::verify(&body, &key, now(), tolerance())
                .unwrap_or_else(|e| panic!("version {version}, {subject:?}: {e}"));
            assert_eq!(ses::cert_url(&body).unwrap(), CERT_URL);
        }
    }
    // Tampered Message.
    let body = sns_notification(&msg, "2", "2026-11-23T04:58:00.000Z", None);
    let mut v: Value = serde_json::from_slice(&body).unwrap();
    v["Message"] = Value::String(msg.replace("4.4.1", "4.4.2"));
    assert_eq!(
        ses::verify(&serde_json::to_vec(&v).unwrap(), &key, now(), tolerance()),
        Err(SignatureError::Mismatch)
    );
    // A v2 signature declared as v1.
    let mut v: Value = serde_json::from_slice(&body).unwrap();
    v["SignatureVersion"] = Value::String("1".into());
    assert_eq!(
        ses::verify(&serde_json::to_vec(&v).unwrap(), &key, now(), tolerance()),
        Err(SignatureError::Mismatch)
    );
    // Missing signature.
    let mut v: Value = serde_json::from_slice(&body).unwrap();
    v.as_object_mut().unwrap().remove("Signature");
    assert_eq!(
        ses::verify(&serde_json::to_vec(&v).unwrap(), &key, now(), tolerance()),
        Err(SignatureError::Missing("Signature".into()))
    );
    // Replayed: an hour-old, validly signed notification.
    let old = sns_notification(&msg, "2", "2026-11-23T04:00:00.000Z", None);
    assert!(matches!(
        ses::verify(&old, &key, now(), tolerance()),
        Err(SignatureError::Replayed { .. })
    ));
    // Another key.
    let other = RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 1024)
        .unwrap()
        .to_public_key();
    assert_eq!(
        ses::verify(&body, &other, now(), tolerance()),
        Err(SignatureError::Mismatch)
    );

    // A subscription confirmation signs SubscribeURL and Token too.
    let mut v: Value =
        serde_json::from_slice(&fixture("ses/subscription-confirmation.json")).unwrap();
    v["Timestamp"] = Value::String("2026-11-23T04:59:30.000Z".into());
    let canonical = ses::string_to_sign(&v).unwrap();
    assert!(canonical.starts_with("Message\nYou have chosen"));
    assert!(canonical.contains("\nSubscribeURL\nhttps://sns.us-west-2.amazonaws.com/?Action="));
    assert!(canonical.contains("\nToken\n2336412f"));
    assert!(canonical.ends_with("Type\nSubscriptionConfirmation\n"));
    v["Signature"] = Value::String(rsa_sign_sha1(canonical.as_bytes()));
    let signed = serde_json::to_vec(&v).unwrap();
    ses::verify(&signed, &key, now(), tolerance()).unwrap();
    v["SubscribeURL"] = Value::String("https://attacker.example/confirm".into());
    assert_eq!(
        ses::verify(&serde_json::to_vec(&v).unwrap(), &key, now(), tolerance()),
        Err(SignatureError::Mismatch)
    );
}

#[test]
fn sns_cert_url_validation() {
    for ok in [
        "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-abc.pem",
        "https://sns.eu-central-1.amazonaws.com/x/y.pem",
        "https://sns.cn-north-1.amazonaws.com.cn/SimpleNotificationService-abc.pem",
        "https://SNS.us-east-1.amazonaws.com:443/a.pem",
    ] {
        ses::validate_cert_url(ok).unwrap_or_else(|e| panic!("{ok}: {e}"));
    }
    for bad in [
        "http://sns.us-east-1.amazonaws.com/a.pem",
        "https://sns.us-east-1.amazonaws.com.evil.example/a.pem",
        "https://evil.example/sns.us-east-1.amazonaws.com/a.pem",
        "https://sns.us-east-1.amazonaws.com/a.pem.txt",
        "https://sns.us-east-1.amazonaws.com:8443/a.pem",
        "https://user:pw@sns.us-east-1.amazonaws.com/a.pem",
        "https://sns.a.amazonaws.com/a.pem",
        "https://sns.us_east.amazonaws.com/a.pem",
        "https://s3.us-east-1.amazonaws.com/a.pem",
        "https://xsns.us-east-1.amazonaws.com/a.pem",
        "https://sns.us-east-1.amazonaws.com/a.pem?x=.pem",
        "https://52.94.0.1/a.pem",
        "not a url",
    ] {
        assert!(
            matches!(
                ses::validate_cert_url(bad),
                Err(SignatureError::Certificate(_))
            ),
            "{bad} accepted"
        );
    }
    // Outside the certificate's validity period, and not a certificate at all.
    let far = Utc.with_ymd_and_hms(4097, 1, 1, 0, 0, 0).unwrap();
    assert!(matches!(
        ses::key_from_cert_pem(SNS_CERT.as_bytes(), far),
        Err(SignatureError::Certificate(_))
    ));
    assert!(matches!(
        ses::key_from_cert_pem(
            b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
            now()
        ),
        Err(SignatureError::Certificate(_))
    ));
}

// ---------------------------------------------------------------- Postal

#[test]
fn postal_events() {
    let d = postal::parse(&fixture("postal/delayed.json"), &ctx());
    let d = one(&d);
    assert_eq!(d.kind, EventType::Deferred);
    assert_eq!(
        (d.code, d.enhanced.as_deref()),
        (Some(451), Some("4.7.650"))
    );
    assert_eq!(d.mx_ip.as_deref(), Some("40.93.212.0"));
    assert_eq!(
        d.mx_host.as_deref(),
        Some("example-com.mail.protection.outlook.com")
    );
    assert_eq!(d.destination, "microsoft");
    assert_eq!(d.recipient, "user@example.com");
    assert_eq!(d.sender.as_deref(), Some("news@mail.example.net"));
    assert_eq!(
        d.message_id.as_deref(),
        Some("5f1b5c1e-1f2b@mail.example.net")
    );
    assert_eq!(
        d.ext_id.as_deref(),
        Some("7b5e4d9c-4a1f-4e8a-9c1d-000000000001")
    );

    let s = postal::parse(&fixture("postal/sent.json"), &ctx());
    let s = one(&s);
    assert_eq!(s.kind, EventType::Delivered);
    assert_eq!(s.source_ip.as_deref(), Some("198.51.100.7"));
    assert_eq!(s.mx_ip.as_deref(), Some("40.93.212.0"));

    let f = postal::parse(&fixture("postal/failed.json"), &ctx());
    let f = one(&f);
    assert_eq!(f.kind, EventType::Bounced);
    assert_eq!(f.mx_host.as_deref(), Some("gmail-smtp-in.l.google.com"));

    let n = postal::parse(&fixture("postal/no-servers.json"), &ctx());
    let n = one(&n);
    assert_eq!(n.kind, EventType::Deferred);
    assert!(
        n.response
            .as_deref()
            .unwrap()
            .starts_with("Connection refused")
    );
    assert_eq!(n.mx_host, None);

    assert_eq!(
        ignored(&postal::parse(&fixture("postal/link-clicked.json"), &ctx())),
        ["MessageLinkClicked"]
    );
}

#[test]
fn postal_signature() {
    let public = RSA_KEY.to_public_key();
    let spki_b64 = b64e(public.to_public_key_der().unwrap().as_bytes());
    // The bare base64 form Postal shows, and PEM, both parse to the same key.
    let key = postal::public_key(&spki_b64).unwrap();
    assert_eq!(key, public);
    let pem = public.to_public_key_pem(LineEnding::LF).unwrap();
    assert_eq!(postal::public_key(&pem).unwrap(), public);

    let mut v: Value = serde_json::from_slice(&fixture("postal/delayed.json")).unwrap();
    v["timestamp"] = serde_json::json!(now().timestamp() as f64 - 30.5);
    let body = serde_json::to_vec(&v).unwrap();
    let sig256 = rsa_sign_sha256(&body);
    let sig1 = rsa_sign_sha1(&body);
    let both = headers(&[
        (postal::SIGNATURE_256_HEADER, &sig256),
        (postal::SIGNATURE_HEADER, &sig1),
    ]);
    postal::verify(&body, &both, &key, now(), tolerance()).unwrap();
    // Legacy Postal: SHA-1 only.
    let legacy = headers(&[(postal::SIGNATURE_HEADER, &sig1)]);
    postal::verify(&body, &legacy, &key, now(), tolerance()).unwrap();
    // A bad SHA-256 signature is not rescued by a good SHA-1 one.
    let downgrade = headers(&[
        (postal::SIGNATURE_256_HEADER, &sig1),
        (postal::SIGNATURE_HEADER, &sig1),
    ]);
    assert_eq!(
        postal::verify(&body, &downgrade, &key, now(), tolerance()),
        Err(SignatureError::Mismatch)
    );
    let mut tampered = body.clone();
    let pos = tampered.iter().position(|b| *b == b'4').unwrap();
    tampered[pos] = b'5';
    assert_eq!(
        postal::verify(&tampered, &both, &key, now(), tolerance()),
        Err(SignatureError::Mismatch)
    );
    let e = postal::verify(&body, &HeaderMap::new(), &key, now(), tolerance()).unwrap_err();
    assert!(matches!(e, SignatureError::Missing(_)), "{e}");
    // A validly signed body from an hour ago is a replay.
    v["timestamp"] = serde_json::json!(now().timestamp() - 3600);
    let old = serde_json::to_vec(&v).unwrap();
    let old_h = headers(&[(postal::SIGNATURE_256_HEADER, &rsa_sign_sha256(&old))]);
    assert!(matches!(
        postal::verify(&old, &old_h, &key, now(), tolerance()),
        Err(SignatureError::Replayed { .. })
    ));
    assert!(matches!(
        postal::public_key("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----"),
        Err(SignatureError::BadKey(_))
    ));
}

// ---------------------------------------------------------------- SparkPost

#[test]
fn sparkpost_events() {
    let parsed = sparkpost::parse(&fixture("sparkpost/events.json"), &ctx());
    let evs = events(&parsed);
    assert_eq!(evs.len(), 3, "{parsed:?}");
    let d = evs[0];
    assert_eq!(d.kind, EventType::Deferred);
    assert_eq!((d.code, d.enhanced.as_deref()), (Some(421), Some("4.7.0")));
    assert_eq!(d.attempt, Some(3));
    assert_eq!(d.source_ip.as_deref(), Some("192.0.2.8"));
    assert_eq!(d.mx_ip.as_deref(), Some("67.195.176.20"));
    assert_eq!(d.pool.as_deref(), Some("Example-Ip-Pool"));
    assert_eq!(d.destination, "yahoo");
    assert_eq!(d.ext_id.as_deref(), Some("92356927693813856"));
    assert_eq!(d.time.timestamp(), 1763872990);
    assert_eq!(evs[1].kind, EventType::Delivered);
    assert_eq!(evs[2].kind, EventType::Bounced);
    assert_eq!(evs[2].code, Some(550));
    assert_eq!(
        ignored(&parsed),
        ["message_event.policy_rejection", "track_event.open"]
    );
    let r = rejected(&parsed);
    assert_eq!((r[0].0, r[0].1), (5, Some("msys")));
}

#[test]
fn basic_bearer_and_token_auth() {
    let basic = headers(&[("authorization", &format!("Basic {}", b64e(b"hook:s3cret")))]);
    verify_basic_auth(&basic, "hook", "s3cret").unwrap();
    assert!(matches!(
        verify_basic_auth(&basic, "hook", "wrong"),
        Err(SignatureError::Credentials(_))
    ));
    assert!(matches!(
        verify_basic_auth(&HeaderMap::new(), "hook", "s3cret"),
        Err(SignatureError::Missing(_))
    ));
    let bearer = headers(&[("authorization", "Bearer tok-123")]);
    verify_bearer(&bearer, "tok-123").unwrap();
    assert!(verify_bearer(&bearer, "tok-124").is_err());
    assert!(verify_bearer(&basic, "tok-123").is_err());
    let legacy = headers(&[(sparkpost::TOKEN_HEADER, "abc")]);
    sparkpost::verify_token(&legacy, "abc").unwrap();
    assert!(sparkpost::verify_token(&legacy, "abd").is_err());
}

// ---------------------------------------------------------------- Mandrill

/// Kept out of `prop_assert!`, which would read its braces as a format string.
const EMPTY_OBJECT: &[u8] = b"{}";

const MANDRILL_URL: &str = "https://dw.example.com/api/v1/ingest/mandrill?token=abc";

fn mandrill_body() -> Vec<u8> {
    let events = String::from_utf8(fixture("mandrill/events.json")).unwrap();
    form_urlencoded::Serializer::new(String::new())
        .append_pair("mandrill_events", &events)
        .finish()
        .into_bytes()
}

fn mandrill_sign(key: &str, url: &str, params: &[(&str, &str)]) -> String {
    use hmac::{Hmac, Mac};
    let mut sorted = params.to_vec();
    sorted.sort();
    let mut mac = Hmac::<Sha1>::new_from_slice(key.as_bytes()).unwrap();
    mac.update(url.as_bytes());
    for (k, v) in sorted {
        mac.update(k.as_bytes());
        mac.update(v.as_bytes());
    }
    b64e(&mac.finalize().into_bytes())
}

#[test]
fn mandrill_events() {
    let parsed = mandrill::parse(&mandrill_body(), &ctx());
    let evs = events(&parsed);
    assert_eq!(evs.len(), 4, "{parsed:?}");
    let d = evs[0];
    assert_eq!(d.kind, EventType::Deferred);
    assert_eq!((d.code, d.enhanced.as_deref()), (Some(451), Some("4.3.5")));
    assert_eq!(d.source_ip.as_deref(), Some("198.2.128.10"));
    assert_eq!(d.mx_ip.as_deref(), Some("203.0.113.30"));
    assert_eq!(d.attempt, Some(2));
    assert_eq!(d.recipient, "example.webhook@mandrillapp.com");
    assert_eq!(d.sender.as_deref(), Some("example.sender@mandrillapp.com"));
    assert_eq!(evs[1].kind, EventType::Delivered);
    assert_eq!(evs[2].kind, EventType::Bounced);
    assert_eq!(
        (evs[2].code, evs[2].enhanced.as_deref()),
        (Some(550), Some("5.1.1"))
    );
    assert_eq!(evs[3].kind, EventType::Bounced);
    assert_eq!(evs[3].code, Some(452));
    // Same message id, different events: different keys.
    assert_ne!(evs[0].dedupe_key, evs[1].dedupe_key);
    assert_eq!(ignored(&parsed), ["open", "sync:blacklist"]);
    assert_eq!(rejected(&mandrill::parse(b"foo=bar", &ctx())).len(), 1);
}

#[test]
fn mandrill_signature() {
    let key = "mandrill-webhook-key";
    let body = mandrill_body();
    let events = String::from_utf8(fixture("mandrill/events.json")).unwrap();
    let sig = mandrill_sign(key, MANDRILL_URL, &[("mandrill_events", &events)]);
    let h = headers(&[(mandrill::SIGNATURE_HEADER, &sig)]);
    mandrill::verify(&body, &h, key, MANDRILL_URL).unwrap();
    // The URL is part of what is signed.
    assert_eq!(
        mandrill::verify(
            &body,
            &h,
            key,
            "https://dw.example.com/api/v1/ingest/mandrill"
        ),
        Err(SignatureError::Mismatch)
    );
    assert_eq!(
        mandrill::verify(&body, &h, "other-key", MANDRILL_URL),
        Err(SignatureError::Mismatch)
    );
    let tampered = String::from_utf8(body.clone())
        .unwrap()
        .replace("451", "452");
    assert_eq!(
        mandrill::verify(tampered.as_bytes(), &h, key, MANDRILL_URL),
        Err(SignatureError::Mismatch)
    );
    assert!(matches!(
        mandrill::verify(&body, &HeaderMap::new(), key, MANDRILL_URL),
        Err(SignatureError::Missing(_))
    ));
    // Several fields are signed sorted by name, whatever order they came in.
    let multi = b"zeta=1&alpha=two+words&mandrill_events=%5B%5D";
    let sig = mandrill_sign(
        key,
        MANDRILL_URL,
        &[
            ("alpha", "two words"),
            ("mandrill_events", "[]"),
            ("zeta", "1"),
        ],
    );
    mandrill::verify(
        multi,
        &headers(&[(mandrill::SIGNATURE_HEADER, &sig)]),
        key,
        MANDRILL_URL,
    )
    .unwrap();
}

// ---------------------------------------------------------------- Brevo

#[test]
fn brevo_events() {
    let d = brevo::parse(&fixture("brevo/deferred.json"), &ctx());
    let d = one(&d);
    assert_eq!(d.kind, EventType::Deferred);
    assert_eq!(
        (d.code, d.enhanced.as_deref()),
        (Some(451), Some("4.7.500"))
    );
    assert_eq!(d.source_ip.as_deref(), Some("185.41.28.109"));
    assert_eq!(d.time.timestamp(), 1763872990);
    assert_eq!(
        d.message_id.as_deref(),
        Some("202611230503.12345678901@smtp-relay.mailin.fr")
    );
    // Brevo's label is kept; the 5xx code shows in the classification.
    let p = brevo::parse(&fixture("brevo/deferred-550.json"), &ctx());
    let p = one(&p);
    assert_eq!(p.kind, EventType::Deferred);
    assert_eq!(p.code, Some(550));
    let ok = brevo::parse(&fixture("brevo/delivered.json"), &ctx());
    assert_eq!(one(&ok).kind, EventType::Delivered);
    let hb = brevo::parse(&fixture("brevo/hard_bounce.json"), &ctx());
    assert_eq!(one(&hb).kind, EventType::Bounced);
    let sb = brevo::parse(&fixture("brevo/soft_bounce.json"), &ctx());
    assert_eq!(one(&sb).code, Some(452));
    assert_eq!(
        ignored(&brevo::parse(&fixture("brevo/opened.json"), &ctx())),
        ["opened"]
    );
    // Batched form: an array.
    let batch = format!(
        "[{},{}]",
        fixture_text("brevo/deferred.json"),
        fixture_text("brevo/delivered.json")
    );
    assert_eq!(events(&brevo::parse(batch.as_bytes(), &ctx())).len(), 2);
}

// ---------------------------------------------------------------- shared rules

#[test]
fn future_timestamps_are_rejected() {
    let body = br#"[{"email":"a@example.com","timestamp":1900000000,"event":"deferred","response":"421 later","sg_event_id":"f"}]"#;
    let parsed = sendgrid::parse(body, &ctx());
    let r = rejected(&parsed)
        .into_iter()
        .map(|(i, f, _)| (i, f))
        .collect::<Vec<_>>();
    assert_eq!(r, [(0, Some("timestamp"))]);
}

#[test]
fn failures_need_a_reply_or_code() {
    let body = br#"[{"email":"a@example.com","timestamp":1763872990,"event":"deferred","sg_event_id":"n"},
                    {"email":"a@example.com","timestamp":1763872990,"event":"delivered","sg_event_id":"m"}]"#;
    let parsed = sendgrid::parse(body, &ctx());
    let r: Vec<_> = rejected(&parsed)
        .into_iter()
        .map(|(i, f, _)| (i, f))
        .collect();
    assert_eq!(r, [(0, Some("response"))]);
    assert_eq!(events(&parsed).len(), 1);
}

#[test]
fn timestamp_window_is_symmetric() {
    check_timestamp(now().timestamp() + 299, now(), tolerance()).unwrap();
    assert!(check_timestamp(now().timestamp() + 301, now(), tolerance()).is_err());
    assert!(check_timestamp(i64::MIN, now(), tolerance()).is_err());
    assert!(check_timestamp(i64::MAX, now(), tolerance()).is_err());
}

#[test]
fn esp_names_round_trip() {
    for e in Esp::ALL {
        assert_eq!(e.as_str().parse::<Esp>(), Ok(e));
    }
    assert!("postfix".parse::<Esp>().is_err());
    let via = Esp::Sendgrid.parse(&fixture("sendgrid/events.json"), &ctx());
    assert_eq!(events(&via).len(), 4);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn arbitrary_bodies_never_panic(body in proptest::collection::vec(any::<u8>(), 0..512)) {
        let c = ctx();
        for esp in Esp::ALL {
            for p in esp.parse(&body, &c) {
                // Whatever the body, the outcome is never a rejection without a reason.
                if let Parsed::Rejected { reason, .. } = p {
                    prop_assert!(!reason.is_empty());
                }
            }
        }
        let _ = mailgun::verify(&body, "k", now(), tolerance());
        let _ = mandrill::verify(&body, &HeaderMap::new(), "k", MANDRILL_URL);
        let _ = ses::string_to_sign(&serde_json::from_slice(&body).unwrap_or(Value::Null));
        let _ = ses::cert_url(&body);
    }

    #[test]
    fn arbitrary_signature_headers_never_panic(sig in "[ -~]{0,120}", ts in "[ -~]{0,24}") {
        static KEYS: LazyLock<(p256::ecdsa::VerifyingKey, rsa::RsaPublicKey)> = LazyLock::new(|| {
            let sk = SigningKey::from_slice(&[0x42; 32]).unwrap();
            (*sk.verifying_key(), RSA_KEY.to_public_key())
        });
        let h = headers(&[
            (sendgrid::SIGNATURE_HEADER, &sig),
            (sendgrid::TIMESTAMP_HEADER, &ts),
            (postal::SIGNATURE_256_HEADER, &sig),
            (mandrill::SIGNATURE_HEADER, &sig),
            ("authorization", &sig),
        ]);
        prop_assert!(sendgrid::verify(b"[]", &h, &KEYS.0, now(), tolerance()).is_err());
        prop_assert!(postal::verify(EMPTY_OBJECT, &h, &KEYS.1, now(), tolerance()).is_err());
        prop_assert!(mandrill::verify(b"a=b", &h, "k", MANDRILL_URL).is_err());
        let _ = verify_basic_auth(&h, "u", "p");
        let _ = verify_bearer(&h, "t");
        let _ = sendgrid::public_key(&sig);
        let _ = postal::public_key(&sig);
        let _ = ses::validate_cert_url(&sig);
    }

    #[test]
    fn arbitrary_json_shapes_never_panic(
        event in "[a-z_]{0,12}|deferred|delivered|bounce|failed|delay|MessageDelayed|DeliveryDelay",
        ts in prop_oneof![Just(Value::Null), any::<i64>().prop_map(Value::from), any::<f64>().prop_map(Value::from), ".{0,20}".prop_map(Value::from)],
        text in ".{0,40}",
    ) {
        let c = ctx();
        let item = serde_json::json!({
            "event": event, "type": event, "eventType": event, "timestamp": ts, "ts": ts,
            "ts_event": ts, "email": text, "recipient": text, "response": text,
            "severity": "temporary", "attempt": ts,
            "msys": {"message_event": {"type": event, "timestamp": ts, "rcpt_to": text}},
            "event-data": {"event": event, "severity": "temporary", "timestamp": ts, "recipient": text,
                           "delivery-status": {"code": ts, "message": text}},
            "payload": {"message": {"to": text}, "output": text, "details": text, "timestamp": ts},
            "deliveryDelay": {"delayedRecipients": [{"emailAddress": text, "diagnosticCode": text}], "timestamp": text},
            "msg": {"email": text, "smtp_events": [{"diag": text, "source_ip": text}]},
        });
        let one = serde_json::to_vec(&item).unwrap();
        let arr = serde_json::to_vec(&vec![item.clone()]).unwrap();
        let _ = sendgrid::parse(&arr, &c);
        let _ = sparkpost::parse(&arr, &c);
        let _ = mailgun::parse(&one, &c);
        let _ = ses::parse(&one, &c);
        let _ = postal::parse(&one, &c);
        let _ = brevo::parse(&one, &c);
        let form = form_urlencoded::Serializer::new(String::new())
            .append_pair("mandrill_events", &String::from_utf8(arr).unwrap())
            .finish();
        let _ = mandrill::parse(form.as_bytes(), &c);
    }
}
