//! A demo data set in the native JSON event format (`ingest::json`): a sender with two
//! IPs and a day and a half of traffic to the big mailbox providers, in which the
//! incident engine finds one incident in each phase of the runbook. Everything is
//! generated relative to `now` from a fixed seed, so the same `now` gives the same
//! events, and every event id starts with `demo-` so the data can be told apart (and
//! deleted) later.
//!
//! Reply texts are real ones from the classifier corpus (`backend/tests/corpus`), with
//! the demo's own IP and recipient put where the receiver writes them.

use chrono::{DateTime, SecondsFormat, TimeDelta, Utc};
use serde_json::{Value, json};

/// The IP Gmail rate-limits in the demo.
pub const DEMO_IP_A: &str = "198.51.100.25";
/// The IP that keeps delivering to Gmail, for the side-by-side comparison.
pub const DEMO_IP_B: &str = "198.51.100.26";
const HELO_A: &str = "mta1.news.example.com";
const HELO_B: &str = "mta2.news.example.com";
const SEED: u64 = 0x00de_f3e2_0a7c_2026;
/// The traffic starts this long before `now`: a few hours of normal deliveries before
/// the oldest incident (27 h) began.
const HISTORY_MIN: i64 = 30 * 60;

/// A mailbox provider as the demo sends to it: recipient domains with their MX hosts,
/// and the reply an accepted message gets.
struct Dest {
    routes: &'static [(&'static str, &'static [&'static str])],
    ok: &'static str,
}

const GMAIL: Dest = Dest {
    routes: &[
        (
            "gmail.com",
            &[
                "gmail-smtp-in.l.google.com",
                "alt1.gmail-smtp-in.l.google.com",
            ],
        ),
        ("googlemail.com", &["gmail-smtp-in.l.google.com"]),
    ],
    ok: "250 2.0.0 OK - gsmtp",
};
const MICROSOFT: Dest = Dest {
    routes: &[
        ("outlook.com", &["outlook-com.olc.protection.outlook.com"]),
        ("hotmail.com", &["hotmail-com.olc.protection.outlook.com"]),
        ("live.com", &["live-com.olc.protection.outlook.com"]),
    ],
    ok: "250 2.6.0 Queued mail for delivery",
};
const YAHOO: Dest = Dest {
    routes: &[
        (
            "yahoo.com",
            &[
                "mta5.am0.yahoodns.net",
                "mta6.am0.yahoodns.net",
                "mta7.am0.yahoodns.net",
            ],
        ),
        ("aol.com", &["mx-aol.mail.gm0.yahoodns.net"]),
    ],
    ok: "250 ok dirdel",
};
const APPLE: Dest = Dest {
    routes: &[
        (
            "icloud.com",
            &["mx01.mail.icloud.com", "mx02.mail.icloud.com"],
        ),
        ("me.com", &["mx01.mail.icloud.com"]),
    ],
    ok: "250 2.0.0 Ok: queued",
};
/// A company domain behind a Barracuda filtering gateway that greylists new senders.
const BARRACUDA: Dest = Dest {
    routes: &[("example.net", &["d123.ess.barracudanetworks.com"])],
    ok: "250 2.0.0 Ok: queued",
};
const ORANGE: Dest = Dest {
    routes: &[
        ("orange.fr", &["smtp-in.orange.fr"]),
        ("wanadoo.fr", &["smtp-in.orange.fr"]),
    ],
    ok: "250 2.0.0 Ok: queued",
};
const GMX: Dest = Dest {
    routes: &[("gmx.de", &["mx00.emig.gmx.net", "mx01.emig.gmx.net"])],
    ok: "250 Requested mail action okay, completed",
};
const WEBDE: Dest = Dest {
    routes: &[("web.de", &["mx-ha03.web.de", "mx-ha02.web.de"])],
    ok: "250 Requested mail action okay, completed",
};
const COMCAST: Dest = Dest {
    routes: &[("comcast.net", &["mx1.comcast.net", "mx2.comcast.net"])],
    ok: "250 2.0.0 Ok: queued",
};

/// The deferrals and bounces of the demo: real replies, parametrised where the
/// receiver names the sending IP or the recipient.
#[derive(Clone, Copy)]
enum Reply {
    GmailUnsolicitedRate,
    GmailNoSuchUser,
    MicrosoftReputation,
    MicrosoftBusy,
    YahooTss04,
    AppleVolume,
    AppleNoSuchUser,
    BarracudaGreylist,
    OrangeConnections,
}

