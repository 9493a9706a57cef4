//! Exim main log lines into events: `==` deferrals, `=>` / `->` / `>>` deliveries, `**`
//! bounces, with `H=host [ip]`, `R=`, `T=`, `I=[ip]:port` (the sending IP, with
//! `log_selector = +outgoing_interface`), `F=<sender>`, `C="…"` and the remote reply in
//! `SMTP error from remote mail server after …`, in the ≥ 4.85 layout (host before the
//! message) and the older one (host inside it).
//!
//! The parser remembers, per message id, the sender from the `<=` arrival line and the
//! host of the last per-host attempt line (`MSGID H=host [ip] Connection refused`), which
//! names the host for a following `==` line that does not. Layout: Exim specification
//! "Log files" and deliver.c `deferral_log` (see ../shared/formats.md §3).

use super::json::Context;
use super::mta::{Bounded, Draft, FieldNames, LogSourceMap, Parsed, parse_ip};
use crate::event::EventType;
use chrono::{DateTime, FixedOffset, NaiveDateTime, Offset, TimeZone, Utc};

const NAMES: FieldNames = FieldNames {
    time: "timestamp",
    recipient: "address",
    sender: "F",
    mx_host: "H",
    mx_ip: "H",
    response: "message",
    code: "message",
};

/// Message ids remembered; Exim's queue holds each message under one id until
/// `Completed`, which forgets it.
pub const MAX_MESSAGE_IDS: usize = 100_000;

#[derive(Default)]
struct MessageState {
    sender: Option<String>,
    last_host: Option<(Option<String>, Option<String>)>,
}

/// A stateful Exim main log parser: feed it lines in log order.
pub struct EximParser {
    map: LogSourceMap,
    offset: FixedOffset,
    messages: Bounded<String, MessageState>,
}

#[derive(Default, Debug)]
struct Fields<'a> {
    address: &'a str,
    transport: Option<&'a str>,
    host: Option<&'a str>,
    host_ip: Option<&'a str>,
    interface: Option<&'a str>,
    sender: Option<&'a str>,
    confirmation: Option<String>,
    strerror: Option<&'a str>,
    message: Option<&'a str>,
}

impl EximParser {
    /// Times without a logged zone (`log_timezone` unset) are read as UTC unless
    /// [`Self::with_utc_offset`] gives the host's local offset.
    pub fn new(map: LogSourceMap) -> EximParser {
        EximParser {
            map,
            offset: Utc.fix(),
            messages: Bounded::new(MAX_MESSAGE_IDS),
        }
    }

    pub fn with_utc_offset(mut self, offset: FixedOffset) -> EximParser {
        self.offset = offset;
        self
    }

