//! PowerMTA accounting CSV (file or `<acct-file |program>` pipe) into events: the header
//! line names the columns (files holding several record types carry their union, so
//! fields are found by name, never by position); `t` → deferred, `d` → delivered, `b` →
//! bounced; `tq` (queue-level, no recipient), `r`, `f`, `rb`, `rs` are ignored by name.
//!
//! Layout: PowerMTA User's Guide §11.2 accounting records (see ../shared/formats.md §4).

use super::json::Context;
use super::mta::{Draft, FieldNames, LogSourceMap, Parsed, parse_ip};
use crate::event::EventType;
use crate::smtp::EnhancedCode;
use chrono::{DateTime, NaiveDateTime, Utc};
use std::collections::HashMap;

const NAMES: FieldNames = FieldNames {
    time: "timeLogged",
    recipient: "rcpt",
    sender: "orig",
    mx_host: "dsnMta",
    mx_ip: "dlvDestinationIp",
    response: "dsnDiag",
    code: "dsnDiag",
};

/// Longest record kept while waiting for the line that closes a quoted field: real
/// records are well under a kilobyte, and a stray quote must not swallow the file.
pub const MAX_RECORD_BYTES: usize = 64 * 1024;

/// A PowerMTA accounting reader: feed it the file's lines in order, header first.
#[derive(Default)]
pub struct PowerMtaParser {
    map: LogSourceMap,
    columns: Option<HashMap<String, usize>>,
    partial: String,
}

impl PowerMtaParser {
    /// `map` supplies HELO names (by `dlvSourceIp`) and pools (by `vmta`); the sending IP
    /// itself is in every record.
    pub fn new(map: LogSourceMap) -> PowerMtaParser {
        PowerMtaParser {
            map,
            columns: None,
            partial: String::new(),
        }
    }

