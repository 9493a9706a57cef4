//! 1,000 IPs × the 8 default blocklist zones against a loopback DNS server,
//! with the default concurrency. Prints queries/s, total time and peak RSS.
//!
//! Run: `cargo bench --bench blocklists` (`-- --ips N --rounds R` to change
//! the size; each round uses a fresh checker, so peak RSS across rounds shows
//! whether memory stays flat).

#[path = "../tests/dns_support/dns.rs"]
mod dns;

use std::net::{IpAddr, Ipv4Addr};
use std::time::Instant;

use deferwatch::checks::names::reversed_labels;
use deferwatch::checks::{CheckConfig, Checker, Verdict};
use futures::StreamExt;

fn vm_hwm_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// 198.18.0.0/15 is reserved for benchmarking (RFC 2544).
fn bench_ip(i: usize) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(
        198,
        18 + (i >> 16) as u8,
        (i >> 8) as u8,
        i as u8,
    ))
}

fn main() {
    let n: usize = std::env::args()
        .skip_while(|a| a != "--ips")
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let rounds: usize = std::env::args()
        .skip_while(|a| a != "--rounds")
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let defaults = CheckConfig::default();
        // Every zone lists its RFC 5782 test point and every 20th IP.
        let zones: Vec<String> = defaults
            .dnsbl
            .iter()
            .map(|z| {
                let mut body = String::from("2.0.0.127 A 127.0.0.2\n");
                for i in (0..n).step_by(20) {
                    body.push_str(&format!(
                        "{} A 127.0.0.2\n{} TXT \"listed for the benchmark\"\n",
                        reversed_labels(bench_ip(i)),
                        reversed_labels(bench_ip(i))
                    ));
                }
                dns::zone(&z.zone, &body)
            })
            .collect();
        let server = dns::TestDns::start(&zones).await;
        let baseline = vm_hwm_kib();

        for round in 1..=rounds {
            // A fresh checker per round: nothing is served from the cache.
            let checker = Checker::new(CheckConfig {
                nameservers: vec![server.addr],
                ..CheckConfig::default()
            })
            .expect("checker");
            let q0 = server.queries();
            let started = Instant::now();
            let results: Vec<_> = futures::stream::iter((0..n).map(bench_ip))
                .map(|ip| {
                    let c = checker.clone();
                    async move { c.check_blocklists(ip).await }
                })
                .buffer_unordered(256)
                .collect()
                .await;
            let elapsed = started.elapsed();
            let queries = server.queries() - q0;
            let mut listed = 0;
            let mut errors = 0;
            for r in results.iter().flatten() {
                match r.verdict {
                    Verdict::Fail | Verdict::Warn => listed += 1,
                    Verdict::Error => errors += 1,
                    _ => {}
                }
            }
            println!(
                "round {round}: {n} IPs x {} zones (concurrency {}) in {:.2?}: {} queries, {:.0} queries/s, {} listed, {} errors, peak RSS {} KiB (baseline {} KiB)",
                defaults.dnsbl.len(),
                defaults.concurrency,
                elapsed,
                queries,
                queries as f64 / elapsed.as_secs_f64(),
                listed,
                errors,
                vm_hwm_kib(),
                baseline
            );
        }
    });
}