    /// Reads one main log line.
    pub fn feed_line(&mut self, line: &str, ctx: &Context<'_>) -> Vec<Parsed> {
        let raw = line.trim_end_matches(['\r', '\n']);
        if raw.trim().is_empty() {
            return vec![Parsed::ignored("exim/empty line")];
        }
        let Some((time, rest)) = parse_time(raw, self.offset) else {
            return vec![Parsed::rejected(
                "timestamp",
                "the line does not start with an Exim timestamp (2026-11-23 04:49:52)",
                raw,
            )];
        };
        let (id, rest) = rest.split_once(' ').unwrap_or((rest, ""));
        if !is_message_id(id) {
            return vec![Parsed::ignored("exim/not about a message")];
        }
        let (flag, body) = rest.split_once(' ').unwrap_or((rest, ""));
        let kind = match flag {
            "==" => EventType::Deferred,
            "=>" | "->" | ">>" => EventType::Delivered,
            "**" => EventType::Bounced,
            "<=" => {
                let sender = body.split(' ').next().unwrap_or("");
                let sender = sender.trim_start_matches('<').trim_end_matches('>');
                let (m, _) = self
                    .messages
                    .entry_or_insert(id.to_string(), MessageState::default);
                m.sender = Some(sender.to_string()).filter(|s| !s.is_empty());
                return vec![Parsed::ignored("exim/arrival")];
            }
            "Completed" => {
                self.messages.remove(&id.to_string());
                return vec![Parsed::ignored("exim/completed")];
            }
            "*>" => return vec![Parsed::ignored("exim/suppressed delivery")],
            _ if flag.starts_with("H=") => {
                let f = scan_fields(rest, false);
                if f.host.is_some() || f.host_ip.is_some() {
                    let (m, _) = self
                        .messages
                        .entry_or_insert(id.to_string(), MessageState::default);
                    m.last_host = Some((f.host.map(str::to_string), f.host_ip.map(str::to_string)));
                }
                return vec![Parsed::ignored("exim/host attempt")];
            }
            _ => return vec![Parsed::ignored("exim/other")],
        };
        let f = scan_fields(body, true);
        if f.address.is_empty() {
            return vec![Parsed::rejected(
                "address",
                "required: the recipient address",
                raw,
            )];
        }
        if f.address.starts_with([':', '|', '/']) {
            // :blackhole:, pipes and files: nothing left the host.
            return vec![Parsed::ignored("exim/local delivery")];
        }
        if kind == EventType::Delivered && f.host.is_none() && f.host_ip.is_none() {
            // Remote deliveries always log H=; without it the transport was local
            // (appendfile, pipe, LMTP over a socket) and nothing reached a receiver.
            return vec![Parsed::ignored("exim/local delivery")];
        }
        let interface = match f.interface.map(|i| parse_ip(i).ok_or(i)).transpose() {
            Ok(i) => i,
            Err(i) => {
                return vec![Parsed::rejected(
                    "I",
                    format!("{i:?} is not an IP address"),
                    raw,
                )];
            }
        };
        let state = self.messages.get(&id.to_string());
        let sender = f
            .sender
            .map(str::to_string)
            .or_else(|| state.and_then(|s| s.sender.clone()));
        let (mut mx_host, mut mx_ip) = (f.host.map(str::to_string), f.host_ip.map(str::to_string));
        if mx_host.is_none()
            && mx_ip.is_none()
            && kind != EventType::Delivered
            && let Some((h, i)) = state.and_then(|s| s.last_host.clone())
        {
            mx_host = h;
            mx_ip = i;
        }
        let mut e = Draft::new(kind, time, f.address);
        e.identity = self
            .map
            .resolve(&[f.transport.unwrap_or("")], sender.as_deref(), interface);
        e.sender = sender;
        e.mx_host = mx_host;
        e.mx_ip = mx_ip;
        e.response = match kind {
            EventType::Delivered => f.confirmation,
            _ => match (f.strerror, f.message) {
                (Some(a), Some(b)) => Some(format!("{a}: {b}")),
                (a, b) => a.or(b).map(str::to_string),
            },
        };
        vec![e.finish(raw, &NAMES, ctx)]
    }
}

/// `YYYY-MM-DD HH:MM:SS[.mmm] [+ZZZZ] [[pid]] ` at the start of the line.
fn parse_time(line: &str, default: FixedOffset) -> Option<(DateTime<Utc>, &str)> {
    let (date, rest) = line.split_once(' ')?;
    let (clock, rest) = rest.split_once(' ').unwrap_or((rest, ""));
    let naive =
        NaiveDateTime::parse_from_str(&format!("{date} {clock}"), "%Y-%m-%d %H:%M:%S%.f").ok()?;
    let mut rest = rest;
    let mut offset = default;
    if let Some((tz, after)) = rest.split_once(' ')
        && tz.len() == 5
        && tz.starts_with(['+', '-'])
        && tz[1..].bytes().all(|b| b.is_ascii_digit())
    {
        let hours: i32 = tz[1..3].parse().ok()?;
        let minutes: i32 = tz[3..].parse().ok()?;
        let secs = (hours * 3600 + minutes * 60) * if tz.starts_with('-') { -1 } else { 1 };
        offset = FixedOffset::east_opt(secs)?;
        rest = after;
    }
    if let Some(after) = rest.strip_prefix('[')
        && let Some((pid, after)) = after.split_once("] ")
        && pid.bytes().all(|b| b.is_ascii_digit())
    {
        rest = after;
    }
    let t = offset.from_local_datetime(&naive).single()?;
    Some((t.with_timezone(&Utc), rest))
}

