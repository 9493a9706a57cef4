//! What the MTA adapters (`kumomta`, `postfix`, `exim`, `powermta`) share: the per-record
//! outcome, the validation and classification of a drafted event (the same rules as the
//! native JSON adapter), the mapping from what a log line carries to the sending IP, and
//! the bounded correlation tables the line parsers keep.

use super::Rejection;
use super::json::{Context, classify_parsed};
use crate::event::{EventType, NewEvent};
use crate::incidents::destination;
use crate::smtp::{Classification, EnhancedCode, Stage, parse_reply};
use chrono::{DateTime, Datelike, FixedOffset, NaiveDate, NaiveTime, TimeDelta, TimeZone, Utc};
use serde::Deserialize;
use std::borrow::Borrow;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::hash::Hash;
use std::net::{IpAddr, Ipv4Addr};

/// Longest accepted response text, as in the native adapter.
const MAX_RESPONSE_BYTES: usize = 64 * 1024;
const MAX_FIELD_BYTES: usize = 1024;

/// The outcome of one record (or, for line formats, of one line or a line it completed).
#[derive(Debug)]
// Almost every record is an event, so boxing it would add an allocation per event
// without making the common case any smaller.
#[allow(clippy::large_enum_variant)]
pub enum Parsed {
    Event(NewEvent),
    /// A record of a kind that carries no delivery outcome (an arrival, a queue-level
    /// record, a notice); counted by the caller, never an error.
    Ignored {
        kind: String,
    },
    /// A record that claims to be an outcome but cannot be read; `raw` is the record the
    /// rejection is about (for line formats not always the line just fed).
    Rejected {
        rejection: Rejection,
        raw: String,
    },
}

impl Parsed {
    pub(crate) fn ignored(kind: impl Into<String>) -> Parsed {
        Parsed::Ignored { kind: kind.into() }
    }

    pub(crate) fn rejected(field: &str, reason: impl Into<String>, raw: &str) -> Parsed {
        Parsed::Rejected {
            rejection: reject(field, reason),
            raw: raw.to_string(),
        }
    }
}

/// A line-format reader (Postfix, Exim, PowerMTA), so that `tail` and `import` can drive
/// any of them the same way.
pub trait LineParser {
    /// Reads one line, in log order.
    fn feed_line(&mut self, line: &str, ctx: &Context<'_>) -> Vec<Parsed>;
    /// Like [`Self::feed_line`], appending to `out`: a reader of many lines keeps one
    /// vector instead of allocating one per line.
    fn feed_line_into(&mut self, line: &str, ctx: &Context<'_>, out: &mut Vec<Parsed>) {
        out.extend(self.feed_line(line, ctx));
    }
    /// What is still held at the end of the input (see each parser).
    fn finish(&mut self) -> Vec<Parsed> {
        Vec::new()
    }
}

pub(crate) use super::json::{host_name, reject};

/// A sending identity: the IP a transport binds to and the name it greets with.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct SendingIdentity {
    pub ip: Option<IpAddr>,
    pub helo: Option<String>,
    pub pool: Option<String>,
}

/// Maps what log lines carry to the sending IP and HELO, from the log source's
/// configuration. Postfix and Exim lines do not name the sending IP; where nothing maps,
/// the IP stays unknown rather than guessed.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct LogSourceMap {
    /// Postfix: the program name (`postfix-ip2/smtp`) or its `syslog_name` part
    /// (`postfix-ip2`); Exim: the transport (`T=remote_smtp_ip2`); PowerMTA: the `vmta`;
    /// KumoMTA: the `egress_source`.
    pub transports: BTreeMap<String, SendingIdentity>,
    /// Envelope sender domain (a parent domain matches its subdomains).
    pub sender_domains: BTreeMap<String, SendingIdentity>,
    /// HELO name per sending IP, for lines that name the IP (Exim `I=`, PowerMTA
    /// `dlvSourceIp`, KumoMTA `source_address`) but not the greeting.
    pub helo_by_ip: BTreeMap<IpAddr, String>,
}

impl LogSourceMap {
    /// The first transport key that maps wins, then the sender domain; an IP the line
    /// itself logged wins over a mapped one, and then only the HELO known for that IP is
    /// used, since the mapped entry's HELO belongs to its own IP.
    pub fn resolve(
        &self,
        transports: &[&str],
        sender: Option<&str>,
        logged_ip: Option<IpAddr>,
    ) -> SendingIdentity {
        let entry = transports
            .iter()
            .find_map(|t| self.transports.get(*t))
            .or_else(|| sender.and_then(|s| self.by_sender(s)));
        let ip = logged_ip.or(entry.and_then(|e| e.ip));
        let helo = entry
            .filter(|e| e.ip.is_none() || e.ip == ip)
            .and_then(|e| e.helo.clone())
            .or_else(|| ip.and_then(|ip| self.helo_by_ip.get(&ip).cloned()));
        SendingIdentity {
            ip,
            helo,
            pool: entry.and_then(|e| e.pool.clone()),
        }
    }

