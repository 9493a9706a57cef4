//! A synthetic Postfix mail log with the mix of a busy outbound relay's, for the import
//! benchmark and the parser's tests: submissions from application servers, deliveries to
//! the big mailbox providers and to smaller domains during a deferral incident (about a
//! fifth of all lines are `status=deferred`), retries from the deferred queue, expiries,
//! and the daemons' noise (TLS, anvil, scache, postscreen, rejected spam).
//!
//! The replies are the providers' documented wordings, including the parts that make
//! each one unique (Gmail's and Microsoft's transaction ids, the recipient in a
//! greylisting reply), so that nothing downstream can look faster than it would be on
//! a real log by memoising whole replies. Deterministic from the seed.

use chrono::{DateTime, SecondsFormat, TimeDelta, Utc};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::VecDeque;
use std::fmt;
use std::io::{self, Write};

/// How many lines of each kind a generated log holds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LogMix {
    pub lines: usize,
    /// `status=sent` lines.
    pub sent: usize,
    /// `status=deferred` lines, the `postfix/error` ones included.
    pub deferred: usize,
    /// The `postfix/error` share of `deferred` (`delivery temporarily suspended`).
    pub suspended: usize,
    /// `status=bounced` lines.
    pub bounced: usize,
    /// Non-final attempts: `connect to …` and `host … said:` lines without a recipient,
    /// each followed by its process's status line.
    pub attempts: usize,
    /// `qmgr` `status=expired` lines.
    pub expired: usize,
    /// The recipients those expiries returned (each still deferred when it expired).
    pub expired_recipients: usize,
    /// Everything else: smtpd, pickup, cleanup, qmgr, TLS, bounce, anvil, scache,
    /// postscreen, warnings.
    pub other: usize,
}

impl LogMix {
    /// The share of `status=deferred` lines.
    pub fn deferred_share(&self) -> f64 {
        self.deferred as f64 / self.lines.max(1) as f64
    }
}

/// Lines per second of log time: a busy relay. Consecutive lines share their second, as
/// in a real log.
const LINES_PER_SECOND: i64 = 25;
const HOST: &str = "mta1";
/// The relay's own address, as the receivers quote it back.
const OUR_IP: &str = "192.0.2.1";
/// Messages waiting in the deferred queue; beyond this the oldest expire.
const MAX_QUEUED: usize = 20_000;
/// Delivery attempts before a still-deferred message may expire
/// (`maximal_queue_lifetime` over the retry schedule).
const TRIES_BEFORE_EXPIRY: u32 = 6;
/// The share of steps that retry a deferred message (when one is queued) rather than
/// take a new one: with the deferral rates below it gives a real incident's mix.
const RETRY_SHARE: f64 = 0.76;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Dest {
    Google,
    Microsoft,
    Yahoo,
    Other(u16),
}

const GOOGLE_DOMAINS: &[&str] = &["gmail.com", "gmail.com", "gmail.com", "googlemail.com"];
const MICROSOFT_DOMAINS: &[&str] = &["outlook.com", "hotmail.com", "hotmail.com", "live.com"];
const YAHOO_DOMAINS: &[&str] = &["yahoo.com", "yahoo.com", "aol.com", "ymail.com"];
const GOOGLE_MX: &[(&str, &str)] = &[
    ("gmail-smtp-in.l.google.com", "142.250.102.26"),
    ("alt1.gmail-smtp-in.l.google.com", "142.250.153.27"),
    ("alt2.gmail-smtp-in.l.google.com", "142.251.9.27"),
    ("alt3.gmail-smtp-in.l.google.com", "142.250.27.27"),
    ("alt4.gmail-smtp-in.l.google.com", "108.177.15.26"),
];
const GOOGLE_MX6: &[(&str, &str)] = &[
    ("gmail-smtp-in.l.google.com", "2a00:1450:400c:c0b::1a"),
    ("alt1.gmail-smtp-in.l.google.com", "2a00:1450:4010:c1e::1b"),
];
const MICROSOFT_MX: &[(&str, &str)] = &[
    ("hotmail-com.olc.protection.outlook.com", "52.101.42.1"),
    ("hotmail-com.olc.protection.outlook.com", "52.101.73.3"),
    ("outlook-com.olc.protection.outlook.com", "52.101.68.2"),
    ("outlook-com.olc.protection.outlook.com", "52.101.11.0"),
];
const MICROSOFT_FRONTENDS: &[&str] = &[
    "AM4PEPF00027A5C.eurprd04.prod.outlook.com",
    "DB5PEPF00014B8D.eurprd02.prod.outlook.com",
    "BL02EPF0001A0FA.namprd09.prod.outlook.com",
    "CH1PEPF0000AD7E.namprd04.prod.outlook.com",
];
const YAHOO_MX: &[(&str, &str)] = &[
    ("mta5.am0.yahoodns.net", "67.195.204.72"),
    ("mta6.am0.yahoodns.net", "98.136.96.91"),
    ("mta7.am0.yahoodns.net", "67.195.228.94"),
];
/// Smaller receivers: `OTHER_DOMAINS` of them, named from these words.
const WORDS: &[&str] = &[
    "northwind",
    "contoso",
    "fabrikam",
    "tailspin",
    "wingtip",
    "adventure",
    "lucerne",
    "margie",
    "proseware",
    "woodgrove",
    "alpine",
    "litware",
];
const TLDS: &[&str] = &["com", "net", "org", "de", "fr", "co.uk", "nl", "io"];
const OTHER_DOMAINS: u16 = 400;
const FIRST_NAMES: &[&str] = &[
    "olivia", "liam", "emma", "noah", "ava", "lucas", "mia", "leo", "sofia", "elias", "lena",
    "jonas", "chloe", "hugo", "ines", "mateo", "nora", "paul", "zoe", "ben",
];
const LAST_NAMES: &[&str] = &[
    "martin", "muller", "garcia", "smith", "rossi", "dubois", "jansen", "kowalski", "silva",
    "nielsen", "novak", "meyer",
];
const SENDERS: &[&str] = &[
    "newsletter@news.example.com",
    "noreply@example.com",
    "billing@example.com",
    "alerts@notify.example.com",
    "support@example.com",
    "bounces+4711@mail.example.com",
];
const APP_SERVERS: &[(&str, &str)] = &[
    ("app1.example.com", "10.0.1.11"),
    ("app2.example.com", "10.0.1.12"),
    ("app3.example.com", "10.0.1.13"),
    ("crm.example.com", "10.0.2.20"),
    ("web.example.com", "10.0.2.30"),
];
const TLS_CIPHERS: &[&str] = &[
    "TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits) key-exchange X25519 server-signature ECDSA (P-256) server-digest SHA256",
    "TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits) key-exchange X25519 server-signature RSA-PSS (2048 bits) server-digest SHA256",
    "TLSv1.2 with cipher ECDHE-RSA-AES256-GCM-SHA384 (256/256 bits)",
];