/// Exim ≥ 4.97 `1tsq7B-0000000028k-3Yqa` (6-11-4), older `16aiQz-0002Q5-00` (6-6-2).
fn is_message_id(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    parts.len() == 3
        && parts[0].len() == 6
        && matches!((parts[1].len(), parts[2].len()), (6, 2) | (11, 4))
        && parts
            .iter()
            .all(|p| p.bytes().all(|b| b.is_ascii_alphanumeric()))
}

/// Reads `ADDRESS [<parent>] FIELD=… … [defer (N)[: strerror]] …[: MESSAGE]`. A ':' that
/// ends a token (or stands alone) starts the message; `H=` and `I=` take their bracketed
/// IP and port, `C=` its quoted, backslash-escaped text.
fn scan_fields(text: &str, with_address: bool) -> Fields<'_> {
    let mut f = Fields::default();
    let mut s = text.trim_start();
    if with_address {
        let (addr, rest) = s.split_once(' ').unwrap_or((s, ""));
        s = rest;
        if let Some(a) = addr.strip_suffix(':') {
            f.address = a;
            f.message = Some(rest.trim()).filter(|m| !m.is_empty());
            return f;
        }
        f.address = addr;
    }
    loop {
        s = s.trim_start();
        if s.is_empty() {
            break;
        }
        if let Some(m) = s.strip_prefix(':') {
            f.message = Some(m.trim()).filter(|m| !m.is_empty());
            break;
        }
        if let Some(rest) = s.strip_prefix("defer (") {
            let Some((errno, after)) = rest.split_once(')') else {
                break;
            };
            s = after;
            let positive = errno.parse::<i32>().is_ok_and(|e| e > 0);
            if positive && let Some(after) = s.strip_prefix(": ") {
                let end = [" H=", " I=", " DT=", ": "]
                    .iter()
                    .filter_map(|m| after.find(m))
                    .min()
                    .unwrap_or(after.len());
                f.strerror = Some(after[..end].trim()).filter(|e| !e.is_empty());
                s = &after[end..];
            }
            continue;
        }
        if s.starts_with('<') {
            // The parent address of a redirected recipient.
            let end = s.find('>').map_or(s.len(), |e| e + 1);
            s = &s[end..];
            continue;
        }
        let key_len = s.bytes().take_while(u8::is_ascii_alphanumeric).count();
        if key_len > 0 && s.as_bytes().get(key_len) == Some(&b'=') {
            let key = &s[..key_len];
            let value = &s[key_len + 1..];
            s = match key {
                "H" => {
                    let (host, ip, rest) = host_and_ip(value);
                    f.host = host;
                    f.host_ip = ip;
                    rest
                }
                "I" => {
                    let (_, ip, rest) = host_and_ip(value);
                    f.interface = ip;
                    rest
                }
                "C" if value.starts_with('"') => {
                    let (text, rest) = quoted(value);
                    f.confirmation = Some(text);
                    rest
                }
                "F" | "P" if value.starts_with('<') => {
                    let end = value.find('>').map_or(value.len(), |e| e + 1);
                    if key == "F" {
                        f.sender = Some(value[1..end].trim_end_matches('>'));
                    }
                    &value[end..]
                }
                _ => {
                    let (token, rest) = value.split_once(' ').unwrap_or((value, ""));
                    let (token, ends_message) = match token.strip_suffix(':') {
                        Some(t) => (t, true),
                        None => (token, false),
                    };
                    if key == "T" {
                        f.transport = Some(token);
                    }
                    if ends_message {
                        f.message = Some(rest.trim()).filter(|m| !m.is_empty());
                        break;
                    }
                    rest
                }
            };
            continue;
        }
        // A bare word ("routing", "K"); one ending in ':' starts the message.
        let (token, rest) = s.split_once(' ').unwrap_or((s, ""));
        if token.ends_with(':') {
            f.message = Some(rest.trim()).filter(|m| !m.is_empty());
            break;
        }
        s = rest;
    }
    f
}

