//! The binary as a user runs it: the README's first command on an empty directory.

use std::process::{Command, Stdio};
use std::time::Duration;

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_deferwatch"));
    c.env_remove("DATABASE_URL").env_remove("DEFERWATCH_CONFIG");
    c
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test]
async fn serve_creates_the_embedded_database_and_takes_events() {
    let dir = tempfile::tempdir().unwrap();
    let out = bin()
        .current_dir(dir.path())
        .args(["source", "add", "mta1"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    let token = stdout
        .split_whitespace()
        .find(|w| w.starts_with("dws_"))
        .expect("token printed")
        .to_string();
    assert!(dir.path().join("data/deferwatch.db").exists());

    let port = free_port();
    let mut child = bin()
        .current_dir(dir.path())
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        // DNS checks stay off: tests send nothing beyond loopback.
        .env("DEFERWATCH_CHECKS", "false")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let client = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}");
    let mut healthy = false;
    for _ in 0..100 {
        if let Ok(r) = client.get(format!("{base}/healthz")).send().await
            && r.status() == 200
        {
            healthy = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let result = async {
        assert!(healthy, "server did not come up");
        let now = chrono::Utc::now().to_rfc3339();
        let r = client
            .post(format!("{base}/api/v1/events"))
            .bearer_auth(&token)
            .body(format!(
                r#"{{"type":"deferred","timestamp":"{now}","recipient":"a@example.org","response":"421 4.3.2 try later"}}"#
            ))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let j: serde_json::Value = r.json().await.unwrap();
        assert_eq!(j["accepted"], 1);
    }
    .await;
    let _ = child.kill();
    let _ = child.wait();
    result
}

#[test]
fn configuration_mistakes_are_clear_messages() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("bad.toml"), "listen = 42\n").unwrap();
    let out = bin()
        .current_dir(dir.path())
        .args(["--config", "bad.toml", "migrate"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bad.toml"), "{err}");

    let out = bin()
        .current_dir(dir.path())
        .args(["source", "add", "has space"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("invalid name"));

    let out = bin()
        .current_dir(dir.path())
        .args(["--database-url", "mysql://x", "migrate"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unsupported database URL"));
}

#[test]
fn classify_command_and_a_broken_rules_file() {
    let dir = tempfile::tempdir().unwrap();
    let out = bin()
        .args(["classify", "--json", "421 4.7.0 [TSS04] Messages from 198.51.100.25 temporarily deferred due to unexpected volume or user complaints"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["cause"], "reputation");
    assert_eq!(v["reference"], "TSS04");

    std::fs::write(
        dir.path().join("rules.toml"),
        "[[rule]]\nid = \"x\"\npattern = '('\ncause = \"rate_limit\"\n",
    )
    .unwrap();
    let out = bin()
        .current_dir(dir.path())
        .args(["--rules-file", "rules.toml", "classify", "421 hello"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("rules.toml:"), "names file and line: {err}");
}

#[tokio::test]
async fn serve_demo_shows_every_phase_through_the_real_ingest_path() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut child = bin()
        .current_dir(dir.path())
        .args(["serve", "--demo", "--listen", &format!("127.0.0.1:{port}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let client = reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let result = async {
        let mut login = None;
        for _ in 0..100 {
            if let Ok(r) = client.get(format!("{base}/login")).send().await
                && r.status() == 200
            {
                login = Some(r.text().await.unwrap());
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let html = login.expect("server did not come up");
        let start = html.find("name=\"csrf\" value=\"").unwrap() + 19;
        let csrf = &html[start..start + 48];
        let r = client
            .post(format!("{base}/login"))
            .form(&[
                ("csrf", csrf),
                ("username", "demo"),
                ("password", "deferwatch-demo"),
                ("next", "/"),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 303, "the demo admin logs in");
        // The events arrive through the ingest endpoint just after start.
        let mut page = String::new();
        for _ in 0..100 {
            page = client
                .get(format!("{base}/?closed=1"))
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            if page.contains("phase-recovered") && page.contains("phase-escalate") {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        assert!(page.contains("Demo data."), "labelled as demo");
        for phase in [
            "deferred",
            "normal_retry",
            "persistent",
            "cooling",
            "escalate",
            "recovered",
        ] {
            assert!(
                page.contains(&format!("badge phase-{phase}")),
                "{phase} missing"
            );
        }
        assert!(
            page.contains("one source IP"),
            "the Gmail incident is one IP"
        );
    }
    .await;
    let _ = child.kill();
    let _ = child.wait();
    assert!(dir.path().join("data/demo.db").exists());
    assert!(
        !dir.path().join("data/deferwatch.db").exists(),
        "the demo never touches the real database"
    );
    result
}

#[test]
fn user_add_reads_the_password_from_stdin() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let add = |name: &str, role: &str, password: &str| {
        let mut child = bin()
            .current_dir(dir.path())
            .args(["user", "add", name, "--role", role])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        writeln!(child.stdin.take().unwrap(), "{password}").unwrap();
        child.wait_with_output().unwrap()
    };
    let out = add("bob", "viewer", "short");
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("password: at least 10 characters"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = add("bob", "viewer", "a long enough secret");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = add("bob", "admin", "a long enough secret");
    assert!(String::from_utf8_lossy(&out.stderr).contains("already exists"));
    let out = bin()
        .current_dir(dir.path())
        .args(["user", "list"])
        .output()
        .unwrap();
    let list = String::from_utf8(out.stdout).unwrap();
    assert!(list.contains("bob") && list.contains("viewer"), "{list}");
}
