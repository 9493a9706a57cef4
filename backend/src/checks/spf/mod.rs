//! SPF (RFC 7208): `check_host()` evaluation with lookup and void-lookup
//! accounting, plus an IP-independent lint (checks.md §3).
//!
//! Written here instead of wrapping mail-auth 0.13.3, which misses the void
//! limit, multiple-record `permerror`, strict syntax and A-only `exists`,
//! and exposes no lookup count (checks.md §3.6, §9.2).

pub mod record;

use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;

use hickory_proto::rr::RecordType;

use super::dns::{Answer, Dns};
use super::names::{self, normalize_ip};
use super::{CheckResult, Verdict};
use record::{MacroPart, MacroString, Mechanism, Qualifier, SpfRecord};

/// RFC 7208 §4.6.4.
pub const MAX_LOOKUPS: u32 = 10;
pub const MAX_VOID_LOOKUPS: u32 = 2;
pub const MAX_MX_NAMES: usize = 10;
pub const MAX_PTR_NAMES: usize = 10;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SpfResult {
    Pass,
    Fail,
    SoftFail,
    Neutral,
    None,
    TempError,
    PermError,
}

impl SpfResult {
    pub fn as_str(self) -> &'static str {
        match self {
            SpfResult::Pass => "pass",
            SpfResult::Fail => "fail",
            SpfResult::SoftFail => "softfail",
            SpfResult::Neutral => "neutral",
            SpfResult::None => "none",
            SpfResult::TempError => "temperror",
            SpfResult::PermError => "permerror",
        }
    }

    fn from_qualifier(q: Qualifier) -> SpfResult {
        match q {
            Qualifier::Pass => SpfResult::Pass,
            Qualifier::Fail => SpfResult::Fail,
            Qualifier::SoftFail => SpfResult::SoftFail,
            Qualifier::Neutral => SpfResult::Neutral,
        }
    }

    /// Dashboard mapping, checks.md §3.4.
    pub fn verdict(self) -> Verdict {
        match self {
            SpfResult::Pass => Verdict::Pass,
            SpfResult::Fail | SpfResult::PermError | SpfResult::None => Verdict::Fail,
            SpfResult::SoftFail | SpfResult::Neutral => Verdict::Warn,
            SpfResult::TempError => Verdict::Error,
        }
    }
}

/// Result of one `check_host()` run.
#[derive(Clone, Debug)]
pub struct SpfOutcome {
    pub result: SpfResult,
    /// Why, in one phrase (which term matched, which limit was hit).
    pub reason: String,
    pub lookups: u32,
    pub void_lookups: u32,
    /// Void lookups that were void only for the client's address family
    /// (an `a:` name with A but no AAAA for an IPv6 client). RFC 7208 counts
    /// them (pyspf); mailauth's dual-stack view does not (checks.md §3.3).
    pub family_only_voids: u32,
    /// SPF records found at the identity's domain (raw TXT).
    pub records: Vec<String>,
    pub explanation: Option<String>,
    pub trace: Vec<String>,
    pub ttl: Option<u32>,
}

/// The identity being checked (RFC 7208 §2.4, §4.1).
#[derive(Clone, Debug)]
pub struct SpfIdentity {
    pub local: String,
    pub domain: String,
}

impl SpfIdentity {
    /// MAIL FROM domain with an unknown local part, or the HELO identity:
    /// `postmaster@<domain>` (RFC 7208 §2.4, §4.3).
    pub fn postmaster(domain: &str) -> SpfIdentity {
        SpfIdentity {
            local: "postmaster".into(),
            domain: names::lower_no_dot(domain),
        }
    }

    pub fn from_sender(sender: &str) -> SpfIdentity {
        match sender.rsplit_once('@') {
            Some((l, d)) if !l.is_empty() => SpfIdentity {
                local: l.to_string(),
                domain: names::lower_no_dot(d),
            },
            Some((_, d)) => SpfIdentity::postmaster(d),
            None => SpfIdentity::postmaster(sender),
        }
    }
}

struct Abort(SpfResult, String);