    fn by_sender(&self, sender: &str) -> Option<&SendingIdentity> {
        if self.sender_domains.is_empty() {
            return None;
        }
        let (_, domain) = sender.rsplit_once('@')?;
        let mut d = domain.trim_end_matches('>').to_ascii_lowercase();
        loop {
            if let Some(e) = self.sender_domains.get(&d) {
                return Some(e);
            }
            match d.split_once('.') {
                Some((_, parent)) if parent.contains('.') => d = parent.to_string(),
                _ => return None,
            }
        }
    }
}

/// An event as an adapter read it, before the checks every event gets.
#[derive(Clone, Debug)]
pub(crate) struct Draft {
    pub kind: EventType,
    pub time: DateTime<Utc>,
    pub recipient: String,
    pub sender: Option<String>,
    pub identity: SendingIdentity,
    pub mx_host: Option<String>,
    pub mx_ip: Option<String>,
    pub response: Option<String>,
    pub code: Option<u16>,
    pub enhanced: Option<EnhancedCode>,
    pub stage: Option<Stage>,
    pub attempt: Option<i32>,
    pub message_id: Option<String>,
}

/// The format's own names for the fields a rejection can be about.
pub(crate) struct FieldNames {
    pub time: &'static str,
    pub recipient: &'static str,
    pub sender: &'static str,
    pub mx_host: &'static str,
    pub mx_ip: &'static str,
    pub response: &'static str,
    pub code: &'static str,
}

impl Draft {
    pub fn new(kind: EventType, time: DateTime<Utc>, recipient: &str) -> Draft {
        Draft {
            kind,
            time,
            recipient: recipient.to_string(),
            sender: None,
            identity: SendingIdentity::default(),
            mx_host: None,
            mx_ip: None,
            response: None,
            code: None,
            enhanced: None,
            stage: None,
            attempt: None,
            message_id: None,
        }
    }

    /// Validates like the native adapter does, parses the reply, classifies, and keys the
    /// event on its content so that a re-sent or re-imported record is the same event.
    pub fn finish(self, raw: &str, names: &FieldNames, ctx: &Context<'_>) -> Parsed {
        self.finish_with(raw, names, ctx, None)
    }

    /// [`Self::finish`], reading the reply through `memo` when given.
    pub fn finish_with(
        self,
        raw: &str,
        names: &FieldNames,
        ctx: &Context<'_>,
        memo: Option<&mut ReplyMemo>,
    ) -> Parsed {
        match self.build(raw, names, ctx, memo) {
            Ok(ev) => Parsed::Event(ev),
            Err(rejection) => Parsed::Rejected {
                rejection,
                raw: raw.to_string(),
            },
        }
    }

