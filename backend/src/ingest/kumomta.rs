//! KumoMTA log records (`JsonLogRecord`, as its log hook posts them or its log files hold
//! them, one JSON object each): `TransientFailure` → deferred, `Delivery` → delivered,
//! `Bounce` → bounced; every other record type is ignored by name.
//!
//! Layout: KumoCorp/kumomta docs/reference/log_record.md and crates/kumo-log-types
//! (see ../shared/formats.md §1).

use super::json::Context;
use super::mta::{Draft, FieldNames, LogSourceMap, Parsed, parse_ip};
use crate::event::EventType;
use crate::smtp::{EnhancedCode, Stage};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use std::borrow::Cow;
use std::collections::BTreeMap;

const NAMES: FieldNames = FieldNames {
    time: "timestamp",
    recipient: "recipient",
    sender: "sender",
    mx_host: "peer_address.name",
    mx_ip: "peer_address.addr",
    response: "response",
    code: "response.code",
};

#[derive(Deserialize)]
#[serde(untagged)]
enum Recipients<'a> {
    #[serde(borrow)]
    One(Cow<'a, str>),
    // Multi-recipient batches (KumoMTA 2025.12.02 and later) log an array.
    Many(Vec<Cow<'a, str>>),
}

#[derive(Deserialize)]
struct Enhanced {
    class: u8,
    subject: u16,
    detail: u16,
}

#[derive(Deserialize)]
struct Response<'a> {
    code: u16,
    #[serde(default)]
    enhanced_code: Option<Enhanced>,
    #[serde(borrow, default)]
    content: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    command: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct Peer<'a> {
    #[serde(borrow, default)]
    name: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    addr: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct SourceAddress<'a> {
    #[serde(borrow, default)]
    address: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct Record<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    #[serde(borrow, default)]
    sender: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    recipient: Option<Recipients<'a>>,
    #[serde(borrow, default)]
    response: Option<Response<'a>>,
    #[serde(borrow, default)]
    peer_address: Option<Peer<'a>>,
    #[serde(default)]
    timestamp: Option<i64>,
    #[serde(borrow, default)]
    event_time: Option<Cow<'a, str>>,
    #[serde(default)]
    num_attempts: Option<u32>,
    #[serde(borrow, default)]
    egress_pool: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    egress_source: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    source_address: Option<SourceAddress<'a>>,
    /// Only the headers the logger was configured to capture; Message-ID when it was.
    #[serde(default)]
    headers: Option<BTreeMap<String, serde_json::Value>>,
}

