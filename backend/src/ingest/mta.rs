//! What the MTA adapters (`kumomta`, `postfix`, `exim`, `powermta`) share: the per-record
//! outcome, the validation and classification of a drafted event (the same rules as the
//! native JSON adapter), the mapping from what a log line carries to the sending IP, and
//! the bounded correlation tables the line parsers keep.

use super::Rejection;
use super::json::{Context, classify_parsed};
use crate::event::{EventType, NewEvent};
use crate::incidents::destination;
use crate::smtp::{EnhancedCode, Stage, parse_reply};
use chrono::{DateTime, Datelike, FixedOffset, NaiveDate, NaiveTime, TimeDelta, TimeZone, Utc};
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::hash::Hash;
use std::net::IpAddr;

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
        match self.build(raw, names, ctx) {
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
        let recipient = clean_text(&self.recipient, names.recipient, MAX_FIELD_BYTES)?
            .ok_or_else(|| reject(names.recipient, "required: the recipient address"))?;
        let recipient = strip_angles(recipient);
        let (local, domain) = recipient
            .rsplit_once('@')
            .filter(|(l, _)| !l.is_empty())
            .ok_or_else(|| {
                reject(
                    names.recipient,
                    format!("{recipient:?} is not an email address"),
                )
            })?;
        let recipient_domain = host_name(domain, names.recipient)?;
        let recipient = format!("{local}@{recipient_domain}");
        let sender = match &self.sender {
            Some(s) => clean_text(s, names.sender, MAX_FIELD_BYTES)?
                .map(strip_angles)
                .filter(|s| !s.is_empty())
                .map(str::to_string),
            None => None,
        };
        let mut mx_host = match &self.mx_host {
            Some(h) => clean_text(h, names.mx_host, 255)?
                .map(|h| host_name(h, names.mx_host))
                .transpose()?,
            None => None,
        };
        let mut mx_ip = self
            .mx_ip
            .as_deref()
            .map(|a| ip_text(a, names.mx_ip))
            .transpose()?;
        let response = match &self.response {
            Some(r) => clean_text(r, names.response, MAX_RESPONSE_BYTES)?,
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
        let reply = response.map(parse_reply);
        let code = code.or(reply.as_ref().and_then(|r| r.code));
        let enhanced = self.enhanced.or(reply.as_ref().and_then(|r| r.enhanced));
        let stage = self
            .stage
            .filter(|s| *s != Stage::Unknown)
            .or(reply.as_ref().map(|r| r.stage))
            .unwrap_or(Stage::Unknown);
        if mx_host.is_none() {
            mx_host = reply
                .as_ref()
                .and_then(|r| r.remote_host.as_deref())
                .and_then(|h| host_name(h, names.mx_host).ok());
        }
        if mx_ip.is_none() {
            mx_ip = reply
                .as_ref()
                .and_then(|r| r.remote_ip.as_deref())
                .and_then(|a| a.parse::<IpAddr>().ok())
                .map(|a| a.to_string());
        }
        let classification = (self.kind != EventType::Delivered).then(|| {
            classify_parsed(
                ctx.classifier,
                reply,
                code,
                enhanced,
                stage,
                mx_host.as_deref(),
            )
        });
        let destination = destination(mx_host.as_deref(), &recipient_domain);
        let raw = raw.trim_end_matches(['\r', '\n']);
        // Log records carry no event id: the content is the key, so a re-read line
        // (a restart, an overlapping import) maps to the same event.
        let dedupe_key =
            super::json::dedupe_key(ctx.source_id, None, raw, self.kind, self.time, &recipient);
        let helo = self
            .identity
            .helo
            .as_deref()
            .and_then(|h| clean_text(h, "helo", 255).ok().flatten())
            .map(str::to_string);
        let message_id = match &self.message_id {
            Some(m) => clean_text(m, "message_id", MAX_FIELD_BYTES)?.map(str::to_string),
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
            response: response.map(str::to_string),
            code,
            enhanced: enhanced.map(|e| e.to_string()),
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

fn ip_text(s: &str, field: &str) -> Result<String, Rejection> {
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

    pub fn get(&self, k: &K) -> Option<&V> {
        self.map.get(k).map(|(_, v)| v)
    }

    pub fn keys(&self) -> Vec<K> {
        self.map.keys().cloned().collect()
    }

    pub fn remove(&mut self, k: &K) -> Option<V> {
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