    fn build(
        self,
        raw: &str,
        names: &FieldNames,
        ctx: &Context<'_>,
        memo: Option<&mut ReplyMemo>,
    ) -> Result<NewEvent, Rejection> {
        if self.time > ctx.now + ctx.max_future_skew {
            return Err(reject(
                names.time,
                format!(
                    "{} is more than {} ahead of the server clock",
                    self.time.to_rfc3339(),
                    crate::incidents::engine::human(ctx.max_future_skew)
                ),
            ));
        }
        let stripped = clean_text(&self.recipient, names.recipient, MAX_FIELD_BYTES)?
            .ok_or_else(|| reject(names.recipient, "required: the recipient address"))?;
        let stripped = strip_angles(stripped);
        let (local, domain) = stripped
            .rsplit_once('@')
            .filter(|(l, _)| !l.is_empty())
            .ok_or_else(|| {
                reject(
                    names.recipient,
                    format!("{stripped:?} is not an email address"),
                )
            })?;
        let recipient_domain = host_name(domain, names.recipient)?;
        // The drafted address is usually already what is stored: keep it rather than copy.
        let recipient = if stripped.len() == self.recipient.len() && domain == recipient_domain {
            self.recipient
        } else {
            let mut r = String::with_capacity(local.len() + 1 + recipient_domain.len());
            r.push_str(local);
            r.push('@');
            r.push_str(&recipient_domain);
            r
        };
        let sender = match self.sender {
            Some(s) => {
                let keep = match clean_text(&s, names.sender, MAX_FIELD_BYTES)?.map(strip_angles) {
                    None | Some("") => None,
                    Some(t) if t.len() == s.len() => Some(None),
                    Some(t) => Some(Some(t.to_string())),
                };
                keep.map(|t| t.unwrap_or(s))
            }
            None => None,
        };
        let mx_host = match &self.mx_host {
            Some(h) => clean_text(h, names.mx_host, 255)?
                .map(|h| host_name(h, names.mx_host))
                .transpose()?,
            None => None,
        };
        let mx_ip = self.mx_ip.map(|a| ip_owned(a, names.mx_ip)).transpose()?;
        let response = match self.response {
            Some(r) => clean_owned(r, names.response, MAX_RESPONSE_BYTES)?,
            None => None,
        };
        let code = self
            .code
            .map(|c| {
                if (200..600).contains(&c) {
                    Ok(c)
                } else {
                    Err(reject(
                        names.code,
                        format!("{c} is not an SMTP reply code (200-599)"),
                    ))
                }
            })
            .transpose()?;
        if self.kind != EventType::Delivered && response.is_none() && code.is_none() {
            return Err(reject(
                names.response,
                format!(
                    "a {} event needs the SMTP response (or at least its code)",
                    self.kind
                ),
            ));
        }
        let given = Given {
            code,
            enhanced: self.enhanced,
            stage: self.stage.filter(|s| *s != Stage::Unknown),
            mx_host,
            classify: self.kind != EventType::Delivered,
        };
        let reading = match (response.as_deref(), memo) {
            (Some(text), Some(memo)) => memo.read(text, given, ctx),
            (response, _) => read_reply(response, given, ctx),
        };
        let Reading {
            code,
            enhanced,
            stage,
            mx_host,
            reply_ip,
            classification,
        } = reading;
        let mx_ip = mx_ip.or(reply_ip);
        let destination = destination(mx_host.as_deref(), &recipient_domain);
        let raw = raw.trim_end_matches(['\r', '\n']);
        // Log records carry no event id: the content is the key, so a re-read line
        // (a restart, an overlapping import) maps to the same event.
        let dedupe_key =
            super::json::dedupe_key(ctx.source_id, None, raw, self.kind, self.time, &recipient);
        let helo = self
            .identity
            .helo
            .and_then(|h| clean_owned(h, "helo", 255).ok().flatten());
        let message_id = match self.message_id {
            Some(m) => clean_owned(m, "message_id", MAX_FIELD_BYTES)?,
            None => None,
        };
        Ok(NewEvent {
            source_id: ctx.source_id,
            ext_id: None,
            dedupe_key,
            kind: self.kind,
            time: self.time,
            received_at: ctx.now,
            recipient,
            recipient_domain,
            sender,
            source_ip: self.identity.ip.map(|a| a.to_string()),
            helo,
            mx_host,
            mx_ip,
            destination,
            response,
            code,
            enhanced: enhanced.map(enhanced_text),
            stage,
            classification,
            attempt: self.attempt,
            pool: self.identity.pool,
            message_id,
            dkim_selector: None,
            raw: raw.to_string(),
        })
    }
}

/// What an event states about its reply besides the text: these win over what the text
/// suggests.
#[derive(Clone, PartialEq, Eq)]
struct Given {
    code: Option<u16>,
    enhanced: Option<EnhancedCode>,
    /// `None` for unknown.
    stage: Option<Stage>,
    mx_host: Option<String>,
    /// Delivered events are not classified.
    classify: bool,
}

/// What the reply text and the stated fields come to.
#[derive(Clone)]
struct Reading {
    code: Option<u16>,
    enhanced: Option<EnhancedCode>,
    stage: Stage,
    /// The stated MX host, else the one the reply names.
    mx_host: Option<String>,
    /// The address the reply names, for an event that states none.
    reply_ip: Option<String>,
    classification: Option<Classification>,
}

fn read_reply(response: Option<&str>, given: Given, ctx: &Context<'_>) -> Reading {
    let mut reply = response.map(parse_reply);
    let code = given.code.or(reply.as_ref().and_then(|r| r.code));
    let enhanced = given.enhanced.or(reply.as_ref().and_then(|r| r.enhanced));
    let stage = given
        .stage
        .or(reply.as_ref().map(|r| r.stage))
        .unwrap_or(Stage::Unknown);
    let mx_host = given.mx_host.or_else(|| {
        reply
            .as_ref()
            .and_then(|r| r.remote_host.as_deref())
            .and_then(|h| host_name(h, "mx_host").ok())
    });
    // Classification does not read the address, so it can be taken from the reply.
    let reply_ip = reply
        .as_mut()
        .and_then(|r| r.remote_ip.take())
        .and_then(|a| {
            if a.parse::<Ipv4Addr>().is_ok() {
                // Already canonical (leading zeros are refused).
                Some(a)
            } else {
                a.parse::<IpAddr>().ok().map(|a| a.to_string())
            }
        });
    let classification = given.classify.then(|| {
        classify_parsed(
            ctx.classifier,
            reply,
            code,
            enhanced,
            stage,
            mx_host.as_deref(),
        )
    });
    Reading {
        code,
        enhanced,
        stage,
        mx_host,
        reply_ip,
        classification,
    }
}