impl Reply {
    /// (text, code, enhanced code, stage).
    fn render(
        self,
        ip: &str,
        rcpt: &str,
        rng: &mut Rng,
    ) -> (String, u16, Option<&'static str>, &'static str) {
        match self {
            // Google Workspace Admin Help "Gmail SMTP errors and codes"; the multi-line
            // form as Gmail sends it (Plesk forum thread in the corpus).
            Reply::GmailUnsolicitedRate => (
                format!(
                    "421-4.7.28 [{ip}      15] Our system has detected an unusual rate of\n\
                     421-4.7.28 unsolicited mail originating from your IP address. To protect our\n\
                     421-4.7.28 users from spam, mail sent from your IP address has been temporarily\n\
                     421-4.7.28 rate limited. Please visit\n\
                     421-4.7.28  https://support.google.com/mail/?p=UnsolicitedRateLimitError to\n\
                     421 4.7.28 review our Bulk Email Senders Guidelines. - gsmtp"
                ),
                421,
                Some("4.7.28"),
                "end_of_data",
            ),
            Reply::GmailNoSuchUser => (
                "550-5.1.1 The email account that you tried to reach does not exist. Please try\n\
                 550-5.1.1 double-checking the recipient's email address for typos or\n\
                 550-5.1.1 unnecessary spaces. For more information, go to\n\
                 550 5.1.1  https://support.google.com/mail/?p=NoSuchUser - gsmtp"
                    .to_string(),
                550,
                Some("5.1.1"),
                "rcpt",
            ),
            // Microsoft's S775 reputation throttle, as Postfix logs it after MAIL FROM.
            Reply::MicrosoftReputation => (
                format!(
                    "451 4.7.650 The mail server [{ip}] has been temporarily rate limited due \
                     to IP reputation. For e-mail delivery information, see \
                     https://postmaster.live.com (S775)"
                ),
                451,
                Some("4.7.650"),
                "mail",
            ),
            Reply::MicrosoftBusy => (
                format!("451 4.7.500 Server busy. Please try again later from [{ip}]. (S77719)"),
                451,
                Some("4.7.500"),
                "rcpt",
            ),
            // Yahoo answers TSS04 in its greeting, before the message is seen.
            Reply::YahooTss04 => (
                format!(
                    "421 4.7.0 [TSS04] Messages from {ip} temporarily deferred due to \
                     unexpected volume or user complaints - 4.16.55.1; see \
                     https://postmaster.yahooinc.com/error-codes"
                ),
                421,
                Some("4.7.0"),
                "connect",
            ),
            Reply::AppleVolume => (
                format!(
                    "421 4.7.1 Messages to {rcpt} deferred due to excessive volume. Try again \
                     later - https://support.apple.com/en-us/HT204137"
                ),
                421,
                Some("4.7.1"),
                "rcpt",
            ),
            Reply::AppleNoSuchUser => (
                format!("550 5.1.1 <{rcpt}>: user does not exist"),
                550,
                Some("5.1.1"),
                "rcpt",
            ),
            Reply::BarracudaGreylist => (
                format!("451 4.7.1 <{rcpt}>: Recipient address rejected: Greylisted for 5 minutes"),
                451,
                Some("4.7.1"),
                "rcpt",
            ),
            // Orange names the front end that answered (mwinf…) in every reply.
            Reply::OrangeConnections => (
                format!(
                    "421 mwinf5c{:02} ME Trop de connexions, veuillez verifier votre \
                     configuration. Too many connections, slow down. OFR004_104 [104]",
                    rng.below(80) + 10
                ),
                421,
                None,
                "connect",
            ),
        }
    }
}

/// What a stretch of traffic does on one route.
#[derive(Clone, Copy)]
enum Mix {
    /// Accepted, with this share (per mille) of bounces.
    Deliver {
        bounce: u64,
        bounce_reply: Option<Reply>,
    },
    /// Deferred, with this share (per mille) getting through anyway.
    Defer {
        reply: Reply,
        alt: Option<(Reply, u64)>,
        delivered: u64,
    },
}

/// Traffic on one route between two instants, given as minutes before `now`.
struct Stretch {
    dest: &'static Dest,
    ip: &'static str,
    from_min: i64,
    to_min: i64,
    per_hour: u64,
    mix: Mix,
}

