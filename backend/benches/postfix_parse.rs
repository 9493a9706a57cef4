//! Postfix log lines parsed per second on one thread: what `deferwatch import --dry-run`
//! does with each line (header, correlation, reply parsing, classification, event
//! building), over a generated log with a real log's mix (`deferwatch::loggen`).
//!
//! Run: `cargo bench --bench postfix_parse` with, after `--`, optionally
//! `--lines N` (default 1,000,000), `--seed S`, `--runs R` (in-memory passes, default 3)
//! and `--write FILE` to keep the generated log (for `pflogsumm FILE`).
//!
//! The first pass streams the file through a `BufReader` as the import does, and its peak
//! RSS is the parser's; the next passes parse the log from memory, without the reads.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::PathBuf;
use std::time::Instant;

use chrono::{DateTime, TimeDelta, Utc};
use deferwatch::ingest::json::Context;
use deferwatch::ingest::mta::{LineParser, LogSourceMap, Parsed};
use deferwatch::ingest::postfix::PostfixParser;
use deferwatch::smtp::Classifier;

struct Args {
    lines: usize,
    seed: u64,
    runs: usize,
    write: Option<PathBuf>,
}

fn args() -> Args {
    let mut a = Args {
        lines: 1_000_000,
        seed: 42,
        runs: 3,
        write: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--lines" => a.lines = it.next().and_then(|v| v.parse().ok()).unwrap_or(a.lines),
            "--seed" => a.seed = it.next().and_then(|v| v.parse().ok()).unwrap_or(a.seed),
            "--runs" => a.runs = it.next().and_then(|v| v.parse().ok()).unwrap_or(a.runs),
            "--write" => a.write = it.next().map(PathBuf::from),
            // `cargo bench` passes `--bench`; anything else is not ours either.
            _ => {}
        }
    }
    a
}

/// A `/proc/self/status` field in kB (`VmHWM`, `VmRSS`).
fn status_kb(field: &str) -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    s.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

fn mb(kb: Option<u64>) -> String {
    kb.map_or_else(|| "?".into(), |k| format!("{:.1} MB", k as f64 / 1024.0))
}

