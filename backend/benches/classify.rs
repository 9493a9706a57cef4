//! Replies classified per second on one thread, over a mix of the corpus texts.
//! Run: `cargo bench --bench classify` (optionally `-- <seconds>`).

use std::hint::black_box;
use std::time::{Duration, Instant};

use deferwatch::smtp::Classifier;
use serde::Deserialize;

#[derive(Deserialize)]
struct Corpus {
    reply: Vec<Entry>,
}

#[derive(Deserialize)]
struct Entry {
    text: String,
    #[serde(default)]
    mx_host: Option<String>,
}

fn main() {
    let seconds: u64 = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(3);
    let corpus: Corpus = match toml::from_str(include_str!("../tests/corpus/replies.toml")) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("corpus does not parse: {e}");
            std::process::exit(1);
        }
    };
    let texts: Vec<(String, Option<String>)> = corpus
        .reply
        .into_iter()
        .map(|e| (e.text, e.mx_host))
        .collect();

    let build = Instant::now();
    let classifier = Classifier::builtin();
    let build_time = build.elapsed();

    // Warm up the regex engines' lazy caches.
    for (t, mx) in &texts {
        black_box(classifier.classify_text(t, mx.as_deref()));
    }

    let budget = Duration::from_secs(seconds);
    let start = Instant::now();
    let mut n: u64 = 0;
    while start.elapsed() < budget {
        for (t, mx) in &texts {
            black_box(classifier.classify_text(black_box(t), mx.as_deref()));
        }
        n += texts.len() as u64;
    }
    let elapsed = start.elapsed().as_secs_f64();
    println!(
        "classify: {} rules (built in {:.1} ms), {} distinct texts, {} replies in {:.2} s on one thread = {:.0} replies/s",
        classifier.rule_count(),
        build_time.as_secs_f64() * 1000.0,
        texts.len(),
        n,
        elapsed,
        n as f64 / elapsed
    );
}
