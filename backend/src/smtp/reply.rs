//! Parsing of SMTP replies as MTAs and ESPs report them.
//!
//! The input is whatever an event carried: a bare reply (`421 4.7.0 Try again later`), a
//! multi-line reply (`421-…\n421 …`, or Postfix's flattened `421-4.7.28 … 421 4.7.28 …`),
//! or a reply embedded in the sending MTA's own wording (Postfix `host … said: … (in reply
//! to RCPT TO command)`, Exim `SMTP error from remote mail server after RCPT TO:<…>: …`,
//! PowerMTA `smtp;421 …`), or no reply at all because the sending MTA gave up on its own
//! (`connect to mx[ip]:25: Connection timed out`).
//!
//! The parser runs on every ingested event, so it scans bytes by hand instead of running
//! regexes, allocates only the output, and caps how much of a pathological input it reads.

use std::fmt;
use std::str::FromStr;

use std::sync::LazyLock;

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Inputs beyond this are truncated before parsing: real replies are a few hundred bytes,
/// and Gmail's longest multi-line replies stay under 2 KB. The cap keeps a hostile or broken
/// event from costing more than a bounded amount of work and memory.
pub const MAX_INPUT_BYTES: usize = 16 * 1024;

/// An RFC 3463 enhanced status code, `class.subject.detail`.
///
/// Subject and detail are `u16` because receivers use multi-digit details (Microsoft
/// `4.7.650`, Gmail `4.7.28`); RFC 3463 allows up to three digits for each.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct EnhancedCode {
    pub class: u8,
    pub subject: u16,
    pub detail: u16,
}

impl EnhancedCode {
    pub const fn new(class: u8, subject: u16, detail: u16) -> EnhancedCode {
        EnhancedCode {
            class,
            subject,
            detail,
        }
    }

    /// Parses `x.y.z` at the start of `bytes`; returns the code and the number of bytes used.
    /// The class must be 2, 4 or 5 (RFC 3463 §3.1) and the code must not continue into
    /// more digits or dots, so an IP address such as `4.16.55.1` is not taken for a code.
    fn parse_prefix(bytes: &[u8]) -> Option<(EnhancedCode, usize)> {
        let class = match bytes.first()? {
            b'2' => 2,
            b'4' => 4,
            b'5' => 5,
            _ => return None,
        };
        if bytes.get(1) != Some(&b'.') {
            return None;
        }
        let (subject, n1) = parse_digits(&bytes[2..], 3)?;
        // RFC 3463 §3 defines subjects 0–7 only; Yahoo's "4.16.55.1" diagnostics are not codes.
        if subject > 7 {
            return None;
        }
        let pos = 2 + n1;
        if bytes.get(pos) != Some(&b'.') {
            return None;
        }
        let (detail, n2) = parse_digits(&bytes[pos + 1..], 3)?;
        let end = pos + 1 + n2;
        match bytes.get(end) {
            Some(b)
                if b.is_ascii_digit()
                    || *b == b'.' && bytes.get(end + 1).is_some_and(u8::is_ascii_digit) =>
            {
                None
            }
            _ => Some((EnhancedCode::new(class, subject, detail), end)),
        }
    }
}

/// Up to `max` ASCII digits; `None` when there is no digit or more than `max`.
fn parse_digits(bytes: &[u8], max: usize) -> Option<(u16, usize)> {
    let n = bytes.iter().take_while(|b| b.is_ascii_digit()).count();
    if n == 0 || n > max {
        return None;
    }
    let mut v: u16 = 0;
    for b in &bytes[..n] {
        v = v * 10 + u16::from(b - b'0');
    }
    Some((v, n))
}

impl fmt::Display for EnhancedCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.class, self.subject, self.detail)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not an enhanced status code (expected class.subject.detail such as 4.7.0): {0:?}")]
pub struct EnhancedCodeError(pub String);

impl FromStr for EnhancedCode {
    type Err = EnhancedCodeError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim();
        match EnhancedCode::parse_prefix(t.as_bytes()) {
            Some((code, n)) if n == t.len() => Ok(code),
            _ => Err(EnhancedCodeError(s.to_string())),
        }
    }
}

impl Serialize for EnhancedCode {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for EnhancedCode {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Where in the SMTP session the reply came (RFC 5321 §3–4). It tells the operator whether
/// the receiver had seen the sender, the recipient or the content when it deferred.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    Connect,
    Ehlo,
    Starttls,
    Mail,
    Rcpt,
    Data,
    EndOfData,
    Unknown,
}

impl Stage {
    pub const ALL: [Stage; 8] = [
        Stage::Connect,
        Stage::Ehlo,
        Stage::Starttls,
        Stage::Mail,
        Stage::Rcpt,
        Stage::Data,
        Stage::EndOfData,
        Stage::Unknown,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Connect => "connect",
            Stage::Ehlo => "ehlo",
            Stage::Starttls => "starttls",
            Stage::Mail => "mail",
            Stage::Rcpt => "rcpt",
            Stage::Data => "data",
            Stage::EndOfData => "end_of_data",
            Stage::Unknown => "unknown",
        }
    }
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown SMTP stage {0:?}")]
pub struct StageError(pub String);

impl FromStr for Stage {
    type Err = StageError;
    /// Accepts our names and the words MTAs use for the same step: KumoMTA reports the
    /// command itself (`"RCPT TO:<x@y>\r\n"`, `".\r\n"`), others say `greeting` or `dot`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim().trim_end_matches(['\r', '\n']).trim();
        let lower = t.to_ascii_lowercase();
        let key = lower.replace(['_', '-'], " ");
        let key = key.split_whitespace().collect::<Vec<_>>().join(" ");
        let stage = match key.as_str() {
            "connect" | "connection" | "greeting" | "banner" | "initial connection" | "conn" => {
                Stage::Connect
            }
            "ehlo" | "helo" | "lhlo" => Stage::Ehlo,
            "starttls" | "tls" => Stage::Starttls,
            "mail" | "mail from" => Stage::Mail,
            "rcpt" | "rcpt to" => Stage::Rcpt,
            "data" => Stage::Data,
            "end of data" | "end ofdata" | "eod" | "dot" | "." => Stage::EndOfData,
            "unknown" | "" => Stage::Unknown,
            _ => {
                // KumoMTA's `response.command` is the encoded command: "MAIL FROM:<a@b> SIZE=1".
                if key.starts_with("mail from:") {
                    Stage::Mail
                } else if key.starts_with("rcpt to:") {
                    Stage::Rcpt
                } else if key.starts_with("ehlo ")
                    || key.starts_with("helo ")
                    || key.starts_with("lhlo ")
                {
                    Stage::Ehlo
                } else if key.starts_with("data ") {
                    Stage::Data
                } else {
                    return Err(StageError(s.to_string()));
                }
            }
        };
        Ok(stage)
    }
}