const fn deliver(
    dest: &'static Dest,
    ip: &'static str,
    from_min: i64,
    to_min: i64,
    per_hour: u64,
) -> Stretch {
    Stretch {
        dest,
        ip,
        from_min,
        to_min,
        per_hour,
        mix: Mix::Deliver {
            bounce: 0,
            bounce_reply: None,
        },
    }
}

/// The demo's story, route by route (minutes before `now`).
fn stretches() -> Vec<Stretch> {
    use Reply::*;
    let gmail_bounces = Mix::Deliver {
        bounce: 20,
        bounce_reply: Some(GmailNoSuchUser),
    };
    let mut v = vec![
        // Gmail: 198.51.100.25 rate-limited for ~8 h (cooling); .26 delivers throughout.
        Stretch {
            mix: gmail_bounces,
            ..deliver(&GMAIL, DEMO_IP_A, HISTORY_MIN, 486, 14)
        },
        Stretch {
            mix: Mix::Defer {
                reply: GmailUnsolicitedRate,
                alt: None,
                delivered: 150,
            },
            ..deliver(&GMAIL, DEMO_IP_A, 485, 2, 14)
        },
        Stretch {
            mix: gmail_bounces,
            ..deliver(&GMAIL, DEMO_IP_B, HISTORY_MIN, 0, 14)
        },
        // Apple: both IPs throttled for three hours, then four hours of clean deliveries.
        Stretch {
            mix: Mix::Defer {
                reply: AppleVolume,
                alt: None,
                delivered: 300,
            },
            ..deliver(&APPLE, DEMO_IP_A, 420, 241, 6)
        },
        Stretch {
            mix: Mix::Defer {
                reply: AppleVolume,
                alt: None,
                delivered: 300,
            },
            ..deliver(&APPLE, DEMO_IP_B, 400, 241, 6)
        },
        Stretch {
            mix: Mix::Deliver {
                bounce: 10,
                bounce_reply: Some(AppleNoSuchUser),
            },
            ..deliver(&APPLE, DEMO_IP_A, 239, 0, 6)
        },
        deliver(&APPLE, DEMO_IP_B, 239, 0, 6),
    ];
    for ip in [DEMO_IP_A, DEMO_IP_B] {
        v.extend([
            // Microsoft: every IP throttled for 27 h with no sign of recovery (escalate).
            deliver(&MICROSOFT, ip, HISTORY_MIN, 1631, 10),
            Stretch {
                mix: Mix::Defer {
                    reply: MicrosoftReputation,
                    alt: Some((MicrosoftBusy, 200)),
                    delivered: 60,
                },
                ..deliver(&MICROSOFT, ip, 1630, 1, 10)
            },
            // Yahoo: TSS04 at the greeting on both IPs for 2 h 40 min (persistent).
            deliver(&YAHOO, ip, HISTORY_MIN, 161, 8),
            Stretch {
                mix: Mix::Defer {
                    reply: YahooTss04,
                    alt: None,
                    delivered: 0,
                },
                ..deliver(&YAHOO, ip, 160, 2, 8)
            },
            deliver(&APPLE, ip, HISTORY_MIN, 421, 4),
            // A greylisting gateway for the last half hour (normal retry): new
            // recipients wait, retries after five minutes go through.
            deliver(&BARRACUDA, ip, HISTORY_MIN, 35, 1),
            Stretch {
                mix: Mix::Defer {
                    reply: BarracudaGreylist,
                    alt: None,
                    delivered: 450,
                },
                ..deliver(&BARRACUDA, ip, 34, 0, 20)
            },
            // Orange: too many connections since a few minutes ago (deferred).
            deliver(&ORANGE, ip, HISTORY_MIN, 10, 3),
            Stretch {
                mix: Mix::Defer {
                    reply: OrangeConnections,
                    alt: None,
                    delivered: 0,
                },
                ..deliver(&ORANGE, ip, 9, 0, 30)
            },
            // Healthy destinations, for comparison.
            deliver(&GMX, ip, HISTORY_MIN, 0, 3),
            deliver(&WEBDE, ip, HISTORY_MIN, 0, 3),
            deliver(&COMCAST, ip, HISTORY_MIN, 0, 2),
        ]);
    }
    v
}

