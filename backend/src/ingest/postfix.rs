//! Postfix mail log lines (syslog or `maillog_file`), one at a time, into events.
//!
//! A delivery status line (`QUEUEID: to=<…>, relay=…, delay=…, delays=…, [tls=…,] dsn=…,
//! status=deferred|sent|bounced (…)`) is one event. The parser keeps what the lines around
//! it add: the sender and Message-ID from the `qmgr`/`cleanup` lines of the same queue
//! id; the non-final attempts of the same `smtp` process (`connect to …` lines without a
//! queue id, `host … said:` lines without a recipient), which become deferrals of the
//! recipient whose status line that process writes next; and the recipients still
//! deferred when `qmgr` logs `status=expired`, which then bounce. Every table is bounded.
//!
//! Most lines of a log are neither (smtpd, anvil, scache, TLS notices): they are read no
//! further than their header, whose timestamp is parsed once per second of log, and cost
//! no allocation but their counter's name. Replies that repeat (connect timeouts,
//! throttling, greylisting) are parsed and classified once ([`ReplyMemo`]).
//!
//! Layout: vdukhovni/postfix log_adhoc.c, smtp_proto.c, smtp_connect.c, qmgr_deliver.c
//! (see ../shared/formats.md §2).

use super::Rejection;
use super::json::Context;
use super::mta::{
    Bounded, Draft, FieldNames, LogSourceMap, Parsed, ReplyMemo, SendingIdentity, SyslogClock,
    reject, rfc3339_time,
};
use crate::event::EventType;
use crate::smtp::EnhancedCode;
use chrono::{DateTime, FixedOffset, Offset, Utc};

const NAMES: FieldNames = FieldNames {
    time: "timestamp",
    recipient: "to",
    sender: "from",
    mx_host: "relay",
    mx_ip: "relay",
    response: "status",
    code: "status",
};

/// Queue ids remembered (sender, Message-ID, deferred recipients). A busy server has a
/// few thousand messages in its active queue; the rest wait in `deferred` and come back
/// with their `qmgr` line before each new attempt.
pub const MAX_QUEUE_IDS: usize = 100_000;
/// `smtp` processes with attempts waiting for their status line; the default process
/// limit is 100, so this covers many hosts writing into one log.
pub const MAX_PENDING_PROCESSES: usize = 4096;
/// Attempts kept per process: one per MX address tried (`smtp_mx_address_limit` = 5).
pub const MAX_PENDING_PER_PROCESS: usize = 32;
/// Recipients remembered as deferred per message, for `status=expired`.
pub const MAX_DEFERRED_PER_QUEUE_ID: usize = 1000;

#[derive(Default)]
struct QueueState {
    sender: Option<String>,
    message_id: Option<String>,
    deferred: Vec<String>,
    /// The identity of the last `smtp` delivery of this message: `postfix/error` and
    /// `qmgr` lines come from a process of the default instance and do not say which
    /// transport the message was using.
    identity: Option<SendingIdentity>,
}

struct Pending {
    raw: String,
    time: DateTime<Utc>,
    queue_id: Option<String>,
    /// Where in `raw` the attempt as Postfix worded it starts (`connect to …`, `host …
    /// said: …`); it runs to the end of the line.
    text_at: usize,
}

/// A stateful Postfix log parser: feed it lines in log order.
pub struct PostfixParser {
    map: LogSourceMap,
    offset: FixedOffset,
    queues: Bounded<String, QueueState>,
    pending: Bounded<String, Vec<Pending>>,
    clock: SyslogClock,
    memo: ReplyMemo,
    /// Scratch space for the keys of lookups that insert nothing.
    key: String,
}

struct Header<'a> {
    time: DateTime<Utc>,
    host: &'a str,
    program: &'a str,
    pid: Option<&'a str>,
    msg: &'a str,
}

#[derive(Default)]
struct Delivery<'a> {
    to: Option<&'a str>,
    relay: Option<&'a str>,
    dsn: Option<&'a str>,
    status: &'a str,
    reason: Option<&'a str>,
}

impl PostfixParser {
    /// Traditional syslog timestamps are read as UTC unless [`Self::with_utc_offset`] says
    /// the logging host writes another local time.
    pub fn new(map: LogSourceMap) -> PostfixParser {
        PostfixParser {
            map,
            offset: Utc.fix(),
            queues: Bounded::new(MAX_QUEUE_IDS),
            pending: Bounded::new(MAX_PENDING_PROCESSES),
            clock: SyslogClock::default(),
            memo: ReplyMemo::new(),
            key: String::new(),
        }
    }

    /// The UTC offset of the logging host's local time, for timestamps without one.
    pub fn with_utc_offset(mut self, offset: FixedOffset) -> PostfixParser {
        self.offset = offset;
        self
    }

    /// Reads one log line. Returns its outcome, the outcomes of earlier attempts it
    /// completed, or nothing for a non-final attempt held until its process's status
    /// line (see [`Self::finish`]).
    pub fn feed_line(&mut self, line: &str, ctx: &Context<'_>) -> Vec<Parsed> {
        let mut out = Vec::new();
        self.feed_line_into(line, ctx, &mut out);
        out
    }