struct Eval<'a> {
    dns: &'a Dns,
    ip: IpAddr,
    sender: SpfIdentity,
    helo: String,
    lookups: u32,
    voids: u32,
    family_only_voids: u32,
    trace: Vec<String>,
    /// Domains of the include/redirect chain being evaluated (loop detection,
    /// checkdmarc `SPFRedirectLoop` / `SPFIncludeLoop`).
    chain: Vec<String>,
    ttl: Option<u32>,
    top_records: Option<Vec<String>>,
}

type BoxFut<'s, T> = Pin<Box<dyn Future<Output = T> + Send + 's>>;

/// Result, reason, and the `exp=` of the record that produced a `fail`.
type HostResult = Result<(SpfResult, String, Option<MacroString>), Abort>;

/// Pick the SPF record out of a TXT RRset (§4.5). `Err` carries the
/// permerror reason for more than one record.
pub fn select_record(txts: &[String]) -> Result<Option<String>, String> {
    let spf: Vec<&String> = txts.iter().filter(|t| record::is_spf_record(t)).collect();
    match spf.len() {
        0 => Ok(None),
        1 => Ok(Some(spf[0].clone())),
        n => Err(format!(
            "{n} SPF records are published; RFC 7208 §4.5 makes that a permerror"
        )),
    }
}

impl<'a> Eval<'a> {
    fn note_ttl(&mut self, a: &Answer) {
        self.ttl = super::ptr::min_ttl(self.ttl, Some(a.ttl()));
    }

    fn count_lookup(&mut self, term: &str) -> Result<(), Abort> {
        self.lookups += 1;
        if self.lookups > MAX_LOOKUPS {
            return Err(Abort(
                SpfResult::PermError,
                format!(
                    "more than {MAX_LOOKUPS} DNS-querying terms (limit hit at {term}, RFC 7208 §4.6.4)"
                ),
            ));
        }
        Ok(())
    }

    fn count_void(&mut self, what: &str) -> Result<(), Abort> {
        self.voids += 1;
        self.trace.push(format!("void lookup: {what}"));
        if self.voids > MAX_VOID_LOOKUPS {
            return Err(Abort(
                SpfResult::PermError,
                format!(
                    "more than {MAX_VOID_LOOKUPS} void lookups (third at {what}, RFC 7208 §4.6.4)"
                ),
            ));
        }
        Ok(())
    }

    async fn addr_lookup(&mut self, name: &str, for_ip: IpAddr) -> Result<Answer, Abort> {
        match self.dns.addr_for(name, for_ip).await {
            Ok(a) => {
                self.note_ttl(&a);
                Ok(a)
            }
            Err(e) => Err(Abort(
                SpfResult::TempError,
                format!("DNS error looking up {name}: {e}"),
            )),
        }
    }

