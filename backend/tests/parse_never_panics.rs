//! The parser and classifier run on every ingested event: they must not panic on any
//! input. Bounded case counts keep this to a few seconds.

use deferwatch::smtp::{Classifier, parse_reply};
use proptest::prelude::*;
use std::sync::LazyLock;

static CLASSIFIER: LazyLock<Classifier> = LazyLock::new(Classifier::builtin);

fn odd_unicode() -> impl Strategy<Value = String> {
    // Combining marks, RTL, zero-width, surrogate-adjacent and 4-byte characters mixed with
    // the bytes the parser looks for.
    let pieces = prop::sample::select(vec![
        "421",
        "4.7.0",
        "-",
        " ",
        "\n",
        "\\n",
        "\r\n",
        "said:",
        "smtp;",
        "[",
        "]",
        "(in reply to ",
        "RCPT TO command)",
        "after RCPT TO:<a@b>: ",
        "é",
        "\u{301}",
        "\u{200b}",
        "\u{202e}",
        "𝔊",
        "🦀",
        "\u{feff}",
        "5.1.1",
        "450-",
        "4.",
        "999",
        "host x[1.2.3.4]",
        "connect to ",
        "KumoMTA internal:",
        "try again in 5 minutes",
        "come back in 00:05:00",
    ]);
    prop::collection::vec(pieces, 0..64).prop_map(|v| v.concat())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, .. ProptestConfig::default() })]

    #[test]
    fn arbitrary_strings(s in any::<String>()) {
        let r = parse_reply(&s);
        let _ = CLASSIFIER.classify(&r, Some(&s));
    }

    #[test]
    fn arbitrary_bytes_lossy(b in prop::collection::vec(any::<u8>(), 0..2048)) {
        let s = String::from_utf8_lossy(&b);
        let _ = CLASSIFIER.classify_text(&s, None);
    }

    #[test]
    fn structured_noise(s in odd_unicode()) {
        let c = CLASSIFIER.classify_text(&s, Some("mx.example.net."));
        if c.code.is_some_and(|x| (500..600).contains(&x)) {
            prop_assert_eq!(c.cause, deferwatch::smtp::Cause::Permanent);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 8, .. ProptestConfig::default() })]

    #[test]
    fn long_lines(unit in "[ -~é🦀]{1,8}", n in 10_000usize..25_000) {
        // 100 KB and more: parsing is capped, so this stays fast.
        let s = format!("421-4.7.0 {}\n421 4.7.0 end", unit.repeat(n));
        let c = CLASSIFIER.classify_text(&s, None);
        prop_assert_eq!(c.code, Some(421));
    }
}

#[test]
fn pathological_inputs() {
    let cases = [
        String::new(),
        "\0".repeat(100_000),
        "4".repeat(100_000),
        "421-".repeat(30_000),
        "said: ".repeat(20_000),
        "[".repeat(50_000) + "]",
        "host a[".to_string() + &"1".repeat(100_000),
        "é".repeat(60_000),
        "4.7.".repeat(30_000),
    ];
    for s in &cases {
        let _ = CLASSIFIER.classify_text(s, Some(s));
    }
}
