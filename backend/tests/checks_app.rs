//! Checks inside the running app: they run when an incident opens, on demand, and a
//! change (an IP becoming listed) is recorded and shown with the incident. DNS comes
//! from a real server on loopback.

#[path = "dns_support/mod.rs"]
mod dns_support;
mod support;

use deferwatch::checks::ZoneSpec;
use dns_support::{TestDns, zone};
use serde_json::json;
use std::time::Duration;
use support::{Backend, TestApp, event, ndjson};

fn zones() -> Vec<String> {
    let dkim = dns_support::txt_strings(&format!("v=DKIM1; k=rsa; p={}", dns_support::RSA_2048));
    vec![
        zone(
            "sender.test",
            &format!(
                r#"
mail      A    192.0.2.10
@         TXT  "v=spf1 ip4:192.0.2.0/24 -all"
_dmarc    TXT  "v=DMARC1; p=quarantine; rua=mailto:dmarc@sender.test"
s1._domainkey TXT {dkim}
@         MX   10 mail.sender.test.
"#
            ),
        ),
        zone(
            "2.0.192.in-addr.arpa",
            "10 PTR mail.sender.test.\n11 PTR mail.sender.test.\n",
        ),
        // RFC 5782 test point present, 192.0.2.10 not listed (yet).
        zone(
            "bl.test",
            "2.0.0.127 A 127.0.0.2\n2.0.0.127 TXT \"test point\"\n",
        ),
        zone("dbl.test", "test A 127.0.1.2\n"),
    ]
}

async fn app_with_dns(b: Backend, dns: &TestDns) -> TestApp {
    let addr = dns.addr;
    TestApp::spawn_with(b, move |c| {
        c.checks.enabled = true;
        c.checks.nameservers = vec![addr];
        c.checks.dnsbl = vec![ZoneSpec::parse("bl.test=spamhaus-zen").unwrap()];
        c.checks.rhsbl = vec![ZoneSpec::parse("dbl.test=spamhaus-dbl").unwrap()];
        c.checks.timeout = Duration::from_millis(500);
    })
    .await
}

#[tokio::test]
async fn checks_run_on_open_and_changes_show_with_the_incident_sqlite() {
    run(Backend::Sqlite).await
}

#[tokio::test]
async fn checks_run_on_open_and_changes_show_with_the_incident_postgres() {
    run(Backend::Postgres).await
}