/// Deferrals pinned at the edges of each incident, so that its age (and so its phase)
/// does not depend on where the random spacing happened to put the first and last one.
fn anchors() -> Vec<(&'static Dest, &'static str, i64, Reply)> {
    use Reply::*;
    vec![
        (&GMAIL, DEMO_IP_A, 485, GmailUnsolicitedRate),
        (&GMAIL, DEMO_IP_A, 2, GmailUnsolicitedRate),
        (&MICROSOFT, DEMO_IP_A, 1630, MicrosoftReputation),
        (&MICROSOFT, DEMO_IP_B, 1, MicrosoftReputation),
        (&YAHOO, DEMO_IP_A, 160, YahooTss04),
        (&YAHOO, DEMO_IP_B, 2, YahooTss04),
        (&APPLE, DEMO_IP_A, 420, AppleVolume),
        (&APPLE, DEMO_IP_B, 241, AppleVolume),
        (&BARRACUDA, DEMO_IP_A, 34, BarracudaGreylist),
        (&BARRACUDA, DEMO_IP_B, 3, BarracudaGreylist),
        (&ORANGE, DEMO_IP_A, 9, OrangeConnections),
        (&ORANGE, DEMO_IP_B, 1, OrangeConnections),
    ]
}

/// SplitMix64: a few lines, and unlike `StdRng` its sequence is fixed forever, so the
/// demo stays the same across dependency upgrades.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
}

enum Outcome {
    Delivered,
    Failed(Reply),
}

struct Builder {
    now: DateTime<Utc>,
    rng: Rng,
    events: Vec<(DateTime<Utc>, Value)>,
}

impl Builder {
    fn push(&mut self, dest: &Dest, ip: &str, at: DateTime<Utc>, outcome: Outcome) {
        let rng = &mut self.rng;
        let (domain, mxs) = *rng.pick(dest.routes);
        let mx = *rng.pick(mxs);
        let rcpt = format!("reader{:05}@{domain}", rng.below(100_000));
        // One in five messages is a receipt from the transactional stream.
        let (sender, selector, pool) = if rng.below(5) == 0 {
            ("receipts@mail.example.com", "tx2026", "demo-transactional")
        } else {
            ("bounces@news.example.com", "nl2026", "demo-newsletter")
        };
        let helo = if ip == DEMO_IP_A { HELO_A } else { HELO_B };
        let message_id = format!("<demo.{:016x}@news.example.com>", rng.next());
        let mut ev = json!({
            "timestamp": at.to_rfc3339_opts(SecondsFormat::Millis, true),
            "recipient": rcpt,
            "sender": sender,
            "source_ip": ip,
            "helo": helo,
            "mx_host": mx,
            "pool": pool,
            "message_id": message_id,
            "dkim_selector": selector,
        });
        match outcome {
            Outcome::Delivered => {
                ev["type"] = json!("delivered");
                ev["response"] = json!(dest.ok);
                ev["code"] = json!(250);
                ev["attempt"] = json!(1 + rng.below(3));
            }
            Outcome::Failed(reply) => {
                let (text, code, enhanced, stage) = reply.render(ip, &rcpt, rng);
                ev["type"] = json!(if code >= 500 { "bounced" } else { "deferred" });
                ev["response"] = json!(text);
                ev["code"] = json!(code);
                if let Some(e) = enhanced {
                    ev["enhanced"] = json!(e);
                }
                ev["stage"] = json!(stage);
                ev["attempt"] = json!(1 + rng.below(6));
            }
        }
        self.events.push((at, ev));
    }

    fn stretch(&mut self, s: &Stretch) {
        let step_ms = 3_600_000 / s.per_hour.max(1) as i64;
        let end = self.now - TimeDelta::minutes(s.to_min);
        let mut slot = self.now - TimeDelta::minutes(s.from_min);
        while slot < end {
            // Somewhere in the slot, never past its end: a steady but uneven rhythm.
            let at = slot + TimeDelta::milliseconds(self.rng.below(step_ms as u64 * 9 / 10) as i64);
            slot += TimeDelta::milliseconds(step_ms);
            if at >= end {
                break;
            }
            let roll = self.rng.below(1000);
            let outcome = match s.mix {
                Mix::Deliver {
                    bounce,
                    bounce_reply: Some(r),
                } if roll < bounce => Outcome::Failed(r),
                Mix::Deliver { .. } => Outcome::Delivered,
                Mix::Defer { delivered, .. } if roll < delivered => Outcome::Delivered,
                Mix::Defer {
                    alt: Some((alt, share)),
                    ..
                } if self.rng.below(1000) < share => Outcome::Failed(alt),
                Mix::Defer { reply, .. } => Outcome::Failed(reply),
            };
            self.push(s.dest, s.ip, at, outcome);
        }
    }
}