/// Slots in a [`ReplyMemo`]: a few thousand distinct replies (per MX host and wording)
/// cover what repeats in a log; the unique ones (Gmail's and Microsoft's carry a
/// transaction id) would not stay anyway.
pub const REPLY_MEMO_SLOTS: usize = 4096;

/// One line parser's memory of the replies it read recently and what they came to:
/// parsing and classifying a reply costs microseconds, and a log repeats most of its
/// connect timeouts, throttling notices and greylisting replies. Direct-mapped (a reply
/// can only be in the slot its hash picks), so a lookup is one comparison whatever the
/// input, and a reply is only kept the second time it is seen, so that the unique ones
/// cost a hash and no copies. Valid for one classifier build; another empties it.
pub struct ReplyMemo {
    classifier: Option<u64>,
    slots: Vec<Option<Box<MemoEntry>>>,
    /// Hashes of replies seen once, by the same slot index.
    seen: Vec<u64>,
}

struct MemoEntry {
    hash: u64,
    text: String,
    given: Given,
    reading: Reading,
}

impl Default for ReplyMemo {
    fn default() -> Self {
        ReplyMemo::new()
    }
}

impl ReplyMemo {
    pub fn new() -> ReplyMemo {
        ReplyMemo {
            classifier: None,
            slots: std::iter::repeat_with(|| None)
                .take(REPLY_MEMO_SLOTS)
                .collect(),
            seen: vec![0; REPLY_MEMO_SLOTS],
        }
    }

    fn read(&mut self, text: &str, given: Given, ctx: &Context<'_>) -> Reading {
        let build = ctx.classifier.build_id();
        if self.classifier != Some(build) {
            self.slots.iter_mut().for_each(|s| *s = None);
            self.seen.iter_mut().for_each(|h| *h = 0);
            self.classifier = Some(build);
        }
        let hash = memo_hash(text, &given);
        // The low bits pick the slot; the table length is a power of two.
        let i = (hash as usize) & (REPLY_MEMO_SLOTS - 1);
        let (Some(slot), Some(seen)) = (self.slots.get_mut(i), self.seen.get_mut(i)) else {
            return read_reply(Some(text), given, ctx);
        };
        if let Some(e) = slot
            && e.hash == hash
            && e.text == text
            && e.given == given
        {
            return e.reading.clone();
        }
        if *seen != hash {
            *seen = hash;
            return read_reply(Some(text), given, ctx);
        }
        let reading = read_reply(Some(text), given.clone(), ctx);
        *slot = Some(Box::new(MemoEntry {
            hash,
            text: text.to_string(),
            given,
            reading: reading.clone(),
        }));
        reading
    }
}

/// A 64-bit hash of the memo key, a word at a time (the multiply-rotate scheme of rustc's
/// FxHash; no hashing crate is a dependency, and std's SipHash costs several times as
/// much on reply-sized keys). It need not resist crafted collisions: a colliding reply
/// only takes a slot from another, a lookup never compares more than one entry.
fn memo_hash(text: &str, given: &Given) -> u64 {
    const K: u64 = 0xf135_7aea_2e62_a9c5;
    let mut h: u64 = text.len() as u64;
    let mut mix = |w: u64| h = (h.rotate_left(26) ^ w).wrapping_mul(K);
    let bytes = text.as_bytes();
    let mut chunks = bytes.chunks_exact(8);
    for c in &mut chunks {
        let mut w = [0u8; 8];
        w.copy_from_slice(c);
        mix(u64::from_le_bytes(w));
    }
    let mut tail = [0u8; 8];
    tail[..chunks.remainder().len()].copy_from_slice(chunks.remainder());
    mix(u64::from_le_bytes(tail));
    mix(u64::from(given.code.unwrap_or(0)));
    if let Some(e) = given.enhanced {
        mix((u64::from(e.class) << 32) | (u64::from(e.subject) << 16) | u64::from(e.detail));
    }
    mix(given.stage.map_or(0, |s| s as u64 + 1) | (u64::from(given.classify) << 8));
    if let Some(m) = &given.mx_host {
        for b in m.as_bytes().chunks(8) {
            let mut w = [0u8; 8];
            w[..b.len()].copy_from_slice(b);
            mix(u64::from_le_bytes(w));
        }
    }
    // The final multiply leaves the low bits, which pick the slot, the weakest.
    h ^ (h >> 29)
}

fn strip_angles(s: &str) -> &str {
    s.trim().trim_start_matches('<').trim_end_matches('>')
}

fn clean_text<'a>(s: &'a str, field: &str, max: usize) -> Result<Option<&'a str>, Rejection> {
    match s.trim() {
        "" => Ok(None),
        s if s.len() > max => Err(reject(field, format!("longer than {max} bytes"))),
        // PostgreSQL text cannot hold NUL, and no MTA field legitimately carries one.
        s if s.contains('\0') => Err(reject(field, "contains a NUL character")),
        s => Ok(Some(s)),
    }
}