    /// [`Self::feed_line`], appending the outcomes to `out`.
    pub fn feed_line_into(&mut self, line: &str, ctx: &Context<'_>, out: &mut Vec<Parsed>) {
        let raw = line.trim_end_matches(['\r', '\n']);
        if raw.trim().is_empty() {
            out.push(Parsed::ignored("postfix/empty line"));
            return;
        }
        let h = match parse_header(raw, ctx.now, self.offset, &mut self.clock) {
            Ok(h) => h,
            Err(r) => {
                out.push(Parsed::Rejected {
                    rejection: r,
                    raw: raw.to_string(),
                });
                return;
            }
        };
        let Some((syslog_name, daemon)) = h.program.rsplit_once('/') else {
            out.push(Parsed::ignored("postfix/other program"));
            return;
        };
        let (daemon, kind) = known_daemon(daemon);
        let msg = h.msg;
        for prefix in ["warning:", "fatal:", "panic:", "error:", "statistics:"] {
            if let Some(word) = prefix.strip_suffix(':')
                && msg.starts_with(prefix)
            {
                // `kind` is `postfix/{daemon}`; pushed rather than formatted, as anvil
                // and scache write many of these.
                let mut k = String::with_capacity(kind.len() + 1 + word.len());
                k.push_str(kind);
                k.push(' ');
                k.push_str(word);
                out.push(Parsed::Ignored { kind: k });
                return;
            }
        }
        let (queue_id, body) = split_queue_id(msg);
        match (daemon, queue_id) {
            ("smtp" | "lmtp", None) if msg.starts_with("connect to ") => {
                self.hold(&h, None, msg, raw, out)
            }
            ("smtp" | "lmtp" | "error" | "retry", Some(qid)) if body.starts_with("to=<") => {
                self.delivery(&h, syslog_name, daemon, qid, body, raw, ctx, out)
            }
            ("smtp" | "lmtp", Some(qid)) if is_attempt(body) => {
                self.hold(&h, Some(qid), body, raw, out)
            }
            ("local", Some(_)) => out.push(Parsed::ignored("postfix/local delivery")),
            ("virtual", Some(_)) => out.push(Parsed::ignored("postfix/virtual delivery")),
            ("pipe", Some(_)) => out.push(Parsed::ignored("postfix/pipe delivery")),
            ("discard", Some(_)) => out.push(Parsed::ignored("postfix/discard delivery")),
            ("qmgr", Some(qid)) => self.qmgr(&h, syslog_name, qid, body, raw, ctx, out),
            ("cleanup", Some(qid)) => {
                if let Some(id) = body.strip_prefix("message-id=") {
                    let key = queue_key(h.host, qid);
                    let (q, _) = self.queues.entry_or_insert(key, QueueState::default);
                    q.message_id = Some(
                        id.trim()
                            .trim_start_matches('<')
                            .trim_end_matches('>')
                            .to_string(),
                    )
                    .filter(|m| !m.is_empty());
                }
                out.push(Parsed::ignored("postfix/cleanup"));
            }
            ("bounce", Some(_)) if body.contains("notification: ") => {
                out.push(Parsed::ignored("postfix/bounce notification"));
            }
            _ => out.push(Parsed::ignored(kind)),
        }
    }

    /// Everything still held: attempts whose status line never came (the log ended, or
    /// was read from the middle). They name no recipient, so they cannot be events.
    pub fn finish(&mut self) -> Vec<Parsed> {
        let keys: Vec<String> = self.pending.keys();
        let mut out = Vec::new();
        for k in keys {
            if let Some(list) = self.pending.remove(&k) {
                out.extend(list.into_iter().map(|_| unmatched()));
            }
        }
        out
    }

    fn hold(
        &mut self,
        h: &Header<'_>,
        qid: Option<&str>,
        text: &str,
        raw: &str,
        out: &mut Vec<Parsed>,
    ) {
        let Some(pid) = h.pid else {
            out.push(Parsed::ignored("postfix/attempt without process id"));
            return;
        };
        let (list, evicted) = self
            .pending
            .entry_or_insert(process_key(h.host, pid), Vec::new);
        out.extend(evicted.iter().flatten().map(|_| unmatched()));
        if list.len() >= MAX_PENDING_PER_PROCESS {
            list.remove(0);
            out.push(unmatched());
        }
        list.push(Pending {
            raw: raw.to_string(),
            time: h.time,
            queue_id: qid.map(str::to_string),
            // `text` is the tail of `raw` (the message, or its body after the queue id).
            text_at: raw.len() - text.len(),
        });
    }