    /// Reads one line. A header line (first column `type`) sets the columns for the
    /// records after it, as a new file or a reopened pipe starts with one. A quoted field
    /// that spans lines is kept until the line that closes it.
    pub fn feed_line(&mut self, line: &str, ctx: &Context<'_>) -> Vec<Parsed> {
        let line = line.trim_end_matches(['\r', '\n']);
        if !self.partial.is_empty() {
            self.partial.push('\n');
        }
        self.partial.push_str(line);
        // An odd number of quotes so far: a quoted field goes on on the next line.
        if self.partial.bytes().filter(|b| *b == b'"').count() % 2 == 1 {
            if self.partial.len() > MAX_RECORD_BYTES {
                let raw = std::mem::take(&mut self.partial);
                return vec![Parsed::rejected(
                    "record",
                    format!("a quoted field is not closed within {MAX_RECORD_BYTES} bytes"),
                    &raw,
                )];
            }
            return Vec::new();
        }
        let raw = std::mem::take(&mut self.partial);
        if raw.trim().is_empty() {
            return vec![Parsed::ignored("powermta/empty line")];
        }
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .from_reader(raw.as_bytes());
        let record = match reader.records().next() {
            Some(Ok(r)) => r,
            Some(Err(e)) => {
                return vec![Parsed::rejected(
                    "record",
                    format!("not a CSV record: {e}"),
                    &raw,
                )];
            }
            None => return vec![Parsed::ignored("powermta/empty line")],
        };
        if record.get(0) == Some("type") {
            self.columns = Some(
                record
                    .iter()
                    .enumerate()
                    .map(|(i, name)| (name.trim().to_string(), i))
                    .collect(),
            );
            return vec![Parsed::ignored("powermta/header")];
        }
        let Some(columns) = &self.columns else {
            return vec![Parsed::rejected(
                "type",
                "a record came before the header line that names the fields",
                &raw,
            )];
        };
        let get = |name: &str| {
            columns
                .get(name)
                .and_then(|i| record.get(*i))
                .map(str::trim)
                .filter(|v| !v.is_empty())
        };
        let kind = match get("type") {
            Some("t") => EventType::Deferred,
            Some("d") => EventType::Delivered,
            Some("b") => EventType::Bounced,
            // Queue-level transients (no recipient), receptions, feedback loop and remote
            // bounce/status records; the name is only echoed when it is one PowerMTA
            // defines, so the counters cannot grow with arbitrary input.
            Some(other @ ("tq" | "r" | "f" | "rb" | "rs")) => {
                return vec![Parsed::ignored(format!("powermta/{other}"))];
            }
            Some(_) => return vec![Parsed::ignored("powermta/unknown type")],
            None => return vec![Parsed::rejected("type", "required: the record type", &raw)],
        };
        let Some(logged) = get("timeLogged") else {
            return vec![Parsed::rejected(
                "timeLogged",
                "required: when the record was logged",
                &raw,
            )];
        };
        let Some(time) = parse_time(logged) else {
            return vec![Parsed::rejected(
                "timeLogged",
                format!(
                    "{logged:?} is not a time such as 2019-02-08 21:53:54+0000 or Unix seconds"
                ),
                &raw,
            )];
        };
        let enhanced = match get("dsnStatus") {
            Some(s) => {
                // "4.7.0 (other or undefined security status)"
                let code = s.split_whitespace().next().unwrap_or("");
                match code.parse::<EnhancedCode>() {
                    Ok(e) => Some(e),
                    Err(_) => {
                        return vec![Parsed::rejected(
                            "dsnStatus",
                            format!("{s:?} does not start with an enhanced status code"),
                            &raw,
                        )];
                    }
                }
            }
            None => None,
        };
        let source_ip = match get("dlvSourceIp") {
            // 0.0.0.0 is PowerMTA's "no source chosen", not an address.
            Some("0.0.0.0") | None => None,
            Some(ip) => match parse_ip(ip) {
                Some(ip) => Some(ip),
                None => {
                    return vec![Parsed::rejected(
                        "dlvSourceIp",
                        format!("{ip:?} is not an IP address"),
                        &raw,
                    )];
                }
            },
        };
        // dsnMta is "host (ip)"; the destination IP column wins for the address.
        let (mta_host, mta_ip) = match get("dsnMta") {
            Some(m) => match m.split_once(" (") {
                Some((h, ip)) => (Some(h.trim()), Some(ip.trim_end_matches(')').trim())),
                None => (Some(m), None),
            },
            None => (None, None),
        };
        let mx_ip = get("dlvDestinationIp")
            .filter(|ip| *ip != "0.0.0.0")
            .or(mta_ip.filter(|ip| !ip.is_empty()));
        let vmta = get("vmta").unwrap_or("");
        let sender = get("orig");
        let mut identity = self.map.resolve(&[vmta], sender, source_ip);
        if let Some(pool) = get("vmtaPool").or(Some(vmta).filter(|v| !v.is_empty())) {
            identity.pool = Some(pool.to_string());
        }
        let mut e = Draft::new(kind, time, get("rcpt").unwrap_or(""));
        e.sender = sender.map(str::to_string);
        e.identity = identity;
        e.mx_host = mta_host.map(str::to_string);
        e.mx_ip = mx_ip.map(str::to_string);
        e.response = get("dsnDiag").map(str::to_string);
        e.enhanced = enhanced;
        e.message_id = get("header_Message-Id")
            .or(get("header_Message-ID"))
            .map(|m| m.trim_start_matches('<').trim_end_matches('>').to_string());
        vec![e.finish(&raw, &NAMES, ctx)]
    }
}

/// `iso-times yes`: `2019-02-08 21:53:54+0000`; `no`: Unix seconds; the guide's prose
/// also shows `MM/DD/YYYY HH:MM:SS+offset`.
fn parse_time(s: &str) -> Option<DateTime<Utc>> {
    if s.bytes().all(|b| b.is_ascii_digit()) {
        return DateTime::from_timestamp(s.parse().ok()?, 0);
    }
    for fmt in ["%Y-%m-%d %H:%M:%S%z", "%m/%d/%Y %H:%M:%S%z"] {
        if let Ok(t) = DateTime::parse_from_str(s, fmt) {
            return Some(t.with_timezone(&Utc));
        }
    }
    NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S")
        .ok()
        .map(|t| t.and_utc())
}

