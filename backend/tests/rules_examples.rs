//! Every built-in rule carries the text that motivated it; that text must classify to the
//! rule (or to a rule with the same cause), and a 5xx example must come out `permanent`.

use deferwatch::smtp::{Cause, Classifier, parse_reply};

#[test]
fn every_rule_example_classifies_to_its_rule() {
    let c = Classifier::builtin();
    assert!(c.rule_count() > 50, "built-in rules did not load");
    let mut failures = Vec::new();
    for rule in c.rules() {
        let source = rule.source.as_deref().unwrap_or_default();
        assert!(!source.trim().is_empty(), "rule {} has no source", rule.id);
        let Some(example) = rule.example.as_deref() else {
            panic!("rule {} has no example", rule.id);
        };
        let got = c.classify_text(example, None);
        let want = if parse_reply(example).is_permanent() {
            Cause::Permanent
        } else {
            rule.cause
        };
        let same_rule = got.rule.as_deref() == Some(rule.id.as_str());
        if got.cause != want || (!same_rule && got.cause != rule.cause && want != Cause::Permanent)
        {
            failures.push(format!(
                "{}: example {:?} -> rule {:?} cause {} (want {})",
                rule.id, example, got.rule, got.cause, want
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} rule examples misclassified:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn rule_ids_are_unique_and_causes_valid() {
    let c = Classifier::builtin();
    let mut ids = std::collections::HashSet::new();
    for r in c.rules() {
        assert!(ids.insert(r.id.clone()), "duplicate id {}", r.id);
        assert!(
            !r.explanation.trim().is_empty(),
            "rule {} has no explanation",
            r.id
        );
    }
}

#[test]
fn classifier_is_send_and_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Classifier>();
}