    #[allow(clippy::too_many_arguments)]
    fn delivery(
        &mut self,
        h: &Header<'_>,
        syslog_name: &str,
        daemon: &str,
        qid: &str,
        body: &str,
        raw: &str,
        ctx: &Context<'_>,
        out: &mut Vec<Parsed>,
    ) {
        let d = match parse_delivery(body) {
            Ok(d) => d,
            Err(r) => {
                out.push(Parsed::Rejected {
                    rejection: r,
                    raw: raw.to_string(),
                });
                return;
            }
        };
        let kind = match d.status {
            "deferred" => EventType::Deferred,
            "sent" => EventType::Delivered,
            "bounced" => EventType::Bounced,
            // Address verification probes and the like: no mail was delivered.
            "deliverable" | "undeliverable" | "expired" | "force-expired" => {
                out.push(Parsed::ignored(format!("postfix/status={}", d.status)));
                return;
            }
            other => {
                out.push(Parsed::rejected(
                    "status",
                    format!("{other:?} is not one of deferred, sent, bounced"),
                    raw,
                ));
                return;
            }
        };
        let Some(to) = d.to else {
            out.push(Parsed::rejected("to", "required: the recipient", raw));
            return;
        };
        let enhanced = match d.dsn.map(str::parse::<EnhancedCode>).transpose() {
            Ok(e) => e,
            Err(_) => {
                out.push(Parsed::rejected(
                    "dsn",
                    format!(
                        "{:?} is not an enhanced status code such as 4.7.0",
                        d.dsn.unwrap_or("")
                    ),
                    raw,
                ));
                return;
            }
        };
        let (mx_host, mx_ip) = match d.relay.map(parse_relay).transpose() {
            Ok(r) => r.unwrap_or((None, None)),
            Err(r) => {
                out.push(Parsed::Rejected {
                    rejection: r,
                    raw: raw.to_string(),
                });
                return;
            }
        };
        let key = queue_key(h.host, qid);
        let (q, _) = self.queues.entry_or_insert(key, QueueState::default);
        let session = matches!(daemon, "smtp" | "lmtp");
        let identity = if session {
            let id = self
                .map
                .resolve(&[h.program, syslog_name], q.sender.as_deref(), None);
            q.identity = Some(id.clone());
            id
        } else {
            // No session of its own (`delivery temporarily suspended`): the transport
            // the message last used, else what this instance's name or the sender maps to.
            let own = self.map.resolve(&[h.program], None, None);
            if own.ip.is_some() {
                own
            } else if let Some(id) = q.identity.clone() {
                id
            } else {
                self.map.resolve(&[syslog_name], q.sender.as_deref(), None)
            }
        };
        match kind {
            EventType::Deferred => {
                if !q.deferred.iter().any(|r| r == to)
                    && q.deferred.len() < MAX_DEFERRED_PER_QUEUE_ID
                {
                    q.deferred.push(to.to_string());
                }
            }
            _ => q.deferred.retain(|r| r != to),
        }
        let sender = q.sender.clone();
        let message_id = q.message_id.clone();

        if let Some(pid) = h.pid.filter(|_| session) {
            set_key(&mut self.key, h.host, pid);
            if let Some(held) = self.pending.remove(self.key.as_str()) {
                for p in held {
                    if p.queue_id.as_deref().is_some_and(|q| q != qid) {
                        out.push(unmatched());
                        continue;
                    }
                    // One event per attempt, charged to the first recipient of the
                    // delivery: the attempt was one connection to one MX, whatever the
                    // number of recipients.
                    let mut e = Draft::new(EventType::Deferred, p.time, to);
                    e.sender = sender.clone();
                    e.identity = identity.clone();
                    e.response = p.raw.get(p.text_at..).map(str::to_string);
                    e.message_id = message_id.clone();
                    out.push(e.finish_with(&p.raw, &NAMES, ctx, Some(&mut self.memo)));
                }
            }
        }
        let mut e = Draft::new(kind, h.time, to);
        e.sender = sender;
        e.identity = identity;
        e.mx_host = mx_host;
        e.mx_ip = mx_ip;
        e.response = d.reason.map(str::to_string);
        e.enhanced = enhanced;
        e.message_id = message_id;
        out.push(e.finish_with(raw, &NAMES, ctx, Some(&mut self.memo)));
    }

    #[allow(clippy::too_many_arguments)]
    fn qmgr(
        &mut self,
        h: &Header<'_>,
        syslog_name: &str,
        qid: &str,
        body: &str,
        raw: &str,
        ctx: &Context<'_>,
        out: &mut Vec<Parsed>,
    ) {
        if body == "removed" {
            set_key(&mut self.key, h.host, qid);
            self.queues.remove(self.key.as_str());
            out.push(Parsed::ignored("postfix/qmgr removed"));
            return;
        }
        let Some(from) = body.strip_prefix("from=<") else {
            out.push(Parsed::ignored("postfix/qmgr"));
            return;
        };
        let Some(end) = from.find(">,") else {
            out.push(Parsed::rejected(
                "from",
                "the sender has no closing '>'",
                raw,
            ));
            return;
        };
        let sender = &from[..end];
        let rest = &from[end + 2..];
        let key = queue_key(h.host, qid);
        let (q, _) = self.queues.entry_or_insert(key, QueueState::default);
        if q.sender.as_deref() != Some(sender) {
            q.sender = Some(sender.to_string()).filter(|s| !s.is_empty());
        }
        let Some(status) = rest.trim_start().strip_prefix("status=") else {
            out.push(Parsed::ignored("postfix/qmgr"));
            return;
        };
        if !(status.starts_with("expired") || status.starts_with("force-expired")) {
            out.push(Parsed::ignored("postfix/qmgr"));
            return;
        }
        // The message has gone back to its sender: each recipient still deferred has
        // now failed for good.
        let deferred = std::mem::take(&mut q.deferred);
        if deferred.is_empty() {
            out.push(Parsed::ignored("postfix/expired without a deferral seen"));
            return;
        }
        let identity = q
            .identity
            .clone()
            .unwrap_or_else(|| self.map.resolve(&[syslog_name], q.sender.as_deref(), None));
        let sender = q.sender.clone();
        let message_id = q.message_id.clone();
        for to in deferred {
            let mut e = Draft::new(EventType::Bounced, h.time, &to);
            e.sender = sender.clone();
            e.identity = identity.clone();
            e.response = Some(status.to_string());
            e.message_id = message_id.clone();
            out.push(e.finish_with(raw, &NAMES, ctx, Some(&mut self.memo)));
        }
    }
}