struct Rcpt {
    local: String,
    domain: String,
    dest: Dest,
}

struct Message {
    qid: String,
    sender: &'static str,
    size: u32,
    rcpts: Vec<Rcpt>,
    tries: u32,
    arrived: DateTime<Utc>,
}

/// Writes whole lines and counts them, until the requested number is reached.
struct Out<'w, W: Write> {
    w: &'w mut W,
    limit: usize,
    mix: LogMix,
    start: DateTime<Utc>,
    stamp_second: i64,
    stamp: String,
}

#[derive(Clone, Copy)]
enum Kind {
    Sent,
    Deferred,
    Suspended,
    Bounced,
    Attempt,
    Expired(usize),
    Other,
}

impl<W: Write> Out<'_, W> {
    fn full(&self) -> bool {
        self.mix.lines >= self.limit
    }

    /// The time of the next line.
    fn now(&self) -> DateTime<Utc> {
        // usize → i64 cannot overflow for any log that fits in memory or on a disk.
        let i = i64::try_from(self.mix.lines).unwrap_or(i64::MAX / 1000);
        self.start + TimeDelta::milliseconds(i.saturating_mul(1000 / LINES_PER_SECOND))
    }

    fn line(
        &mut self,
        kind: Kind,
        program: &str,
        pid: u32,
        msg: fmt::Arguments<'_>,
    ) -> io::Result<()> {
        if self.full() {
            return Ok(());
        }
        let t = self.now();
        if t.timestamp() != self.stamp_second {
            self.stamp_second = t.timestamp();
            self.stamp = t.format("%b %e %H:%M:%S").to_string();
        }
        writeln!(self.w, "{} {HOST} {program}[{pid}]: {msg}", self.stamp)?;
        let m = &mut self.mix;
        m.lines += 1;
        match kind {
            Kind::Sent => m.sent += 1,
            Kind::Deferred => m.deferred += 1,
            Kind::Suspended => {
                m.deferred += 1;
                m.suspended += 1;
            }
            Kind::Bounced => m.bounced += 1,
            Kind::Attempt => m.attempts += 1,
            Kind::Expired(n) => {
                m.expired += 1;
                m.expired_recipients += n;
            }
            Kind::Other => m.other += 1,
        }
        Ok(())
    }
}

/// The daemons' process ids: a few long-lived ones, pools for the others.
struct Pids {
    qmgr: u32,
    anvil: u32,
    scache: u32,
    postscreen: u32,
    smtpd: [u32; 8],
    cleanup: [u32; 4],
    smtp: [u32; 40],
    error: [u32; 3],
    bounce: [u32; 3],
    pickup: u32,
}

impl Pids {
    fn new(rng: &mut StdRng) -> Pids {
        let mut next = 1000 + rng.random_range(0..20_000u32);
        let mut take = || {
            next += 1 + rng.random_range(0..50u32);
            next
        };
        Pids {
            qmgr: take(),
            anvil: take(),
            scache: take(),
            postscreen: take(),
            smtpd: std::array::from_fn(|_| take()),
            cleanup: std::array::from_fn(|_| take()),
            smtp: std::array::from_fn(|_| take()),
            error: std::array::from_fn(|_| take()),
            bounce: std::array::from_fn(|_| take()),
            pickup: take(),
        }
    }
}

/// Any element of a non-empty constant table.
fn pick<T: Copy>(rng: &mut StdRng, xs: &[T]) -> T {
    xs[rng.random_range(0..xs.len())]
}

struct Gen<'w, W: Write> {
    out: Out<'w, W>,
    rng: StdRng,
    pids: Pids,
    queue: VecDeque<Message>,
    next_qid: u64,
}