/// An IP address as MTAs write it: bare, in brackets, `IPv6:`-prefixed, or with a port
/// (`192.0.2.1:25`, `[2001:db8::1]:25`).
pub(crate) fn parse_ip(s: &str) -> Option<IpAddr> {
    let s = s.trim();
    if let Ok(a) = s.parse::<std::net::SocketAddr>() {
        return Some(a.ip());
    }
    let bare = s.trim_start_matches('[').trim_end_matches(']');
    let bare = bare.strip_prefix("IPv6:").unwrap_or(bare);
    bare.parse::<IpAddr>().ok()
}

/// `class.subject.detail`, as `EnhancedCode`'s `Display` writes it, pushed digit by digit:
/// the formatting machinery costs several times as much, once per event.
fn enhanced_text(e: EnhancedCode) -> String {
    fn push_number(out: &mut String, n: u16) {
        let mut digits = [0u8; 5];
        let mut i = digits.len();
        let mut n = n;
        loop {
            i -= 1;
            digits[i] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 || i == 0 {
                break;
            }
        }
        digits[i..].iter().for_each(|&d| out.push(char::from(d)));
    }
    let mut out = String::with_capacity(11);
    push_number(&mut out, u16::from(e.class));
    out.push('.');
    push_number(&mut out, e.subject);
    out.push('.');
    push_number(&mut out, e.detail);
    out
}

/// [`clean_text`] of an owned string, kept as it is when nothing needs trimming.
fn clean_owned(s: String, field: &str, max: usize) -> Result<Option<String>, Rejection> {
    let trimmed = match clean_text(&s, field, max)? {
        None => return Ok(None),
        Some(t) if t.len() == s.len() => None,
        Some(t) => Some(t.to_string()),
    };
    Ok(Some(trimmed.unwrap_or(s)))
}

/// [`ip_text`] of an owned string, kept when it is a bare IPv4 address already.
fn ip_owned(s: String, field: &str) -> Result<String, Rejection> {
    if s.parse::<Ipv4Addr>().is_ok() {
        return Ok(s);
    }
    ip_text(&s, field)
}

fn ip_text(s: &str, field: &str) -> Result<String, Rejection> {
    // A bare IPv4 address is already in its canonical form when it parses (leading
    // zeros are refused): no need to print it again.
    let t = s.trim();
    if t.parse::<Ipv4Addr>().is_ok() {
        return Ok(t.to_string());
    }
    parse_ip(s)
        .map(|a| a.to_string())
        .ok_or_else(|| reject(field, format!("{s:?} is not an IP address")))
}

/// A map with a fixed capacity that forgets its oldest entries first, so that a parser fed
/// an endless log keeps bounded memory (a queue id whose `removed` line never came, a
/// process that died mid-delivery).
pub(crate) struct Bounded<K, V> {
    map: HashMap<K, (u64, V)>,
    order: VecDeque<(K, u64)>,
    cap: usize,
    seq: u64,
}