/// Postfix's daemons and the names of their ignored-line counters, so that the counters
/// cannot grow with arbitrary input.
const DAEMONS: &[(&str, &str)] = &[
    ("smtp", "postfix/smtp"),
    ("lmtp", "postfix/lmtp"),
    ("smtpd", "postfix/smtpd"),
    ("qmgr", "postfix/qmgr"),
    ("oqmgr", "postfix/oqmgr"),
    ("cleanup", "postfix/cleanup"),
    ("pickup", "postfix/pickup"),
    ("bounce", "postfix/bounce"),
    ("error", "postfix/error"),
    ("retry", "postfix/retry"),
    ("local", "postfix/local"),
    ("virtual", "postfix/virtual"),
    ("pipe", "postfix/pipe"),
    ("discard", "postfix/discard"),
    ("anvil", "postfix/anvil"),
    ("postscreen", "postfix/postscreen"),
    ("dnsblog", "postfix/dnsblog"),
    ("tlsproxy", "postfix/tlsproxy"),
    ("scache", "postfix/scache"),
    ("master", "postfix/master"),
    ("postfix-script", "postfix/postfix-script"),
    ("sendmail", "postfix/sendmail"),
    ("postdrop", "postfix/postdrop"),
    ("trivial-rewrite", "postfix/trivial-rewrite"),
    ("tlsmgr", "postfix/tlsmgr"),
    ("verify", "postfix/verify"),
    ("flush", "postfix/flush"),
    ("showq", "postfix/showq"),
    ("proxymap", "postfix/proxymap"),
    ("proxywrite", "postfix/proxywrite"),
    ("spawn", "postfix/spawn"),
    ("postlogd", "postfix/postlogd"),
    ("postsuper", "postfix/postsuper"),
    ("postqueue", "postfix/postqueue"),
    ("postmap", "postfix/postmap"),
    ("local-delivery", "postfix/local-delivery"),
];

/// The daemon's name when Postfix has one by that name (else `other`), and its counter.
fn known_daemon(d: &str) -> (&'static str, &'static str) {
    DAEMONS
        .iter()
        .copied()
        .find(|(k, _)| *k == d)
        .unwrap_or(("other", "postfix/other"))
}

fn unmatched() -> Parsed {
    Parsed::ignored("postfix/attempt without a status line")
}

fn queue_key(host: &str, qid: &str) -> String {
    let mut k = String::new();
    set_key(&mut k, host, qid);
    k
}

fn process_key(host: &str, pid: &str) -> String {
    queue_key(host, pid)
}

/// `host id`, the key of the queue and process tables.
fn set_key(k: &mut String, host: &str, id: &str) {
    k.clear();
    k.reserve(host.len() + 1 + id.len());
    k.push_str(host);
    k.push(' ');
    k.push_str(id);
}

/// Non-final attempt wordings (smtp_proto.c, smtp_connect.c, smtp_trouble.c).
fn is_attempt(body: &str) -> bool {
    (body.starts_with("host ")
        && (body.contains(" said: ") || body.contains(" refused to talk to me")))
        || body.starts_with("connect to ")
        || body.starts_with("lost connection with ")
        || body.starts_with("conversation with ")
}

/// `s` split at the first `": "`. Hand-written because `str::split_once` with a string
/// pattern sets up a two-way searcher per call, which costs more than this whole scan on
/// the short prefixes of a log line.
fn split_colon_space(s: &str) -> Option<(&str, &str)> {
    let b = s.as_bytes();
    let mut from = 0;
    while let Some(i) = b.get(from..)?.iter().position(|&c| c == b':') {
        let at = from + i;
        if b.get(at + 1) == Some(&b' ') {
            return Some((&s[..at], &s[at + 2..]));
        }
        from = at + 1;
    }
    None
}

fn split_queue_id(msg: &str) -> (Option<&str>, &str) {
    match split_colon_space(msg) {
        Some((id, body))
            if id.len() >= 5
                && id.len() <= 20
                && id.bytes().all(|b| b.is_ascii_alphanumeric())
                && id != "NOQUEUE" =>
        {
            (Some(id), body)
        }
        _ => (None, msg),
    }
}

fn parse_header<'a>(
    line: &'a str,
    now: DateTime<Utc>,
    offset: FixedOffset,
    clock: &mut SyslogClock,
) -> Result<Header<'a>, Rejection> {
    let mut s = line;
    // A syslog priority from a forwarder ("<22>Nov 23 …").
    if let Some(rest) = s.strip_prefix('<')
        && let Some(end) = rest.find('>')
        && end <= 3
        && rest[..end].bytes().all(|b| b.is_ascii_digit())
    {
        s = &rest[end + 1..];
    }
    let parsed = if s.starts_with(|c: char| c.is_ascii_digit()) {
        rfc3339_time(s)
    } else {
        clock.time(s, now, offset)
    };
    let (time, rest) = parsed.ok_or_else(|| {
        reject(
            "timestamp",
            "the line does not start with a syslog (\"Nov 23 04:49:52\") or RFC 3339 timestamp",
        )
    })?;
    let rest = rest.trim_start();
    let (host, rest) = byte_at(rest, b' ')
        .map(|i| (&rest[..i], &rest[i + 1..]))
        .ok_or_else(|| reject("host", "no host name after the timestamp"))?;
    let (tag, msg) = split_colon_space(rest)
        .ok_or_else(|| reject("program", "no \"program[pid]: \" after the host name"))?;
    let (program, pid) = match byte_at(tag, b'[').map(|i| (&tag[..i], &tag[i + 1..])) {
        Some((p, pid)) => {
            let pid = pid
                .strip_suffix(']')
                .filter(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
            if pid.is_none() {
                return Err(reject(
                    "program",
                    format!("{tag:?} has no numeric process id"),
                ));
            }
            (p, pid)
        }
        None => (tag, None),
    };
    if program.is_empty() || byte_at(program, b' ').is_some() {
        return Err(reject("program", format!("{tag:?} is not a program name")));
    }
    Ok(Header {
        time,
        host,
        program,
        pid,
        msg,
    })
}