/// `host [ip][:port][*]`, `[ip][:port]` or `host`; returns what follows.
fn host_and_ip(v: &str) -> (Option<&str>, Option<&str>, &str) {
    let (host, rest) = if v.starts_with('[') {
        (None, v)
    } else {
        let end = v.find(' ').unwrap_or(v.len());
        let token = &v[..end];
        // `H=host:` with the message right after (no IP logged).
        if let Some(t) = token.strip_suffix(':') {
            return (Some(t), None, &v[end - 1..]);
        }
        (
            Some(token),
            v[end..]
                .strip_prefix(' ')
                .filter(|r| r.starts_with('['))
                .unwrap_or(&v[end..]),
        )
    };
    let Some(inner) = rest.strip_prefix('[') else {
        return (host, None, rest);
    };
    let Some(close) = inner.find(']') else {
        return (host, None, rest);
    };
    let ip = &inner[..close];
    let mut after = &inner[close + 1..];
    if let Some(port) = after.strip_prefix(':') {
        let digits = port.bytes().take_while(u8::is_ascii_digit).count();
        if digits > 0 {
            after = &port[digits..];
        }
    }
    let after = after.strip_prefix('*').unwrap_or(after);
    (host, Some(ip), after)
}

/// A `"…"` value with `\"` and `\\` escapes; returns the text and what follows.
fn quoted(v: &str) -> (String, &str) {
    let mut out = String::new();
    let mut chars = v.char_indices().skip(1);
    while let Some((i, c)) = chars.next() {
        match c {
            '\\' => {
                if let Some((_, n)) = chars.next() {
                    out.push(n);
                }
            }
            '"' => return (out, &v[i + 1..]),
            c => out.push(c),
        }
    }
    (out, "")
}

