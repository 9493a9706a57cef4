//! A real Postfix, end to end: Debian's postfix package runs a private instance that
//! relays everything to a loopback SMTP server answering 421 at RCPT TO, so the log
//! holds genuine `status=deferred` lines, and `deferwatch tail` turns them into an
//! incident. Needs root (the Postfix master starts as root) and the postfix package,
//! which `.ci/run` installs; without it the test fails rather than skips.

use deferwatch::smtp::Stage;
use deferwatch::store::{self, ConnectOptions, EventFilter, IncidentFilter};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

const RECIPIENT: &str = "someone@example.net";
/// The relay is an IP literal, so the MX host names no provider and the destination
/// falls back to the recipient domain.
const DESTINATION: &str = "example.net";
const SENDER: &str = "news@deferwatch-test.localdomain";
const SINK_ENHANCED: &str = "4.7.28";
const SINK_TEXT: &str = "Try again later, too much mail from your IP";
const MESSAGES: usize = 3;

/// Postfix's own administration command; Debian puts it in /usr/sbin, which a
/// non-login PATH may lack.
fn postfix_bin() -> PathBuf {
    let debian = PathBuf::from("/usr/sbin/postfix");
    if debian.exists() {
        return debian;
    }
    std::env::var_os("PATH")
        .and_then(|p| {
            std::env::split_paths(&p)
                .map(|d| d.join("postfix"))
                .find(|c| c.exists())
        })
        .unwrap_or_else(|| {
            panic!(
                "postfix is not installed: this test runs a real Postfix; .ci/run installs it \
                 (apt-get install postfix, with debconf postfix/main_mailer_type = No configuration)"
            )
        })
}

/// A loopback SMTP server that greets, accepts EHLO and MAIL FROM, then answers every
/// RCPT TO with a 421 and closes, as a receiver throttling a sending IP does.
async fn start_sink() -> (u16, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind the 421 sink on loopback");
    let port = listener.local_addr().expect("sink address").port();
    let refused = Arc::new(AtomicUsize::new(0));
    let count = refused.clone();
    tokio::spawn(async move {
        while let Ok((conn, _)) = listener.accept().await {
            let count = count.clone();
            tokio::spawn(async move {
                // A session that goes wrong only costs Postfix one more deferral.
                let _ = sink_session(conn, &count).await;
            });
        }
    });
    (port, refused)
}

async fn sink_session(conn: TcpStream, refused: &AtomicUsize) -> std::io::Result<()> {
    let (read, mut write) = conn.into_split();
    let mut lines = BufReader::new(read);
    write.write_all(b"220 sink.test ESMTP\r\n").await?;
    let mut line = String::new();
    loop {
        line.clear();
        if lines.read_line(&mut line).await? == 0 {
            return Ok(());
        }
        let verb = line
            .split_whitespace()
            .next()
            .unwrap_or("")
            .to_ascii_uppercase();
        // No PIPELINING in the EHLO reply: Postfix then waits for each answer, so
        // nothing unread is left in the socket when the 421 closes it (unread data
        // would turn the close into a reset that can eat the 421).
        let reply: &[u8] = match verb.as_str() {
            "EHLO" => b"250-sink.test\r\n250 8BITMIME\r\n",
            "HELO" | "MAIL" | "RSET" | "NOOP" => b"250 2.0.0 OK\r\n",
            "QUIT" => {
                write.write_all(b"221 2.0.0 Bye\r\n").await?;
                return Ok(());
            }
            "RCPT" => {
                refused.fetch_add(1, Ordering::Relaxed);
                write
                    .write_all(format!("421 {SINK_ENHANCED} {SINK_TEXT}\r\n").as_bytes())
                    .await?;
                write.shutdown().await?;
                // Postfix hangs up after a 421; wait for that (bounded) so the close
                // stays orderly.
                let mut rest = Vec::new();
                let _ = tokio::time::timeout(Duration::from_secs(5), lines.read_to_end(&mut rest))
                    .await;
                return Ok(());
            }
            _ => b"502 5.5.2 Not implemented\r\n",
        };
        write.write_all(reply).await?;
    }
}

