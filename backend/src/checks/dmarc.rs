//! DMARC policy discovery and record checks (checks.md §5; RFC 7489 §6.3,
//! §6.6.3, §7.1; RFC 9989 tree walk).
//!
//! Own parser: mail-auth 0.13.3 takes the first of several records, drops
//! `pct`/`rf`/`ri` and rejects invalid `p=` outright instead of the RFC 7489
//! §6.6.3 fallback (checks.md §5.7).

use super::dns::{Dns, DnsResult};
use super::names::{self, lower_no_dot, org_domain};
use super::ptr::min_ttl;
use super::{CheckResult, Verdict};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Policy {
    None,
    Quarantine,
    Reject,
}

impl Policy {
    fn parse(s: &str) -> Option<Policy> {
        match s.to_ascii_lowercase().as_str() {
            "none" => Some(Policy::None),
            "quarantine" => Some(Policy::Quarantine),
            "reject" => Some(Policy::Reject),
            _ => None,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Policy::None => "none",
            Policy::Quarantine => "quarantine",
            Policy::Reject => "reject",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DmarcRecord {
    pub p: Policy,
    /// `p=` was invalid or missing and `rua` valid: acting as `p=none`.
    pub p_fallback: Option<String>,
    pub sp: Option<Policy>,
    pub np: Option<Policy>,
    pub pct: u8,
    pub adkim_strict: bool,
    pub aspf_strict: bool,
    pub rua: Vec<String>,
    pub ruf: Vec<String>,
    pub testing: bool,
    pub psd: Option<char>,
    pub removed_tags: Vec<String>,
}

/// Records starting with `v=DMARC1` (RFC 7489 §6.6.3 step 4).
pub fn dmarc_records(txts: &[String]) -> Vec<String> {
    txts.iter()
        .filter(|t| {
            let t = t.as_bytes();
            t.len() >= 8
                && t[..8].eq_ignore_ascii_case(b"v=DMARC1")
                && (t.len() == 8 || t[8] == b';' || t[8] == b' ')
        })
        .cloned()
        .collect()
}

fn mailto_uris(v: &str) -> (Vec<String>, bool) {
    let mut out = Vec::new();
    let mut all_valid = true;
    for uri in v.split(',').map(str::trim).filter(|u| !u.is_empty()) {
        // RFC 7489 §6.2: optional "!size" suffix.
        let uri = uri.split('!').next().unwrap_or(uri);
        match uri.get(..7) {
            Some(s) if s.eq_ignore_ascii_case("mailto:") && uri[7..].contains('@') => {
                out.push(uri[7..].to_string())
            }
            _ => all_valid = false,
        }
    }
    (out, all_valid)
}

pub fn parse_record(text: &str) -> Result<DmarcRecord, String> {
    let mut tags: Vec<(String, String)> = Vec::new();
    for part in text.split(';') {
        let part = part.trim();
        if part.is_empty() {
            continue;
        }
        let (t, v) = part
            .split_once('=')
            .ok_or_else(|| format!("tag {part:?} has no '='"))?;
        tags.push((t.trim().to_ascii_lowercase(), v.trim().to_string()));
    }
    if tags.first().map(|(t, v)| (t.as_str(), v.as_str())) != Some(("v", "DMARC1")) {
        return Err("v=DMARC1 must be the first tag".into());
    }
    let get = |n: &str| tags.iter().find(|(t, _)| t == n).map(|(_, v)| v.as_str());
    let (rua, _) = get("rua").map(mailto_uris).unwrap_or_default();
    let (ruf, _) = get("ruf").map(mailto_uris).unwrap_or_default();
    let mut p_fallback = None;
    let p = match get("p").map(|v| (v, Policy::parse(v))) {
        Some((_, Some(p))) => p,
        // RFC 7489 §6.6.3: invalid p + valid rua → act as p=none;
        // RFC 9989: missing p + valid rua → p=none.
        Some((raw, None)) if !rua.is_empty() => {
            p_fallback = Some(format!(
                "p={raw} is invalid; with a valid rua this acts as p=none (RFC 7489 §6.6.3)"
            ));
            Policy::None
        }
        None if !rua.is_empty() => {
            p_fallback =
                Some("p= is missing; with a valid rua this acts as p=none (RFC 9989)".into());
            Policy::None
        }
        Some((raw, None)) => {
            return Err(format!(
                "p={raw} is not a valid policy and there is no valid rua"
            ));
        }
        None => return Err("the record has no p= tag and no valid rua".into()),
    };
    let sub = |n: &str| -> Result<Option<Policy>, String> {
        match get(n) {
            None => Ok(None),
            Some(v) => match Policy::parse(v) {
                Some(p) => Ok(Some(p)),
                None if !rua.is_empty() => Ok(Some(Policy::None)),
                None => Err(format!("{n}={v} is not a valid policy")),
            },
        }
    };
    let sp = sub("sp")?;
    let np = sub("np")?;
    let pct = match get("pct") {
        None => 100,
        Some(v) => match v.parse::<u8>() {
            Ok(n) if n <= 100 => n,
            _ => return Err(format!("pct={v} is not a number from 0 to 100")),
        },
    };
    let strict = |n: &str| -> Result<bool, String> {
        match get(n).map(|v| v.to_ascii_lowercase()) {
            None => Ok(false),
            Some(v) if v == "r" => Ok(false),
            Some(v) if v == "s" => Ok(true),
            Some(v) => Err(format!("{n}={v} must be r or s")),
        }
    };
    let removed_tags = ["rf", "ri", "pct"]
        .iter()
        .filter(|t| get(t).is_some())
        .map(|t| t.to_string())
        .collect();
    Ok(DmarcRecord {
        p,
        p_fallback,
        sp,
        np,
        pct,
        adkim_strict: strict("adkim")?,
        aspf_strict: strict("aspf")?,
        rua,
        ruf,
        testing: get("t").is_some_and(|v| v.eq_ignore_ascii_case("y")),
        psd: get("psd")
            .and_then(|v| v.chars().next())
            .map(|c| c.to_ascii_lowercase()),
        removed_tags,
    })
}

/// Where the policy was found.
#[derive(Clone, Debug)]
pub struct Discovery {
    pub author_domain: String,
    /// `Ok(None)`: no policy anywhere. `Err`: DNS failure.
    pub found: Result<Option<Found>, String>,
    pub multiple: Option<(String, Vec<String>)>,
    /// RFC 9989 tree walk: the name whose record applies, when it differs
    /// from the RFC 7489 (PSL) reading.
    pub tree_walk_domain: Option<String>,
    /// The policy was found only by the RFC 9989 tree walk; RFC 7489
    /// receivers see none.
    pub tree_walk_only: bool,
    pub ttl: Option<u32>,
}

#[derive(Clone, Debug)]
pub struct Found {
    pub policy_domain: String,
    pub text: String,
}

async fn records_at(dns: &Dns, domain: &str) -> (DnsResult, Vec<String>) {
    let r = dns.txt(&format!("_dmarc.{domain}")).await;
    let recs = r
        .as_ref()
        .map(|a| dmarc_records(&a.txt()))
        .unwrap_or_default();
    (r, recs)
}

pub async fn discover(dns: &Dns, domain: &str) -> Discovery {
    let author = lower_no_dot(domain);
    let org = org_domain(&author);
    let mut d = Discovery {
        author_domain: author.clone(),
        found: Ok(None),
        multiple: None,
        tree_walk_domain: None,
        tree_walk_only: false,
        ttl: None,
    };
    let mut candidates = vec![author.clone()];
    if org != author {
        candidates.push(org.clone());
    }
    for name in candidates {
        let (r, recs) = records_at(dns, &name).await;
        match &r {
            Err(e) => {
                d.found = Err(format!("looking up _dmarc.{name} failed: {e}"));
                return d;
            }
            Ok(a) => d.ttl = min_ttl(d.ttl, Some(a.ttl())),
        }
        match recs.len() {
            0 => continue,
            1 => {
                d.found = Ok(Some(Found {
                    policy_domain: name,
                    text: recs[0].clone(),
                }));
                break;
            }
            _ => {
                // RFC 7489 §6.6.3: more than one record ends discovery.
                d.multiple = Some((name, recs));
                return d;
            }
        }
    }
    // RFC 9989 tree walk (checks.md §5.2): report when it would pick a
    // different record than the PSL reading.
    if let Ok(found) = &d.found {
        let labels: Vec<&str> = author.split('.').collect();
        let mut walk_hit: Option<String> = None;
        let mut shortest: Option<String> = None;
        let mut texts: Vec<(String, String)> = Vec::new();
        let n = labels.len();
        let mut starts: Vec<usize> = (0..n.saturating_sub(1)).collect();
        if n > 8 {
            starts = std::iter::once(0).chain((n - 7)..(n - 1)).collect();
        }
        for i in starts {
            let name = labels[i..].join(".");
            let (r, recs) = records_at(dns, &name).await;
            if r.is_err() {
                break;
            }
            if recs.len() == 1 {
                texts.push((name.clone(), recs[0].clone()));
                if i == 0 {
                    walk_hit = Some(name.clone());
                    break;
                }
                if let Ok(rec) = parse_record(&recs[0]) {
                    if rec.psd == Some('n') {
                        walk_hit = Some(name.clone());
                        break;
                    }
                    if rec.psd == Some('y') {
                        walk_hit = Some(labels[i.saturating_sub(1)..].join("."));
                        break;
                    }
                }
                shortest = Some(name);
            }
        }
        let walk = walk_hit.or(shortest);
        let psl = found.as_ref().map(|f| f.policy_domain.clone());
        let walk_text = walk
            .as_ref()
            .and_then(|w| texts.iter().find(|(n, _)| n == w))
            .map(|(_, t)| t.clone());
        match (psl, walk, walk_text) {
            (None, Some(w), Some(text)) => {
                d.found = Ok(Some(Found {
                    policy_domain: w,
                    text,
                }));
                d.tree_walk_only = true;
            }
            (psl, walk, _) if walk != psl => {
                d.tree_walk_domain = walk.or(Some(String::new()));
            }
            _ => {}
        }
    }
    d
}

/// `<policy-domain>._report._dmarc.<destination>` (RFC 7489 §7.1).
pub async fn external_authorized(
    dns: &Dns,
    policy_domain: &str,
    dest_domain: &str,
) -> Result<bool, String> {
    let name = format!("{policy_domain}._report._dmarc.{dest_domain}");
    match dns.txt(&name).await {
        Err(e) => Err(e.to_string()),
        Ok(a) => Ok(a.txt().iter().any(|t| names::starts_with_ci(t, "v=DMARC1"))),
    }
}

pub async fn check(dns: &Dns, domain: &str) -> CheckResult {
    let disc = discover(dns, domain).await;
    let author = &disc.author_domain;
    if let Some((at, recs)) = &disc.multiple {
        return CheckResult::new(
            "dmarc",
            Verdict::Fail,
            format!("{} DMARC records at _dmarc.{at}; RFC 7489 §6.6.3 then applies no DMARC policy at all.", recs.len()),
            recs.clone(),
        )
        .with_ttl(disc.ttl);
    }
    let found = match &disc.found {
        Err(e) => {
            return CheckResult::new(
                "dmarc",
                Verdict::Error,
                format!(
                    "DMARC policy discovery for {author} failed ({e}); receivers see temperror."
                ),
                vec![],
            );
        }
        Ok(None) => {
            return CheckResult::new(
                "dmarc",
                Verdict::Fail,
                format!("No DMARC record for {author} or its organizational domain; Gmail (4.7.31/4.7.40), Yahoo and Microsoft (5.7.515) require one of bulk senders."),
                vec![],
            )
            .with_ttl(disc.ttl);
        }
        Ok(Some(f)) => f.clone(),
    };
    let records = vec![found.text.clone()];
    let rec = match parse_record(&found.text) {
        Ok(r) => r,
        Err(e) => {
            return CheckResult::new(
                "dmarc",
                Verdict::Fail,
                format!(
                    "The DMARC record at _dmarc.{} is unusable: {e}.",
                    found.policy_domain
                ),
                records,
            )
            .with_ttl(disc.ttl);
        }
    };
    let at_org = found.policy_domain != *author;
    let effective = if at_org {
        rec.sp.unwrap_or(rec.p)
    } else {
        rec.p
    };
    let mut warnings: Vec<String> = Vec::new();
    if let Some(fb) = &rec.p_fallback {
        warnings.push(fb.clone());
    }
    if effective == Policy::None {
        warnings.push(
            "policy none meets the Gmail/Yahoo/Microsoft minimum but gives no protection".into(),
        );
    }
    if rec.pct < 100 {
        warnings.push(format!("pct={} applies the policy to only part of the mail (and RFC 9989 receivers ignore pct)", rec.pct));
    }
    if rec.testing {
        warnings
            .push("t=y (test mode) makes RFC 9989 receivers apply a policy one step weaker".into());
    }
    if let Some(sp) = rec.sp
        && sp < rec.p
    {
        warnings.push(format!(
            "sp={} is weaker than p={}",
            sp.as_str(),
            rec.p.as_str()
        ));
    }
    if let Some(np) = rec.np
        && np < rec.p
    {
        warnings.push(format!(
            "np={} is weaker than p={}",
            np.as_str(),
            rec.p.as_str()
        ));
    }
    if rec.rua.is_empty() {
        warnings.push("no rua: nobody receives aggregate reports".into());
    }
    let removed: Vec<&String> = rec.removed_tags.iter().filter(|t| *t != "pct").collect();
    if !removed.is_empty() {
        warnings.push(format!(
            "{} removed in RFC 9989",
            removed
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    // RFC 7489 §7.1: destinations in another organizational domain must
    // authorise the policy domain.
    let policy_org = org_domain(&found.policy_domain);
    let mut dests: Vec<String> = rec
        .rua
        .iter()
        .chain(rec.ruf.iter())
        .filter_map(|a| a.rsplit_once('@').map(|(_, d)| lower_no_dot(d)))
        .filter(|d| org_domain(d) != policy_org)
        .collect();
    dests.sort();
    dests.dedup();
    let mut auth_notes = Vec::new();
    for dest in &dests {
        match external_authorized(dns, &found.policy_domain, dest).await {
            Ok(true) => auth_notes.push(format!("{dest} authorised")),
            Ok(false) => warnings.push(format!(
                "report destination {dest} has not authorised {} (no {}._report._dmarc.{dest} record), so reports are not sent there",
                found.policy_domain, found.policy_domain
            )),
            Err(e) => warnings.push(format!("could not verify report destination {dest}: {e}")),
        }
    }
    if let Some(walk) = &disc.tree_walk_domain {
        let w = if walk.is_empty() {
            "no record"
        } else {
            walk.as_str()
        };
        warnings.push(format!(
            "RFC 9989 tree-walk receivers use {w} instead of {} (PSL reading)",
            found.policy_domain
        ));
    }
    if disc.tree_walk_only {
        warnings.push(format!(
            "only RFC 9989 (tree-walk) receivers find this record; RFC 7489 receivers look at {author} and {} only and see no DMARC policy",
            org_domain(author)
        ));
    }
    let place = if at_org {
        format!(
            "at the organizational domain {} (applies to {author} via {})",
            found.policy_domain,
            if rec.sp.is_some() { "sp" } else { "p" }
        )
    } else {
        format!("at {author}")
    };
    let summary = format!(
        "p={}{}{} pct={} adkim={} aspf={}{}{}",
        rec.p.as_str(),
        rec.sp
            .map(|s| format!(" sp={}", s.as_str()))
            .unwrap_or_default(),
        rec.np
            .map(|s| format!(" np={}", s.as_str()))
            .unwrap_or_default(),
        rec.pct,
        if rec.adkim_strict { "s" } else { "r" },
        if rec.aspf_strict { "s" } else { "r" },
        if rec.rua.is_empty() {
            String::new()
        } else {
            format!(" rua={}", rec.rua.join(","))
        },
        if rec.ruf.is_empty() {
            String::new()
        } else {
            format!(" ruf={}", rec.ruf.join(","))
        },
    );
    let verdict = if warnings.is_empty() {
        Verdict::Pass
    } else {
        Verdict::Warn
    };
    let mut detail = format!(
        "DMARC policy {} found {place}: {summary}",
        effective.as_str()
    );
    if !auth_notes.is_empty() {
        detail.push_str(&format!(" ({})", auth_notes.join(", ")));
    }
    if warnings.is_empty() {
        detail.push('.');
    } else {
        detail.push_str(&format!("; {}.", warnings.join("; ")));
    }
    CheckResult::new("dmarc", verdict, detail, records).with_ttl(disc.ttl)
}