/// Turns one log record (the JSON text of one object) into one outcome per recipient.
pub fn parse_record(raw: &str, ctx: &Context<'_>, map: &LogSourceMap) -> Vec<Parsed> {
    let mut de = serde_json::Deserializer::from_str(raw);
    let rec: Record<'_> = match serde_path_to_error::deserialize(&mut de) {
        Ok(r) => r,
        Err(e) => {
            let path = e.path().to_string();
            let inner = e.into_inner();
            let field = if inner.is_syntax()
                || inner.is_eof()
                || path == "."
                || path.is_empty()
                || path.starts_with('[')
            {
                "record"
            } else {
                path.as_str()
            };
            return vec![Parsed::rejected(
                field,
                format!("not a KumoMTA log record: {inner}"),
                raw,
            )];
        }
    };
    let kind = match rec.kind.as_ref() {
        "TransientFailure" => EventType::Deferred,
        "Delivery" => EventType::Delivered,
        "Bounce" => EventType::Bounced,
        // Reception, Expiration, AdminBounce, OOB, Feedback, Rejection, Delayed, XferIn …
        // and any type a later KumoMTA adds: counted, never an error the hook retries.
        // The name is echoed only when KumoMTA defines it, so that the counters cannot
        // grow with arbitrary input.
        other @ ("Reception"
        | "Expiration"
        | "AdminBounce"
        | "OOB"
        | "Feedback"
        | "Rejection"
        | "AdminRebind"
        | "DeferredInjectionRebind"
        | "Delayed"
        | "XferOut"
        | "XferIn") => return vec![Parsed::ignored(format!("kumomta/{other}"))],
        _ => return vec![Parsed::ignored("kumomta/unknown type")],
    };
    let time = match (&rec.event_time, rec.timestamp) {
        (Some(t), _) => match DateTime::parse_from_rfc3339(t) {
            Ok(t) => t.with_timezone(&Utc),
            Err(e) => {
                return vec![Parsed::rejected(
                    "event_time",
                    format!("{t:?} is not an RFC 3339 time: {e}"),
                    raw,
                )];
            }
        },
        (None, Some(ts)) => match DateTime::from_timestamp(ts, 0) {
            Some(t) => t,
            None => {
                return vec![Parsed::rejected(
                    "timestamp",
                    format!("{ts} is not a Unix time"),
                    raw,
                )];
            }
        },
        (None, None) => {
            return vec![Parsed::rejected(
                "timestamp",
                "required: the record's timestamp or event_time",
                raw,
            )];
        }
    };
    let recipients: Vec<&str> = match &rec.recipient {
        Some(Recipients::One(r)) => vec![r.as_ref()],
        Some(Recipients::Many(rs)) => rs.iter().map(AsRef::as_ref).collect(),
        None => Vec::new(),
    };
    if recipients.is_empty() {
        return vec![Parsed::rejected(
            "recipient",
            "required: the recipient address",
            raw,
        )];
    }
    let logged_ip = rec
        .source_address
        .as_ref()
        .and_then(|s| s.address.as_deref())
        .and_then(parse_ip);
    let source = rec.egress_source.as_deref().unwrap_or("");
    let mut identity = map.resolve(&[source], rec.sender.as_deref(), logged_ip);
    if let Some(pool) = rec.egress_pool.as_deref().filter(|p| !p.is_empty()) {
        identity.pool = Some(pool.to_string());
    }
    let (response, code, enhanced, stage) = match &rec.response {
        Some(r) => {
            let enhanced = r
                .enhanced_code
                .as_ref()
                .map(|e| EnhancedCode::new(e.class, e.subject, e.detail));
            // The record splits the reply; put it back together as the receiver sent it
            // so the evidence and the classifier see one reply.
            let mut text = r.code.to_string();
            if let Some(e) = enhanced {
                text.push(' ');
                text.push_str(&e.to_string());
            }
            if let Some(c) = r.content.as_deref().filter(|c| !c.is_empty()) {
                text.push(' ');
                text.push_str(c);
            }
            // Internal failures carry no command: the reply text decides the stage.
            let stage = r.command.as_deref().and_then(|c| c.parse::<Stage>().ok());
            (Some(text), Some(r.code), enhanced, stage)
        }
        None => (None, None, None, None),
    };
    let message_id = rec.headers.as_ref().and_then(|h| {
        h.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("message-id"))
            .and_then(|(_, v)| v.as_str())
            .map(|v| {
                v.trim()
                    .trim_start_matches('<')
                    .trim_end_matches('>')
                    .to_string()
            })
    });
    let peer = rec.peer_address.as_ref();
    recipients
        .into_iter()
        .map(|rcpt| {
            let mut d = Draft::new(kind, time, rcpt);
            d.sender = rec.sender.as_deref().map(str::to_string);
            d.identity = identity.clone();
            d.mx_host = peer.and_then(|p| p.name.as_deref()).map(str::to_string);
            d.mx_ip = peer.and_then(|p| p.addr.as_deref()).map(str::to_string);
            d.response = response.clone();
            d.code = code;
            d.enhanced = enhanced;
            d.stage = stage;
            d.attempt = rec.num_attempts.and_then(|n| i32::try_from(n).ok());
            d.message_id = message_id.clone();
            d.finish(raw, &NAMES, ctx)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::mta::testing::*;
    use crate::smtp::{Cause, Origin};

    const FIXTURES: &str = include_str!("../../tests/fixtures/kumomta/records.ndjson");

    fn fixture(kind: &str) -> &'static str {
        FIXTURES
            .lines()
            .find(|l| l.contains(&format!("\"type\":\"{kind}\"")))
            .unwrap_or_else(|| panic!("no {kind} fixture"))
    }

    #[test]
    fn transient_failure_is_a_deferral_with_every_field() {
        let map: LogSourceMap =
            toml::from_str("[helo_by_ip]\n\"10.0.0.1\" = \"mta1.example.com\"").expect("map");
        let out = parse_record(fixture("TransientFailure"), &ctx(), &map);
        let ev = events(&out);
        assert_eq!(ev.len(), 1, "{out:?}");
        let e = ev[0];
        assert_eq!(e.kind, EventType::Deferred);
        assert_eq!(e.recipient, "recipient@gmail.com");
        assert_eq!(e.sender.as_deref(), Some("sender@example.com"));
        assert_eq!(e.code, Some(421));
        assert_eq!(e.enhanced.as_deref(), Some("4.7.28"));
        assert_eq!(e.stage, Stage::EndOfData);
        assert_eq!(e.mx_host.as_deref(), Some("gmail-smtp-in.l.google.com"));
        assert_eq!(e.mx_ip.as_deref(), Some("142.250.27.26"));
        assert_eq!(e.source_ip.as_deref(), Some("10.0.0.1"));
        assert_eq!(e.helo.as_deref(), Some("mta1.example.com"));
        assert_eq!(e.pool.as_deref(), Some("pool-a"));
        assert_eq!(e.attempt, Some(3));
        assert_eq!(e.destination, "google");
        assert_eq!(e.time, utc("2026-11-23T05:10:11.123Z"));
        assert_eq!(e.message_id.as_deref(), Some("abc@example.com"));
        assert_eq!(e.cause(), Some(Cause::RateLimit));
        assert!(
            e.response
                .as_deref()
                .is_some_and(|r| r.starts_with("421 4.7.28 "))
        );
        assert_eq!(e.raw, fixture("TransientFailure"));
    }

    #[test]
    fn every_record_type_maps_or_is_ignored_by_name() {
        let map = LogSourceMap::default();
        let mut kinds = Vec::new();
        for line in FIXTURES.lines().filter(|l| !l.trim().is_empty()) {
            for p in parse_record(line, &ctx(), &map) {
                kinds.push(match p {
                    Parsed::Event(e) => format!("{}:{}", e.kind, e.recipient),
                    Parsed::Ignored { kind } => kind,
                    Parsed::Rejected { rejection, .. } => format!("rejected {rejection:?}"),
                });
            }
        }
        assert_eq!(
            kinds,
            [
                "deferred:recipient@gmail.com",
                "delivered:recipient@example.org",
                "bounced:nobody@example.net",
                "deferred:a@example.com",
                "deferred:b@example.com",
                "kumomta/Reception",
                "kumomta/Expiration",
                "kumomta/Delayed",
                "kumomta/AdminBounce",
                "kumomta/unknown type",
            ]
        );
    }

    #[test]
    fn internal_failure_is_local_and_delivery_has_no_classification() {
        let map = LogSourceMap::default();
        let lines: Vec<&str> = FIXTURES.lines().collect();
        let internal = parse_record(lines[3], &ctx(), &map);
        let e = events(&internal)[0];
        assert_eq!(e.code, Some(400));
        assert_eq!(e.stage, Stage::Connect);
        assert_eq!(e.mx_ip, None);
        assert_eq!(
            e.classification.as_ref().map(|c| c.origin),
            Some(Origin::Local)
        );
        let out = parse_record(fixture("Delivery"), &ctx(), &map);
        let d = events(&out)[0];
        assert!(d.classification.is_none());
        assert_eq!(d.code, Some(250));
        assert_eq!(d.mx_ip.as_deref(), Some("203.0.113.25"));
        let bounce = parse_record(fixture("Bounce"), &ctx(), &map);
        assert_eq!(events(&bounce)[0].cause(), Some(Cause::Permanent));
        assert_eq!(events(&bounce)[0].stage, Stage::Rcpt);
    }

    #[test]
    fn malformed_records_are_rejected_naming_the_field() {
        let map = LogSourceMap::default();
        let cases = [
            ("{not json", "record"),
            ("[1,2]", "record"),
            (r#"{"type":"Delivery","recipient":"a@b.com"}"#, "timestamp"),
            (
                r#"{"type":"Delivery","timestamp":1,"recipient":5}"#,
                "recipient",
            ),
            (r#"{"type":"Delivery","timestamp":1}"#, "recipient"),
            (
                r#"{"type":"Delivery","timestamp":1,"recipient":"nobody"}"#,
                "recipient",
            ),
            (
                r#"{"type":"Bounce","timestamp":1,"recipient":"a@b.com"}"#,
                "response",
            ),
            (
                r#"{"type":"Bounce","timestamp":1,"recipient":"a@b.com","response":{"code":"x"}}"#,
                "response.code",
            ),
            (
                r#"{"type":"Bounce","timestamp":1,"recipient":"a@b.com","response":{"code":99}}"#,
                "response.code",
            ),
            (
                r#"{"type":"Delivery","event_time":"yesterday","recipient":"a@b.com"}"#,
                "event_time",
            ),
            (
                r#"{"type":"Delivery","timestamp":4102444800,"recipient":"a@b.com"}"#,
                "timestamp",
            ),
            (
                r#"{"type":"Delivery","timestamp":1,"recipient":"a@b.com","peer_address":{"name":"mx","addr":"not-ip"}}"#,
                "peer_address.addr",
            ),
        ];
        for (raw, field) in cases {
            let out = parse_record(raw, &ctx(), &map);
            match out.as_slice() {
                [Parsed::Rejected { rejection, raw: r }] => {
                    assert_eq!(rejection.field.as_deref(), Some(field), "{raw}");
                    assert_eq!(r, raw);
                }
                other => panic!("{raw}: {other:?}"),
            }
        }
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_input_never_panics(s in "\\PC*") {
            let _ = parse_record(&s, &ctx(), &LogSourceMap::default());
        }

        #[test]
        fn arbitrary_field_values_never_panic(
            kind in "(TransientFailure|Delivery|Bounce|Other)",
            rcpt in "\\PC{0,40}",
            code in 0u32..70000,
            content in "\\PC{0,80}",
            addr in "\\PC{0,30}",
        ) {
            let rec = serde_json::json!({
                "type": kind, "recipient": rcpt, "timestamp": 1_700_000_000,
                "response": {"code": code, "content": content, "command": content},
                "peer_address": {"name": addr, "addr": addr},
                "source_address": {"address": addr},
            });
            let _ = parse_record(&rec.to_string(), &ctx(), &LogSourceMap::default());
        }
    }
}