/// A private Postfix instance in its own directory: its own main.cf and master.cf,
/// queue, data directory and log file (postlogd, no syslog), smtpd on a loopback port
/// and everything relayed to the sink. Stopped on drop.
struct Postfix {
    config: PathBuf,
    maillog: PathBuf,
    smtpd_port: u16,
}

impl Postfix {
    fn start(dir: &Path, sink_port: u16) -> Postfix {
        let bin = postfix_bin();
        let config = dir.join("etc");
        std::fs::create_dir_all(&config).expect("create the Postfix config directory");
        std::fs::create_dir_all(dir.join("queue")).expect("create the Postfix queue directory");
        let maillog = dir.join("maillog");
        let smtpd_port = free_port();
        let d = dir.display();
        // `postfix check` creates the queue's subdirectories and the data directory
        // with the owners and modes Postfix wants (the data directory must belong to
        // the postfix user), but the queue directory itself must exist, owned by root.
        let main_cf = format!(
            "compatibility_level = 3.6
myhostname = deferwatch-test.localdomain
mydomain = localdomain
myorigin = $myhostname
queue_directory = {d}/queue
data_directory = {d}/data
maillog_file = {d}/maillog
maillog_file_prefixes = {d}
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mydestination =
local_recipient_maps =
alias_maps =
alias_database =
mynetworks = 127.0.0.0/8
relayhost = [127.0.0.1]:{sink_port}
smtp_tls_security_level = none
smtpd_tls_security_level = none
smtp_dns_support_level = disabled
smtpd_peername_lookup = no
queue_run_delay = 5s
minimal_backoff_time = 5s
maximal_backoff_time = 10s
"
        );
        // No chroot (fifth column `n`): the daemons need nothing copied into the queue
        // directory. postlogd writes maillog_file.
        let master_cf = format!(
            "127.0.0.1:{smtpd_port} inet n - n - - smtpd
pickup    unix  n - n 60 1 pickup
cleanup   unix  n - n - 0 cleanup
qmgr      unix  n - n 300 1 qmgr
tlsmgr    unix  - - n 1000? 1 tlsmgr
rewrite   unix  - - n - - trivial-rewrite
bounce    unix  - - n - 0 bounce
defer     unix  - - n - 0 bounce
trace     unix  - - n - 0 bounce
verify    unix  - - n - 1 verify
flush     unix  n - n 1000? 0 flush
proxymap  unix  - - n - - proxymap
smtp      unix  - - n - - smtp
relay     unix  - - n - - smtp
showq     unix  n - n - - showq
error     unix  - - n - - error
retry     unix  - - n - - error
discard   unix  - - n - - discard
anvil     unix  - - n - 1 anvil
scache    unix  - - n - 1 scache
postlog   unix-dgram n - n - 1 postlogd
"
        );
        std::fs::write(config.join("main.cf"), main_cf).expect("write main.cf");
        std::fs::write(config.join("master.cf"), master_cf).expect("write master.cf");
        let pf = Postfix {
            config,
            maillog,
            smtpd_port,
        };
        // The postfix command prints its errors only to a terminal; otherwise they go to
        // the log file, so a failure shows that.
        for action in ["check", "start"] {
            let out = Command::new(&bin)
                .arg("-c")
                .arg(&pf.config)
                .arg(action)
                // Syslog-style timestamps carry no zone and deferwatch reads them as
                // UTC; the master passes TZ on to every daemon (import_environment).
                .env("TZ", "UTC")
                .stdin(Stdio::null())
                .output()
                .expect("run postfix");
            assert!(
                out.status.success(),
                "postfix {action} failed ({}; this test needs root): {}{}\nmaillog:\n{}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr),
                pf.log()
            );
        }
        pf
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.maillog).unwrap_or_default()
    }

    fn deferred_lines(&self) -> usize {
        self.log()
            .lines()
            .filter(|l| l.contains("status=deferred"))
            .count()
    }
}