    /// `check_host(ip, domain, sender)` (RFC 7208 §4). Returns the result
    /// and, for `fail`, the record's `exp=` target.
    fn check_host<'s>(&'s mut self, domain: String) -> BoxFut<'s, HostResult> {
        Box::pin(async move {
            if !names::dns_domain_ok(&domain) {
                return Ok((
                    SpfResult::None,
                    format!("{domain:?} is not a valid domain (§4.3)"),
                    None,
                ));
            }
            let answer = match self.dns.txt(&domain).await {
                Ok(a) => a,
                Err(e) => {
                    return Err(Abort(
                        SpfResult::TempError,
                        format!("DNS error fetching the SPF record of {domain}: {e}"),
                    ));
                }
            };
            self.note_ttl(&answer);
            let txts = answer.txt();
            if self.top_records.is_none() {
                self.top_records = Some(
                    txts.iter()
                        .filter(|t| record::is_spf_record(t))
                        .cloned()
                        .collect(),
                );
            }
            let text = match select_record(&txts) {
                Err(why) => return Err(Abort(SpfResult::PermError, format!("{domain}: {why}"))),
                Ok(None) => {
                    return Ok((
                        SpfResult::None,
                        format!("{domain} publishes no SPF record"),
                        None,
                    ));
                }
                Ok(Some(t)) => t,
            };
            let rec: SpfRecord = record::parse_record(&text).map_err(|e| {
                Abort(
                    SpfResult::PermError,
                    format!("syntax error in the SPF record of {domain}: {e}"),
                )
            })?;
            self.chain.push(domain.clone());
            let out = self.evaluate(&domain, &rec).await;
            self.chain.pop();
            out
        })
    }

    async fn evaluate(&mut self, domain: &str, rec: &SpfRecord) -> HostResult {
        for d in &rec.directives {
            if d.mechanism.counts_as_lookup() {
                self.count_lookup(&d.text)?;
            }
            if self.matches(domain, &d.mechanism, &d.text).await? {
                let result = SpfResult::from_qualifier(d.qualifier);
                self.trace.push(format!(
                    "{domain}: {} matched -> {}",
                    d.text,
                    result.as_str()
                ));
                let exp = (result == SpfResult::Fail)
                    .then(|| rec.exp.clone())
                    .flatten();
                return Ok((
                    result,
                    format!("{} in the record of {domain} matched", d.text),
                    exp,
                ));
            }
        }
        // §6.1: redirect applies only when no mechanism matched (and is
        // therefore never reached when `all` is present).
        if let Some(target) = &rec.redirect {
            self.count_lookup("redirect")?;
            let target = self.expand_domain(target, domain).await?;
            if self.chain.iter().any(|c| c == &target) {
                return Err(Abort(
                    SpfResult::PermError,
                    format!("redirect loop: {domain} redirects back to {target}"),
                ));
            }
            self.trace.push(format!("{domain}: redirect={target}"));
            let (r, why, exp) = self.check_host(target.clone()).await?;
            if r == SpfResult::None {
                return Err(Abort(
                    SpfResult::PermError,
                    format!("redirect target {target} has no SPF record (§6.1)"),
                ));
            }
            return Ok((r, format!("via redirect to {target}: {why}"), exp));
        }
        Ok((
            SpfResult::Neutral,
            format!("nothing in the record of {domain} matched (default neutral)"),
            None,
        ))
    }

    async fn matches(&mut self, domain: &str, m: &Mechanism, text: &str) -> Result<bool, Abort> {
        let ip = self.ip;
        match m {
            Mechanism::All => Ok(true),
            Mechanism::Ip4(net, len) => Ok(match ip {
                IpAddr::V4(v4) => prefix_match(&v4.octets(), &net.octets(), *len),
                IpAddr::V6(_) => false,
            }),
            Mechanism::Ip6(net, len) => Ok(match ip {
                IpAddr::V6(v6) => prefix_match(&v6.octets(), &net.octets(), *len),
                IpAddr::V4(_) => false,
            }),
            Mechanism::Include(spec) => {
                let target = self.expand_domain(spec, domain).await?;
                if self.chain.iter().any(|c| c == &target) {
                    return Err(Abort(
                        SpfResult::PermError,
                        format!("include loop: {domain} includes {target} again"),
                    ));
                }
                let (r, _why, _) = self.check_host(target.clone()).await?;
                self.trace.push(format!("{text} -> {}", r.as_str()));
                match r {
                    SpfResult::Pass => Ok(true),
                    SpfResult::Fail | SpfResult::SoftFail | SpfResult::Neutral => Ok(false),
                    SpfResult::TempError => {
                        Err(Abort(SpfResult::TempError, format!("{text}: temperror")))
                    }
                    // §5.2: none or permerror inside include is permerror.
                    SpfResult::None | SpfResult::PermError => Err(Abort(
                        SpfResult::PermError,
                        format!("{text}: {target} has no usable SPF record (§5.2)"),
                    )),
                }
            }
            Mechanism::A {
                domain: spec,
                v4,
                v6,
            } => {
                let target = match spec {
                    Some(s) => self.expand_domain(s, domain).await?,
                    None => domain.to_string(),
                };
                let a = self.addr_lookup(&target, ip).await?;
                if a.is_void() {
                    let other = match ip {
                        IpAddr::V4(_) => self.dns.aaaa(&target).await,
                        IpAddr::V6(_) => self.dns.a(&target).await,
                    };
                    if other.is_ok_and(|o| !o.is_void()) {
                        self.family_only_voids += 1;
                    }
                    self.count_void(text)?;
                }
                Ok(a.ips().iter().any(|x| addr_in(ip, *x, *v4, *v6)))
            }
            Mechanism::Mx {
                domain: spec,
                v4,
                v6,
            } => {
                let target = match spec {
                    Some(s) => self.expand_domain(s, domain).await?,
                    None => domain.to_string(),
                };
                let mx = match self.dns.mx(&target).await {
                    Ok(a) => a,
                    Err(e) => return Err(Abort(SpfResult::TempError, format!("{text}: {e}"))),
                };
                self.note_ttl(&mx);
                if mx.is_void() {
                    // §5.4: no fallback to the implicit MX.
                    self.count_void(text)?;
                    return Ok(false);
                }
                let hosts = mx.mx();
                if hosts.len() > MAX_MX_NAMES {
                    return Err(Abort(
                        SpfResult::PermError,
                        format!(
                            "{text}: {} MX hosts, more than {MAX_MX_NAMES} (§4.6.4)",
                            hosts.len()
                        ),
                    ));
                }
                for (_, host) in hosts {
                    if host.is_empty() {
                        continue;
                    }
                    let a = self.addr_lookup(&host, ip).await?;
                    if a.ips().iter().any(|x| addr_in(ip, *x, *v4, *v6)) {
                        return Ok(true);
                    }
                }
                Ok(false)
            }
            Mechanism::Ptr(spec) => {
                let target = match spec {
                    Some(s) => self.expand_domain(s, domain).await?,
                    None => domain.to_string(),
                };
                let validated = self.validated_names(Some(&target)).await?;
                Ok(!validated.is_empty())
            }
            Mechanism::Exists(spec) => {
                let target = self.expand_domain(spec, domain).await?;
                // §5.7: an A query whatever the client's address family.
                let a = match self.dns.query(&target, RecordType::A).await {
                    Ok(a) => a,
                    Err(e) => return Err(Abort(SpfResult::TempError, format!("{text}: {e}"))),
                };
                self.note_ttl(&a);
                if a.is_void() {
                    self.count_void(text)?;
                    return Ok(false);
                }
                Ok(true)
            }
        }
    }

    /// §5.5: PTR names of the client that resolve back to it, optionally
    /// restricted to `target` and its subdomains. DNS errors on the PTR
    /// lookup make the mechanism not match (§5.5); forward errors skip the name.
    async fn validated_names(&mut self, target: Option<&str>) -> Result<Vec<String>, Abort> {
        let ip = self.ip;
        let ptr = match self.dns.ptr(&names::reverse_name(ip)).await {
            Ok(a) => a,
            Err(_) => return Ok(vec![]),
        };
        if ptr.is_void() {
            self.count_void("ptr")?;
        }
        let mut out = Vec::new();
        for name in ptr.ptr_names().into_iter().take(MAX_PTR_NAMES) {
            if let Some(t) = target {
                let t = t.to_ascii_lowercase();
                if !(name == t || name.ends_with(&format!(".{t}"))) {
                    continue;
                }
            }
            if let Ok(a) = self.dns.addr_for(&name, ip).await
                && a.ips().iter().map(|x| normalize_ip(*x)).any(|x| x == ip)
            {
                out.push(name);
            }
        }
        Ok(out)
    }

    async fn expand_domain(&mut self, m: &MacroString, domain: &str) -> Result<String, Abort> {
        let s = self.expand(m, domain, false).await?;
        let mut s = s.trim_end_matches('.').to_ascii_lowercase();
        // §7.3: drop left labels until the name fits in 253 characters.
        while s.len() > 253 {
            match s.find('.') {
                Some(i) => s = s[i + 1..].to_string(),
                None => break,
            }
        }
        Ok(s)
    }

    async fn expand(&mut self, m: &MacroString, domain: &str, exp: bool) -> Result<String, Abort> {
        let mut out = String::new();
        for part in &m.parts {
            match part {
                MacroPart::Literal(s) => out.push_str(s),
                MacroPart::Expand {
                    letter,
                    url_encode,
                    digits,
                    reverse,
                    delimiters,
                } => {
                    let value = match letter {
                        's' => format!("{}@{}", self.sender.local, self.sender.domain),
                        'l' => self.sender.local.clone(),
                        'o' => self.sender.domain.clone(),
                        'd' => domain.to_string(),
                        'i' => match self.ip {
                            IpAddr::V4(v4) => v4.to_string(),
                            IpAddr::V6(_) => {
                                // Dotted nibbles, most significant first (§7.3).
                                let rev = names::reversed_labels(self.ip);
                                rev.split('.').rev().collect::<Vec<_>>().join(".")
                            }
                        },
                        'p' => {
                            let d = domain.to_string();
                            let names = self.validated_names(None).await.unwrap_or_default();
                            names
                                .iter()
                                .find(|n| **n == d || n.ends_with(&format!(".{d}")))
                                .or_else(|| names.first())
                                .cloned()
                                .unwrap_or_else(|| "unknown".into())
                        }
                        'v' => if self.ip.is_ipv4() { "in-addr" } else { "ip6" }.to_string(),
                        'h' => self.helo.clone(),
                        'c' if exp => self.ip.to_string(),
                        'r' if exp => "unknown".to_string(),
                        't' if exp => chrono::Utc::now().timestamp().to_string(),
                        _ => String::new(),
                    };
                    let delims: &str = if delimiters.is_empty() {
                        "."
                    } else {
                        delimiters
                    };
                    let mut parts: Vec<&str> = value.split(|c| delims.contains(c)).collect();
                    if *reverse {
                        parts.reverse();
                    }
                    if let Some(n) = digits
                        && *n < parts.len()
                    {
                        parts = parts[parts.len() - n..].to_vec();
                    }
                    let joined = parts.join(".");
                    if *url_encode {
                        out.push_str(&url_encode_str(&joined));
                    } else {
                        out.push_str(&joined);
                    }
                }
            }
        }
        Ok(out)
    }
}