/// Time this thread has spent on a CPU (`/proc/thread-self/schedstat`), so that a run on
/// a machine shared with other work can be judged by what it cost rather than by how long
/// it waited.
fn cpu_ns() -> Option<u64> {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Resets VmHWM to the current RSS (Linux ≥ 4.0), so that a pass's peak is its own.
fn reset_peak() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

#[derive(Default)]
struct Tally {
    lines: usize,
    events: BTreeMap<String, usize>,
    ignored: usize,
    rejected: usize,
    first_rejections: Vec<String>,
}

impl Tally {
    fn add(&mut self, out: impl IntoIterator<Item = Parsed>) {
        for p in out {
            match p {
                Parsed::Event(e) => *self.events.entry(e.kind.to_string()).or_default() += 1,
                Parsed::Ignored { .. } => self.ignored += 1,
                Parsed::Rejected { rejection, raw } => {
                    self.rejected += 1;
                    if self.first_rejections.len() < 5 {
                        self.first_rejections.push(format!("{rejection:?}: {raw}"));
                    }
                }
            }
        }
    }

    fn events(&self) -> usize {
        self.events.values().sum()
    }
}

fn report(name: &str, t: &Tally, secs: f64, cpu: Option<f64>) {
    let cpu = cpu.map_or_else(String::new, |c| {
        format!(
            " (on-CPU {c:.3} s = {:.0} lines/s, {:.0} events/s)",
            t.lines as f64 / c,
            t.events() as f64 / c
        )
    });
    println!(
        "{name}: {} lines in {secs:.3} s = {:.0} lines/s, {} events = {:.0} events/s{cpu}",
        t.lines,
        t.lines as f64 / secs,
        t.events(),
        t.events() as f64 / secs
    );
}

fn cpu_since(start: Option<u64>) -> Option<f64> {
    Some(cpu_ns()?.checked_sub(start?)? as f64 / 1e9)
}

fn main() {
    let a = args();
    // A fixed end keeps the log the same from run to run; the parser's clock is just past it.
    let end: DateTime<Utc> = DateTime::parse_from_rfc3339("2026-12-07T10:00:00Z")
        .map(|t| t.with_timezone(&Utc))
        .unwrap_or_default();
    let tmp = tempfile::NamedTempFile::new();
    let path = match (&a.write, &tmp) {
        (Some(p), _) => p.clone(),
        (None, Ok(t)) => t.path().to_path_buf(),
        (None, Err(e)) => {
            eprintln!("no temporary file: {e}");
            std::process::exit(1);
        }
    };

    let started = Instant::now();
    let mix = File::create(&path).and_then(|f| {
        let mut w = BufWriter::new(f);
        let mix = deferwatch::loggen::write_postfix_log(&mut w, a.lines, a.seed, end)?;
        w.flush()?;
        Ok(mix)
    });
    let mix = match mix {
        Ok(m) => m,
        Err(e) => {
            eprintln!("cannot write {}: {e}", path.display());
            std::process::exit(1);
        }
    };
    let bytes = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
    println!(
        "log: {} lines, {:.1} MB, written to {} in {:.2} s (seed {})",
        mix.lines,
        bytes as f64 / 1e6,
        path.display(),
        started.elapsed().as_secs_f64(),
        a.seed
    );
    println!(
        "mix: sent {} ({:.1}%), deferred {} ({:.1}%, {} by postfix/error), bounced {}, non-final attempts {}, expired {} ({} recipients), other {}",
        mix.sent,
        100.0 * mix.sent as f64 / mix.lines as f64,
        mix.deferred,
        100.0 * mix.deferred_share(),
        mix.suspended,
        mix.bounced,
        mix.attempts,
        mix.expired,
        mix.expired_recipients,
        mix.other
    );

    let build = Instant::now();
    let classifier = Classifier::builtin();
    println!(
        "classifier: {} rules built in {:.1} ms (not timed below)",
        classifier.rule_count(),
        build.elapsed().as_secs_f64() * 1000.0
    );
    let ctx = Context {
        source_id: 1,
        classifier: &classifier,
        now: end + TimeDelta::minutes(1),
        max_future_skew: TimeDelta::hours(1),
    };

    // Pass 1: streamed from the file, as `deferwatch import --dry-run FILE` reads it.
    let peak_reset = reset_peak();
    let rss_before = status_kb("VmRSS");
    let file = match File::open(&path) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("cannot read {}: {e}", path.display());
            std::process::exit(1);
        }
    };
    let mut reader = BufReader::with_capacity(1 << 16, file);
    let mut parser = PostfixParser::new(LogSourceMap::default());
    let mut tally = Tally::default();
    let mut line = String::new();
    let mut out = Vec::new();
    let c0 = cpu_ns();
    let t0 = Instant::now();
    loop {
        line.clear();
        match reader.read_line(&mut line) {
            Ok(0) => break,
            Ok(_) => {
                tally.lines += 1;
                parser.feed_line_into(&line, &ctx, &mut out);
                tally.add(out.drain(..));
            }
            Err(e) => {
                eprintln!("read error: {e}");
                std::process::exit(1);
            }
        }
    }
    tally.add(LineParser::finish(&mut parser));
    let secs = t0.elapsed().as_secs_f64();
    let cpu = cpu_since(c0);
    let peak = status_kb("VmHWM");
    report("streamed from the file", &tally, secs, cpu);
    println!(
        "events by type: {:?}; ignored {}; rejected {}",
        tally.events, tally.ignored, tally.rejected
    );
    println!(
        "peak RSS: {}{} (RSS before the pass {})",
        mb(peak),
        if peak_reset {
            " during the pass"
        } else {
            " of the process"
        },
        mb(rss_before)
    );
    for r in &tally.first_rejections {
        println!("  rejected: {r}");
    }
    let rejected = tally.rejected;
    drop(parser);

    // Passes 2…: the log already in memory, so only the parser is timed.
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("cannot read {}: {e}", path.display());
            std::process::exit(1);
        }
    };
    let mut best = f64::INFINITY;
    let mut best_cpu = f64::INFINITY;
    for run in 1..=a.runs {
        let mut parser = PostfixParser::new(LogSourceMap::default());
        let mut tally = Tally::default();
        let mut out = Vec::new();
        let c0 = cpu_ns();
        let t0 = Instant::now();
        for l in text.lines() {
            tally.lines += 1;
            parser.feed_line_into(l, &ctx, &mut out);
            tally.add(out.drain(..));
        }
        tally.add(LineParser::finish(&mut parser));
        let secs = t0.elapsed().as_secs_f64();
        let cpu = cpu_since(c0);
        best = best.min(secs);
        best_cpu = best_cpu.min(cpu.unwrap_or(f64::INFINITY));
        report(&format!("in memory, run {run}"), &tally, secs, cpu);
    }
    if best.is_finite() {
        println!(
            "best in memory: {:.0} lines/s ({:.2} µs per line){}",
            mix.lines as f64 / best,
            best * 1e6 / mix.lines.max(1) as f64,
            if best_cpu.is_finite() {
                format!(", on-CPU {:.0} lines/s", mix.lines as f64 / best_cpu)
            } else {
                String::new()
            }
        );
    }
    if rejected > 0 {
        eprintln!("{rejected} lines were rejected: the generator and the parser disagree");
        std::process::exit(1);
    }
}