/// One parsed reply.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Reply {
    pub code: Option<u16>,
    pub enhanced: Option<EnhancedCode>,
    /// Reply text without the code and enhanced-code prefixes; lines of a multi-line reply
    /// joined with `'\n'`. When the sending MTA produced no reply (a timeout), this is the
    /// MTA's own wording.
    pub text: String,
    pub stage: Stage,
    pub remote_host: Option<String>,
    pub remote_ip: Option<String>,
}

impl Reply {
    /// RFC 5321 §4.2.1: 4yz is a transient negative completion. Without a basic code the
    /// enhanced code's class decides (RFC 3463 §3.1: 4 = persistent transient failure).
    pub fn is_temporary(&self) -> bool {
        match (self.code, self.enhanced) {
            (Some(c), _) => (400..500).contains(&c),
            (None, Some(e)) => e.class == 4,
            (None, None) => false,
        }
    }

    /// RFC 5321 §4.2.1: 5yz is a permanent negative completion.
    pub fn is_permanent(&self) -> bool {
        match (self.code, self.enhanced) {
            (Some(c), _) => (500..600).contains(&c),
            (None, Some(e)) => e.class == 5,
            (None, None) => false,
        }
    }
}

/// Parses a reply as reported by an MTA or ESP. Never panics; reads at most
/// [`MAX_INPUT_BYTES`] of the input.
pub fn parse_reply(input: &str) -> Reply {
    // qmail-remote reports with '_' for every space ("deferral: 192.0.2.1_does_not_like_
    // recipient./Remote_host_said:_421_Service_Temporarily_Unavailable/Giving_up_on_…").
    // The byte check first: the phrase search sets up a searcher on every call.
    if input.contains('_') && input.contains("host_said:_") {
        return parse_spaced(&truncate(input, MAX_INPUT_BYTES).replace('_', " "));
    }
    let reply = parse_spaced(input);
    if reply.code.is_some() {
        return reply;
    }
    // Bounce reports wrap long lines inside the markers ("refused to talk\n    to me:") and
    // some clients write the code in parentheses ("permanent error (554): 5.7.1 …"): try
    // once more on a normalised copy before giving up on a code.
    let input = truncate(input, MAX_INPUT_BYTES);
    if input.bytes().any(|c| c.is_ascii_digit()) {
        let normalised = normalise_wrapped(input);
        let again = parse_spaced(&normalised);
        if again.code.is_some() {
            return again;
        }
    }
    reply
}

/// Runs of whitespace become one space, and the first code that a client wrapped in
/// punctuation is unwrapped into a clause of its own: "(NNN): ", "[NNN] " and Python's
/// "(NNN, b'" / "(NNN, '" become ": NNN ", and "NNN: x.y.z" becomes "NNN x.y.z".
fn normalise_wrapped(input: &str) -> String {
    let mut out = String::with_capacity(input.len());
    let mut last_space = false;
    for c in input.chars() {
        if c.is_whitespace() {
            if !last_space {
                out.push(' ');
            }
            last_space = true;
        } else {
            out.push(c);
            last_space = false;
        }
    }
    if let Some((start, end, code)) = wrapped_code(out.as_bytes()) {
        out.replace_range(start..end, &format!(": {code} "));
    }
    out
}

/// The first client-wrapped 4xx/5xx code: its byte range and the three digits.
fn wrapped_code(b: &[u8]) -> Option<(usize, usize, String)> {
    let digits = |i: usize| {
        b.get(i..i + 3).is_some_and(|d| {
            matches!(d[0], b'4' | b'5') && matches!(d[1], b'0'..=b'5') && d[2].is_ascii_digit()
        })
    };
    let text = |i: usize| String::from_utf8_lossy(&b[i..i + 3]).into_owned();
    for i in 0..b.len() {
        match b[i] {
            b'(' | b'[' if digits(i + 1) => {
                let close = if b[i] == b'(' { b')' } else { b']' };
                let rest = &b[i + 4..];
                let skip = if rest.starts_with(&[close, b':', b' ']) {
                    3
                } else if rest.starts_with(&[close, b' ']) {
                    2
                } else if b[i] == b'(' && rest.starts_with(b", b'") {
                    4
                } else if b[i] == b'(' && (rest.starts_with(b", '") || rest.starts_with(b", \"")) {
                    3
                } else {
                    continue;
                };
                return Some((i, i + 4 + skip, text(i + 1)));
            }
            _ if digits(i)
                && (i == 0 || !(b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'.'))
                && b.get(i + 3..i + 5) == Some(b": ".as_slice())
                && b.len() > i + 5
                && EnhancedCode::parse_prefix(&b[i + 5..]).is_some() =>
            {
                // "550: 5.7.1 …": the colon after the code goes.
                return Some((i, i + 5, text(i)));
            }
            _ => {}
        }
    }
    None
}