fn url_encode_str(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn prefix_match(a: &[u8], b: &[u8], len: u8) -> bool {
    let full = usize::from(len / 8);
    let rem = len % 8;
    if a.len() != b.len() || full > a.len() {
        return false;
    }
    if a[..full] != b[..full] {
        return false;
    }
    if rem == 0 || full == a.len() {
        return true;
    }
    let mask = 0xffu8 << (8 - rem);
    a[full] & mask == b[full] & mask
}

fn addr_in(client: IpAddr, candidate: IpAddr, v4: u8, v6: u8) -> bool {
    match (client, normalize_ip(candidate)) {
        (IpAddr::V4(c), IpAddr::V4(x)) => prefix_match(&c.octets(), &x.octets(), v4),
        (IpAddr::V6(c), IpAddr::V6(x)) => prefix_match(&c.octets(), &x.octets(), v6),
        _ => false,
    }
}

/// Run `check_host(ip, identity.domain, identity)`.
pub async fn check_host(dns: &Dns, ip: IpAddr, identity: &SpfIdentity, helo: &str) -> SpfOutcome {
    let ip = normalize_ip(ip);
    let mut ev = Eval {
        dns,
        ip,
        sender: identity.clone(),
        helo: helo.to_string(),
        lookups: 0,
        voids: 0,
        family_only_voids: 0,
        trace: Vec::new(),
        chain: Vec::new(),
        ttl: None,
        top_records: None,
    };
    let out = ev.check_host(identity.domain.clone()).await;
    let (result, reason, exp) = match out {
        Ok(t) => t,
        Err(Abort(r, why)) => (r, why, None),
    };
    let mut explanation = None;
    if result == SpfResult::Fail
        && let Some(m) = exp
    {
        // §6.2: any failure fetching or expanding exp is ignored.
        if let Ok(target) = ev.expand_domain(&m, &identity.domain).await
            && let Ok(a) = dns.txt(&target).await
            && let [only] = a.txt().as_slice()
            && let Ok(ms) = record::parse_macro_string(only, true)
        {
            explanation = ev.expand(&ms, &identity.domain, true).await.ok();
        }
    }
    SpfOutcome {
        result,
        reason,
        lookups: ev.lookups.min(MAX_LOOKUPS + 1),
        void_lookups: ev.voids,
        family_only_voids: ev.family_only_voids,
        records: ev.top_records.unwrap_or_default(),
        explanation,
        trace: ev.trace,
        ttl: ev.ttl,
    }
}

/// IP-independent lint of a domain's SPF policy (checks.md §3.5).
#[derive(Clone, Debug, Default)]
pub struct SpfLint {
    pub records: Vec<String>,
    /// `Err` = transient DNS failure on the top-level TXT lookup.
    pub fetch_error: Option<String>,
    pub lookups: u32,
    pub void_lookups: u32,
    pub errors: Vec<String>,
    pub warnings: Vec<String>,
    pub has_macros: bool,
    pub ttl: Option<u32>,
}

/// Walk the policy statically: includes and redirects are followed
/// (without macros), every DNS-querying term counted, even after a match.
pub async fn lint(dns: &Dns, domain: &str) -> SpfLint {
    let domain = names::lower_no_dot(domain);
    let mut l = SpfLint::default();
    let top = match dns.txt(&domain).await {
        Err(e) => {
            l.fetch_error = Some(e.to_string());
            return l;
        }
        Ok(a) => a,
    };
    l.ttl = Some(top.ttl());
    let txts = top.txt();
    l.records = txts
        .iter()
        .filter(|t| record::is_spf_record(t))
        .cloned()
        .collect();
    if txts
        .iter()
        .any(|t| t.to_ascii_lowercase().starts_with("spf2.0/"))
    {
        l.warnings
            .push("a deprecated Sender ID (spf2.0) record is published".into());
    }
    if txts.iter().any(|t| {
        t.trim_start().to_ascii_lowercase().starts_with("v=spf1") && !record::is_spf_record(t)
    }) {
        l.warnings.push(
            "a TXT record looks like SPF but has leading whitespace, so receivers ignore it".into(),
        );
    }
    match select_record(&txts) {
        Err(why) => {
            l.errors.push(why);
            return l;
        }
        Ok(None) => return l,
        Ok(Some(t)) => {
            if t.len() > 450 {
                l.warnings.push(format!(
                    "the record is {} bytes, over the 450-byte guidance of RFC 7208 §3.4",
                    t.len()
                ));
            }
        }
    }
    let mut stack = Vec::new();
    walk(dns, domain.clone(), &mut l, &mut stack, 0).await;
    if l.lookups > MAX_LOOKUPS {
        l.errors.push(format!(
            "{} DNS-querying terms in total, over the limit of {MAX_LOOKUPS}",
            l.lookups
        ));
    } else if l.lookups >= 8 {
        l.warnings.push(format!(
            "{} of the {MAX_LOOKUPS} allowed DNS-querying terms are used",
            l.lookups
        ));
    }
    if l.void_lookups > MAX_VOID_LOOKUPS {
        l.errors.push(format!(
            "{} void lookups, over the limit of {MAX_VOID_LOOKUPS}",
            l.void_lookups
        ));
    }
    l
}

fn walk<'a>(
    dns: &'a Dns,
    domain: String,
    l: &'a mut SpfLint,
    stack: &'a mut Vec<String>,
    depth: usize,
) -> BoxFut<'a, ()> {
    Box::pin(async move {
        if depth > 12 {
            return;
        }
        let txts = match dns.txt(&domain).await {
            Ok(a) => {
                if a.is_void() && depth > 0 {
                    l.void_lookups += 1;
                }
                a.txt()
            }
            Err(e) => {
                l.warnings.push(format!("could not fetch {domain}: {e}"));
                return;
            }
        };
        let text = match select_record(&txts) {
            Ok(Some(t)) => t,
            Ok(None) => {
                if depth > 0 {
                    l.errors.push(format!(
                        "{domain} is included or redirected to but has no SPF record"
                    ));
                }
                return;
            }
            Err(why) => {
                l.errors.push(format!("{domain}: {why}"));
                return;
            }
        };
        let rec = match record::parse_record(&text) {
            Ok(r) => r,
            Err(e) => {
                l.errors
                    .push(format!("syntax error in the SPF record of {domain}: {e}"));
                return;
            }
        };
        stack.push(domain.clone());
        let mut seen_all = false;
        for d in &rec.directives {
            if seen_all {
                l.warnings.push(format!(
                    "{domain}: {} comes after \"all\" and is never evaluated",
                    d.text
                ));
                break;
            }
            if d.mechanism.counts_as_lookup() {
                l.lookups += 1;
            }
            match &d.mechanism {
                Mechanism::All => {
                    seen_all = true;
                    if depth == 0 {
                        match d.qualifier {
                            Qualifier::Pass => l
                                .errors
                                .push("\"+all\" authorises every host on the internet".into()),
                            Qualifier::Neutral => l
                                .warnings
                                .push("\"?all\" makes no assertion about unlisted hosts".into()),
                            _ => {}
                        }
                    }
                }
                Mechanism::Ptr(_) => l.warnings.push(format!(
                    "{domain}: the \"ptr\" mechanism SHOULD NOT be used (RFC 7208 §5.5)"
                )),
                Mechanism::Include(m) => match m.literal() {
                    Some(t) => {
                        let t = names::lower_no_dot(&t);
                        if stack.contains(&t) {
                            l.errors
                                .push(format!("include loop: {domain} includes {t}"));
                        } else {
                            walk(dns, t, l, stack, depth + 1).await;
                        }
                    }
                    None => l.has_macros = true,
                },
                Mechanism::A { domain: spec, .. } => {
                    let t = spec
                        .as_ref()
                        .and_then(|m| m.literal())
                        .unwrap_or_else(|| domain.clone());
                    if spec.as_ref().is_some_and(|m| m.has_macros()) {
                        l.has_macros = true;
                    } else {
                        let (a, aaaa) = tokio::join!(dns.a(&t), dns.aaaa(&t));
                        if matches!((&a, &aaaa), (Ok(x), Ok(y)) if x.is_void() && y.is_void()) {
                            l.void_lookups += 1;
                        }
                    }
                }
                Mechanism::Mx { domain: spec, .. } => {
                    let t = spec
                        .as_ref()
                        .and_then(|m| m.literal())
                        .unwrap_or_else(|| domain.clone());
                    if spec.as_ref().is_some_and(|m| m.has_macros()) {
                        l.has_macros = true;
                    } else if let Ok(mx) = dns.mx(&t).await {
                        if mx.is_void() {
                            l.void_lookups += 1;
                        } else if mx.mx().len() > MAX_MX_NAMES {
                            l.errors.push(format!("{t} has more than {MAX_MX_NAMES} MX hosts, so \"mx\" is a permerror"));
                        }
                    }
                }
                Mechanism::Exists(m) => {
                    if m.has_macros() {
                        l.has_macros = true;
                    }
                }
                Mechanism::Ip4(..) | Mechanism::Ip6(..) => {}
            }
        }
        if let Some(r) = &rec.redirect {
            if seen_all {
                l.warnings.push(format!(
                    "{domain}: redirect= is ignored because \"all\" is present"
                ));
            } else {
                l.lookups += 1;
                match r.literal() {
                    Some(t) => {
                        let t = names::lower_no_dot(&t);
                        if stack.contains(&t) {
                            l.errors
                                .push(format!("redirect loop: {domain} redirects to {t}"));
                        } else {
                            walk(dns, t, l, stack, depth + 1).await;
                        }
                    }
                    None => l.has_macros = true,
                }
            }
        }
        stack.pop();
    })
}