impl<K: Hash + Eq + Clone, V> Bounded<K, V> {
    pub fn new(cap: usize) -> Self {
        Bounded {
            map: HashMap::new(),
            order: VecDeque::new(),
            cap: cap.max(1),
            seq: 0,
        }
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn get<Q: Hash + Eq + ?Sized>(&self, k: &Q) -> Option<&V>
    where
        K: Borrow<Q>,
    {
        self.map.get(k).map(|(_, v)| v)
    }

    pub fn keys(&self) -> Vec<K> {
        self.map.keys().cloned().collect()
    }

    pub fn remove<Q: Hash + Eq + ?Sized>(&mut self, k: &Q) -> Option<V>
    where
        K: Borrow<Q>,
    {
        self.map.remove(k).map(|(_, v)| v)
    }

    /// The entry for `k`, created with `make` when absent; returns what was evicted.
    pub fn entry_or_insert(&mut self, k: K, make: impl FnOnce() -> V) -> (&mut V, Vec<V>) {
        let mut evicted = Vec::new();
        if !self.map.contains_key(&k) {
            while self.map.len() >= self.cap {
                match self.order.pop_front() {
                    Some((old, seq)) => {
                        if self.map.get(&old).is_some_and(|(s, _)| *s == seq)
                            && let Some((_, v)) = self.map.remove(&old)
                        {
                            evicted.push(v);
                        }
                    }
                    None => break,
                }
            }
            // Removed keys leave stale order entries behind; drop them once they
            // outnumber the live ones so the queue stays proportional to the map.
            if self.order.len() >= 2 * self.cap {
                let map = &self.map;
                self.order
                    .retain(|(key, seq)| map.get(key).is_some_and(|(s, _)| s == seq));
            }
            self.seq += 1;
            self.order.push_back((k.clone(), self.seq));
        }
        let seq = self.seq;
        let v = &mut self.map.entry(k).or_insert_with(|| (seq, make())).1;
        (v, evicted)
    }
}

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// Parses a traditional syslog timestamp (`Nov 23 04:49:52`, `Nov  3 04:49:52.123456`) at
/// the start of `s`; returns the time and the rest after the timestamp. The year is not
/// logged: it is the year of `now`, or the year before when that would put the line more
/// than a day ahead (a December line read in January). A line slightly ahead is kept in
/// this year, so that clock or time-zone trouble shows as a future-time rejection instead
/// of silently dating the line a year back.
pub(crate) fn syslog_time(
    s: &str,
    now: DateTime<Utc>,
    offset: FixedOffset,
) -> Option<(DateTime<Utc>, &str)> {
    let month = MONTHS.iter().position(|m| s.get(..3) == Some(*m))? as u32 + 1;
    let rest = s.get(3..)?.strip_prefix(' ')?;
    let rest = rest.trim_start_matches(' ');
    let day_len = rest.bytes().take_while(u8::is_ascii_digit).count();
    if day_len == 0 || day_len > 2 {
        return None;
    }
    let day: u32 = rest[..day_len].parse().ok()?;
    let rest = rest[day_len..].strip_prefix(' ')?;
    let end = rest.find(' ').unwrap_or(rest.len());
    let time = NaiveTime::parse_from_str(&rest[..end], "%H:%M:%S%.f").ok()?;
    let rest = &rest[end..];
    let local_now = now.with_timezone(&offset);
    let limit = now + TimeDelta::days(1);
    // Five years back covers a 29 February logged in the last leap year.
    for year in (local_now.year() - 5..=local_now.year()).rev() {
        let Some(date) = NaiveDate::from_ymd_opt(year, month, day) else {
            continue;
        };
        let Some(t) = offset.from_local_datetime(&date.and_time(time)).single() else {
            continue;
        };
        let t = t.with_timezone(&Utc);
        if t <= limit {
            return Some((t, rest));
        }
    }
    None
}

/// [`syslog_time`] with the last timestamp remembered: a busy log writes dozens of lines
/// per second, and they share their timestamp text.
#[derive(Default)]
pub(crate) struct SyslogClock {
    text: String,
    now: Option<DateTime<Utc>>,
    offset: Option<FixedOffset>,
    time: Option<DateTime<Utc>>,
}

impl SyslogClock {
    pub fn time<'a>(
        &mut self,
        s: &'a str,
        now: DateTime<Utc>,
        offset: FixedOffset,
    ) -> Option<(DateTime<Utc>, &'a str)> {
        // The same text, ended where the earlier timestamp ended, reads the same.
        if let Some(time) = self.time
            && self.now == Some(now)
            && self.offset == Some(offset)
            && let Some(rest) = s.strip_prefix(self.text.as_str())
            && (rest.is_empty() || rest.starts_with(' '))
        {
            return Some((time, rest));
        }
        let (time, rest) = syslog_time(s, now, offset)?;
        self.text.clear();
        self.text.push_str(&s[..s.len() - rest.len()]);
        self.now = Some(now);
        self.offset = Some(offset);
        self.time = Some(time);
        Some((time, rest))
    }
}

/// An RFC 3339 timestamp token at the start of `s` (as modern syslog daemons write it).
pub(crate) fn rfc3339_time(s: &str) -> Option<(DateTime<Utc>, &str)> {
    let end = s.find(' ').unwrap_or(s.len());
    let t = DateTime::parse_from_rfc3339(&s[..end]).ok()?;
    Some((t.with_timezone(&Utc), &s[end..]))
}

#[cfg(test)]
pub(crate) mod testing {
    use super::*;
    use crate::smtp::Classifier;
    use std::sync::LazyLock;

    pub static CLASSIFIER: LazyLock<Classifier> = LazyLock::new(Classifier::builtin);