/// The demo events, oldest first, as the JSON objects `POST /api/v1/events` takes.
pub fn demo_events(now: DateTime<Utc>) -> Vec<Value> {
    let mut b = Builder {
        now,
        rng: Rng(SEED),
        events: Vec::new(),
    };
    for s in &stretches() {
        b.stretch(s);
    }
    for (dest, ip, min, reply) in anchors() {
        b.push(
            dest,
            ip,
            now - TimeDelta::minutes(min),
            Outcome::Failed(reply),
        );
    }
    // Oldest first, ties in generation order: the ids then read like a log.
    b.events.sort_by_key(|(at, _)| *at);
    b.events
        .into_iter()
        .enumerate()
        .map(|(i, (_, mut ev))| {
            ev["id"] = json!(format!("demo-{:05}", i + 1));
            ev
        })
        .collect()
}

/// Password of the `demo` admin that `serve --demo` creates; printed at start. The demo
/// database is a throwaway file on a loopback listener by default.
pub const DEMO_PASSWORD: &str = "deferwatch-demo";

/// Fills a fresh database for `serve --demo`: a source, an admin, check results for the
/// demo IPs (one blocklist listing appearing shortly before the Gmail deferrals), and the
/// events, posted to the server's own ingest endpoint once it is listening.
pub async fn seed(
    state: &crate::app::AppState,
    addr: std::net::SocketAddr,
) -> Result<(), crate::cli::CliError> {
    use crate::web::auth::{SOURCE_TOKEN_PREFIX, hash_token, new_token};
    let now = state.clock.now();
    state.demo.store(true, std::sync::atomic::Ordering::Relaxed);
    let token = new_token(SOURCE_TOKEN_PREFIX);
    state
        .store
        .create_source("demo", "json", &hash_token(&token), now)
        .await?;
    let hash = crate::web::session::hash_password(DEMO_PASSWORD)
        .map_err(|e| crate::cli::CliError::Usage(e.to_string()))?;
    if state.store.count_users().await? == 0 {
        state
            .store
            .create_user("demo", &hash, crate::store::web::Role::Admin, now)
            .await?;
    }
    for report in demo_checks(now) {
        state.store.record_checks(&report).await?;
    }
    let events = demo_events(now);
    let url = format!("http://{addr}/api/v1/events");
    println!(
        "Demo: {} generated events are being fed to {url}.\nOpen http://{addr}/ and log in as demo / {DEMO_PASSWORD}",
        events.len()
    );
    tokio::spawn(async move {
        let client = reqwest::Client::new();
        for chunk in events.chunks(500) {
            let body: String = chunk
                .iter()
                .map(|e| e.to_string())
                .collect::<Vec<_>>()
                .join("\n");
            let sent = client
                .post(&url)
                .bearer_auth(&token)
                .header("content-type", "application/x-ndjson")
                .body(body)
                .send()
                .await;
            match sent {
                Ok(r) if r.status().is_success() => {}
                Ok(r) => tracing::error!(status = %r.status(), "demo events refused"),
                Err(e) => tracing::error!(error = %e, "demo events not sent"),
            }
        }
        tracing::info!("demo data loaded");
    });
    Ok(())
}

