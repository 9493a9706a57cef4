//! Whatever a source sends, the native adapter answers with an event or a rejection
//! naming the reason; it never panics.

use chrono::TimeDelta;
use deferwatch::ingest::json::{Context, parse_batch, split_body};
use deferwatch::smtp::Classifier;
use proptest::prelude::*;

static CLASSIFIER: std::sync::LazyLock<Classifier> = std::sync::LazyLock::new(Classifier::builtin);

fn ctx() -> Context<'static> {
    Context {
        source_id: 1,
        classifier: &CLASSIFIER,
        now: "2026-11-20T12:00:00Z".parse().unwrap(),
        max_future_skew: TimeDelta::hours(1),
    }
}

fn field() -> impl Strategy<Value = serde_json::Value> {
    prop_oneof![
        Just(serde_json::Value::Null),
        any::<i64>().prop_map(serde_json::Value::from),
        any::<f64>().prop_map(serde_json::Value::from),
        ".{0,40}".prop_map(serde_json::Value::from),
        Just(serde_json::json!(["421", {"x": 1}])),
        Just(serde_json::Value::from("2026-11-20T10:00:00Z")),
        Just(serde_json::Value::from("deferred")),
        Just(serde_json::Value::from("a@b.example")),
        Just(serde_json::Value::from("421-4.7.0 x\r\n421 4.7.0 y")),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bodies_split_or_fail_cleanly(body in "(?s).{0,400}") {
        if let Ok(items) = split_body(&body, false, 10_000) {
            let (batch, rejected) = parse_batch(&items, &ctx());
            prop_assert_eq!(batch.events.len() + rejected.len(), items.len());
            prop_assert_eq!(batch.rejects.len(), rejected.len());
        }
    }

    #[test]
    fn arbitrary_field_values_are_events_or_named_rejections(
        values in proptest::collection::vec(field(), 17)
    ) {
        let names = ["id", "type", "timestamp", "recipient", "sender", "source_ip", "helo", "mx_host",
            "mx_ip", "response", "code", "enhanced", "stage", "attempt", "pool", "message_id", "extra"];
        let obj: serde_json::Map<String, serde_json::Value> =
            names.iter().map(|n| n.to_string()).zip(values).collect();
        let raw = serde_json::Value::Object(obj).to_string();
        let (batch, rejected) = parse_batch(&[raw.as_str()], &ctx());
        prop_assert_eq!(batch.events.len() + rejected.len(), 1);
        for (_, r) in rejected {
            prop_assert!(!r.reason.is_empty());
        }
    }
}