fn parse_spaced(input: &str) -> Reply {
    let input = truncate(input, MAX_INPUT_BYTES);
    let scan = Scan::new(input);
    let stage = detect_stage(input, &scan);
    let (remote_host, remote_ip) = remote_peer(input, &scan);
    let in_reply_to = scan.at(PAREN_IN_REPLY_TO);

    let Some(start) = find_reply_start(input, &scan) else {
        // No three-digit code: either an ESP that strips the code but keeps the enhanced
        // code (Mailgun's `delivery-status.message`), or the sending MTA's own words.
        let body = strip_in_reply_to(input, 0, in_reply_to).trim();
        let bytes = body.as_bytes();
        let (enhanced, text) = match EnhancedCode::parse_prefix(bytes) {
            Some((e, n)) => (Some(e), body[n..].trim_start()),
            None => (find_enhanced_anywhere(body), body),
        };
        return Reply {
            code: None,
            enhanced,
            text: text.trim().to_string(),
            stage,
            remote_host,
            remote_ip,
        };
    };

    let code = three_digits(&input.as_bytes()[start..]).unwrap_or(0);
    let reply = strip_in_reply_to(input, start, in_reply_to);
    let (mut enhanced, text) = split_lines(reply, code);
    if enhanced.is_none() {
        // Some receivers put a token before the enhanced code ("450 cuda_nsu 4.7.1 : …");
        // accept one within the first words of the text.
        let head = truncate(text.lines().next().unwrap_or(""), 40);
        enhanced = find_enhanced_anywhere(head);
    }
    // RFC 3463 §2: the class of the enhanced code repeats the reply's class. Exchange
    // writes "451 5.7.3 STARTTLS is required" and "550 4.3.2 Discarded …"; such a
    // contradicting triple is not taken as the enhanced code (the basic code decides).
    if enhanced.is_some_and(|e| u16::from(e.class) != code / 100) {
        enhanced = None;
    }
    Reply {
        code: Some(code),
        enhanced,
        text,
        stage,
        remote_host,
        remote_ip,
    }
}

fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while end > 0 && !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

fn three_digits(b: &[u8]) -> Option<u16> {
    if b.len() < 3 || !b[..3].iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(u16::from(b[0] - b'0') * 100 + u16::from(b[1] - b'0') * 10 + u16::from(b[2] - b'0'))
}

/// A reply code at `i`: `[2-5]dd` followed by end, space, `-`, or a tab, and not preceded
/// by a digit, dot or letter (so `192.0.2.250 ` or `port 25` are not codes).
fn code_at(b: &[u8], i: usize) -> bool {
    if i + 3 > b.len() {
        return false;
    }
    if !matches!(b[i], b'2'..=b'5') || !b[i + 1].is_ascii_digit() || !b[i + 2].is_ascii_digit() {
        return false;
    }
    if i > 0 {
        let p = b[i - 1];
        if p.is_ascii_alphanumeric()
            || p == b'.'
            || p == b'['
            || p == b'-'
            || p == b'_'
            || p == b'/'
        {
            return false;
        }
    }
    matches!(
        b.get(i + 3),
        None | Some(b' ' | b'-' | b'\t' | b'\r' | b'\n')
    )
}

/// Markers after which MTAs put the remote reply, and whether the reply must follow
/// immediately (`true`) or may come after a command echo (Exim's `after RCPT TO:<…>: `).
/// The earliest reply found wins.
const REPLY_MARKERS: &[(&str, bool)] = &[
    (" said:", true),                     // Postfix smtp_proto.c
    ("refused to talk to me:", true),     // Postfix, bad greeting
    ("smtp;", true), // PowerMTA dsnDiag, SES/Mandrill diagnostic code (RFC 3464 diagnostic-type)
    ("remote mail server after ", false), // Exim transports/smtp.c
    ("upstream error:", true), // Haraka outbound
    ("deferred:", true), // Haraka "recipient <a@b> deferred: 450 …"
    ("last transfail:", true), // SparkPost expiry bounce
    ("response:", true),
    ("error:", true),
    ("reason:", true),
    ("{LED=", true), // Exchange Online NDR "Reason: [{LED=451 4.7.500 …};{MSG=};…]"
    ("server returned was:", true), // Gmail DSN "The error that the other server returned was: 4xx …"
];

/// Wording that places a failure at connection time (Postfix smtp_connect.c, KumoMTA,
/// Exchange, Sendmail), before any SMTP command.
const CONNECT_WORDS: &[&str] = &[
    "refused to talk to me",
    "connect to ",
    "after initial connection",
    "initial server greeting",
    "read initial banner",
    "connection timed out",
    "connection refused",
    "no route to host",
    "network is unreachable",
    "no answer from any hosts",
    "no answer from host",
    "no mxs for this domain",
    "failed to connect",
    "unable to connect",
    "could not connect",
    "host or domain name not found",
];

const PEER_MARKERS: &[&str] = &[
    "host ",
    "connect to ",
    "conversation with ",
    "connection with ",
    "h=",
];

const IN_REPLY_TO: usize = REPLY_MARKERS.len();
const PAREN_IN_REPLY_TO: usize = IN_REPLY_TO + 1;
const WHILE: usize = IN_REPLY_TO + 2;
const STARTTLS: usize = IN_REPLY_TO + 3;
const TLS_HANDSHAKE: usize = IN_REPLY_TO + 4;
const START_TLS: usize = IN_REPLY_TO + 5;
const CONNECT_BASE: usize = IN_REPLY_TO + 6;
const PEER_BASE: usize = CONNECT_BASE + CONNECT_WORDS.len();
const NEEDLE_COUNT: usize = PEER_BASE + PEER_MARKERS.len();

/// All the phrases the parser looks for, found in one pass over the input.
static NEEDLES: LazyLock<Option<AhoCorasick>> = LazyLock::new(|| {
    let mut all: Vec<&str> = REPLY_MARKERS.iter().map(|(m, _)| *m).collect();
    all.extend([
        "in reply to ",
        "(in reply to ",
        " while ",
        "starttls",
        "tls handshake",
        "start tls",
    ]);
    all.extend(CONNECT_WORDS);
    all.extend(PEER_MARKERS);
    AhoCorasickBuilder::new()
        .ascii_case_insensitive(true)
        .match_kind(MatchKind::Standard)
        .build(all)
        .ok()
});

/// Peer marker positions kept: the first few are where the peer is named.
const MAX_PEERS: usize = 8;

/// First position of every needle, and the first few positions of the peer markers.
struct Scan {
    first: [usize; NEEDLE_COUNT],
    peers: [usize; MAX_PEERS],
    peer_count: usize,
}

impl Scan {
    fn new(input: &str) -> Scan {
        let mut scan = Scan {
            first: [usize::MAX; NEEDLE_COUNT],
            peers: [0; MAX_PEERS],
            peer_count: 0,
        };
        if let Some(ac) = NEEDLES.as_ref() {
            for m in ac.find_overlapping_iter(input) {
                let id = m.pattern().as_usize();
                if id < NEEDLE_COUNT && scan.first[id] == usize::MAX {
                    scan.first[id] = m.start();
                }
                if id >= PEER_BASE
                    && let Some(slot) = scan.peers.get_mut(scan.peer_count)
                {
                    *slot = m.end();
                    scan.peer_count += 1;
                }
            }
        }
        scan
    }