    pub fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-11-23T06:00:00Z")
            .map(|t| t.with_timezone(&Utc))
            .unwrap_or_default()
    }

    pub fn ctx() -> Context<'static> {
        Context {
            source_id: 7,
            classifier: &CLASSIFIER,
            now: now(),
            max_future_skew: TimeDelta::hours(1),
        }
    }

    pub fn events(out: &[Parsed]) -> Vec<&NewEvent> {
        out.iter()
            .filter_map(|p| match p {
                Parsed::Event(e) => Some(e),
                _ => None,
            })
            .collect()
    }

    pub fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s)
            .map(|t| t.with_timezone(&Utc))
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::testing::*;
    use super::*;
    use crate::smtp::{Cause, Classifier};

    #[test]
    fn syslog_year_comes_from_now_and_goes_back_past_the_future() {
        let utc0 = FixedOffset::east_opt(0).expect("UTC");
        let cases = [
            ("Nov 23 05:59:00 host", "2026-11-23T05:59:00Z"),
            ("Nov  3 04:49:52.123456 host", "2026-11-03T04:49:52.123456Z"),
            // Ahead by hours only: kept in this year (and then rejected as future).
            ("Nov 23 09:00:00 host", "2026-11-23T09:00:00Z"),
            ("Dec 31 23:59:59 host", "2025-12-31T23:59:59Z"),
            ("Feb 29 00:00:00 host", "2024-02-29T00:00:00Z"),
        ];
        for (line, want) in cases {
            let (t, rest) = syslog_time(line, now(), utc0).unwrap_or_else(|| panic!("{line}"));
            assert_eq!(t, utc(want), "{line}");
            assert_eq!(rest, " host");
        }
        let plus2 = FixedOffset::east_opt(7200).unwrap_or(utc0);
        let (t, _) = syslog_time("Nov 23 07:00:00 h", now(), plus2).unwrap_or_default();
        assert_eq!(t, utc("2026-11-23T05:00:00Z"));
        for bad in [
            "Foo 23 05:59:00 h",
            "Nov 123 05:59:00",
            "Nov 23 25:00:00 h",
            "Nov",
        ] {
            assert!(syslog_time(bad, now(), utc0).is_none(), "{bad}");
        }
    }

    #[test]
    fn map_prefers_transport_then_sender_domain_and_never_guesses() {
        let ip1: IpAddr = "192.0.2.1".parse().unwrap_or(IpAddr::from([0, 0, 0, 0]));
        let ip2: IpAddr = "192.0.2.2".parse().unwrap_or(IpAddr::from([0, 0, 0, 0]));
        let map: LogSourceMap = toml::from_str(
            r#"
            [transports.postfix-ip2]
            ip = "192.0.2.2"
            helo = "mta2.example.com"
            [sender_domains."example.com"]
            ip = "192.0.2.1"
            helo = "mta1.example.com"
            [helo_by_ip]
            "192.0.2.9" = "mta9.example.com"
            "#,
        )
        .unwrap_or_default();
        let r = map.resolve(
            &["postfix-ip2/smtp", "postfix-ip2"],
            Some("a@example.com"),
            None,
        );
        assert_eq!(r.ip, Some(ip2));
        assert_eq!(r.helo.as_deref(), Some("mta2.example.com"));
        let r = map.resolve(
            &["postfix/smtp", "postfix"],
            Some("a@news.example.com"),
            None,
        );
        assert_eq!(r.ip, Some(ip1));
        let r = map.resolve(&["postfix/smtp", "postfix"], Some("a@other.org"), None);
        assert_eq!(r, SendingIdentity::default());
        let logged: IpAddr = "192.0.2.9".parse().unwrap_or(ip1);
        let r = map.resolve(&["postfix-ip2"], None, Some(logged));
        assert_eq!(r.ip, Some(logged));
        assert_eq!(r.helo.as_deref(), Some("mta9.example.com"));
        assert!(toml::from_str::<LogSourceMap>("[transports.x]\nip = \"nope\"").is_err());
    }

    #[test]
    fn line_parsers_read_their_fixtures_behind_the_trait() {
        use crate::ingest::{exim::EximParser, postfix::PostfixParser, powermta::PowerMtaParser};
        let inputs: [(Box<dyn LineParser>, &str, usize); 3] = [
            (
                Box::new(PostfixParser::new(LogSourceMap::default())),
                include_str!("../../tests/fixtures/postfix/session.log"),
                13,
            ),
            (
                Box::new(EximParser::new(LogSourceMap::default())),
                include_str!("../../tests/fixtures/exim/mainlog"),
                13,
            ),
            (
                Box::new(PowerMtaParser::new(LogSourceMap::default())),
                include_str!("../../tests/fixtures/powermta/acct.csv"),
                5,
            ),
        ];
        for (mut parser, text, want) in inputs {
            let mut out: Vec<Parsed> = text
                .lines()
                .flat_map(|l| parser.feed_line(l, &ctx()))
                .collect();
            out.extend(parser.finish());
            assert_eq!(events(&out).len(), want);
            assert!(
                !out.iter().any(|p| matches!(p, Parsed::Rejected { .. })),
                "{out:?}"
            );
        }
    }

    fn reading_text(r: &Reading) -> String {
        format!(
            "{:?} {:?} {:?} {:?} {:?} {:?}",
            r.code, r.enhanced, r.stage, r.mx_host, r.reply_ip, r.classification
        )
    }

    #[test]
    fn the_memo_reads_replies_as_a_fresh_parse_does() {
        let texts = [
            "connect to mx.example.net[198.51.100.7]:25: Connection timed out",
            "host mx.example.org[203.0.113.25] said: 450 4.7.1 <lee@example.org>: Recipient address rejected: Greylisted, see http://postgrey.schweikert.ch/help/example.org.html (in reply to RCPT TO command)",
            "host mta7.am0.yahoodns.net[67.195.204.72] refused to talk to me: 421 4.7.0 [TSS04] Messages from 192.0.2.1 temporarily deferred due to unexpected volume or user complaints - 4.16.55.1; see https://postmaster.yahooinc.com/error-codes",
            "250 2.0.0 Ok: queued as 9ABCDEF012",
            "delivery temporarily suspended: connect to mx.example.net[198.51.100.7]:25: Connection timed out",
        ];
        let givens = [
            Given {
                code: None,
                enhanced: None,
                stage: None,
                mx_host: None,
                classify: true,
            },
            Given {
                code: Some(451),
                enhanced: Some(EnhancedCode::new(4, 4, 1)),
                stage: Some(Stage::Rcpt),
                mx_host: Some("mx.example.net".into()),
                classify: true,
            },
            Given {
                code: None,
                enhanced: Some(EnhancedCode::new(2, 0, 0)),
                stage: None,
                mx_host: Some("gmail-smtp-in.l.google.com".into()),
                classify: false,
            },
        ];
        let mut memo = ReplyMemo::new();
        // Three rounds: the first sighting, the one that keeps the entry, a hit.
        for _ in 0..3 {
            for t in texts {
                for g in &givens {
                    let fresh = read_reply(Some(t), g.clone(), &ctx());
                    let memo = memo.read(t, g.clone(), &ctx());
                    assert_eq!(reading_text(&memo), reading_text(&fresh), "{t}");
                }
            }
        }
        assert!(memo.slots.iter().flatten().count() >= texts.len());
    }

    #[test]
    fn the_memo_follows_the_classifier_it_is_given() {
        let text = "connect to mx.example.net[198.51.100.7]:25: Connection timed out";
        let given = || Given {
            code: None,
            enhanced: None,
            stage: None,
            mx_host: None,
            classify: true,
        };
        let user = Classifier::with_user_rules(
            "[[rule]]\nid = \"local.timeouts\"\npattern = 'Connection timed out'\ncause = \"server_busy\"\nexplanation = \"ours\"\n",
            "user.toml",
        )
        .expect("user rules");
        let ctx2 = Context {
            classifier: &user,
            ..ctx()
        };
        let mut memo = ReplyMemo::new();
        let cause = |r: Reading| r.classification.map(|c| c.cause);
        for _ in 0..3 {
            assert_eq!(
                cause(memo.read(text, given(), &ctx())),
                Some(Cause::Network)
            );
        }
        for _ in 0..3 {
            assert_eq!(
                cause(memo.read(text, given(), &ctx2)),
                Some(Cause::ServerBusy)
            );
        }
        assert_eq!(
            cause(memo.read(text, given(), &ctx())),
            Some(Cause::Network)
        );
    }

    #[test]
    fn the_clock_reads_as_syslog_time_does() {
        let utc0 = FixedOffset::east_opt(0).expect("UTC");
        let plus2 = FixedOffset::east_opt(7200).expect("+2");
        let lines = [
            "Nov 23 05:59:00 host a",
            "Nov 23 05:59:00 host b",
            "Nov 23 05:59:00.5 host c",
            "Nov 23 05:59:00 host d",
            "Nov 23 05:59:001 host e",
            "Nov 23 05:59:0",
            "Nov 23 05:59:00",
            "Nov 23 05:59:01 host f",
            "Nov  3 05:59:01 host g",
            "Dec 31 23:59:59 host h",
            "Nov 23 25:00:00 host i",
        ];
        let mut clock = SyslogClock::default();
        let later = now() + TimeDelta::days(40);
        for (now, offset) in [(now(), utc0), (now(), plus2), (later, utc0)] {
            for l in lines {
                assert_eq!(
                    clock.time(l, now, offset),
                    syslog_time(l, now, offset),
                    "{l}"
                );
            }
        }
    }

    #[test]
    fn enhanced_codes_print_as_their_display() {
        for (c, s, d) in [
            (4, 7, 28),
            (5, 1, 1),
            (2, 0, 0),
            (4, 7, 650),
            (4, 999, 999),
            (5, 65535, 0),
        ] {
            let e = EnhancedCode::new(c, s, d);
            assert_eq!(enhanced_text(e), e.to_string());
        }
    }

    #[test]
    fn bounded_map_evicts_oldest_first() {
        let mut m: Bounded<u32, u32> = Bounded::new(3);
        for i in 0..3 {
            let (_, ev) = m.entry_or_insert(i, || i * 10);
            assert!(ev.is_empty());
        }
        m.remove(&1);
        let (_, ev) = m.entry_or_insert(3, || 30);
        assert!(ev.is_empty());
        let (_, ev) = m.entry_or_insert(4, || 40);
        assert_eq!(ev, vec![0]);
        assert_eq!(m.len(), 3);
        assert!(m.get(&0).is_none() && m.get(&2).is_some());
        for i in 5..1000 {
            m.entry_or_insert(i, || i);
            m.remove(&(i - 1));
        }
        assert!(m.order.len() <= 2 * m.cap + 1);
    }
}