/// `spf` check for a sending IP: evaluation for the MAIL FROM identity (or
/// the HELO identity without a sender), HELO result in the detail, lint
/// findings lowering a pass to warn (checks.md §0.1, §3.4).
pub fn evaluate_ip(
    ip: IpAddr,
    mail_from: Option<&SpfOutcome>,
    mail_from_domain: Option<&str>,
    helo: Option<(&str, &SpfOutcome)>,
    lint: Option<&SpfLint>,
) -> CheckResult {
    let (primary, identity) = match (mail_from, mail_from_domain, helo) {
        (Some(o), Some(d), _) => (o, format!("MAIL FROM domain {d}")),
        (_, _, Some((h, o))) => (o, format!("HELO {h}")),
        _ => {
            return CheckResult::new(
                "spf",
                Verdict::None,
                "No sender domain or HELO name given.",
                vec![],
            );
        }
    };
    let mut verdict = primary.result.verdict();
    let mut detail = format!(
        "SPF {} for {ip} as {identity}: {} ({} of {MAX_LOOKUPS} DNS lookups, {} void).",
        primary.result.as_str(),
        primary.reason,
        primary.lookups,
        primary.void_lookups
    );
    if primary.family_only_voids > 0 {
        detail.push_str(&format!(
            " {} of the void lookups are void only for this address family; receivers that count a name void only when both A and AAAA are empty see {} void.",
            primary.family_only_voids,
            primary.void_lookups - primary.family_only_voids
        ));
    }
    match primary.result {
        SpfResult::None => {
            detail.push_str(" Gmail, Yahoo and Microsoft require SPF of bulk senders.")
        }
        SpfResult::TempError => {
            detail.push_str(" Receivers may defer with 451 4.4.3 on this (RFC 7208 §8.6).")
        }
        _ => {}
    }
    if let Some(e) = &primary.explanation {
        detail.push_str(&format!(" Explanation: {e}."));
    }
    if let (Some(_), Some((h, o))) = (mail_from, helo) {
        detail.push_str(&format!(" HELO identity {h}: {}.", o.result.as_str()));
    }
    if verdict == Verdict::Pass
        && let Some(l) = lint
    {
        let notes: Vec<&String> = l.errors.iter().chain(l.warnings.iter()).collect();
        if !notes.is_empty() {
            verdict = Verdict::Warn;
            detail.push_str(&format!(
                " Policy issues: {}.",
                notes
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join("; ")
            ));
        }
    }
    let mut records = primary.records.clone();
    records.push(format!("result={}", primary.result.as_str()));
    records.push(format!("lookups={}", primary.lookups));
    CheckResult::new("spf", verdict, detail, records).with_ttl(primary.ttl)
}