/// `to=<…>, [orig_to=<…>,] relay=…, [conn_use=N,] delay=…, delays=…, [tls=…,] dsn=…,
/// status=WORD (REASON)`; fields other than those named here are skipped, so that a
/// later Postfix inserting one (as 3.11 did with `tls=`) still parses.
fn parse_delivery(body: &str) -> Result<Delivery<'_>, Rejection> {
    let mut d = Delivery::default();
    let mut s = body;
    loop {
        let eq = byte_at(s, b'=')
            .ok_or_else(|| reject("status", "required: status=deferred|sent|bounced"))?;
        let key = &s[..eq];
        if key.is_empty() || key.bytes().any(|b| matches!(b, b' ' | b',' | b'(')) {
            return Err(reject(
                "status",
                format!("{key:?} is not a field name; status= is missing"),
            ));
        }
        s = &s[eq + 1..];
        if key == "status" {
            let (word, rest) = byte_at(s, b' ').map_or((s, ""), |i| (&s[..i], &s[i + 1..]));
            d.status = word;
            let rest = rest.trim();
            let reason = rest
                .strip_prefix('(')
                .and_then(|r| r.strip_suffix(')'))
                .unwrap_or(rest);
            d.reason = Some(reason).filter(|r| !r.is_empty());
            return Ok(d);
        }
        let (value, rest) = if let Some(inner) = s.strip_prefix('<') {
            let gt = byte_at(inner, b'>')
                .ok_or_else(|| reject(key, "the address has no closing '>'"))?;
            (&inner[..gt], &inner[gt + 1..])
        } else {
            let end = find_comma_space(s).unwrap_or(s.len());
            (&s[..end], &s[end..])
        };
        match key {
            "to" => d.to = Some(value),
            "relay" => d.relay = Some(value),
            "dsn" => d.dsn = Some(value),
            _ => {}
        }
        if rest.is_empty() {
            return Err(reject("status", "required: status=deferred|sent|bounced"));
        }
        s = rest
            .strip_prefix(", ")
            .ok_or_else(|| reject(key, "expected \", \" after the value; status= is missing"))?;
    }
}

/// Where the ASCII byte `b` first is in `s`. A plain loop: the fields and header parts
/// searched are a few bytes long, where `str::find` costs more in setting up its memchr
/// than the whole scan.
fn byte_at(s: &str, b: u8) -> Option<usize> {
    s.bytes().position(|c| c == b)
}

/// Where `", "` starts in `s`; by hand for the reason of [`split_colon_space`].
fn find_comma_space(s: &str) -> Option<usize> {
    let b = s.as_bytes();
    let mut from = 0;
    while let Some(i) = b.get(from..)?.iter().position(|&c| c == b',') {
        let at = from + i;
        if b.get(at + 1) == Some(&b' ') {
            return Some(at);
        }
        from = at + 1;
    }
    None
}

/// `host[ip]:port`, `host[ip]`, `[ip]:port`; `none`, `local` or a socket path name no
/// remote host.
type Relay = (Option<String>, Option<String>);

fn parse_relay(v: &str) -> Result<Relay, Rejection> {
    let Some(open) = v.find('[') else {
        return Ok((None, None));
    };
    let close = v[open..]
        .find(']')
        .map(|c| c + open)
        .ok_or_else(|| reject("relay", format!("{v:?} has no closing ']'")))?;
    let tail = &v[close + 1..];
    if !(tail.is_empty()
        || tail
            .strip_prefix(':')
            .is_some_and(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit())))
    {
        return Err(reject("relay", format!("{v:?} is not host[ip]:port")));
    }
    let ip = &v[open + 1..close];
    // A bare IPv4 address that parses is already in its canonical form (leading zeros
    // are refused), so it needs no printing.
    let ip = if ip.parse::<std::net::Ipv4Addr>().is_ok() {
        ip.to_string()
    } else {
        super::mta::parse_ip(ip)
            .ok_or_else(|| reject("relay", format!("{ip:?} is not an IP address")))?
            .to_string()
    };
    let host = &v[..open];
    let host = Some(host)
        .filter(|h| !h.is_empty() && *h != "unknown")
        .map(str::to_string);
    Ok((host, Some(ip)))
}

impl super::mta::LineParser for PostfixParser {
    fn feed_line(&mut self, line: &str, ctx: &Context<'_>) -> Vec<Parsed> {
        PostfixParser::feed_line(self, line, ctx)
    }

    fn feed_line_into(&mut self, line: &str, ctx: &Context<'_>, out: &mut Vec<Parsed>) {
        PostfixParser::feed_line_into(self, line, ctx, out)
    }