/// Writes `lines` lines of a Postfix log whose last line is logged before `end`, with
/// traditional syslog timestamps in UTC (`Dec  7 10:00:00 mta1 postfix/smtp[1234]: …`).
/// The same seed gives the same log.
pub fn write_postfix_log(
    out: &mut impl Write,
    lines: usize,
    seed: u64,
    end: DateTime<Utc>,
) -> io::Result<LogMix> {
    let seconds = i64::try_from(lines).unwrap_or(i64::MAX) / LINES_PER_SECOND + 2;
    let start = TimeDelta::try_seconds(seconds)
        .and_then(|d| end.checked_sub_signed(d))
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{lines} lines at {LINES_PER_SECOND} a second do not fit before {end}"),
            )
        })?;
    let mut rng = StdRng::seed_from_u64(seed);
    let pids = Pids::new(&mut rng);
    let mut g = Gen {
        out: Out {
            w: out,
            limit: lines,
            mix: LogMix::default(),
            start,
            stamp_second: i64::MIN,
            stamp: String::new(),
        },
        rng,
        pids,
        queue: VecDeque::new(),
        next_qid: 0,
    };
    while !g.out.full() {
        let r: f64 = g.rng.random();
        if r < 0.03 {
            g.inbound_noise()?;
        } else if r < 0.05 {
            g.daemon_noise()?;
        } else if r < RETRY_SHARE && !g.queue.is_empty() {
            g.retry()?;
        } else {
            g.new_message()?;
        }
    }
    Ok(g.out.mix)
}