/// Check results for the demo's sending IPs and sender domain, in two runs so that
/// the dashboard shows a change: 198.51.100.25 appears on a blocklist about an hour
/// before its Gmail deferrals begin.
pub fn demo_checks(now: DateTime<Utc>) -> Vec<crate::checks::CheckReport> {
    use crate::checks::{CheckReport, CheckResult, Verdict};
    let ip_checks = |ip: &str, host: &str, listed: bool| {
        let mut v = vec![
            CheckResult::new(
                "ptr",
                Verdict::Pass,
                format!("{ip} has PTR {host}"),
                vec![format!("{host}.")],
            ),
            CheckResult::new(
                "fcrdns",
                Verdict::Pass,
                format!("{host} resolves back to {ip}"),
                vec![ip.to_string()],
            ),
            CheckResult::new(
                "helo",
                Verdict::Pass,
                format!("HELO {host} is a valid FQDN resolving to {ip}"),
                vec![ip.to_string()],
            ),
            CheckResult::new(
                "dnsbl:zen.spamhaus.org",
                Verdict::Pass,
                "not listed",
                vec![],
            ),
        ];
        if listed {
            v.push(CheckResult::new(
                "dnsbl:b.barracudacentral.org",
                Verdict::Fail,
                "listed (127.0.0.2): Barracuda reputation block list",
                vec!["127.0.0.2".into()],
            ));
        } else {
            v.push(CheckResult::new(
                "dnsbl:b.barracudacentral.org",
                Verdict::Pass,
                "not listed",
                vec![],
            ));
        }
        v
    };
    let before = now - TimeDelta::hours(10);
    let after = now - TimeDelta::hours(9);
    vec![
        CheckReport {
            subject: "198.51.100.25".into(),
            checks: ip_checks("198.51.100.25", "mta1.news.example.com", false),
            checked_at: before,
        },
        CheckReport {
            subject: "198.51.100.25".into(),
            checks: ip_checks("198.51.100.25", "mta1.news.example.com", true),
            checked_at: after,
        },
        CheckReport {
            subject: "198.51.100.26".into(),
            checks: ip_checks("198.51.100.26", "mta2.news.example.com", false),
            checked_at: after,
        },
        CheckReport {
            subject: "news.example.com".into(),
            checks: vec![
                CheckResult::new(
                    "spf",
                    Verdict::Pass,
                    "v=spf1 ip4:198.51.100.0/24 -all authorises both sending IPs",
                    vec!["v=spf1 ip4:198.51.100.0/24 -all".into()],
                ),
                CheckResult::new(
                    "dkim:s2026",
                    Verdict::Pass,
                    "RSA 2048-bit key published",
                    vec!["v=DKIM1; k=rsa; p=MIIBIjANBg…".into()],
                ),
                CheckResult::new(
                    "dmarc",
                    Verdict::Pass,
                    "p=quarantine with aggregate reports",
                    vec!["v=DMARC1; p=quarantine; rua=mailto:dmarc@news.example.com".into()],
                ),
            ],
            checked_at: after,
        },
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::NewEvent;
    use crate::incidents::scope::{SourceIpScope, StageScope};
    use crate::incidents::{Engine, Incident, Phase, Status, Thresholds, Timeline, scope};
    use crate::ingest::json::{Context, parse_event};
    use crate::smtp::Classifier;
    use std::collections::{BTreeMap, HashSet};

    fn now() -> DateTime<Utc> {
        "2026-11-23T09:41:00Z".parse().unwrap()
    }

    /// Through the real parser and the real engine, destination by destination in time
    /// order as the store feeds it, then a sweep at `now`.
    fn incidents(now: DateTime<Utc>) -> BTreeMap<String, Vec<Incident>> {
        let classifier = Classifier::builtin();
        let ctx = Context {
            source_id: 1,
            classifier: &classifier,
            now,
            max_future_skew: TimeDelta::hours(1),
        };
        let mut by_dest: BTreeMap<String, Vec<NewEvent>> = BTreeMap::new();
        for v in demo_events(now) {
            let ev = parse_event(&v.to_string(), &ctx)
                .unwrap_or_else(|r| panic!("demo event rejected: {r:?}\n{v}"));
            by_dest.entry(ev.destination.clone()).or_default().push(ev);
        }
        let engine = Engine::new(Thresholds::default());
        by_dest
            .into_iter()
            .map(|(dest, mut events)| {
                events.sort_by_key(|e| e.time);
                let mut tl = Timeline::new(None);
                for e in &events {
                    engine.apply(&mut tl, e);
                }
                for inc in &mut tl.incidents {
                    engine.settle(inc, now);
                }
                (dest, tl.incidents)
            })
            .collect()
    }

    fn phases(got: &BTreeMap<String, Vec<Incident>>) -> BTreeMap<&str, Vec<(Phase, Status)>> {
        got.iter()
            .map(|(d, v)| (d.as_str(), v.iter().map(|i| (i.phase, i.status)).collect()))
            .collect()
    }

    fn expected() -> BTreeMap<&'static str, Vec<(Phase, Status)>> {
        [
            ("apple", vec![(Phase::Recovered, Status::Recovered)]),
            ("barracuda", vec![(Phase::NormalRetry, Status::Open)]),
            ("google", vec![(Phase::Cooling, Status::Open)]),
            ("microsoft", vec![(Phase::Escalate, Status::Open)]),
            ("orange", vec![(Phase::Deferred, Status::Open)]),
            ("yahoo", vec![(Phase::Persistent, Status::Open)]),
            // Healthy destinations: deliveries alone open nothing.
            ("comcast", vec![]),
            ("gmx", vec![]),
            ("webde", vec![]),
        ]
        .into_iter()
        .collect()
    }

    #[test]
    fn the_engine_finds_one_incident_per_phase() {
        let got = incidents(now());
        assert_eq!(phases(&got), expected());

        let google = &got["google"][0];
        let s = scope(google);
        assert_eq!(s.source_ips, SourceIpScope::OneIp);
        assert_eq!(s.affected_source_ips, vec![DEMO_IP_A.to_string()]);
        assert_eq!(s.unaffected_source_ips, vec![DEMO_IP_B.to_string()]);
        assert_eq!(google.top_causes()[0].0, "rate_limit");
        assert!(
            google.counts.bounced > 0,
            "bounces give the timeline a third series"
        );

        let microsoft = &got["microsoft"][0];
        assert_eq!(scope(microsoft).source_ips, SourceIpScope::AllIps);
        assert!(!microsoft.recovery_trend);
        assert!(microsoft.age() >= TimeDelta::hours(27));
        // Both Microsoft replies mean IP reputation; they show as two distinct replies.
        assert_eq!(microsoft.top_causes()[0].0, "reputation");
        let mut enhanced: Vec<&str> = microsoft
            .replies
            .iter()
            .filter_map(|r| r.enhanced.as_deref())
            .collect();
        enhanced.sort_unstable();
        enhanced.dedup();
        assert_eq!(enhanced, vec!["4.7.500", "4.7.650"]);

        let yahoo = &got["yahoo"][0];
        assert_eq!(scope(yahoo).stage, StageScope::Connection);
        assert_eq!(scope(yahoo).source_ips, SourceIpScope::AllIps);

        let apple = &got["apple"][0];
        let recovered_at = apple.closed_at.unwrap();
        assert!(recovered_at < now() - TimeDelta::hours(1));
        assert!(apple.last_deferral <= now() - TimeDelta::hours(4));

        assert_eq!(got["barracuda"][0].top_causes()[0].0, "greylisting");
        assert_eq!(got["orange"][0].top_causes()[0].0, "connection_limit");
        assert!(got["orange"][0].age() < TimeDelta::minutes(15));
    }

    /// The demo is loaded at whatever time someone starts it: the phases must not
    /// depend on where `now` falls within an hour or a trend window.
    #[test]
    fn the_phases_hold_whenever_the_demo_is_generated() {
        for offset_min in [7, 23, 38, 52, 3 * 60 + 11] {
            let at = now() + TimeDelta::minutes(offset_min);
            assert_eq!(phases(&incidents(at)), expected(), "now + {offset_min} min");
        }
    }

    #[test]
    fn events_are_deterministic_labelled_and_few() {
        let a = demo_events(now());
        assert_eq!(a, demo_events(now()));
        assert!(a.len() > 1000 && a.len() <= 5000, "{} events", a.len());
        let ids: HashSet<&str> = a.iter().map(|e| e["id"].as_str().unwrap()).collect();
        assert_eq!(ids.len(), a.len());
        assert!(ids.iter().all(|id| id.starts_with("demo-")));
        let times: Vec<&str> = a.iter().map(|e| e["timestamp"].as_str().unwrap()).collect();
        assert!(times.windows(2).all(|w| w[0] <= w[1]), "oldest first");
        assert!(a.iter().all(|e| {
            let ip = e["source_ip"].as_str().unwrap();
            ip == DEMO_IP_A || ip == DEMO_IP_B
        }));
        // Relative to now: another now shifts every event by the same amount.
        let later = demo_events(now() + TimeDelta::hours(5));
        let first =
            |v: &[Value]| -> DateTime<Utc> { v[0]["timestamp"].as_str().unwrap().parse().unwrap() };
        assert_eq!(first(&later) - first(&a), TimeDelta::hours(5));
    }
}
