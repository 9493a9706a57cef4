//! MTA-STS (RFC 8461) and TLS-RPT (RFC 8460) for a destination domain
//! (checks.md §7.3, §7.4). mail-auth does not fetch policies, so the HTTPS
//! part is done here with reqwest (rustls + ring).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use super::dns::{Dns, DnsResult};
use super::names::{self, lower_no_dot};
use super::{CheckError, CheckResult, Verdict};

/// RFC 8461 §3.2: max_age is at most 31557600 seconds (about a year).
pub const MAX_AGE_LIMIT: u64 = 31_557_600;

/// Resolve the policy host through the checker's own resolver, so the
/// configured nameservers apply to HTTPS too (and tests stay on loopback).
struct DnsForReqwest {
    dns: Dns,
    port: u16,
}

impl reqwest::dns::Resolve for DnsForReqwest {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let dns = self.dns.clone();
        let host = name.as_str().to_string();
        let port = self.port;
        Box::pin(async move {
            let (a, aaaa) = tokio::join!(dns.a(&host), dns.aaaa(&host));
            let mut addrs: Vec<SocketAddr> = Vec::new();
            for ans in [&a, &aaaa].into_iter().flatten() {
                addrs.extend(ans.ips().into_iter().map(|ip| SocketAddr::new(ip, port)));
            }
            if addrs.is_empty() {
                let why = match (&a, &aaaa) {
                    (Err(e), _) | (_, Err(e)) => format!("cannot resolve {host}: {e}"),
                    _ => format!("{host} has no address"),
                };
                return Err(why.into());
            }
            let iter: reqwest::dns::Addrs = Box::new(addrs.into_iter());
            Ok(iter)
        })
    }
}

