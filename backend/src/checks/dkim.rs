//! DKIM key records (checks.md §4; RFC 6376 §3.6.1, RFC 8301, RFC 8463).
//!
//! The key is DER-parsed here: mail-auth 0.13.3 with its default backend
//! accepts garbage `p=` as a 0-bit key (checks.md §4.4).

use base64::Engine;

use super::dns::{Dns, DnsResult};
use super::names::lower_no_dot;
use super::ptr::min_ttl;
use super::{CheckResult, Verdict};

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeyKind {
    Rsa { bits: usize },
    Ed25519,
}

/// Findings for one selector.
#[derive(Clone, Debug)]
pub struct SelectorFinding {
    pub selector: String,
    pub verdict: Verdict,
    pub text: String,
    pub records: Vec<String>,
    pub ttl: Option<u32>,
}

/// Parse a tag-list (RFC 6376 §3.2) into (tag, value) pairs, whitespace
/// removed around tags and values.
pub fn parse_tags(record: &str) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    for spec in record.split(';') {
        let spec = spec.trim();
        if spec.is_empty() {
            continue;
        }
        let (t, v) = spec
            .split_once('=')
            .ok_or_else(|| format!("tag {spec:?} has no '='"))?;
        let t = t.trim();
        if t.is_empty() || !t.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            return Err(format!("invalid tag name {t:?}"));
        }
        if out.iter().any(|(x, _): &(String, String)| x == t) {
            // RFC 6376 §3.2: duplicate tags make the tag-list invalid.
            return Err(format!("tag {t:?} appears twice"));
        }
        out.push((t.to_string(), v.trim().to_string()));
    }
    Ok(out)
}

/// Evaluate one key record text; `(verdict, explanation)`.
pub fn evaluate_key_record(record: &str) -> (Verdict, String, Option<KeyKind>) {
    let tags = match parse_tags(record) {
        Ok(t) => t,
        Err(e) => {
            return (
                Verdict::Fail,
                format!("the key record does not parse: {e}"),
                None,
            );
        }
    };
    let get = |n: &str| tags.iter().find(|(t, _)| t == n).map(|(_, v)| v.as_str());
    if let Some(v) = get("v") {
        // §3.6.1: if present, v= must be the first tag and equal DKIM1.
        if tags.first().map(|(t, _)| t.as_str()) != Some("v") || v != "DKIM1" {
            return (
                Verdict::Fail,
                format!("v={v} is not a DKIM1 key record, so verifiers discard it"),
                None,
            );
        }
    }
    let k = get("k").unwrap_or("rsa").to_ascii_lowercase();
    if k != "rsa" && k != "ed25519" {
        return (Verdict::Fail, format!("unknown key type k={k}"), None);
    }
    if let Some(h) = get("h") {
        let algs: Vec<String> = h
            .split(':')
            .map(|a| a.trim().to_ascii_lowercase())
            .collect();
        if !algs.iter().any(|a| a == "sha256") {
            // RFC 8301 §3.1: rsa-sha1 MUST NOT be used.
            return (
                Verdict::Fail,
                format!("h={h} does not allow sha256 (rsa-sha1 is forbidden by RFC 8301)"),
                None,
            );
        }
    }
    if let Some(s) = get("s") {
        let ok = s
            .split(':')
            .map(str::trim)
            .any(|x| x == "*" || x.eq_ignore_ascii_case("email"));
        if !ok {
            return (
                Verdict::Fail,
                format!("s={s} does not include email, so the key is unusable for mail"),
                None,
            );
        }
    }
    let p = match get("p") {
        None => {
            return (
                Verdict::Fail,
                "the record has no p= tag (public key is required)".into(),
                None,
            );
        }
        Some(p) => p,
    };
    let p: String = p.chars().filter(|c| !c.is_whitespace()).collect();
    if p.is_empty() {
        return (
            Verdict::Fail,
            "the key is revoked (empty p=, RFC 6376 §3.6.1)".into(),
            None,
        );
    }
    let der = match base64::engine::general_purpose::STANDARD.decode(p.as_bytes()) {
        Ok(d) => d,
        Err(_) => return (Verdict::Fail, "p= is not valid base64".into(), None),
    };
    let testing = get("t").is_some_and(|t| t.split(':').any(|f| f.trim() == "y"));
    let (mut verdict, mut text, kind) = if k == "ed25519" {
        if der.len() != 32 {
            return (
                Verdict::Fail,
                format!("an ed25519 key must be 32 bytes, p= holds {}", der.len()),
                None,
            );
        }
        (
            Verdict::Warn,
            "ed25519 key (RFC 8463); many receivers still need an RSA signature next to it"
                .to_string(),
            KeyKind::Ed25519,
        )
    } else {
        let bits = match rsa_modulus_bits(&der) {
            Some(b) => b,
            None => {
                return (
                    Verdict::Fail,
                    "p= is not an RSA public key (neither SubjectPublicKeyInfo nor PKCS#1)".into(),
                    None,
                );
            }
        };
        // RFC 8301 §3.2: signers MUST use ≥1024 bits and SHOULD use ≥2048.
        let (v, t) = if bits < 1024 {
            (
                Verdict::Fail,
                format!(
                    "RSA {bits}-bit key, below the 1024-bit minimum of RFC 8301; receivers ignore the signature"
                ),
            )
        } else if bits < 2048 {
            (
                Verdict::Warn,
                format!("RSA {bits}-bit key; RFC 8301 recommends 2048 bits"),
            )
        } else {
            (Verdict::Pass, format!("RSA {bits}-bit key"))
        };
        (v, t, KeyKind::Rsa { bits })
    };
    if testing && verdict == Verdict::Pass {
        verdict = Verdict::Warn;
    }
    if testing {
        text.push_str(", in test mode (t=y: receivers may treat failures as unsigned)");
    }
    (verdict, text, Some(kind))
}