impl super::mta::LineParser for PowerMtaParser {
    fn feed_line(&mut self, line: &str, ctx: &Context<'_>) -> Vec<Parsed> {
        PowerMtaParser::feed_line(self, line, ctx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::mta::testing::*;
    use crate::smtp::{Cause, Origin};

    const ACCT: &str = include_str!("../../tests/fixtures/powermta/acct.csv");

    fn replay(text: &str) -> Vec<Parsed> {
        let map: LogSourceMap =
            toml::from_str("[helo_by_ip]\n\"10.59.14.69\" = \"mta21.bar.com\"").expect("map");
        let mut p = PowerMtaParser::new(map);
        text.lines().flat_map(|l| p.feed_line(l, &ctx())).collect()
    }

    fn summary(out: &[Parsed]) -> Vec<String> {
        out.iter()
            .map(|p| match p {
                Parsed::Event(e) => format!("{}:{}", e.kind, e.recipient),
                Parsed::Ignored { kind } => kind.clone(),
                Parsed::Rejected { rejection, .. } => {
                    format!("rejected {}", rejection.field.as_deref().unwrap_or(""))
                }
            })
            .collect()
    }

    #[test]
    fn an_accounting_file_yields_every_record_type() {
        let out = replay(ACCT);
        assert_eq!(
            summary(&out),
            [
                "powermta/header",
                "deferred:DA@yahoo.fr",
                "delivered:bob@example.org",
                "bounced:carol@example.net",
                "powermta/tq",
                "powermta/r",
                "deferred:dave@example.com",
                "powermta/header",
                "deferred:erin@example.com",
            ]
        );
        let evs = events(&out);
        let t = evs[0];
        assert_eq!(t.time, utc("2019-02-08T21:53:54Z"));
        assert_eq!(t.code, Some(421));
        assert_eq!(t.enhanced.as_deref(), Some("4.7.0"));
        assert_eq!(
            t.response.as_deref(),
            Some("smtp;421 4.7.0 mx002.roc2.bluetie.com Error: too many errors")
        );
        assert_eq!(t.source_ip.as_deref(), Some("10.59.14.69"));
        assert_eq!(t.helo.as_deref(), Some("mta21.bar.com"));
        assert_eq!(t.mx_host.as_deref(), Some("foo.int.bar.com"));
        assert_eq!(t.mx_ip.as_deref(), Some("10.1.2.165"));
        assert_eq!(
            t.sender.as_deref(),
            Some("DB.AD.G.AA.AB-DA=yahoo.fr@bounce.bar.com")
        );
        assert_eq!(t.pool.as_deref(), Some("vmta21"));
        assert_eq!(
            t.classification.as_ref().map(|c| c.origin),
            Some(Origin::Remote)
        );
        let d = evs[1];
        assert_eq!(d.code, Some(250));
        assert!(d.classification.is_none());
        assert_eq!(d.message_id.as_deref(), Some("m1@example.com"));
        assert_eq!(d.time, utc("2009-05-10T14:38:23Z"));
        let b = evs[2];
        assert_eq!(b.code, Some(554));
        assert_eq!(b.enhanced.as_deref(), Some("5.7.1"));
        assert_eq!(b.cause(), Some(Cause::Permanent));
        assert_eq!(b.pool.as_deref(), Some("pool-b"));
        // A quoted diagnostic with commas, a doubled quote and a line break.
        let q = evs[3];
        assert_eq!(
            q.response.as_deref(),
            Some("smtp;451 4.7.1 Greylisted, \"please\" retry\nlater, thanks")
        );
        assert_eq!(q.cause(), Some(Cause::Greylisting));
        assert_eq!(q.source_ip, None, "0.0.0.0 is no source");
        assert_eq!(q.time, utc("2019-02-08T20:53:54Z"));
        // After a second header the columns are read by the new order.
        let last = evs[4];
        assert_eq!(last.mx_ip.as_deref(), Some("192.0.2.77"));
        assert_eq!(last.code, Some(421));
    }

    #[test]
    fn malformed_records_are_rejected_naming_the_field() {
        let header =
            "type,timeLogged,orig,rcpt,dsnStatus,dsnDiag,dsnMta,dlvSourceIp,dlvDestinationIp,vmta";
        let cases = [
            (
                "t,2019-02-08 21:53:54+0000,a@b.com,c@d.com,4.7.0 (x),smtp;421 x,,,,",
                None,
                "type",
            ),
            (
                "t,yesterday,a@b.com,c@d.com,4.7.0 (x),smtp;421 x,,,,",
                Some(header),
                "timeLogged",
            ),
            (
                "t,,a@b.com,c@d.com,4.7.0 (x),smtp;421 x,,,,",
                Some(header),
                "timeLogged",
            ),
            (
                "t,1549662834,a@b.com,,4.7.0 (x),smtp;421 x,,,,",
                Some(header),
                "rcpt",
            ),
            (
                "t,1549662834,a@b.com,nobody,4.7.0 (x),smtp;421 x,,,,",
                Some(header),
                "rcpt",
            ),
            (
                "t,1549662834,a@b.com,c@d.com,delayed,smtp;421 x,,,,",
                Some(header),
                "dsnStatus",
            ),
            (
                "t,1549662834,a@b.com,c@d.com,4.7.0 (x),smtp;421 x,,10.0.0.300,,",
                Some(header),
                "dlvSourceIp",
            ),
            (
                "t,1549662834,a@b.com,c@d.com,4.7.0 (x),smtp;421 x,,,nope,",
                Some(header),
                "dlvDestinationIp",
            ),
            (
                "t,1549662834,a@b.com,c@d.com,,,,,,",
                Some(header),
                "dsnDiag",
            ),
            (",1549662834,a@b.com,c@d.com,,,,,,", Some(header), "type"),
            (
                "t,4102444800,a@b.com,c@d.com,4.7.0 (x),smtp;421 x,,,,",
                Some(header),
                "timeLogged",
            ),
        ];
        for (line, head, field) in cases {
            let mut p = PowerMtaParser::new(LogSourceMap::default());
            if let Some(h) = head {
                p.feed_line(h, &ctx());
            }
            let out = p.feed_line(line, &ctx());
            match out.as_slice() {
                [Parsed::Rejected { rejection, raw }] => {
                    assert_eq!(
                        rejection.field.as_deref(),
                        Some(field),
                        "{line}: {rejection:?}"
                    );
                    assert_eq!(raw, line);
                }
                other => panic!("{line}: {other:?}"),
            }
        }
    }

    #[test]
    fn an_unclosed_quote_is_bounded() {
        let mut p = PowerMtaParser::new(LogSourceMap::default());
        p.feed_line("type,timeLogged,rcpt,dsnDiag", &ctx());
        let mut out = p.feed_line("t,1549662834,a@b.com,\"never closed", &ctx());
        let filler = "x".repeat(1000);
        while out.is_empty() {
            out.extend(p.feed_line(&filler, &ctx()));
        }
        assert_eq!(summary(&out), ["rejected record"]);
        let Parsed::Rejected { raw, .. } = &out[0] else {
            unreachable!("checked above")
        };
        assert!(raw.len() <= MAX_RECORD_BYTES + 1001);
        let after = p.feed_line("t,1549662834,a@b.com,smtp;421 4.7.0 later", &ctx());
        assert_eq!(summary(&after), ["deferred:a@b.com"]);
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_input_never_panics(lines in proptest::collection::vec("\\PC*", 1..8)) {
            let mut p = PowerMtaParser::new(LogSourceMap::default());
            p.feed_line("type,timeLogged,orig,rcpt,dsnStatus,dsnDiag,dsnMta,dlvSourceIp,dlvDestinationIp,vmta", &ctx());
            for l in &lines {
                let _ = p.feed_line(l, &ctx());
            }
        }

        #[test]
        fn arbitrary_fields_never_panic(fields in proptest::collection::vec("[^,\"\n]{0,20}", 10)) {
            let mut p = PowerMtaParser::new(LogSourceMap::default());
            p.feed_line("type,timeLogged,orig,rcpt,dsnStatus,dsnDiag,dsnMta,dlvSourceIp,dlvDestinationIp,vmta", &ctx());
            let _ = p.feed_line(&format!("t,{}", fields[1..].join(",")), &ctx());
            let _ = p.feed_line(&fields.join(","), &ctx());
        }
    }
}