async fn run(b: Backend) {
    let dns = TestDns::start(&zones()).await;
    let app = app_with_dns(b, &dns).await;
    let mut e = event("deferred", "2026-11-20T10:00:00Z", "192.0.2.10", Some("1"));
    e["helo"] = "mail.sender.test".into();
    e["sender"] = "news@sender.test".into();
    e["dkim_selector"] = "s1".into();
    let (s, r) = app.post_events(&ndjson(&[e])).await;
    assert_eq!(s, 200, "{r}");
    let id = r["incident_ids"][0].as_i64().unwrap();

    // Opening the incident queued checks of its IP; wait for them to be stored.
    let mut latest = serde_json::Value::Null;
    // Up to 30 s: generous for a loaded CI machine; it takes well under a second here.
    for _ in 0..300 {
        let (_, v) = app.get("/api/v1/checks?subject=192.0.2.10").await;
        if v["latest"]
            .as_array()
            .is_some_and(|l| l.iter().any(|c| c["name"] == "dnsbl:bl.test"))
        {
            latest = v;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let by_name = |v: &serde_json::Value, n: &str| {
        v["latest"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == n)
            .cloned()
            .unwrap_or_else(|| panic!("no {n} in {v}"))
    };
    assert_eq!(by_name(&latest, "fcrdns")["verdict"], "pass");
    assert_eq!(by_name(&latest, "helo")["verdict"], "pass");
    assert_eq!(by_name(&latest, "spf")["verdict"], "pass");
    assert_eq!(by_name(&latest, "dnsbl:bl.test")["verdict"], "pass");
    assert_eq!(by_name(&latest, "dmarc")["verdict"], "pass", "{latest}");
    // The selector came with the event, not from configuration.
    let dkim = by_name(&latest, "dkim");
    assert_eq!(dkim["verdict"], "pass", "{dkim}");
    assert!(dkim["detail"].as_str().unwrap().contains("s1"), "{dkim}");

    // The IP gets listed; an on-demand run sees it and records the change.
    dns.load(&zone(
        "bl.test",
        "2.0.0.127 A 127.0.0.2\n10.2.0.192 A 127.0.0.2\n10.2.0.192 TXT \"listed for a test\"\n",
    ));
    let resp = app
        .client
        .post(format!("{}/api/v1/checks", app.base))
        .bearer_auth(&app.api_token)
        .json(&json!({"ip": "192.0.2.10", "helo": "mail.sender.test", "sender_domain": "sender.test", "dkim_selectors": ["s1"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let run: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(run["subject"], "192.0.2.10");
    let listed = run["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "dnsbl:bl.test")
        .unwrap();
    assert_eq!(listed["verdict"], "fail", "{listed}");
    let change = &run["changes"][0];
    assert_eq!(change["name"], "dnsbl:bl.test");
    assert_eq!(change["previous"], "pass");
    assert_eq!(change["current"], "fail");

    let (_, inc) = app.get(&format!("/api/v1/incidents/{id}")).await;
    let subjects: Vec<&str> = inc["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["subject"].as_str().unwrap())
        .collect();
    assert!(subjects.contains(&"192.0.2.10"), "{subjects:?}");
    assert!(subjects.contains(&"sender.test"), "{subjects:?}");
    let changes = inc["check_changes"].as_array().unwrap();
    assert_eq!(changes.len(), 1, "{changes:?}");
    assert_eq!(changes[0]["verdict"], "fail");
    assert!(
        changes[0]["description"]
            .as_str()
            .unwrap()
            .contains("pass → fail")
    );

    // Bad requests name the field.
    for (body, field) in [
        (json!({"ip": "nope"}), "ip"),
        (json!({}), "ip"),
        (json!({"domain": "a b"}), "domain"),
    ] {
        let resp = app
            .client
            .post(format!("{}/api/v1/checks", app.base))
            .bearer_auth(&app.api_token)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 400);
        let j: serde_json::Value = resp.json().await.unwrap();
        assert_eq!(j["field"], field);
    }
    let (s, j) = app.get("/api/v1/checks").await;
    assert_eq!((s, j["field"].as_str()), (400, Some("subject")));
    app.db.drop_db().await;
}

#[tokio::test]
async fn check_command_prints_the_json_shape() {
    let dns = TestDns::start(&zones()).await;
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_deferwatch"))
        .args([
            "check",
            "ip",
            "192.0.2.10",
            "--helo",
            "mail.sender.test",
            "--nameserver",
            &dns.addr.to_string(),
            "--dnsbl",
            "bl.test=spamhaus-zen",
            "--json",
        ])
        .env_remove("DEFERWATCH_CONFIG")
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["subject"], "192.0.2.10");
    assert!(v["checked_at"].is_string());
    let names: Vec<&str> = v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    for n in ["ptr", "fcrdns", "helo", "spf", "dnsbl:bl.test"] {
        assert!(names.contains(&n), "{n} missing from {names:?}");
    }
    // The DNS server on loopback answered: real verdicts, not timeouts.
    let verdict = |n: &str| {
        v["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == n)
            .unwrap()["verdict"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert_eq!(verdict("fcrdns"), "pass", "{v}");
    assert_eq!(verdict("helo"), "pass", "{v}");
    assert_eq!(verdict("dnsbl:bl.test"), "pass", "{v}");
    for c in v["checks"].as_array().unwrap() {
        for k in ["name", "verdict", "detail", "records"] {
            assert!(c.get(k).is_some(), "{k} missing in {c}");
        }
    }
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_deferwatch"))
        .args([
            "check",
            "domain",
            "sender.test",
            "--nameserver",
            &dns.addr.to_string(),
            "--rhsbl",
            "dbl.test=spamhaus-dbl",
            "--dnsbl",
            "bl.test",
        ])
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("dmarc"), "{text}");
    assert!(!text.contains("timed out"), "{text}");
    assert!(text.contains("mx"), "{text}");
}