impl<W: Write> Gen<'_, W> {
    /// A unique queue id that looks like Postfix's short hexadecimal ones.
    fn qid(&mut self) -> String {
        self.next_qid += 1;
        // An odd multiplier is a bijection on 40 bits: unique, yet not sequential.
        let v = (self.next_qid.wrapping_mul(0x9E37_79B9_7F4B) ^ 0x5A_A5A5_5A5A) & 0xFF_FFFF_FFFF;
        format!("{v:010X}")
    }

    fn recipient(&mut self) -> Rcpt {
        let r: f64 = self.rng.random();
        let (domain, dest) = if r < 0.38 {
            (
                pick(&mut self.rng, GOOGLE_DOMAINS).to_string(),
                Dest::Google,
            )
        } else if r < 0.58 {
            (
                pick(&mut self.rng, MICROSOFT_DOMAINS).to_string(),
                Dest::Microsoft,
            )
        } else if r < 0.70 {
            (pick(&mut self.rng, YAHOO_DOMAINS).to_string(), Dest::Yahoo)
        } else {
            let i = self.rng.random_range(0..OTHER_DOMAINS);
            (other_domain(i), Dest::Other(i))
        };
        let first = pick(&mut self.rng, FIRST_NAMES);
        let last = pick(&mut self.rng, LAST_NAMES);
        let n = self.rng.random_range(0..10_000u32);
        Rcpt {
            local: format!("{first}.{last}{n}"),
            domain,
            dest,
        }
    }

    fn new_message(&mut self) -> io::Result<()> {
        let qid = self.qid();
        let sender = pick(&mut self.rng, SENDERS);
        let size = self.rng.random_range(2_000..120_000u32);
        let arrived = self.out.now();
        // Mostly one recipient per message, some small groups, a few lists.
        let n = match self.rng.random_range(0..20u32) {
            0..12 => 1,
            12..17 => self.rng.random_range(2..4),
            _ => self.rng.random_range(4..11),
        };
        let rcpts: Vec<Rcpt> = (0..n).map(|_| self.recipient()).collect();
        let msgid = format!(
            "{}.{qid}@{}",
            arrived.format("%Y%m%d%H%M%S"),
            sender.rsplit_once('@').map_or("example.com", |(_, d)| d)
        );
        if self.rng.random_bool(0.85) {
            let (client, ip) = pick(&mut self.rng, APP_SERVERS);
            let pid = pick(&mut self.rng, &self.pids.smtpd);
            let tls = self.rng.random_bool(0.2);
            let o = &mut self.out;
            o.line(
                Kind::Other,
                "postfix/smtpd",
                pid,
                format_args!("connect from {client}[{ip}]"),
            )?;
            if tls {
                let cipher = pick(&mut self.rng, TLS_CIPHERS);
                self.out.line(
                    Kind::Other,
                    "postfix/smtpd",
                    pid,
                    format_args!(
                        "Anonymous TLS connection established from {client}[{ip}]: {cipher}"
                    ),
                )?;
            }
            self.out.line(
                Kind::Other,
                "postfix/smtpd",
                pid,
                format_args!(
                    "{qid}: client={client}[{ip}], sasl_method=PLAIN, sasl_username=mailer"
                ),
            )?;
            self.cleanup_and_qmgr(&qid, &msgid, sender, size, n)?;
            let starttls = if tls { " starttls=1" } else { "" };
            self.out.line(
                Kind::Other,
                "postfix/smtpd",
                pid,
                format_args!(
                    "disconnect from {client}[{ip}] ehlo=2{starttls} auth=1 mail=1 rcpt={n} data=1 quit=1 commands={}",
                    n + if tls { 7 } else { 6 }
                ),
            )?;
        } else {
            let uid = pick(&mut self.rng, &[33u32, 1000, 1001]);
            self.out.line(
                Kind::Other,
                "postfix/pickup",
                self.pids.pickup,
                format_args!("{qid}: uid={uid} from=<{sender}>"),
            )?;
            self.cleanup_and_qmgr(&qid, &msgid, sender, size, n)?;
        }
        let msg = Message {
            qid,
            sender,
            size,
            rcpts,
            tries: 0,
            arrived,
        };
        self.attempt(msg)
    }

    fn cleanup_and_qmgr(
        &mut self,
        qid: &str,
        msgid: &str,
        sender: &str,
        size: u32,
        nrcpt: usize,
    ) -> io::Result<()> {
        let pid = pick(&mut self.rng, &self.pids.cleanup);
        self.out.line(
            Kind::Other,
            "postfix/cleanup",
            pid,
            format_args!("{qid}: message-id=<{msgid}>"),
        )?;
        self.out.line(
            Kind::Other,
            "postfix/qmgr",
            self.pids.qmgr,
            format_args!("{qid}: from=<{sender}>, size={size}, nrcpt={nrcpt} (queue active)"),
        )
    }

    fn retry(&mut self) -> io::Result<()> {
        let i = self.rng.random_range(0..self.queue.len());
        let Some(msg) = self.queue.swap_remove_back(i) else {
            return Ok(());
        };
        if msg.tries >= TRIES_BEFORE_EXPIRY && self.rng.random_bool(0.25) {
            return self.expire(msg);
        }
        self.out.line(
            Kind::Other,
            "postfix/qmgr",
            self.pids.qmgr,
            format_args!(
                "{}: from=<{}>, size={}, nrcpt={} (queue active)",
                msg.qid,
                msg.sender,
                msg.size,
                msg.rcpts.len()
            ),
        )?;
        self.attempt(msg)
    }

    fn expire(&mut self, msg: Message) -> io::Result<()> {
        self.out.line(
            Kind::Expired(msg.rcpts.len()),
            "postfix/qmgr",
            self.pids.qmgr,
            format_args!(
                "{}: from=<{}>, status=expired, returned to sender",
                msg.qid, msg.sender
            ),
        )?;
        let bounce_qid = self.qid();
        let pid = pick(&mut self.rng, &self.pids.bounce);
        self.out.line(
            Kind::Other,
            "postfix/bounce",
            pid,
            format_args!(
                "{}: sender non-delivery notification: {bounce_qid}",
                msg.qid
            ),
        )?;
        self.removed(&msg.qid)
    }

    fn removed(&mut self, qid: &str) -> io::Result<()> {
        self.out.line(
            Kind::Other,
            "postfix/qmgr",
            self.pids.qmgr,
            format_args!("{qid}: removed"),
        )
    }

    /// One delivery attempt of every recipient still queued; the message then leaves
    /// the queue or goes back to the deferred queue.
    fn attempt(&mut self, mut msg: Message) -> io::Result<()> {
        msg.tries += 1;
        let mut left = Vec::new();
        for rcpt in std::mem::take(&mut msg.rcpts) {
            if self.deliver(&msg, &rcpt)? {
                left.push(rcpt);
            }
        }
        msg.rcpts = left;
        if msg.rcpts.is_empty() {
            return self.removed(&msg.qid);
        }
        if self.queue.len() >= MAX_QUEUED
            && let Some(old) = self.queue.pop_front()
        {
            self.expire(old)?;
        }
        self.queue.push_back(msg);
        Ok(())
    }

    /// Logs one recipient's attempt; true when it was deferred.
    fn deliver(&mut self, msg: &Message, rcpt: &Rcpt) -> io::Result<bool> {
        let now = self.out.now();
        let delay = (now - msg.arrived).num_milliseconds() as f64 / 1000.0 + 0.4;
        let r: f64 = self.rng.random();
        // A deferral incident at Google and Microsoft, the usual trickle elsewhere.
        let (p_defer, p_bounce): (f64, f64) = match rcpt.dest {
            Dest::Google => (0.55, 0.02),
            Dest::Microsoft => (0.45, 0.03),
            Dest::Yahoo => (0.35, 0.03),
            Dest::Other(_) => (0.15, 0.04),
        };
        // What was deferred once tends to be deferred again while the incident lasts.
        let p_defer = if msg.tries > 1 {
            p_defer.max(0.74)
        } else {
            p_defer
        };
        let outcome = if r < p_defer {
            Outcome::Deferred
        } else if r < p_defer + p_bounce {
            Outcome::Bounced
        } else {
            Outcome::Sent
        };
        let to = format!("{}@{}", rcpt.local, rcpt.domain);
        let mut line = DeliveryLine {
            pid: pick(&mut self.rng, &self.pids.smtp),
            program: "postfix/smtp",
            relay: String::from("none"),
            dsn: "2.0.0",
            status: "sent",
            reason: String::new(),
            conn_use: None,
        };
        match (outcome, rcpt.dest) {
            (Outcome::Deferred, _) => self.deferral(&msg.qid, rcpt, &to, now, &mut line)?,
            (Outcome::Bounced, dest) => self.bounce(dest, rcpt, &to, &mut line),
            (Outcome::Sent, dest) => {
                let (mx, ip) = self.mx(rcpt);
                self.tls_line(line.pid, dest, &mx, &ip)?;
                line.relay = format!("{mx}[{ip}]:25");
                line.reason = match dest {
                    Dest::Google => format!(
                        "250 2.0.0 OK  {} {} - gsmtp",
                        now.timestamp(),
                        self.google_id()
                    ),
                    Dest::Microsoft => format!(
                        "250 2.6.0 <{}@example.com> [InternalId={}, Hostname={}] {} bytes in 0.{:03}, {}.{:03} KB/sec Queued mail for delivery",
                        msg.qid,
                        self.rng
                            .random_range(1_000_000_000_000u64..9_999_999_999_999),
                        pick(&mut self.rng, MICROSOFT_FRONTENDS),
                        msg.size + 1500,
                        self.rng.random_range(50..999u32),
                        self.rng.random_range(10..900u32),
                        self.rng.random_range(0..999u32)
                    ),
                    Dest::Yahoo => "250 ok dirdel".to_string(),
                    Dest::Other(_) => format!("250 2.0.0 Ok: queued as {}", self.qid()),
                };
                if self.rng.random_bool(0.1) {
                    line.conn_use = Some(self.rng.random_range(2..10));
                }
            }
        }
        let kind = match line.status {
            "deferred" if line.program == "postfix/error" => Kind::Suspended,
            "deferred" => Kind::Deferred,
            "bounced" => Kind::Bounced,
            _ => Kind::Sent,
        };
        let conn_use = line
            .conn_use
            .map(|n| format!("conn_use={n}, "))
            .unwrap_or_default();
        let (a, b, c) = (
            self.rng.random_range(0..30u32),
            self.rng.random_range(0..900u32),
            self.rng.random_range(0..900u32),
        );
        self.out.line(
            kind,
            line.program,
            line.pid,
            format_args!(
                "{}: to=<{to}>, relay={}, {conn_use}delay={delay:.1}, delays={:.1}/0.{a:02}/0.{b:03}/0.{c:03}, dsn={}, status={} ({})",
                msg.qid,
                line.relay,
                (delay - 0.4).max(0.0),
                line.dsn,
                line.status,
                line.reason
            ),
        )?;
        Ok(outcome == Outcome::Deferred)
    }

    /// An MX host of the recipient's domain and its address.
    fn mx(&mut self, rcpt: &Rcpt) -> (String, String) {
        let (h, ip) = match rcpt.dest {
            Dest::Google => pick(&mut self.rng, GOOGLE_MX),
            Dest::Microsoft => pick(&mut self.rng, MICROSOFT_MX),
            Dest::Yahoo => pick(&mut self.rng, YAHOO_MX),
            Dest::Other(i) => return (format!("mx.{}", rcpt.domain), other_ip(i)),
        };
        (h.to_string(), ip.to_string())
    }

    /// Only some sites log TLS sessions (`smtp_tls_loglevel` is 0 by default).
    fn tls_line(&mut self, pid: u32, dest: Dest, mx: &str, ip: &str) -> io::Result<()> {
        if self.rng.random_bool(0.15) {
            let cipher = pick(&mut self.rng, TLS_CIPHERS);
            let trust = match dest {
                Dest::Other(_) => "Untrusted",
                _ => "Trusted",
            };
            self.out.line(
                Kind::Other,
                "postfix/smtp",
                pid,
                format_args!("{trust} TLS connection established to {mx}[{ip}]:25: {cipher}"),
            )?;
        }
        Ok(())
    }

    /// Gmail's per-transaction id (`d2e1a72fcca58-7a2b3c4d5e6si1234567b3a.123`).
    fn google_id(&mut self) -> String {
        format!(
            "{:013x}-{:011x}si{:07}{:03x}.{}",
            self.rng.random::<u64>() & 0x1F_FFFF_FFFF_FFFF,
            self.rng.random::<u64>() & 0xFFF_FFFF_FFFF,
            self.rng.random_range(0..10_000_000u32),
            self.rng.random_range(0..0x1000u32),
            self.rng.random_range(100..1000u32)
        )
    }

    /// Microsoft's trailer: the front end, its clock and a transaction id.
    fn microsoft_trailer(&mut self, now: DateTime<Utc>) -> String {
        format!(
            "[{} {} {:016X}]",
            pick(&mut self.rng, MICROSOFT_FRONTENDS),
            now.to_rfc3339_opts(SecondsFormat::Millis, true),
            self.rng.random::<u64>()
        )
    }

    fn deferral(
        &mut self,
        qid: &str,
        rcpt: &Rcpt,
        to: &str,
        now: DateTime<Utc>,
        line: &mut DeliveryLine,
    ) -> io::Result<()> {
        line.status = "deferred";
        let r: f64 = self.rng.random();
        match rcpt.dest {
            Dest::Google => {
                // Hosts without IPv6 routing log a non-final attempt per AAAA record.
                if self.rng.random_bool(0.1) {
                    let (h, ip6) = pick(&mut self.rng, GOOGLE_MX6);
                    self.out.line(
                        Kind::Attempt,
                        "postfix/smtp",
                        line.pid,
                        format_args!("connect to {h}[{ip6}]:25: Network is unreachable"),
                    )?;
                }
                let (mx, ip) = self.mx(rcpt);
                self.tls_line(line.pid, rcpt.dest, &mx, &ip)?;
                line.relay = format!("{mx}[{ip}]:25");
                let id = self.google_id();
                let (dsn, text) = if r < 0.65 {
                    (
                        "4.7.28",
                        format!(
                            "421-4.7.28 [{OUR_IP}      15] Our system has detected an unusual rate of 421-4.7.28 unsolicited mail originating from your IP address. To protect our 421-4.7.28 users from spam, mail sent from your IP address has been temporarily 421-4.7.28 rate limited. For more information, go to 421-4.7.28  https://support.google.com/mail/?p=UnsolicitedRateLimitError to 421 4.7.28 review our Bulk Email Senders Guidelines. {id} - gsmtp (in reply to end of DATA command)"
                        ),
                    )
                } else if r < 0.85 {
                    (
                        "4.7.0",
                        format!(
                            "421-4.7.0 [{OUR_IP}      15] Our system has detected that this message is 421-4.7.0 suspicious due to the very low reputation of the sending IP address. 421-4.7.0 To protect our users from spam, mail sent from your IP address has 421-4.7.0 been temporarily rate limited. For more information, go to 421-4.7.0  https://support.google.com/mail/answer/188131 421 4.7.0 {id} - gsmtp (in reply to end of DATA command)"
                        ),
                    )
                } else {
                    (
                        "4.2.1",
                        format!(
                            "450-4.2.1 The user you are trying to contact is receiving mail at a rate that 450-4.2.1 prevents additional messages from being delivered. Please resend your 450-4.2.1 message at a later point. If the user is able to receive mail at that 450-4.2.1 time, your message will be delivered. For more information, go to 450-4.2.1  https://support.google.com/mail/?p=ReceivingRate {id} - gsmtp (in reply to RCPT TO command)"
                        ),
                    )
                };
                line.dsn = dsn;
                line.reason = format!("host {mx}[{ip}] said: {text}");
            }
            Dest::Microsoft => {
                let (mx, ip) = self.mx(rcpt);
                line.relay = format!("{mx}[{ip}]:25");
                let trailer = self.microsoft_trailer(now);
                if r < 0.7 {
                    let mxid = self.rng.random::<u64>();
                    line.dsn = "4.7.650";
                    line.reason = format!(
                        "host {mx}[{ip}] said: 451 4.7.650 The mail server [{OUR_IP}] has been temporarily rate limited due to IP reputation. For e-mail delivery information, see https://postmaster.live.com (S775) [Name=Protocol Filter Agent][AGT=PFA][MxId={mxid:016X}] {trailer} (in reply to MAIL FROM command)"
                    );
                } else if r < 0.9 {
                    line.dsn = "4.7.500";
                    line.reason = format!(
                        "host {mx}[{ip}] said: 451 4.7.500 Server busy. Please try again later from [{OUR_IP}]. (S77714) {trailer} (in reply to MAIL FROM command)"
                    );
                } else {
                    line.dsn = "4.3.2";
                    line.reason = format!(
                        "host {mx}[{ip}] refused to talk to me: 421 4.3.2 The maximum number of concurrent server connections has exceeded a limit, closing transmission channel {trailer}"
                    );
                }
            }
            Dest::Yahoo => {
                let (mx, ip) = self.mx(rcpt);
                line.relay = format!("{mx}[{ip}]:25");
                let tss = format!(
                    "421 4.7.0 [TSS04] Messages from {OUR_IP} temporarily deferred due to unexpected volume or user complaints - 4.16.55.1; see https://postmaster.yahooinc.com/error-codes"
                );
                if r < 0.6 {
                    line.dsn = "4.7.0";
                    line.reason = format!("host {mx}[{ip}] refused to talk to me: {tss}");
                } else if r < 0.85 {
                    line.dsn = "4.7.0";
                    line.reason =
                        format!("host {mx}[{ip}] said: {tss} (in reply to MAIL FROM command)");
                } else {
                    line.dsn = "4.4.2";
                    line.reason = format!(
                        "lost connection with {mx}[{ip}] while receiving the initial server greeting"
                    );
                }
            }
            Dest::Other(i) => {
                let d = &rcpt.domain;
                let ip = other_ip(i);
                if r < 0.12 {
                    // The destination is throttled after its last failure: qmgr hands the
                    // message to the error transport, no new session.
                    line.program = "postfix/error";
                    line.pid = pick(&mut self.rng, &self.pids.error);
                    line.dsn = "4.4.1";
                    line.reason = format!(
                        "delivery temporarily suspended: connect to mx.{d}[{ip}]:25: Connection timed out"
                    );
                } else if r < 0.40 {
                    if self.rng.random_bool(0.3) {
                        self.out.line(
                            Kind::Attempt,
                            "postfix/smtp",
                            line.pid,
                            format_args!(
                                "connect to mx2.{d}[{}]:25: Connection timed out",
                                other_ip(i.wrapping_add(1))
                            ),
                        )?;
                    }
                    line.dsn = "4.4.1";
                    line.reason = format!("connect to mx.{d}[{ip}]:25: Connection timed out");
                } else if r < 0.48 {
                    line.dsn = "4.4.1";
                    line.reason = format!("connect to mx.{d}[{ip}]:25: Connection refused");
                } else if r < 0.70 {
                    line.relay = format!("mx.{d}[{ip}]:25");
                    line.dsn = "4.2.0";
                    line.reason = format!(
                        "host mx.{d}[{ip}] said: 450 4.2.0 <{to}>: Recipient address rejected: Greylisted, see http://postgrey.schweikert.ch/help/{d}.html (in reply to RCPT TO command)"
                    );
                } else if r < 0.82 {
                    line.relay = format!("mx.{d}[{ip}]:25");
                    line.dsn = "4.4.2";
                    line.reason = format!(
                        "lost connection with mx.{d}[{ip}] while receiving the initial server greeting"
                    );
                } else if r < 0.90 {
                    line.relay = format!("mx.{d}[{ip}]:25");
                    line.dsn = "4.2.2";
                    line.reason = format!(
                        "host mx.{d}[{ip}] said: 452 4.2.2 <{to}>: Recipient address rejected: Mailbox full (in reply to RCPT TO command)"
                    );
                } else if r < 0.95 {
                    line.dsn = "4.4.3";
                    line.reason = format!(
                        "Host or domain name not found. Name service error for name={d} type=MX: Host not found, try again"
                    );
                } else {
                    // A first MX that answers but fails, then the second one times out.
                    self.out.line(
                        Kind::Attempt,
                        "postfix/smtp",
                        line.pid,
                        format_args!(
                            "{qid}: host mx.{d}[{ip}] said: 451 4.3.0 Temporary system problem. Try again later (in reply to end of DATA command)"
                        ),
                    )?;
                    line.dsn = "4.4.1";
                    line.reason = format!(
                        "connect to mx2.{d}[{}]:25: Connection timed out",
                        other_ip(i.wrapping_add(1))
                    );
                }
            }
        }
        Ok(())
    }

    fn bounce(&mut self, dest: Dest, rcpt: &Rcpt, to: &str, line: &mut DeliveryLine) {
        line.status = "bounced";
        let (mx, ip) = self.mx(rcpt);
        line.relay = format!("{mx}[{ip}]:25");
        let (dsn, text) = match dest {
            Dest::Google => (
                "5.1.1",
                format!(
                    "550-5.1.1 The email account that you tried to reach does not exist. Please try 550-5.1.1 double-checking the recipient's email address for typos or 550-5.1.1 unnecessary spaces. For more information, go to 550 5.1.1  https://support.google.com/mail/?p=NoSuchUser {} - gsmtp (in reply to RCPT TO command)",
                    self.google_id()
                ),
            ),
            Dest::Microsoft => (
                "5.5.0",
                "550 5.5.0 Requested action not taken: mailbox unavailable. (S2017062302) (in reply to RCPT TO command)".to_string(),
            ),
            Dest::Yahoo => (
                "5.0.0",
                "552 1 Requested mail action aborted, mailbox not found (in reply to end of DATA command)".to_string(),
            ),
            Dest::Other(_) => (
                "5.1.1",
                format!(
                    "550 5.1.1 <{to}>: Recipient address rejected: User unknown in virtual mailbox table (in reply to RCPT TO command)"
                ),
            ),
        };
        line.dsn = dsn;
        line.reason = format!("host {mx}[{ip}] said: {text}");
    }

    /// Connections to the relay's own port 25: postscreen, spam rejected by smtpd.
    fn inbound_noise(&mut self) -> io::Result<()> {
        let ip = format!(
            "{}.{}.{}.{}",
            self.rng.random_range(30..220u32),
            self.rng.random_range(0..256u32),
            self.rng.random_range(0..256u32),
            self.rng.random_range(1..255u32)
        );
        let port = self.rng.random_range(30_000..65_000u32);
        let ps = self.pids.postscreen;
        let pid = pick(&mut self.rng, &self.pids.smtpd);
        self.out.line(
            Kind::Other,
            "postfix/postscreen",
            ps,
            format_args!("CONNECT from [{ip}]:{port} to [{OUR_IP}]:25"),
        )?;
        let r: f64 = self.rng.random();
        if r < 0.3 {
            self.out.line(
                Kind::Other,
                "postfix/postscreen",
                ps,
                format_args!("PASS OLD [{ip}]:{port}"),
            )?;
            self.out.line(
                Kind::Other,
                "postfix/smtpd",
                pid,
                format_args!("connect from unknown[{ip}]"),
            )?;
            self.out.line(
                Kind::Other,
                "postfix/smtpd",
                pid,
                format_args!("warning: hostname {ip}.dynamic.example.net does not resolve to address {ip}: Name or service not known"),
            )?;
            self.out.line(
                Kind::Other,
                "postfix/smtpd",
                pid,
                format_args!("NOQUEUE: reject: RCPT from unknown[{ip}]: 554 5.7.1 <info@example.org>: Relay access denied; from=<spam@bulk.example.net> to=<info@example.org> proto=ESMTP helo=<ylmf-pc>"),
            )?;
            self.out.line(
                Kind::Other,
                "postfix/smtpd",
                pid,
                format_args!(
                    "disconnect from unknown[{ip}] ehlo=1 mail=1 rcpt=0/1 quit=1 commands=3/4"
                ),
            )?;
        } else if r < 0.6 {
            self.out.line(
                Kind::Other,
                "postfix/postscreen",
                ps,
                format_args!("PREGREET 11 after 0.{port} from [{ip}]:{port}: EHLO ylmf-pc\\r\\n"),
            )?;
            self.out.line(
                Kind::Other,
                "postfix/postscreen",
                ps,
                format_args!("DISCONNECT [{ip}]:{port}"),
            )?;
        } else {
            self.out.line(
                Kind::Other,
                "postfix/postscreen",
                ps,
                format_args!("DNSBL rank 3 for [{ip}]:{port}"),
            )?;
            self.out.line(
                Kind::Other,
                "postfix/postscreen",
                ps,
                format_args!("NOQUEUE: reject: RCPT from [{ip}]:{port}: 550 5.7.1 Service unavailable; client [{ip}] blocked using zen.spamhaus.org; from=<x@bulk.example.net>, to=<info@example.org>, proto=ESMTP, helo=<example.net>"),
            )?;
            self.out.line(
                Kind::Other,
                "postfix/postscreen",
                ps,
                format_args!("DISCONNECT [{ip}]:{port}"),
            )?;
        }
        Ok(())
    }

    /// The periodic statistics of anvil and scache.
    fn daemon_noise(&mut self) -> io::Result<()> {
        let now = self.out.now();
        let at = now.format("%b %e %H:%M:%S").to_string();
        if self.rng.random_bool(0.5) {
            let (_, ip) = pick(&mut self.rng, APP_SERVERS);
            let anvil = self.pids.anvil;
            let rate = self.rng.random_range(1..40u32);
            self.out.line(
                Kind::Other,
                "postfix/anvil",
                anvil,
                format_args!("statistics: max connection rate {rate}/60s for (smtp:{ip}) at {at}"),
            )?;
            self.out.line(
                Kind::Other,
                "postfix/anvil",
                anvil,
                format_args!(
                    "statistics: max connection count {} for (smtp:{ip}) at {at}",
                    rate / 4 + 1
                ),
            )?;
            self.out.line(
                Kind::Other,
                "postfix/anvil",
                anvil,
                format_args!("statistics: max cache size {} at {at}", rate / 2 + 1),
            )?;
        } else {
            let sc = self.pids.scache;
            let (hits, miss) = (
                self.rng.random_range(0..500u32),
                self.rng.random_range(1..200u32),
            );
            let start = (now - TimeDelta::seconds(600))
                .format("%b %e %H:%M:%S")
                .to_string();
            self.out.line(
                Kind::Other,
                "postfix/scache",
                sc,
                format_args!("statistics: start interval {start}"),
            )?;
            self.out.line(
                Kind::Other,
                "postfix/scache",
                sc,
                format_args!(
                    "statistics: domain lookup hits={hits} miss={miss} success={}%",
                    hits * 100 / (hits + miss)
                ),
            )?;
            self.out.line(
                Kind::Other,
                "postfix/scache",
                sc,
                format_args!("statistics: address lookup hits=0 miss={miss} success=0%"),
            )?;
            self.out.line(
                Kind::Other,
                "postfix/scache",
                sc,
                format_args!("statistics: max simultaneous domains=3 addresses=5 connection=9"),
            )?;
        }
        Ok(())
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Sent,
    Deferred,
    Bounced,
}