/// `spf` check for a domain alone: record sanity (§3.2, §3.5).
pub fn evaluate_lint(domain: &str, l: &SpfLint) -> CheckResult {
    if let Some(e) = &l.fetch_error {
        return CheckResult::new(
            "spf",
            Verdict::Error,
            format!(
                "The SPF lookup for {domain} failed ({e}); receivers treat this as temperror and may defer."
            ),
            vec![],
        );
    }
    if l.records.is_empty() {
        return CheckResult::new(
            "spf",
            Verdict::Fail,
            format!("{domain} publishes no SPF record; Gmail, Yahoo and Microsoft require SPF of bulk senders."),
            vec![],
        )
        .with_ttl(l.ttl);
    }
    let mut records = l.records.clone();
    records.push(format!("lookups={}", l.lookups));
    let (verdict, detail) = if !l.errors.is_empty() {
        (
            Verdict::Fail,
            format!(
                "The SPF policy of {domain} is broken (receivers see permerror): {}.",
                l.errors.join("; ")
            ),
        )
    } else if !l.warnings.is_empty() {
        (
            Verdict::Warn,
            format!(
                "The SPF policy of {domain} works but: {} ({} DNS lookups).",
                l.warnings.join("; "),
                l.lookups
            ),
        )
    } else {
        (
            Verdict::Pass,
            format!(
                "{domain} publishes one valid SPF record using {} of {MAX_LOOKUPS} DNS lookups{}.",
                l.lookups,
                if l.has_macros {
                    " (macros: part of the policy depends on the sender)"
                } else {
                    ""
                }
            ),
        )
    };
    CheckResult::new("spf", verdict, detail, records).with_ttl(l.ttl)
}