impl super::mta::LineParser for EximParser {
    fn feed_line(&mut self, line: &str, ctx: &Context<'_>) -> Vec<Parsed> {
        EximParser::feed_line(self, line, ctx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::mta::testing::*;
    use crate::smtp::{Cause, Origin, Stage};

    const MAINLOG: &str = include_str!("../../tests/fixtures/exim/mainlog");

    fn map() -> LogSourceMap {
        toml::from_str(
            "[transports.remote_smtp_ip2]\nip = \"192.0.2.2\"\nhelo = \"mta2.example.com\"",
        )
        .expect("map")
    }

    fn replay() -> Vec<Parsed> {
        let mut p = EximParser::new(map());
        MAINLOG
            .lines()
            .flat_map(|l| p.feed_line(l, &ctx()))
            .collect()
    }

    #[test]
    fn a_mainlog_yields_every_outcome_in_order() {
        let out = replay();
        let summary: Vec<String> = out
            .iter()
            .map(|p| match p {
                Parsed::Event(e) => format!("{}:{}", e.kind, e.recipient),
                Parsed::Ignored { kind } => kind.clone(),
                Parsed::Rejected { rejection, .. } => format!("rejected {rejection:?}"),
            })
            .collect();
        assert_eq!(
            summary,
            [
                "exim/arrival",
                "deferred:bob@gmail.com",
                "deferred:carol@yahoo.com",
                "delivered:dave@example.org",
                "bounced:gina@outlook.com",
                "exim/host attempt",
                "deferred:erin@example.net",
                "deferred:frank@example.net",
                "deferred:henry@example.com",
                "deferred:henry@example.com",
                "bounced:henry@example.com",
                "delivered:ivan@example.com",
                "delivered:jane@example.com",
                "exim/local delivery",
                "exim/completed",
                "exim/not about a message",
                "deferred:kim@example.org",
                "delivered:lee@example.org",
                "exim/local delivery",
            ]
        );
    }

    #[test]
    fn each_exim_form_reads_its_fields() {
        let out = replay();
        let evs = events(&out);
        // (recipient, nth, code, enhanced, stage, mx host, mx ip, sending ip, origin, response part)
        type Case = (
            &'static str,
            usize,
            Option<u16>,
            Option<&'static str>,
            Stage,
            Option<&'static str>,
            Option<&'static str>,
            Option<&'static str>,
            Option<Origin>,
            &'static str,
        );
        let cases: [Case; 11] = [
            (
                "bob@gmail.com",
                0,
                Some(450),
                Some("4.2.1"),
                Stage::Rcpt,
                Some("gmail-smtp-in.l.google.com"),
                Some("142.250.27.26"),
                Some("192.0.2.2"),
                Some(Origin::Remote),
                "450-4.2.1 prevents additional",
            ),
            (
                "carol@yahoo.com",
                0,
                Some(421),
                Some("4.7.0"),
                Stage::Connect,
                Some("mta7.am0.yahoodns.net"),
                Some("67.195.204.72"),
                None,
                Some(Origin::Remote),
                "[TSS04]",
            ),
            (
                "dave@example.org",
                0,
                Some(250),
                Some("2.0.0"),
                Stage::Unknown,
                Some("mx.example.org"),
                Some("203.0.113.25"),
                None,
                None,
                "queued as \"9ABC\"",
            ),
            (
                "gina@outlook.com",
                0,
                Some(550),
                Some("5.5.0"),
                Stage::Rcpt,
                Some("outlook-com.olc.protection.outlook.com"),
                Some("52.101.68.2"),
                None,
                Some(Origin::Remote),
                "mailbox unavailable",
            ),
            // No H= on the deferral: the host of the per-host line before it.
            (
                "erin@example.net",
                0,
                None,
                None,
                Stage::Connect,
                Some("mx.example.net"),
                Some("198.51.100.7"),
                None,
                Some(Origin::Local),
                "Connection refused",
            ),
            (
                "frank@example.net",
                0,
                None,
                None,
                Stage::Connect,
                Some("mx.example.net"),
                Some("198.51.100.7"),
                None,
                Some(Origin::Local),
                "Connection timed out",
            ),
            // Before 4.85 the host is inside the message.
            (
                "henry@example.com",
                0,
                Some(451),
                Some("4.7.1"),
                Stage::Mail,
                Some("mx.example.com"),
                Some("192.0.2.50"),
                None,
                Some(Origin::Remote),
                "Please try again later",
            ),
            (
                "henry@example.com",
                1,
                None,
                None,
                Stage::Unknown,
                None,
                None,
                None,
                Some(Origin::Local),
                "retry time not reached",
            ),
            (
                "henry@example.com",
                2,
                None,
                None,
                Stage::Unknown,
                None,
                None,
                None,
                Some(Origin::Local),
                "retry timeout exceeded",
            ),
            (
                "ivan@example.com",
                0,
                None,
                None,
                Stage::Unknown,
                Some("mx.example.com"),
                Some("192.0.2.50"),
                None,
                None,
                "",
            ),
            (
                "kim@example.org",
                0,
                Some(450),
                Some("4.7.1"),
                Stage::Rcpt,
                Some("mx.example.org"),
                Some("203.0.113.25"),
                None,
                Some(Origin::Remote),
                "Greylisted",
            ),
        ];
        for (rcpt, nth, code, enhanced, stage, host, ip, src, origin, part) in cases {
            let e = evs
                .iter()
                .filter(|e| e.recipient == rcpt)
                .nth(nth)
                .unwrap_or_else(|| panic!("{rcpt} #{nth}"));
            let at = format!("{rcpt} #{nth}: {:?}", e.response);
            assert_eq!(e.code, code, "{at}");
            assert_eq!(e.enhanced.as_deref(), enhanced, "{at}");
            assert_eq!(e.stage, stage, "{at}");
            assert_eq!(e.mx_host.as_deref(), host, "{at}");
            assert_eq!(e.mx_ip.as_deref(), ip, "{at}");
            assert_eq!(e.source_ip.as_deref(), src, "{at}");
            assert_eq!(e.classification.as_ref().map(|c| c.origin), origin, "{at}");
            assert!(
                part.is_empty() || e.response.as_deref().is_some_and(|r| r.contains(part)),
                "{at}"
            );
        }
        let bob = evs[0];
        assert_eq!(bob.sender.as_deref(), Some("alice@example.com"));
        assert_eq!(bob.helo.as_deref(), Some("mta2.example.com"));
        assert_eq!(bob.destination, "google");
        assert_eq!(bob.time, utc("2026-11-23T05:00:05Z"));
        let gina = evs
            .iter()
            .find(|e| e.recipient == "gina@outlook.com")
            .expect("gina");
        assert_eq!(gina.cause(), Some(Cause::Permanent));
        let frank = evs
            .iter()
            .find(|e| e.recipient == "frank@example.net")
            .expect("frank");
        assert_eq!(frank.time, utc("2026-11-23T05:00:10.123Z"));
        let ivan = evs
            .iter()
            .find(|e| e.recipient == "ivan@example.com")
            .expect("ivan");
        assert_eq!(ivan.time, utc("2026-11-23T05:00:14Z"));
        let kim = evs
            .iter()
            .find(|e| e.recipient == "kim@example.org")
            .expect("kim");
        assert_eq!(kim.cause(), Some(Cause::Greylisting));
    }

    #[test]
    fn malformed_lines_are_rejected_naming_the_field() {
        let head = "2026-11-23 05:00:00 1tsq7B-0000000028k-3Yqa ==";
        let cases = [
            ("garbage".to_string(), "timestamp"),
            (
                "2026-11-32 05:00:00 1tsq7B-0000000028k-3Yqa == a@b.com".to_string(),
                "timestamp",
            ),
            (format!("{head} "), "address"),
            (
                format!("{head} nobody R=r T=t defer (-44): 451 x"),
                "address",
            ),
            (
                format!("{head} a@b.com R=r T=t defer (-44) I=[nope]:25: 451 x"),
                "I",
            ),
            (format!("{head} a@b.com R=r T=t defer (0)"), "message"),
            (
                format!("{head} a@b.com R=r T=t defer (-44) H=mx [300.1.1.1]: 451 x"),
                "H",
            ),
            (
                format!("{head} a@b.com R=r T=t defer (-44) H=bad_host! [192.0.2.1]: 451 x"),
                "H",
            ),
            (
                format!("{head} a@b.com R=r T=t defer (-44): 451 x")
                    .replace("05:00:00", "09:00:00"),
                "timestamp",
            ),
        ];
        for (line, field) in cases {
            let mut p = EximParser::new(LogSourceMap::default());
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

    proptest::proptest! {
        #[test]
        fn arbitrary_input_never_panics(lines in proptest::collection::vec("\\PC*", 1..8)) {
            let mut p = EximParser::new(map());
            for l in &lines {
                let _ = p.feed_line(l, &ctx());
            }
        }

        #[test]
        fn arbitrary_fields_never_panic(
            flag in "(==|=>|->|\\*\\*|<=|H=\\PC{0,10})",
            rest in "\\PC{0,150}",
        ) {
            let mut p = EximParser::new(map());
            let line = format!("2026-11-23 05:00:00 1tsq7B-0000000028k-3Yqa {flag} {rest}");
            let _ = p.feed_line(&line, &ctx());
            let line = format!("2026-11-23 05:00:00 1tsq7B-0000000028k-3Yqa {flag} a@b.com R=r T=t defer (-44) H={rest}");
            let _ = p.feed_line(&line, &ctx());
        }
    }
}