    fn peers(&self) -> &[usize] {
        &self.peers[..self.peer_count]
    }

    fn at(&self, id: usize) -> Option<usize> {
        self.first.get(id).copied().filter(|p| *p != usize::MAX)
    }
}

fn find_reply_start(input: &str, scan: &Scan) -> Option<usize> {
    let b = input.as_bytes();
    // A reply at the very start (after quotes or whitespace) is the common ESP case.
    let lead = skip_blank(b, 0);
    if code_at(b, lead) {
        return Some(lead);
    }
    // Embedded: after a known marker.
    let mut best: Option<usize> = None;
    for (i, (m, immediate)) in REPLY_MARKERS.iter().enumerate() {
        let Some(pos) = scan.at(i) else {
            continue;
        };
        let from = pos + m.len();
        let found = if *immediate {
            let i = skip_blank(b, from);
            code_at(b, i).then_some(i)
        } else {
            let window_end = (from + 600).min(b.len());
            (from..window_end).find(|&i| code_at(b, i) && i >= 2 && b[i - 2] == b':')
        };
        if let Some(i) = found {
            best = Some(best.map_or(i, |cur: usize| cur.min(i)));
        }
    }
    if best.is_some() {
        return best;
    }
    // Otherwise a code directly followed by an enhanced code is trusted anywhere in the
    // text ("… 421 4.7.0 …"); a bare number in prose ("in 300 seconds") is not a code.
    let with_enhanced = (0..b.len().saturating_sub(2)).find(|&i| {
        code_at(b, i)
            && b.get(i + 3).is_some_and(|c| *c == b' ' || *c == b'-')
            && i + 4 < b.len()
            && EnhancedCode::parse_prefix(&b[i + 4..]).is_some()
    });
    if with_enhanced.is_some() {
        return with_enhanced;
    }
    // Last resort: clients and libraries that print the server's words after their own
    // ("SMTP -> FROM SERVER:421 …", "could not perform server greeting: 501 …",
    // "Error Sending Email - 422 …", "Invalid greeting from server:\n421 …"). Only a 4xx
    // or 5xx at the head of such a clause, followed by words, counts.
    (0..b.len().saturating_sub(2)).find(|&i| {
        matches!(b[i], b'4' | b'5') && code_at(b, i) && clause_head(b, i) && words_follow(b, i + 3)
    })
}

/// `i` starts a clause: first non-blank byte, or preceded by a colon, a line break or a
/// spaced dash (optionally with blanks in between).
fn clause_head(b: &[u8], i: usize) -> bool {
    let mut j = i;
    while j > 0 && matches!(b[j - 1], b' ' | b'\t') {
        j -= 1;
    }
    if j == 0 {
        return true;
    }
    match b[j - 1] {
        b':' | b'\n' | b'\r' | b'(' => true,
        b'-' => j >= 2 && b[j - 2] == b' ' && j < i,
        _ => false,
    }
}

/// A space and then text after the code at `end`: a word of two letters or more that is not
/// a unit (so "timeout: 450 seconds" is no code), an address or a bracket.
fn words_follow(b: &[u8], end: usize) -> bool {
    // "550-Requested action not taken": the first line of a multi-line reply.
    let dash_word = b.get(end) == Some(&b'-')
        && b[end + 1..]
            .iter()
            .take_while(|c| c.is_ascii_alphabetic())
            .count()
            >= 2;
    if b.get(end) != Some(&b' ') && !dash_word {
        return false;
    }
    let rest = &b[end + 1..];
    if rest
        .first()
        .is_some_and(|c| matches!(c, b'<' | b'[' | b'(' | b'#'))
    {
        return true;
    }
    let word_len = rest.iter().take_while(|c| c.is_ascii_alphabetic()).count();
    if word_len < 2 {
        return false;
    }
    let word = rest[..word_len].to_ascii_lowercase();
    const UNITS: &[&str] = &[
        "s",
        "sec",
        "secs",
        "second",
        "seconds",
        "ms",
        "min",
        "mins",
        "minute",
        "minutes",
        "hour",
        "hours",
        "day",
        "days",
        "times",
        "bytes",
        "kb",
        "mb",
        "messages",
        "recipients",
        "connections",
        "attempts",
        "percent",
    ];
    !UNITS.contains(&std::str::from_utf8(&word).unwrap_or(""))
}

fn skip_blank(b: &[u8], from: usize) -> usize {
    from + b[from.min(b.len())..]
        .iter()
        .take_while(|c| c.is_ascii_whitespace() || **c == b'"' || **c == b'\'')
        .count()
}

/// Enhanced code anywhere in text that had no basic code, on token boundaries.
fn find_enhanced_anywhere(s: &str) -> Option<EnhancedCode> {
    let b = s.as_bytes();
    for i in 0..b.len() {
        if !matches!(b[i], b'2' | b'4' | b'5') {
            continue;
        }
        if i > 0 {
            let p = b[i - 1];
            if p.is_ascii_alphanumeric()
                || p == b'.'
                || p == b'-'
                || p == b'_'
                || p == b'/'
                || p == b':'
            {
                continue;
            }
        }
        if let Some((e, _)) = EnhancedCode::parse_prefix(&b[i..]) {
            return Some(e);
        }
    }
    None
}

/// `input[start..]` without Postfix's trailing `(in reply to … command)` and what follows.
fn strip_in_reply_to(input: &str, start: usize, in_reply_to: Option<usize>) -> &str {
    match in_reply_to {
        Some(p) if p >= start => input[start..p].trim_end(),
        _ => &input[start..],
    }
}