pub fn build_client(
    dns: &Dns,
    port: u16,
    extra_root_pem: Option<&[u8]>,
    timeout: Duration,
) -> Result<reqwest::Client, CheckError> {
    let mut b = reqwest::Client::builder()
        // RFC 8461 §3.3: redirects MUST NOT be followed.
        .redirect(reqwest::redirect::Policy::none())
        .timeout(timeout)
        .https_only(true)
        .dns_resolver(Arc::new(DnsForReqwest {
            dns: dns.clone(),
            port,
        }));
    if let Some(pem) = extra_root_pem {
        for cert in reqwest::Certificate::from_pem_bundle(pem)
            .map_err(|e| CheckError::Http(format!("extra root certificate: {e}")))?
        {
            b = b.add_root_certificate(cert);
        }
    }
    b.build().map_err(|e| CheckError::Http(e.to_string()))
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Mode {
    Enforce,
    Testing,
    None,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Policy {
    pub mode: Mode,
    pub mx: Vec<String>,
    pub max_age: u64,
}

/// Parse the policy body (RFC 8461 §3.2). CRLF is specified; LF alone is
/// tolerated like checkdmarc does.
pub fn parse_policy(body: &str) -> Result<Policy, String> {
    let mut version = None;
    let mut mode = None;
    let mut mx = Vec::new();
    let mut max_age = None;
    for line in body.lines() {
        let line = line.trim_end_matches('\r').trim();
        if line.is_empty() {
            continue;
        }
        let (k, v) = line
            .split_once(':')
            .ok_or_else(|| format!("line {line:?} is not key: value"))?;
        let (k, v) = (k.trim(), v.trim());
        match k {
            "version" if version.replace(v.to_string()).is_some() => {
                return Err("version appears twice".into());
            }
            "mode" => {
                let m = match v {
                    "enforce" => Mode::Enforce,
                    "testing" => Mode::Testing,
                    "none" => Mode::None,
                    _ => return Err(format!("mode {v:?} is not enforce, testing or none")),
                };
                if mode.replace(m).is_some() {
                    return Err("mode appears twice".into());
                }
            }
            "mx" => mx.push(v.to_ascii_lowercase()),
            "max_age" => {
                let n: u64 = v
                    .parse()
                    .map_err(|_| format!("max_age {v:?} is not a number"))?;
                if n > MAX_AGE_LIMIT {
                    return Err(format!("max_age {n} exceeds {MAX_AGE_LIMIT}"));
                }
                if max_age.replace(n).is_some() {
                    return Err("max_age appears twice".into());
                }
            }
            _ => {} // extension keys are ignored (§3.2)
        }
    }
    if version.as_deref() != Some("STSv1") {
        return Err("version: STSv1 is missing".into());
    }
    let mode = mode.ok_or("mode is missing")?;
    let max_age = max_age.ok_or("max_age is missing")?;
    if mx.is_empty() && mode != Mode::None {
        return Err("no mx: patterns".into());
    }
    Ok(Policy { mode, mx, max_age })
}

/// RFC 8461 §4.1: `*.example.net` matches exactly one extra left label.
pub fn mx_matches(pattern: &str, host: &str) -> bool {
    let p = lower_no_dot(pattern);
    let h = lower_no_dot(host);
    match p.strip_prefix("*.") {
        Some(suffix) => h
            .strip_suffix(suffix)
            .and_then(|l| l.strip_suffix('.'))
            .is_some_and(|label| !label.is_empty() && !label.contains('.')),
        None => p == h,
    }
}

/// `_mta-sts` TXT: records starting with `v=STSv1` (§3.1).
fn sts_records(txts: &[String]) -> Vec<String> {
    txts.iter()
        .filter(|t| {
            let t = t.trim_start();
            names::starts_with_ci(t, "v=STSv1")
                && t.get(7..)
                    .is_some_and(|rest| rest.is_empty() || rest.trim_start().starts_with(';'))
        })
        .cloned()
        .collect()
}

fn sts_id(record: &str) -> Result<String, String> {
    let mut id = None;
    for part in record.split(';').skip(1) {
        let part = part.trim();
        if part.is_empty() {
            continue;
        }
        if let Some((k, v)) = part.split_once('=')
            && k.trim() == "id"
        {
            id = Some(v.trim().to_string());
        }
    }
    let id = id.ok_or("the record has no id=")?;
    if id.is_empty() || id.len() > 32 || !id.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(format!("id={id} must be 1-32 letters and digits"));
    }
    Ok(id)
}

pub async fn fetch_policy(
    client: &reqwest::Client,
    domain: &str,
    port: u16,
) -> Result<(String, String), String> {
    let url = if port == 443 {
        format!("https://mta-sts.{domain}/.well-known/mta-sts.txt")
    } else {
        format!("https://mta-sts.{domain}:{port}/.well-known/mta-sts.txt")
    };
    let resp = client.get(&url).send().await.map_err(|e| {
        let mut msg = e.to_string();
        let mut src = std::error::Error::source(&e);
        while let Some(s) = src {
            msg.push_str(": ");
            msg.push_str(&s.to_string());
            src = s.source();
        }
        format!("fetching {url} failed: {msg}")
    })?;
    let status = resp.status();
    if status.is_redirection() {
        return Err(format!(
            "{url} answered {status} (a redirect, which RFC 8461 §3.3 forbids following)"
        ));
    }
    if !status.is_success() {
        return Err(format!("{url} answered {status}"));
    }
    let ctype = resp
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    if !ctype.starts_with("text/plain") {
        return Err(format!(
            "{url} has Content-Type {ctype:?}, not text/plain (RFC 8461 §3.2)"
        ));
    }
    let body = resp
        .text()
        .await
        .map_err(|e| format!("reading {url}: {e}"))?;
    if body.len() > 64 * 1024 {
        return Err(format!("{url} is larger than 64 KiB"));
    }
    Ok((url, body))
}

pub async fn check(
    dns: &Dns,
    client: &reqwest::Client,
    port: u16,
    domain: &str,
    mx_hosts: &[String],
) -> CheckResult {
    let domain = lower_no_dot(domain);
    let name = format!("_mta-sts.{domain}");
    let answer: DnsResult = dns.txt(&name).await;
    let a = match answer {
        Err(e) => {
            return CheckResult::new(
                "mta_sts",
                Verdict::Error,
                format!("The lookup of {name} failed ({e})."),
                vec![],
            );
        }
        Ok(a) => a,
    };
    let ttl = Some(a.ttl());
    let recs = sts_records(&a.txt());
    if recs.is_empty() {
        return CheckResult::new(
            "mta_sts",
            Verdict::None,
            format!("{domain} publishes no MTA-STS record."),
            vec![],
        )
        .with_ttl(ttl);
    }
    if recs.len() > 1 {
        return CheckResult::new(
            "mta_sts",
            Verdict::Fail,
            format!(
                "{} MTA-STS records at {name}; RFC 8461 §3.1 then means no policy.",
                recs.len()
            ),
            recs,
        )
        .with_ttl(ttl);
    }
    let mut records = recs.clone();
    let id = match sts_id(&recs[0]) {
        Ok(id) => id,
        Err(e) => {
            return CheckResult::new(
                "mta_sts",
                Verdict::Fail,
                format!("The MTA-STS record of {domain} is invalid: {e}."),
                records,
            )
            .with_ttl(ttl);
        }
    };
    let (url, body) = match fetch_policy(client, &domain, port).await {
        Ok(x) => x,
        Err(e) => {
            return CheckResult::new(
                "mta_sts",
                Verdict::Fail,
                format!("{domain} announces MTA-STS (id={id}) but the policy cannot be used: {e}; senders with a cached enforce policy keep deferring."),
                records,
            )
            .with_ttl(ttl);
        }
    };
    records.push(format!(
        "{url}: {}",
        body.replace("\r\n", "\n").trim().replace('\n', "; ")
    ));
    let policy = match parse_policy(&body) {
        Ok(p) => p,
        Err(e) => {
            return CheckResult::new(
                "mta_sts",
                Verdict::Fail,
                format!("The MTA-STS policy of {domain} is invalid: {e}."),
                records,
            )
            .with_ttl(ttl);
        }
    };
    let uncovered: Vec<&String> = mx_hosts
        .iter()
        .filter(|h| !policy.mx.iter().any(|p| mx_matches(p, h)))
        .collect();
    let mode = match policy.mode {
        Mode::Enforce => "enforce",
        Mode::Testing => "testing",
        Mode::None => "none",
    };
    let (verdict, detail) = match (&policy.mode, uncovered.is_empty()) {
        (Mode::None, _) => (
            Verdict::Pass,
            format!(
                "{domain} has MTA-STS mode none (policy withdrawn; senders do not enforce TLS)."
            ),
        ),
        (Mode::Enforce, false) => (
            Verdict::Fail,
            format!(
                "MTA-STS mode enforce, but MX {} not covered by the policy's mx patterns ({}); enforcing senders will not deliver there and the mail stays deferred.",
                uncovered
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
                policy.mx.join(", ")
            ),
        ),
        (Mode::Testing, false) => (
            Verdict::Warn,
            format!(
                "MTA-STS mode testing; MX {} not covered by the mx patterns ({}).",
                uncovered
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
                policy.mx.join(", ")
            ),
        ),
        (_, true) => (
            Verdict::Pass,
            format!(
                "MTA-STS mode {mode} (id={id}, max_age={}), every MX matches the mx patterns ({}).",
                policy.max_age,
                policy.mx.join(", ")
            ),
        ),
    };
    CheckResult::new("mta_sts", verdict, detail, records).with_ttl(ttl)
}

pub async fn check_tls_rpt(dns: &Dns, domain: &str) -> CheckResult {
    let domain = lower_no_dot(domain);
    let name = format!("_smtp._tls.{domain}");
    let a = match dns.txt(&name).await {
        Err(e) => {
            return CheckResult::new(
                "tls_rpt",
                Verdict::Error,
                format!("The lookup of {name} failed ({e})."),
                vec![],
            );
        }
        Ok(a) => a,
    };
    let ttl = Some(a.ttl());
    let recs: Vec<String> = a
        .txt()
        .into_iter()
        .filter(|t| names::starts_with_ci(t, "v=TLSRPTv1"))
        .collect();
    match recs.len() {
        0 => CheckResult::new(
            "tls_rpt",
            Verdict::None,
            format!(
                "{domain} publishes no TLS-RPT record (recommended alongside MTA-STS, RFC 8460)."
            ),
            vec![],
        )
        .with_ttl(ttl),
        1 => {
            let rua: Vec<String> = recs[0]
                .split(';')
                .filter_map(|p| p.trim().strip_prefix("rua="))
                .flat_map(|v| {
                    v.split(',')
                        .map(|u| u.trim().to_string())
                        .collect::<Vec<_>>()
                })
                .collect();
            let valid: Vec<&String> = rua
                .iter()
                .filter(|u| {
                    u.to_ascii_lowercase().starts_with("mailto:")
                        || u.to_ascii_lowercase().starts_with("https:")
                })
                .collect();
            if valid.is_empty() {
                CheckResult::new(
                    "tls_rpt",
                    Verdict::Fail,
                    format!(
                        "The TLS-RPT record of {domain} has no usable rua (mailto: or https:)."
                    ),
                    recs,
                )
                .with_ttl(ttl)
            } else {
                CheckResult::new(
                    "tls_rpt",
                    Verdict::Pass,
                    format!(
                        "{domain} asks for TLS reports at {}.",
                        valid
                            .iter()
                            .map(|s| s.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                    recs,
                )
                .with_ttl(ttl)
            }
        }
        n => CheckResult::new(
            "tls_rpt",
            Verdict::Warn,
            format!("{n} TLS-RPT records at {name}; RFC 8460 §3 then means no TLS reporting."),
            recs,
        )
        .with_ttl(ttl),
    }
}