struct DeliveryLine {
    pid: u32,
    program: &'static str,
    relay: String,
    dsn: &'static str,
    status: &'static str,
    reason: String,
    conn_use: Option<u32>,
}

fn other_domain(i: u16) -> String {
    let i = usize::from(i);
    let word = WORDS[i % WORDS.len()];
    let tld = TLDS[(i / WORDS.len()) % TLDS.len()];
    format!("{word}{}.{tld}", i / (WORDS.len() * TLDS.len()) + 1)
}

fn other_ip(i: u16) -> String {
    let block = if i.is_multiple_of(2) {
        "198.51.100"
    } else {
        "203.0.113"
    };
    format!("{block}.{}", i / 2 % 254 + 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::EventType;
    use crate::ingest::json::Context;
    use crate::ingest::mta::{LogSourceMap, Parsed};
    use crate::ingest::postfix::PostfixParser;
    use crate::smtp::Classifier;

    fn end() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-12-07T10:00:00Z")
            .map(|t| t.with_timezone(&Utc))
            .unwrap_or_default()
    }

    fn generate(lines: usize, seed: u64) -> (String, LogMix) {
        let mut buf = Vec::new();
        let mix = write_postfix_log(&mut buf, lines, seed, end()).expect("writes to memory");
        (String::from_utf8(buf).expect("ASCII"), mix)
    }

    #[test]
    fn the_mix_is_that_of_a_real_log() {
        for seed in [1, 2, 3] {
            let (text, mix) = generate(50_000, seed);
            assert_eq!(text.lines().count(), 50_000);
            assert_eq!(mix.lines, 50_000);
            assert_eq!(
                mix.sent + mix.deferred + mix.bounced + mix.attempts + mix.expired + mix.other,
                mix.lines
            );
            let share = |n: usize| n as f64 / mix.lines as f64;
            assert!((0.17..0.23).contains(&mix.deferred_share()), "{mix:?}");
            assert!((0.12..0.18).contains(&share(mix.sent)), "{mix:?}");
            assert!(mix.bounced > 0 && mix.suspended > 0 && mix.attempts > 0 && mix.expired > 0);
            assert_eq!(text.matches("status=deferred").count(), mix.deferred);
            assert_eq!(text.matches("status=sent").count(), mix.sent);
        }
        let (a, _) = generate(5_000, 9);
        let (b, _) = generate(5_000, 9);
        let (c, _) = generate(5_000, 10);
        assert_eq!(a, b, "deterministic from the seed");
        assert_ne!(a, c);
    }

    #[test]
    fn every_line_parses_into_the_events_it_promises() {
        let (text, mix) = generate(60_000, 7);
        let classifier = Classifier::builtin();
        let ctx = Context {
            source_id: 1,
            classifier: &classifier,
            now: end(),
            max_future_skew: TimeDelta::hours(1),
        };
        let mut p = PostfixParser::new(LogSourceMap::default());
        let out: Vec<Parsed> = text.lines().flat_map(|l| p.feed_line(l, &ctx)).collect();
        let held = p.finish().len();
        let rejected: Vec<&Parsed> = out
            .iter()
            .filter(|p| matches!(p, Parsed::Rejected { .. }))
            .collect();
        assert!(
            rejected.is_empty(),
            "{:?}",
            &rejected[..rejected.len().min(5)]
        );
        let count = |k: EventType| {
            out.iter()
                .filter(|p| matches!(p, Parsed::Event(e) if e.kind == k))
                .count()
        };
        assert_eq!(count(EventType::Delivered), mix.sent);
        assert_eq!(
            count(EventType::Deferred),
            mix.deferred + mix.attempts - held
        );
        assert_eq!(
            count(EventType::Bounced),
            mix.bounced + mix.expired_recipients
        );
        // Every line is in the past and the log runs forward.
        let times: Vec<DateTime<Utc>> = out
            .iter()
            .filter_map(|p| match p {
                Parsed::Event(e) => Some(e.time),
                _ => None,
            })
            .collect();
        assert!(times.iter().all(|t| *t < end()));
        assert!(times.first() < times.last());
        let mut stamps = text.lines().map(|l| l.get(..15).unwrap_or_default());
        let first = stamps.next().unwrap_or_default();
        assert!(
            first.starts_with("Dec  7") || first.starts_with("Dec  6"),
            "{first}"
        );
    }
}