/// Splits a reply into lines, drops every line's `NNN-`/`NNN ` and enhanced-code prefix
/// and returns the enhanced code (taken from the first line that has one) and the text.
///
/// RFC 5321 §4.2.1: continuation lines are `NNN-text`, the last line `NNN text`. MTAs
/// flatten them differently (formats.md §10): real newlines, Exim's literal `\n`, or
/// Postfix's spaces with every `NNN-x.y.z` prefix kept.
fn split_lines(reply: &str, code: u16) -> (Option<EnhancedCode>, String) {
    let code_bytes = [
        b'0' + (code / 100 % 10) as u8,
        b'0' + (code / 10 % 10) as u8,
        b'0' + (code % 10) as u8,
    ];
    let mut enhanced: Option<EnhancedCode> = None;
    let mut out = String::with_capacity(reply.len());
    for physical in split_physical_lines(reply) {
        for segment in split_flattened(physical, &code_bytes) {
            let mut rest = segment.trim();
            let rb = rest.as_bytes();
            if rb.len() >= 3
                && rb[..3] == code_bytes
                && matches!(rb.get(3), None | Some(b' ' | b'-' | b'\t'))
            {
                rest = rest.get(4..).unwrap_or("").trim_start();
                if rb.len() == 3 {
                    rest = "";
                }
            }
            if let Some((e, n)) = EnhancedCode::parse_prefix(rest.as_bytes()) {
                enhanced.get_or_insert(e);
                rest = rest[n..].trim_start();
            }
            if rest.is_empty() {
                continue;
            }
            if !out.is_empty() {
                out.push('\n');
            }
            out.push_str(rest);
        }
    }
    (enhanced, out)
}

/// Real line breaks and Exim's literal two-character `\n`.
fn split_physical_lines(s: &str) -> impl Iterator<Item = &str> {
    s.split('\n')
        .flat_map(|l| {
            // A line without a backslash has no literal `\n`; the byte check is cheaper
            // than setting up the two-byte search.
            let (whole, parts) = if l.contains('\\') {
                (None, Some(l.split("\\n")))
            } else {
                (Some(l), None)
            };
            whole.into_iter().chain(parts.into_iter().flatten())
        })
        .map(|l| l.trim_end_matches('\r'))
}

/// Splits a line at every ` NNN-` / ` NNN ` that repeats the reply's own code followed by
/// an enhanced code or a continuation dash: Postfix's flattening of multi-line replies.
fn split_flattened<'a>(line: &'a str, code: &[u8; 3]) -> Flattened<'a> {
    Flattened {
        line,
        code: *code,
        last: 0,
        i: 1,
        done: false,
    }
}

/// The parts of [`split_flattened`], found as they are asked for (no vector per line).
struct Flattened<'a> {
    line: &'a str,
    code: [u8; 3],
    last: usize,
    i: usize,
    done: bool,
}

impl<'a> Iterator for Flattened<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        if self.done {
            return None;
        }
        let (line, code) = (self.line, self.code);
        let b = line.as_bytes();
        while self.i + 4 <= b.len() {
            let i = self.i;
            // Straight to the next byte that can start the code.
            match b[i..b.len() - 3].iter().position(|&c| c == code[0]) {
                Some(skip) => self.i += skip,
                None => break,
            }
            let i = self.i;
            if b[i - 1] == b' ' && b[i..i + 3] == code {
                let sep = b[i + 3];
                let next_is_enh = EnhancedCode::parse_prefix(&b[(i + 4).min(b.len())..]).is_some();
                if sep == b'-' || (sep == b' ' && next_is_enh) {
                    let part = &line[self.last..i];
                    self.last = i;
                    self.i = i + 4;
                    return Some(part);
                }
            }
            self.i = i + 1;
        }
        self.done = true;
        Some(&line[self.last..])
    }
}

/// Stage from the MTA's wording. Postfix: `(in reply to X command)`, `while <stage>`;
/// Exim: `after <command>`; connect-level failures name no command at all.
fn detect_stage(input: &str, scan: &Scan) -> Stage {
    if let Some(s) = scan
        .at(IN_REPLY_TO)
        .and_then(|p| stage_from_command(&input[p + 12..]))
    {
        return s;
    }
    if let Some(p) = scan.at(3) {
        let mut rest = &input[p + REPLY_MARKERS[3].0.len()..];
        if rest.len() >= 10
            && rest.is_char_boundary(10)
            && rest[..10].eq_ignore_ascii_case("pipelined ")
        {
            rest = &rest[10..];
        }
        if let Some(s) = stage_from_command(rest) {
            return s;
        }
    }
    // Postfix smtp_proto.c / smtp_trouble.c: "… while <doing what>".
    if let Some(p) = scan.at(WHILE) {
        let rest = &input[p + 7..];
        let stages: &[(&str, Stage)] = &[
            ("receiving the initial server greeting", Stage::Connect),
            ("performing the ehlo handshake", Stage::Ehlo),
            ("performing the helo handshake", Stage::Ehlo),
            ("performing the lhlo handshake", Stage::Ehlo),
            ("sending ehlo", Stage::Ehlo),
            ("sending helo", Stage::Ehlo),
            ("performing the tls handshake", Stage::Starttls),
            ("sending starttls", Stage::Starttls),
            ("sending mail from", Stage::Mail),
            ("sending rcpt to", Stage::Rcpt),
            ("sending data command", Stage::Data),
            ("sending message body", Stage::Data),
            ("sending end of data", Stage::EndOfData),
        ];
        for (w, s) in stages {
            if rest.len() >= w.len()
                && rest.is_char_boundary(w.len())
                && rest[..w.len()].eq_ignore_ascii_case(w)
            {
                return *s;
            }
        }
    }
    // TLS wording first: "TLS is required, but host … refused to start TLS" is a STARTTLS
    // failure even though it names the host.
    if [STARTTLS, TLS_HANDSHAKE, START_TLS]
        .iter()
        .any(|i| scan.at(*i).is_some())
    {
        return Stage::Starttls;
    }
    if (CONNECT_BASE..PEER_BASE).any(|i| scan.at(i).is_some()) {
        return Stage::Connect;
    }
    Stage::Unknown
}

/// Stage from an SMTP command name at the start of `rest`.
fn stage_from_command(rest: &str) -> Option<Stage> {
    let table: &[(&str, Stage)] = &[
        ("end of data", Stage::EndOfData),
        ("end of message", Stage::EndOfData),
        ("mail from", Stage::Mail),
        ("rcpt to", Stage::Rcpt),
        ("data", Stage::Data),
        ("ehlo", Stage::Ehlo),
        ("helo", Stage::Ehlo),
        ("lhlo", Stage::Ehlo),
        ("starttls", Stage::Starttls),
        ("initial connection", Stage::Connect),
        ("xforward", Stage::Mail),
        ("auth", Stage::Ehlo),
    ];
    table.iter().find_map(|(w, s)| {
        (rest.len() >= w.len()
            && rest.is_char_boundary(w.len())
            && rest[..w.len()].eq_ignore_ascii_case(w))
        .then_some(*s)
    })
}