    fn finish(&mut self) -> Vec<Parsed> {
        PostfixParser::finish(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::mta::testing::*;
    use crate::smtp::{Cause, Origin, Stage};

    const SESSION: &str = include_str!("../../tests/fixtures/postfix/session.log");

    fn map() -> LogSourceMap {
        toml::from_str(
            "[transports.postfix-ip2]\nip = \"192.0.2.2\"\nhelo = \"mta2.example.com\"\npool = \"ip2\"",
        )
        .expect("map")
    }

    fn replay(text: &str) -> Vec<Parsed> {
        let mut p = PostfixParser::new(map());
        let mut out: Vec<Parsed> = text.lines().flat_map(|l| p.feed_line(l, &ctx())).collect();
        out.extend(p.finish());
        out
    }

    fn summary(out: &[Parsed]) -> Vec<String> {
        out.iter()
            .map(|p| match p {
                Parsed::Event(e) => format!("{}:{}", e.kind, e.recipient),
                Parsed::Ignored { kind } => kind.clone(),
                Parsed::Rejected { rejection, .. } => format!("rejected {rejection:?}"),
            })
            .collect()
    }

    #[test]
    fn a_session_log_yields_every_outcome_in_order() {
        let out = replay(SESSION);
        assert_eq!(
            summary(&out),
            [
                "postfix/qmgr",
                "deferred:ivan@example.com",
                "postfix/smtpd",
                "postfix/smtpd",
                "postfix/cleanup",
                "postfix/other program",
                "postfix/qmgr",
                "deferred:bob@gmail.com",
                "deferred:bob@gmail.com",
                "deferred:bob@gmail.com",
                "deferred:carol@yahoo.com",
                "delivered:dave@example.org",
                "deferred:erin@example.net",
                "deferred:frank@example.net",
                "bounced:gina@outlook.com",
                "deferred:henry@example.net",
                "bounced:ivan@example.com",
                "postfix/bounce notification",
                "postfix/qmgr removed",
                "deferred:kim@example.org",
                "deferred:lee@example.org",
                "postfix/qmgr removed",
            ]
        );
        let keys: std::collections::HashSet<&str> =
            events(&out).iter().map(|e| e.dedupe_key.as_str()).collect();
        assert_eq!(keys.len(), events(&out).len(), "dedupe keys are unique");
        let again = replay(SESSION);
        let keys2: std::collections::HashSet<&str> = events(&again)
            .iter()
            .map(|e| e.dedupe_key.as_str())
            .collect();
        assert_eq!(keys, keys2, "re-reading the same log gives the same keys");
    }

    struct Want {
        recipient: &'static str,
        nth: usize,
        code: Option<u16>,
        enhanced: Option<&'static str>,
        stage: Stage,
        mx_host: Option<&'static str>,
        mx_ip: Option<&'static str>,
        source_ip: Option<&'static str>,
        origin: Option<Origin>,
        cause: Option<Cause>,
        response_has: &'static str,
    }

    #[test]
    fn each_postfix_form_reads_its_fields() {
        let out = replay(SESSION);
        let evs = events(&out);
        let cases = [
            // Non-final `connect to` line without queue id, tied by process id.
            Want {
                recipient: "bob@gmail.com",
                nth: 0,
                code: None,
                enhanced: None,
                stage: Stage::Connect,
                mx_host: Some("gmail-smtp-in.l.google.com"),
                mx_ip: Some("142.250.27.26"),
                source_ip: Some("192.0.2.2"),
                origin: Some(Origin::Local),
                cause: Some(Cause::Network),
                response_has: "Connection timed out",
            },
            // Non-final `said:` line with queue id and no recipient.
            Want {
                recipient: "bob@gmail.com",
                nth: 1,
                code: Some(421),
                enhanced: Some("4.7.0"),
                stage: Stage::EndOfData,
                mx_host: Some("alt1.gmail-smtp-in.l.google.com"),
                mx_ip: Some("142.250.153.27"),
                source_ip: Some("192.0.2.2"),
                origin: Some(Origin::Remote),
                cause: None,
                response_has: "421-4.7.0 suspicious",
            },
            // Multi-line reply with every prefix kept; dsn= wins as the enhanced code.
            Want {
                recipient: "bob@gmail.com",
                nth: 2,
                code: Some(421),
                enhanced: Some("4.7.28"),
                stage: Stage::EndOfData,
                mx_host: Some("alt2.gmail-smtp-in.l.google.com"),
                mx_ip: Some("142.251.9.27"),
                source_ip: Some("192.0.2.2"),
                origin: Some(Origin::Remote),
                cause: Some(Cause::RateLimit),
                response_has: "421-4.7.28 unsolicited mail originating from your IP address. To protect our 421-4.7.28 users from spam, mail sent from your IP address has been temporarily 421 4.7.28 rate limited.",
            },
            // `refused to talk to me`, tls= (Postfix 3.11) between delays= and dsn=; no mapping: IP unknown.
            Want {
                recipient: "carol@yahoo.com",
                nth: 0,
                code: Some(421),
                enhanced: Some("4.7.0"),
                stage: Stage::Connect,
                mx_host: Some("mta7.am0.yahoodns.net"),
                mx_ip: Some("67.195.204.72"),
                source_ip: None,
                origin: Some(Origin::Remote),
                cause: None,
                response_has: "[TSS04]",
            },
            Want {
                recipient: "dave@example.org",
                nth: 0,
                code: Some(250),
                enhanced: Some("2.0.0"),
                stage: Stage::Unknown,
                mx_host: Some("mx.example.org"),
                mx_ip: Some("203.0.113.25"),
                source_ip: None,
                origin: None,
                cause: None,
                response_has: "queued as",
            },
            // Connect timeout and refusal: relay=none, the host comes from the reason.
            Want {
                recipient: "erin@example.net",
                nth: 0,
                code: None,
                enhanced: Some("4.4.1"),
                stage: Stage::Connect,
                mx_host: Some("mx.example.net"),
                mx_ip: Some("198.51.100.7"),
                source_ip: None,
                origin: Some(Origin::Local),
                cause: Some(Cause::Network),
                response_has: "Connection timed out",
            },
            Want {
                recipient: "frank@example.net",
                nth: 0,
                code: None,
                enhanced: Some("4.4.1"),
                stage: Stage::Connect,
                mx_host: Some("mx.example.net"),
                mx_ip: Some("198.51.100.7"),
                source_ip: None,
                origin: Some(Origin::Local),
                cause: Some(Cause::Network),
                response_has: "Connection refused",
            },
            Want {
                recipient: "gina@outlook.com",
                nth: 0,
                code: Some(550),
                enhanced: Some("5.5.0"),
                stage: Stage::Rcpt,
                mx_host: Some("outlook-com.olc.protection.outlook.com"),
                mx_ip: Some("52.101.68.2"),
                source_ip: None,
                origin: Some(Origin::Remote),
                cause: Some(Cause::Permanent),
                response_has: "mailbox unavailable",
            },
            // postfix/error: throttled destination, no new session.
            Want {
                recipient: "henry@example.net",
                nth: 0,
                code: None,
                enhanced: Some("4.4.1"),
                stage: Stage::Connect,
                mx_host: Some("mx.example.net"),
                mx_ip: Some("198.51.100.7"),
                source_ip: None,
                origin: Some(Origin::Local),
                cause: Some(Cause::Network),
                response_has: "delivery temporarily suspended",
            },
            // status=expired after the last deferral: the deferred recipient bounces.
            Want {
                recipient: "ivan@example.com",
                nth: 1,
                code: None,
                enhanced: None,
                stage: Stage::Unknown,
                mx_host: None,
                mx_ip: None,
                source_ip: None,
                origin: Some(Origin::Local),
                cause: Some(Cause::Permanent),
                response_has: "expired, returned to sender",
            },
            Want {
                recipient: "kim@example.org",
                nth: 0,
                code: None,
                enhanced: Some("4.4.2"),
                stage: Stage::Connect,
                mx_host: Some("mx.example.org"),
                mx_ip: Some("203.0.113.25"),
                source_ip: None,
                origin: Some(Origin::Local),
                cause: None,
                response_has: "lost connection",
            },
            // RFC 3339 timestamp, long queue id.
            Want {
                recipient: "lee@example.org",
                nth: 0,
                code: Some(450),
                enhanced: Some("4.7.1"),
                stage: Stage::Rcpt,
                mx_host: Some("mx.example.org"),
                mx_ip: Some("203.0.113.25"),
                source_ip: None,
                origin: Some(Origin::Remote),
                cause: Some(Cause::Greylisting),
                response_has: "Greylisted",
            },
        ];
        for w in cases {
            let e = evs
                .iter()
                .filter(|e| e.recipient == w.recipient)
                .nth(w.nth)
                .unwrap_or_else(|| panic!("{} #{}", w.recipient, w.nth));
            let at = format!("{} #{}: {:?}", w.recipient, w.nth, e.response);
            assert_eq!(e.code, w.code, "{at}");
            assert_eq!(e.enhanced.as_deref(), w.enhanced, "{at}");
            assert_eq!(e.stage, w.stage, "{at}");
            assert_eq!(e.mx_host.as_deref(), w.mx_host, "{at}");
            assert_eq!(e.mx_ip.as_deref(), w.mx_ip, "{at}");
            assert_eq!(e.source_ip.as_deref(), w.source_ip, "{at}");
            assert_eq!(
                e.classification.as_ref().map(|c| c.origin),
                w.origin,
                "{at}"
            );
            if w.cause.is_some() {
                assert_eq!(e.cause(), w.cause, "{at}");
            }
            assert!(
                e.response
                    .as_deref()
                    .is_some_and(|r| r.contains(w.response_has)),
                "{at}"
            );
            assert!(
                e.raw.contains(w.response_has) || w.recipient == "ivan@example.com",
                "{at}"
            );
        }
        let bob = evs
            .iter()
            .find(|e| e.recipient == "bob@gmail.com")
            .expect("bob");
        assert_eq!(bob.sender.as_deref(), Some("alice@example.com"));
        assert_eq!(
            bob.message_id.as_deref(),
            Some("20261123050001.4F1A2B3C40@example.com")
        );
        assert_eq!(bob.helo.as_deref(), Some("mta2.example.com"));
        assert_eq!(bob.pool.as_deref(), Some("ip2"));
        assert_eq!(bob.destination, "google");
        assert_eq!(bob.time, utc("2026-11-23T05:00:31Z"));
        let lee = evs
            .iter()
            .find(|e| e.recipient == "lee@example.org")
            .expect("lee");
        assert_eq!(lee.time, utc("2026-11-23T05:01:00.123456Z"));
    }

    #[test]
    fn the_year_rolls_back_and_the_offset_applies() {
        let line = "Dec 31 23:59:59 mta1 postfix/smtp[1]: ABCDE12345: to=<a@example.com>, relay=none, delay=1, delays=0/0/1/0, dsn=4.4.1, status=deferred (connect to mx.example.com[192.0.2.1]:25: Connection refused)";
        let mut p = PostfixParser::new(LogSourceMap::default());
        let out = p.feed_line(line, &ctx());
        assert_eq!(events(&out)[0].time, utc("2025-12-31T23:59:59Z"));
        let plus1 = FixedOffset::east_opt(3600).expect("offset");
        let mut p = PostfixParser::new(LogSourceMap::default()).with_utc_offset(plus1);
        let out = p.feed_line(&line.replace("Dec 31 23:59:59", "Nov 23 06:30:00"), &ctx());
        assert_eq!(events(&out)[0].time, utc("2026-11-23T05:30:00Z"));
    }

    #[test]
    fn malformed_lines_are_rejected_naming_the_field() {
        let head = "Nov 23 05:00:00 mta1 postfix/smtp[12]: ABCDE12345: ";
        let cases = [
            ("garbage".to_string(), "timestamp"),
            (
                "2026-13-99T00:00:00Z mta1 postfix/smtp[1]: x".to_string(),
                "timestamp",
            ),
            ("Nov 23 05:00:00".to_string(), "host"),
            (
                "Nov 23 05:00:00 mta1 postfix/smtp[12]".to_string(),
                "program",
            ),
            (
                "Nov 23 05:00:00 mta1 postfix/smtp[x]: hi".to_string(),
                "program",
            ),
            (format!("{head}to=<a@b.com>, relay=none"), "status"),
            (
                format!("{head}to=<a@b.com, relay=none, status=sent (ok)"),
                "to",
            ),
            (
                format!("{head}to=<a@b.com>, relay=mx[not-ip]:25, dsn=2.0.0, status=sent (250 ok)"),
                "relay",
            ),
            (
                format!(
                    "{head}to=<a@b.com>, relay=mx[192.0.2.1]:x, dsn=2.0.0, status=sent (250 ok)"
                ),
                "relay",
            ),
            (
                format!("{head}to=<a@b.com>, relay=none, dsn=9.9, status=sent (250 ok)"),
                "dsn",
            ),
            (
                format!("{head}to=<a@b.com>, relay=none, dsn=4.4.1, status=weird (x)"),
                "status",
            ),
            (
                format!("{head}to=<nobody>, relay=none, dsn=4.4.1, status=deferred (x)"),
                "to",
            ),
            (
                format!("{head}to=<a@b.com>, relay=none, dsn=4.4.1, status=deferred"),
                "status",
            ),
            (
                format!("{head}to=<a@b.com>, relay=none, status=deferred (x)")
                    .replace("Nov 23 05:00:00", "Nov 23 09:00:00"),
                "timestamp",
            ),
        ];
        for (line, field) in cases {
            let mut p = PostfixParser::new(LogSourceMap::default());
            let out = p.feed_line(&line, &ctx());
            match out.as_slice() {
                [Parsed::Rejected { rejection, raw }] => {
                    assert_eq!(
                        rejection.field.as_deref(),
                        Some(field),
                        "{line}: {rejection:?}"
                    );
                    assert_eq!(raw, &line);
                }
                other => panic!("{line}: {other:?}"),
            }
        }
    }

    #[test]
    fn held_attempts_are_bounded_and_flushed() {
        let mut p = PostfixParser::new(LogSourceMap::default());
        let mut out = Vec::new();
        for pid in 0..(MAX_PENDING_PROCESSES + 10) {
            out.extend(p.feed_line(
                &format!("Nov 23 05:00:00 mta1 postfix/smtp[{pid}]: connect to mx.example.com[192.0.2.1]:25: Connection timed out"),
                &ctx(),
            ));
        }
        assert_eq!(out.len(), 10, "the oldest processes' attempts are let go");
        for _ in 0..(MAX_PENDING_PER_PROCESS + 3) {
            out.extend(p.feed_line(
                "Nov 23 05:00:00 mta1 postfix/smtp[99999]: connect to mx.example.com[192.0.2.1]:25: Connection timed out",
                &ctx(),
            ));
        }
        assert_eq!(out.len(), 10 + 1 + 3);
        let rest = p.finish();
        assert_eq!(
            rest.len(),
            MAX_PENDING_PROCESSES - 1 + MAX_PENDING_PER_PROCESS
        );
        assert!(rest.iter().all(|r| matches!(r, Parsed::Ignored { .. })));
        assert!(p.pending.keys().is_empty());
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_input_never_panics(lines in proptest::collection::vec("\\PC*", 1..8)) {
            let mut p = PostfixParser::new(map());
            for l in &lines {
                let _ = p.feed_line(l, &ctx());
            }
            let _ = p.finish();
        }

        #[test]
        fn arbitrary_fields_never_panic(
            program in "(postfix|postfix-ip2|x)/(smtp|error|qmgr|cleanup|bounce|local)\\[[0-9]{1,3}\\]",
            qid in "[0-9A-F]{5,12}",
            to in "\\PC{0,30}",
            relay in "\\PC{0,30}",
            dsn in "[0-9.]{0,8}",
            status in "(deferred|sent|bounced|expired|\\PC{0,8})",
            reason in "\\PC{0,120}",
        ) {
            let mut p = PostfixParser::new(map());
            let lines = [
                format!("Nov 23 05:00:00 h {program}: {qid}: to=<{to}>, relay={relay}, delay=1, delays=0/0/0/1, dsn={dsn}, status={status} ({reason})"),
                format!("Nov 23 05:00:00 h {program}: {qid}: from=<{to}>, status={status} {reason}"),
                format!("Nov 23 05:00:00 h {program}: {qid}: host {relay} said: {reason}"),
                format!("Nov 23 05:00:00 h {program}: connect to {relay}: {reason}"),
            ];
            for l in &lines {
                let _ = p.feed_line(l, &ctx());
            }
            let _ = p.finish();
        }
    }
}