/// Modulus size of an RSA key given as SubjectPublicKeyInfo or bare
/// PKCS#1 RSAPublicKey (checks.md §4.3).
pub fn rsa_modulus_bits(der: &[u8]) -> Option<usize> {
    let (tag, body, _) = tlv(der)?;
    if tag != 0x30 {
        return None;
    }
    let (first_tag, first, rest) = tlv(body)?;
    match first_tag {
        // PKCS#1: SEQUENCE { INTEGER n, INTEGER e }
        0x02 => {
            let (etag, _, _) = tlv(rest)?;
            (etag == 0x02).then(|| int_bits(first))?
        }
        // SPKI: SEQUENCE { AlgorithmIdentifier, BIT STRING }
        0x30 => {
            const RSA_OID: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];
            let (otag, oid, _) = tlv(first)?;
            if otag != 0x06 || oid != RSA_OID {
                return None;
            }
            let (btag, bits, _) = tlv(rest)?;
            if btag != 0x03 || bits.first() != Some(&0) {
                return None;
            }
            rsa_modulus_bits(&bits[1..])
        }
        _ => None,
    }
}

fn int_bits(int: &[u8]) -> Option<usize> {
    let start = int.iter().position(|b| *b != 0)?;
    let v = &int[start..];
    Some((v.len() - 1) * 8 + (8 - v[0].leading_zeros() as usize))
}

/// One DER TLV: (tag, content, rest).
fn tlv(buf: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let tag = *buf.first()?;
    let first = *buf.get(1)?;
    let (len, hdr) = if first < 0x80 {
        (usize::from(first), 2)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 {
            return None;
        }
        let mut len = 0usize;
        for i in 0..n {
            len = (len << 8) | usize::from(*buf.get(2 + i)?);
        }
        (len, 2 + n)
    };
    let end = hdr.checked_add(len)?;
    if end > buf.len() {
        return None;
    }
    Some((tag, &buf[hdr..end], &buf[end..]))
}

pub async fn lookup_selector(dns: &Dns, domain: &str, selector: &str) -> (String, DnsResult) {
    let name = format!("{}._domainkey.{}", selector.trim(), lower_no_dot(domain));
    let r = dns.txt(&name).await;
    (name, r)
}

pub fn evaluate_selector(selector: &str, name: &str, answer: &DnsResult) -> SelectorFinding {
    let mk = |verdict, text: String, records, ttl| SelectorFinding {
        selector: selector.to_string(),
        verdict,
        text,
        records,
        ttl,
    };
    let a = match answer {
        Err(e) => {
            return mk(
                Verdict::Error,
                format!(
                    "selector {selector}: the key lookup at {name} failed ({e}); verifiers return TEMPFAIL"
                ),
                vec![],
                None,
            );
        }
        Ok(a) => a,
    };
    let ttl = Some(a.ttl());
    let txts = a.txt();
    if txts.is_empty() {
        return mk(
            Verdict::Fail,
            format!(
                "selector {selector}: no key record at {name} (verifiers: PERMFAIL \"no key\")"
            ),
            vec![],
            ttl,
        );
    }
    let records: Vec<String> = txts.iter().map(|t| format!("{selector}: {t}")).collect();
    // Several key records: behaviour is unspecified; evaluate the first
    // that parses, as verifiers do, and warn (checks.md §4.3).
    let mut results: Vec<(Verdict, String)> = txts
        .iter()
        .map(|t| {
            let (v, text, _) = evaluate_key_record(t);
            (v, text)
        })
        .collect();
    let (mut v, mut text) = results
        .iter()
        .find(|(v, _)| *v != Verdict::Fail)
        .cloned()
        .unwrap_or_else(|| results.remove(0));
    if txts.len() > 1 {
        v = v.worst(Verdict::Warn);
        text.push_str(&format!(
            "; {} TXT records at {name}, which verifiers pick from unpredictably",
            txts.len()
        ));
    }
    mk(v, format!("selector {selector}: {text}"), records, ttl)
}

/// Combine the selectors into the one `dkim` check.
pub fn evaluate(domain: &str, findings: &[SelectorFinding]) -> CheckResult {
    if findings.is_empty() {
        return CheckResult::new(
            "dkim",
            Verdict::None,
            format!(
                "No DKIM selector is known for {domain}; selectors cannot be enumerated in DNS, so nothing was checked."
            ),
            vec![],
        );
    }
    let verdict = findings
        .iter()
        .fold(Verdict::Pass, |acc, f| acc.worst(f.verdict));
    let ttl = findings.iter().fold(None, |acc, f| min_ttl(acc, f.ttl));
    let detail = format!(
        "DKIM keys of {domain}: {}.",
        findings
            .iter()
            .map(|f| f.text.as_str())
            .collect::<Vec<_>>()
            .join("; ")
    );
    let records = findings.iter().flat_map(|f| f.records.clone()).collect();
    CheckResult::new("dkim", verdict, detail, records).with_ttl(ttl)
}