/// The remote host and IP from `NAME[IP]` (Postfix), `H=NAME [IP]` or `host NAME [IP]`
/// (Exim).
fn remote_peer(input: &str, scan: &Scan) -> (Option<String>, Option<String>) {
    scan.peers()
        .iter()
        .find_map(|&start| host_ip_at(input, start))
        .unwrap_or((None, None))
}

fn host_ip_at(input: &str, start: usize) -> Option<(Option<String>, Option<String>)> {
    let b = input.as_bytes();
    let name_len = b[start..]
        .iter()
        .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'-' | b'_'))
        .count();
    if name_len == 0 || name_len > 253 {
        return None;
    }
    let name = &input[start..start + name_len];
    let mut i = start + name_len;
    if b.get(i) == Some(&b' ') {
        i += 1;
    }
    if b.get(i) != Some(&b'[') {
        return None;
    }
    let ip_start = i + 1;
    let ip_len = b[ip_start..]
        .iter()
        .take(64)
        .take_while(|c| c.is_ascii_hexdigit() || matches!(c, b'.' | b':'))
        .count();
    if b.get(ip_start + ip_len) != Some(&b']') || ip_len == 0 {
        return None;
    }
    let ip = &input[ip_start..ip_start + ip_len];
    let ip = ip.strip_prefix("IPv6:").unwrap_or(ip);
    // Postfix writes `unknown[ip]` when the peer has no usable reverse name.
    let host =
        (!name.eq_ignore_ascii_case("unknown") && name.contains('.')).then(|| name.to_string());
    Some((host, Some(ip.to_string())))
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Case {
        input: &'static str,
        code: Option<u16>,
        enhanced: Option<&'static str>,
        text: &'static str,
        stage: Stage,
    }

    fn check(c: &Case) {
        let r = parse_reply(c.input);
        assert_eq!(r.code, c.code, "code of {:?}", c.input);
        assert_eq!(
            r.enhanced.map(|e| e.to_string()).as_deref(),
            c.enhanced,
            "enhanced of {:?}",
            c.input
        );
        assert_eq!(r.text, c.text, "text of {:?}", c.input);
        assert_eq!(r.stage, c.stage, "stage of {:?}", c.input);
    }

    #[test]
    fn parses_table() {
        let cases = [
            Case {
                input: "421 4.7.0 Try again later, closing connection.",
                code: Some(421),
                enhanced: Some("4.7.0"),
                text: "Try again later, closing connection.",
                stage: Stage::Unknown,
            },
            Case {
                input: "400 try again later",
                code: Some(400),
                enhanced: None,
                text: "try again later",
                stage: Stage::Unknown,
            },
            Case {
                input: "421-4.7.28 Gmail has detected an unusual rate of mail\r\n421-4.7.28 originating from your IP.\r\n421 4.7.28 https://support.google.com/mail/?p=UnsolicitedRateLimitError - gsmtp",
                code: Some(421),
                enhanced: Some("4.7.28"),
                text: "Gmail has detected an unusual rate of mail\noriginating from your IP.\nhttps://support.google.com/mail/?p=UnsolicitedRateLimitError - gsmtp",
                stage: Stage::Unknown,
            },
            // Postfix flattening keeps every line's prefix (formats.md §2).
            Case {
                input: "host gmail-smtp-in.l.google.com[203.0.113.2] said: 450-4.2.1 The user you are trying to contact is receiving mail at a rate that 450-4.2.1 prevents additional messages from being delivered. 450 4.2.1  https://support.google.com/mail/?p=ReceivingRate aabb1122ccddeeff.547 - gsmtp (in reply to RCPT TO command)",
                code: Some(450),
                enhanced: Some("4.2.1"),
                text: "The user you are trying to contact is receiving mail at a rate that\nprevents additional messages from being delivered.\nhttps://support.google.com/mail/?p=ReceivingRate aabb1122ccddeeff.547 - gsmtp",
                stage: Stage::Rcpt,
            },
            Case {
                input: "SMTP error from remote mail server after RCPT TO:<a@b.example>: 451 4.7.1 Greylisting in action, please come back later",
                code: Some(451),
                enhanced: Some("4.7.1"),
                text: "Greylisting in action, please come back later",
                stage: Stage::Rcpt,
            },
            Case {
                input: "SMTP error from remote mail server after pipelined MAIL FROM:<s@x.example> SIZE=1234: 450 4.7.1 Client host rejected: cannot find your hostname",
                code: Some(450),
                enhanced: Some("4.7.1"),
                text: "Client host rejected: cannot find your hostname",
                stage: Stage::Mail,
            },
            Case {
                input: "H=mx.example.net [192.0.2.1]: SMTP error from remote mail server after initial connection: 421 mx.example.net Too many connections\\n421 try later",
                code: Some(421),
                enhanced: None,
                text: "mx.example.net Too many connections\ntry later",
                stage: Stage::Connect,
            },
            Case {
                input: "SMTP error from remote mail server after end of data: 451 4.3.0 Temporary failure",
                code: Some(451),
                enhanced: Some("4.3.0"),
                text: "Temporary failure",
                stage: Stage::EndOfData,
            },
            Case {
                input: "smtp;421 4.7.0 mx002.roc2.bluetie.com Error: too many errors",
                code: Some(421),
                enhanced: Some("4.7.0"),
                text: "mx002.roc2.bluetie.com Error: too many errors",
                stage: Stage::Unknown,
            },
            Case {
                input: "connect to mx1.example.com[192.0.2.10]:25: Connection timed out",
                code: None,
                enhanced: None,
                text: "connect to mx1.example.com[192.0.2.10]:25: Connection timed out",
                stage: Stage::Connect,
            },
            Case {
                input: "conversation with mx.example.com[192.0.2.1] timed out while receiving the initial server greeting",
                code: None,
                enhanced: None,
                text: "conversation with mx.example.com[192.0.2.1] timed out while receiving the initial server greeting",
                stage: Stage::Connect,
            },
            Case {
                input: "lost connection with mx.example.com[192.0.2.1] while sending RCPT TO",
                code: None,
                enhanced: None,
                text: "lost connection with mx.example.com[192.0.2.1] while sending RCPT TO",
                stage: Stage::Rcpt,
            },
            Case {
                input: "lost connection with mx.example.com[192.0.2.1] while sending end of data -- message may be sent more than once",
                code: None,
                enhanced: None,
                text: "lost connection with mx.example.com[192.0.2.1] while sending end of data -- message may be sent more than once",
                stage: Stage::EndOfData,
            },
            Case {
                input: "host mx.example.net[203.0.113.10] refused to talk to me: 421 4.7.0 Too many connections",
                code: Some(421),
                enhanced: Some("4.7.0"),
                text: "Too many connections",
                stage: Stage::Connect,
            },
            Case {
                input: "host mx.example.net[203.0.113.10] said: 452 4.2.2 Mailbox full (in reply to end of DATA command)",
                code: Some(452),
                enhanced: Some("4.2.2"),
                text: "Mailbox full",
                stage: Stage::EndOfData,
            },
            Case {
                input: "host mx.example.net[203.0.113.10] said: 451 4.3.0 Error (in reply to DATA command)",
                code: Some(451),
                enhanced: Some("4.3.0"),
                text: "Error",
                stage: Stage::Data,
            },
            Case {
                input: "host mx.example.net[203.0.113.10] said: 454 4.7.0 TLS not available due to local problem (in reply to STARTTLS command)",
                code: Some(454),
                enhanced: Some("4.7.0"),
                text: "TLS not available due to local problem",
                stage: Stage::Starttls,
            },
            Case {
                input: "host mx.example.net[203.0.113.10] said: 421 4.7.0 Bad HELO (in reply to EHLO command)",
                code: Some(421),
                enhanced: Some("4.7.0"),
                text: "Bad HELO",
                stage: Stage::Ehlo,
            },
            Case {
                input: "4.2.2 The email account that you tried to reach is over quota.",
                code: None,
                enhanced: Some("4.2.2"),
                text: "The email account that you tried to reach is over quota.",
                stage: Stage::Unknown,
            },
            Case {
                input: "451 4.7.650 The mail server [192.0.2.5] has been temporarily rate limited due to IP reputation. (S775)",
                code: Some(451),
                enhanced: Some("4.7.650"),
                text: "The mail server [192.0.2.5] has been temporarily rate limited due to IP reputation. (S775)",
                stage: Stage::Unknown,
            },
            Case {
                input: "delivery temporarily suspended: connect to mx.example.com[192.0.2.1]:25: Connection refused",
                code: None,
                enhanced: None,
                text: "delivery temporarily suspended: connect to mx.example.com[192.0.2.1]:25: Connection refused",
                stage: Stage::Connect,
            },
            Case {
                input: "",
                code: None,
                enhanced: None,
                text: "",
                stage: Stage::Unknown,
            },
            Case {
                input: "421",
                code: Some(421),
                enhanced: None,
                text: "",
                stage: Stage::Unknown,
            },
        ];
        for c in &cases {
            check(c);
        }
    }

    #[test]
    fn embedded_forms_from_mtas_and_esps() {
        let cases: &[(&str, Option<u16>, Option<&str>, Stage)] = &[
            (
                "Temp failing 1_2_3_4_abc_1_h for 128 seconds: Upstream error: 421 4.7.0 Try again later",
                Some(421),
                Some("4.7.0"),
                Stage::Unknown,
            ),
            (
                "recipient <a@b.example> deferred: 450 4.2.0 Mailbox busy",
                Some(450),
                Some("4.2.0"),
                Stage::Unknown,
            ),
            (
                "smtp; 421 4.4.1 Unable to connect to remote host",
                Some(421),
                Some("4.4.1"),
                Stage::Connect,
            ),
            (
                "400 KumoMTA internal: failed to connect to any candidate hosts",
                Some(400),
                None,
                Stage::Connect,
            ),
            (
                "554 5.4.7 [internal] message timeout (last transfail: 421 4.7.0 busy)",
                Some(554),
                Some("5.4.7"),
                Stage::Unknown,
            ),
            (
                "SMTP error from remote mail server after MAIL FROM:<a@b> SIZE=100: host mx.example.net [192.0.2.1]: 450 4.7.1 busy",
                Some(450),
                Some("4.7.1"),
                Stage::Mail,
            ),
            (
                "SMTP error from remote mail server after DATA: 451 4.3.0 try later",
                Some(451),
                Some("4.3.0"),
                Stage::Data,
            ),
            (
                "SMTP error from remote mail server after EHLO mta.example.com: 421 4.7.0 bad",
                Some(421),
                Some("4.7.0"),
                Stage::Ehlo,
            ),
            (
                "conversation with mx.example.com[192.0.2.1] timed out while performing the TLS handshake",
                None,
                None,
                Stage::Starttls,
            ),
            (
                "lost connection with mx.example.com[192.0.2.1] while sending MAIL FROM",
                None,
                None,
                Stage::Mail,
            ),
            (
                "lost connection with mx.example.com[192.0.2.1] while sending DATA command",
                None,
                None,
                Stage::Data,
            ),
            (
                "450 cuda_nsu 4.7.1 <a@b>: Recipient address rejected",
                Some(450),
                Some("4.7.1"),
                Stage::Unknown,
            ),
            (
                "421 Message temporarily deferred - 4.16.51",
                Some(421),
                None,
                Stage::Unknown,
            ),
            (
                "\"451 4.7.1 quoted\"",
                Some(451),
                Some("4.7.1"),
                Stage::Unknown,
            ),
        ];
        for (input, code, enh, stage) in cases {
            let r = parse_reply(input);
            assert_eq!(r.code, *code, "code of {input:?}");
            assert_eq!(
                r.enhanced.map(|e| e.to_string()).as_deref(),
                *enh,
                "enhanced of {input:?}"
            );
            assert_eq!(r.stage, *stage, "stage of {input:?}");
        }
    }

    #[test]
    fn remote_peer_forms() {
        let r = parse_reply(
            "host mx.example.net[203.0.113.10] said: 421 4.7.0 busy (in reply to RCPT TO command)",
        );
        assert_eq!(r.remote_host.as_deref(), Some("mx.example.net"));
        assert_eq!(r.remote_ip.as_deref(), Some("203.0.113.10"));
        let r = parse_reply(
            "H=mx.example.net [192.0.2.1]: SMTP error from remote mail server after RCPT TO:<a@b>: 450 x",
        );
        assert_eq!(r.remote_host.as_deref(), Some("mx.example.net"));
        assert_eq!(r.remote_ip.as_deref(), Some("192.0.2.1"));
        let r = parse_reply("connect to unknown[2001:db8::1]:25: Network is unreachable");
        assert_eq!(r.remote_host, None);
        assert_eq!(r.remote_ip.as_deref(), Some("2001:db8::1"));
    }

    #[test]
    fn enhanced_code_round_trip() {
        let e: EnhancedCode = "4.7.650".parse().expect("valid");
        assert_eq!(e, EnhancedCode::new(4, 7, 650));
        assert_eq!(e.to_string(), "4.7.650");
        assert!("4.16.55.1".parse::<EnhancedCode>().is_err());
        assert!("3.1.1".parse::<EnhancedCode>().is_err());
        assert!("4.1".parse::<EnhancedCode>().is_err());
        assert_eq!(serde_json::to_string(&e).expect("json"), "\"4.7.650\"");
        let back: EnhancedCode = serde_json::from_str("\"5.1.1\"").expect("json");
        assert_eq!(back, EnhancedCode::new(5, 1, 1));
    }

    #[test]
    fn stage_names_and_aliases() {
        for s in Stage::ALL {
            assert_eq!(s.as_str().parse::<Stage>(), Ok(s));
            assert_eq!(
                serde_json::to_string(&s).expect("json"),
                format!("\"{}\"", s.as_str())
            );
        }
        for (alias, s) in [
            ("greeting", Stage::Connect),
            ("Banner", Stage::Connect),
            ("connection", Stage::Connect),
            ("HELO", Stage::Ehlo),
            ("MAIL FROM", Stage::Mail),
            ("rcpt to", Stage::Rcpt),
            ("End of data", Stage::EndOfData),
            ("dot", Stage::EndOfData),
            (".\r\n", Stage::EndOfData),
            ("RCPT TO:<x@y.example>\r\n", Stage::Rcpt),
            ("MAIL FROM:<a@b> SIZE=10\r\n", Stage::Mail),
        ] {
            assert_eq!(alias.parse::<Stage>(), Ok(s), "{alias:?}");
        }
        assert!("bogus".parse::<Stage>().is_err());
    }

    #[test]
    fn temporary_and_permanent() {
        assert!(parse_reply("451 4.7.1 later").is_temporary());
        assert!(parse_reply("550 4.7.1 deferred").is_permanent());
        assert!(parse_reply("5.1.1 user unknown").is_permanent());
        assert!(!parse_reply("connect to x[1.2.3.4]:25: Connection refused").is_permanent());
    }

    #[test]
    fn codes_after_a_client_prefix() {
        for (text, code) in [
            (
                "SMTP -> FROM SERVER:421 Too many concurrent SMTP connections",
                421,
            ),
            (
                "remote delivery deferred: could not perform server greeting: 501 Syntactically invalid EHLO argument(s)",
                501,
            ),
            (
                "Error: Invalid greeting from server:\n421 user-PC You talk too soon",
                421,
            ),
            (
                "Net::SMTPServerBusy: 451 <a@example.com> unable to verify address",
                451,
            ),
            ("Error Sending Email - 422 try again in 15 seconds.", 422),
        ] {
            assert_eq!(parse_reply(text).code, Some(code), "{text:?}");
        }
        // Codes a client wrapped in punctuation (round 4, tests/corpus/blind3.toml).
        for (text, code, enhanced) in [
            (
                "550: 5.7.1 Message rejected due to local policy",
                550,
                Some("5.7.1"),
            ),
            (
                "Error SMTP (451): (Temporary local problem - please try later).",
                451,
                None,
            ),
            (
                "SMTP Fehler: [451] 4.3.0 Error: queue file write error",
                451,
                Some("4.3.0"),
            ),
            (
                "{'a@b.example': (451, b'4.3.0 Error: queue file write error')}",
                451,
                Some("4.3.0"),
            ),
            (
                "all recipients were rejected: 550-Requested action not taken: mailbox unavailable",
                550,
                None,
            ),
            (
                "DEFERRED[network] from=a@b (554 Blocked - see https://example.com)",
                554,
                None,
            ),
        ] {
            let r = parse_reply(text);
            assert_eq!(r.code, Some(code), "{text:?}");
            assert_eq!(
                r.enhanced.map(|e| e.to_string()).as_deref(),
                enhanced,
                "{text:?}"
            );
        }
        assert_eq!(parse_reply("blocked (550 times)").code, None);
        assert_eq!(parse_reply("waited (450 seconds)").code, None);
        // Ports are not reply codes (RFC 5321 replies have a second digit 0-5).
        assert_eq!(
            parse_reply("connect to smtp.example.com:587: 5.7.0 Authentication required").code,
            None
        );
        // Prose numbers after a colon are still not codes.
        assert_eq!(parse_reply("timeout: 300 seconds").code, None);
        assert_eq!(parse_reply("retry in: 450 s").code, None);
        assert_eq!(parse_reply("idle timeout: 450 seconds").code, None);
    }

    #[test]
    fn enhanced_code_of_the_other_class_is_dropped() {
        let r = parse_reply("451 5.7.3 STARTTLS is required to send mail");
        assert_eq!((r.code, r.enhanced), (Some(451), None));
        assert_eq!(r.text, "STARTTLS is required to send mail");
        let r = parse_reply("550 4.3.2 Discarded by administrative action. DROP");
        assert_eq!((r.code, r.enhanced), (Some(550), None));
        assert!(r.is_permanent());
    }

    #[test]
    fn bare_numbers_in_prose_are_not_codes() {
        let r = parse_reply("Greylisted, please try again in 300 seconds");
        assert_eq!(r.code, None);
        let r = parse_reply("Messages from 192.0.2.250 temporarily deferred");
        assert_eq!(r.code, None);
        assert_eq!(r.enhanced, None);
    }
}