impl Drop for Postfix {
    fn drop(&mut self) {
        // `stop` waits for the master and kills the process group if it lingers.
        let _ = Command::new(postfix_bin())
            .arg("-c")
            .arg(&self.config)
            .arg("stop")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind a free loopback port")
        .local_addr()
        .expect("local address")
        .port()
}

/// Reads one SMTP reply (all its lines) and checks its code.
async fn expect_reply(conn: &mut BufReader<TcpStream>, code: &str, after: &str) {
    let mut line = String::new();
    loop {
        line.clear();
        let n = tokio::time::timeout(Duration::from_secs(10), conn.read_line(&mut line))
            .await
            .unwrap_or_else(|_| panic!("smtpd did not answer {after} in 10 s"))
            .expect("read from smtpd");
        assert!(n > 0, "smtpd closed the connection after {after}");
        assert!(
            line.starts_with(code),
            "smtpd answered {after} with {line:?}, wanted {code}"
        );
        if line.as_bytes().get(3) != Some(&b'-') {
            return;
        }
    }
}

async fn send_message(port: u16, n: usize) {
    let stream = TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect to the private smtpd");
    let mut conn = BufReader::new(stream);
    expect_reply(&mut conn, "220", "the connection").await;
    let data = format!(
        "From: <{SENDER}>\r\nTo: <{RECIPIENT}>\r\nSubject: deferwatch test {n}\r\n\
         Message-ID: <dw-postfix-{n}@deferwatch-test.localdomain>\r\n\r\nHello {n}.\r\n.\r\n"
    );
    let steps = [
        (
            "EHLO client.deferwatch-test.localdomain\r\n".to_string(),
            "250",
        ),
        (format!("MAIL FROM:<{SENDER}>\r\n"), "250"),
        (format!("RCPT TO:<{RECIPIENT}>\r\n"), "250"),
        ("DATA\r\n".to_string(), "354"),
        (data, "250"),
        ("QUIT\r\n".to_string(), "221"),
    ];
    for (command, code) in steps {
        conn.get_mut()
            .write_all(command.as_bytes())
            .await
            .expect("write to smtpd");
        let what = command.lines().next().unwrap_or("").to_string();
        expect_reply(&mut conn, code, &what).await;
    }
}

/// Killed and reaped on drop, whatever the test's outcome.
struct ChildGuard(Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn deferwatch(db_url: &str) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_deferwatch"));
    c.env_remove("DATABASE_URL")
        .env_remove("DEFERWATCH_CONFIG")
        // No DNS checks: nothing in this test may leave loopback.
        .env("DEFERWATCH_CHECKS", "false")
        .arg("--database-url")
        .arg(db_url)
        .stdin(Stdio::null());
    c
}

#[tokio::test(flavor = "multi_thread")]
async fn postfix_deferrals_become_an_incident_through_tail() {
    let started = Instant::now();
    let dir = tempfile::tempdir().expect("temp dir");
    // The postfix user's daemons and postlogd reach the instance's directories by
    // absolute path, through this directory.
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
        .expect("open up the temp dir");

    let (sink_port, refused) = start_sink().await;
    let postfix = Postfix::start(dir.path(), sink_port);

    // The master opens its listeners after daemonising.
    let deadline = Instant::now() + Duration::from_secs(15);
    while TcpStream::connect(("127.0.0.1", postfix.smtpd_port))
        .await
        .is_err()
    {
        assert!(
            Instant::now() < deadline,
            "the private smtpd never listened on 127.0.0.1:{}\nmaillog:\n{}",
            postfix.smtpd_port,
            postfix.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for n in 0..MESSAGES {
        send_message(postfix.smtpd_port, n).await;
    }

    let deadline = Instant::now() + Duration::from_secs(30);
    while postfix.deferred_lines() < MESSAGES {
        assert!(
            Instant::now() < deadline,
            "Postfix logged no status=deferred line for each of the {MESSAGES} messages in \
             30 s (sink refused {} RCPTs)\nmaillog:\n{}",
            refused.load(Ordering::Relaxed),
            postfix.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let db_url = format!("sqlite://{}/dw.db?mode=rwc", dir.path().display());
    let out = deferwatch(&db_url)
        .args(["source", "add", "pfx", "--format", "postfix"])
        .output()
        .expect("run deferwatch source add");
    assert!(
        out.status.success(),
        "source add failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    let before_tail = postfix.deferred_lines();
    let tail_log = dir.path().join("tail.stderr");
    let tail = deferwatch(&db_url)
        .args([
            "tail",
            "--source",
            "pfx",
            "--format",
            "postfix",
            "--from-start",
        ])
        .arg("--state")
        .arg(dir.path().join("tail.state"))
        .arg(&postfix.maillog)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&tail_log).expect("tail log file"))
        .spawn()
        .expect("spawn deferwatch tail");
    let mut tail = ChildGuard(tail);

    let store = store::connect(&db_url, &ConnectOptions::default())
        .await
        .expect("open the tail's database");
    let failure = |what: &str, tail: &mut ChildGuard| -> String {
        let exited = tail.0.try_wait().ok().flatten();
        format!(
            "{what}\ntail exit: {exited:?}\ntail stderr:\n{}\nmaillog:\n{}",
            std::fs::read_to_string(&tail_log).unwrap_or_default(),
            postfix.log()
        )
    };

    // First what was in the log before tail started (--from-start), then at least one
    // deferral Postfix logs afterwards on its next retry (the follow part of tail).
    let deadline = Instant::now() + Duration::from_secs(40);
    let (incident, events) = loop {
        let incidents = store
            .list_incidents(&IncidentFilter {
                limit: 10,
                ..Default::default()
            })
            .await
            .expect("list incidents");
        if let [incident] = incidents.as_slice() {
            let events = store
                .list_events(&EventFilter {
                    incident: Some(incident.id),
                    limit: 1000,
                    ..Default::default()
                })
                .await
                .expect("list events");
            if events.len() > before_tail {
                break (incident.clone(), events);
            }
        } else {
            assert!(
                incidents.len() < 2,
                "{}",
                failure(&format!("one incident expected: {incidents:#?}"), &mut tail)
            );
        }
        if Instant::now() >= deadline {
            panic!(
                "{}",
                failure(
                    &format!(
                        "no incident with more than the {before_tail} deferrals logged before \
                         tail started within 40 s"
                    ),
                    &mut tail
                )
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };

    assert_eq!(incident.destination, DESTINATION, "{incident:#?}");
    assert!(
        incident.stages.contains_key("rcpt"),
        "stages {:?}",
        incident.stages
    );
    for ev in &events {
        let raw = match &ev.raw {
            serde_json::Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        assert_eq!(ev.kind, deferwatch::event::EventType::Deferred, "{ev:#?}");
        assert_eq!(ev.source, "pfx");
        assert_eq!(ev.destination, DESTINATION, "{ev:#?}");
        assert_eq!(ev.recipient, RECIPIENT);
        assert_eq!(ev.recipient_domain, DESTINATION);
        assert_eq!(ev.mx_ip.as_deref(), Some("127.0.0.1"), "{ev:#?}");
        assert_eq!(ev.code, Some(421), "{ev:#?}");
        assert_eq!(ev.enhanced.as_deref(), Some(SINK_ENHANCED), "{ev:#?}");
        assert_eq!(ev.stage, Stage::Rcpt, "{ev:#?}");
        let response = ev.response.as_deref().unwrap_or("");
        assert!(response.contains(SINK_TEXT), "response {response:?}");
        assert!(raw.contains("status=deferred"), "raw {raw}");
        assert!(raw.contains("postfix/smtp["), "raw {raw}");
    }
    // Every message, not just the first, reached the incident.
    let ids: std::collections::BTreeSet<_> =
        events.iter().filter_map(|e| e.message_id.clone()).collect();
    assert_eq!(ids.len(), MESSAGES, "message ids {ids:?}");

    drop(tail);
    drop(postfix);
    eprintln!("postfix end to end: {:?}", started.elapsed());
}
