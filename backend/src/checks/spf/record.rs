//! SPF record parsing (RFC 7208 §4.5, §4.6, §5, §6, §7, §12 ABNF).
//!
//! Strict on purpose, where mail-auth 0.13.3 is lenient (checks.md §3.6):
//! unknown mechanisms, bad `ip4`/`ip6` networks and out-of-range CIDR
//! lengths are syntax errors, i.e. `permerror`.

use std::net::{Ipv4Addr, Ipv6Addr};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Qualifier {
    Pass,
    Fail,
    SoftFail,
    Neutral,
}

impl Qualifier {
    pub fn symbol(self) -> char {
        match self {
            Qualifier::Pass => '+',
            Qualifier::Fail => '-',
            Qualifier::SoftFail => '~',
            Qualifier::Neutral => '?',
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Mechanism {
    All,
    Include(MacroString),
    A {
        domain: Option<MacroString>,
        v4: u8,
        v6: u8,
    },
    Mx {
        domain: Option<MacroString>,
        v4: u8,
        v6: u8,
    },
    Ptr(Option<MacroString>),
    Ip4(Ipv4Addr, u8),
    Ip6(Ipv6Addr, u8),
    Exists(MacroString),
}

impl Mechanism {
    /// RFC 7208 §4.6.4: the terms that cause DNS queries and count
    /// towards the limit of 10.
    pub fn counts_as_lookup(&self) -> bool {
        matches!(
            self,
            Mechanism::Include(_)
                | Mechanism::A { .. }
                | Mechanism::Mx { .. }
                | Mechanism::Ptr(_)
                | Mechanism::Exists(_)
        )
    }

    pub fn name(&self) -> &'static str {
        match self {
            Mechanism::All => "all",
            Mechanism::Include(_) => "include",
            Mechanism::A { .. } => "a",
            Mechanism::Mx { .. } => "mx",
            Mechanism::Ptr(_) => "ptr",
            Mechanism::Ip4(..) => "ip4",
            Mechanism::Ip6(..) => "ip6",
            Mechanism::Exists(_) => "exists",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Directive {
    pub qualifier: Qualifier,
    pub mechanism: Mechanism,
    /// The term as written, for traces.
    pub text: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct SpfRecord {
    pub directives: Vec<Directive>,
    pub redirect: Option<MacroString>,
    pub exp: Option<MacroString>,
}

/// One piece of a macro-string (RFC 7208 §7.1).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MacroPart {
    Literal(String),
    Expand {
        letter: char,
        /// Upper-case letter: URL-encode the value (§7.3).
        url_encode: bool,
        digits: Option<usize>,
        reverse: bool,
        delimiters: String,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MacroString {
    pub parts: Vec<MacroPart>,
    pub text: String,
}

impl MacroString {
    pub fn has_macros(&self) -> bool {
        self.parts
            .iter()
            .any(|p| matches!(p, MacroPart::Expand { .. }))
    }

    /// The literal value, when there are no macros.
    pub fn literal(&self) -> Option<String> {
        if self.has_macros() {
            None
        } else {
            Some(
                self.parts
                    .iter()
                    .map(|p| match p {
                        MacroPart::Literal(s) => s.as_str(),
                        MacroPart::Expand { .. } => "",
                    })
                    .collect(),
            )
        }
    }
}

/// `v=spf1` followed by SP or end of record, case-insensitive (RFC 7208
/// §4.5; ABNF strings are case-insensitive, RFC 5234). Leading whitespace
/// disqualifies the record (checks.md §3.2 step 3).
pub fn is_spf_record(txt: &str) -> bool {
    let b = txt.as_bytes();
    b.len() >= 6 && b[..6].eq_ignore_ascii_case(b"v=spf1") && (b.len() == 6 || b[6] == b' ')
}

pub fn parse_macro_string(s: &str, exp: bool) -> Result<MacroString, String> {
    let mut parts = Vec::new();
    let mut lit = String::new();
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '%' {
            // macro-literal = %x21-24 / %x26-7E; `exp` text may also hold spaces.
            if !(('\x21'..='\x7e').contains(&c) || (exp && c == ' ')) {
                return Err(format!("invalid character {c:?} in {s:?}"));
            }
            lit.push(c);
            continue;
        }
        match chars.next() {
            Some('%') => lit.push('%'),
            Some('_') => lit.push(' '),
            Some('-') => lit.push_str("%20"),
            Some('{') => {
                if !lit.is_empty() {
                    parts.push(MacroPart::Literal(std::mem::take(&mut lit)));
                }
                let letter = chars.next().ok_or("unterminated macro")?;
                let lower = letter.to_ascii_lowercase();
                let allowed = if exp { "slodiphcrtv" } else { "slodiphv" };
                if !allowed.contains(lower) {
                    return Err(format!("invalid macro letter {letter:?} in {s:?}"));
                }
                let mut digits = String::new();
                while let Some(d) = chars.peek().copied().filter(char::is_ascii_digit) {
                    digits.push(d);
                    chars.next();
                }
                let mut reverse = false;
                if matches!(chars.peek(), Some('r') | Some('R')) {
                    reverse = true;
                    chars.next();
                }
                let mut delimiters = String::new();
                loop {
                    match chars.next() {
                        Some('}') => break,
                        Some(d) if ".-+,/_=".contains(d) => delimiters.push(d),
                        Some(other) => {
                            return Err(format!("invalid character {other:?} in macro of {s:?}"));
                        }
                        None => return Err(format!("unterminated macro in {s:?}")),
                    }
                }
                let digits = if digits.is_empty() {
                    None
                } else {
                    let n: usize = digits
                        .parse()
                        .map_err(|_| format!("bad macro digits in {s:?}"))?;
                    if n == 0 {
                        // §7.3: "If a DIGIT is specified, the value MUST be nonzero."
                        return Err(format!("macro transformer 0 in {s:?}"));
                    }
                    Some(n)
                };
                parts.push(MacroPart::Expand {
                    letter: lower,
                    url_encode: letter.is_ascii_uppercase(),
                    digits,
                    reverse,
                    delimiters,
                });
            }
            other => return Err(format!("invalid macro %{} in {s:?}", other.unwrap_or(' '))),
        }
    }
    if !lit.is_empty() {
        parts.push(MacroPart::Literal(lit));
    }
    Ok(MacroString {
        parts,
        text: s.to_string(),
    })
}

/// domain-spec = macro-string domain-end (§7.1): a literal ending must be a
/// plausible top label (not all numeric), or the string ends in a macro.
fn parse_domain_spec(s: &str) -> Result<MacroString, String> {
    if s.is_empty() {
        return Err("empty domain".into());
    }
    let m = parse_macro_string(s, false)?;
    if let Some(MacroPart::Literal(tail)) = m.parts.last() {
        let tail = tail.strip_suffix('.').unwrap_or(tail);
        let top = tail.rsplit('.').next().unwrap_or("");
        let whole_literal = m.parts.len() == 1;
        if whole_literal && !tail.contains('.') {
            return Err(format!("{s:?} is not a fully qualified domain"));
        }
        if top.is_empty()
            || top.bytes().all(|b| b.is_ascii_digit())
            || !top.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            return Err(format!("{s:?} does not end in a valid top-level label"));
        }
    }
    Ok(m)
}

fn parse_cidr(s: &str, max: u8) -> Result<u8, String> {
    // ABNF: "0" / %x31-39 0*1DIGIT (no leading zeros).
    if s.is_empty() || (s.len() > 1 && s.starts_with('0')) || !s.bytes().all(|b| b.is_ascii_digit())
    {
        return Err(format!("invalid CIDR length /{s}"));
    }
    let n: u16 = s.parse().map_err(|_| format!("invalid CIDR length /{s}"))?;
    if n > u16::from(max) {
        return Err(format!("CIDR length /{n} exceeds {max}"));
    }
    Ok(n as u8)
}

/// Split `arg` into domain part and dual-cidr-length (`/4` and/or `//6`).
fn split_dual_cidr(arg: &str) -> Result<(&str, u8, u8), String> {
    let (rest, v6) = match arg.find("//") {
        Some(i) => (&arg[..i], parse_cidr(&arg[i + 2..], 128)?),
        None => (arg, 128),
    };
    let (domain, v4) = match rest.rfind('/') {
        Some(i) => (&rest[..i], parse_cidr(&rest[i + 1..], 32)?),
        None => (rest, 32),
    };
    Ok((domain, v4, v6))
}

fn is_modifier_name(n: &str) -> bool {
    let mut b = n.bytes();
    b.next().is_some_and(|c| c.is_ascii_alphabetic())
        && b.all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_' || c == b'.')
}

/// Parse a full record (which must pass `is_spf_record`). Any syntax error
/// makes the whole record a `permerror` (§4.6).
pub fn parse_record(txt: &str) -> Result<SpfRecord, String> {
    if !is_spf_record(txt) {
        return Err("not an SPF record".into());
    }
    let mut rec = SpfRecord::default();
    for term in txt[6..].split(' ').filter(|t| !t.is_empty()) {
        // Modifier: name "=" macro-string, with the name before any ':' or '/'.
        if let Some(eq) = term.find('=') {
            let name = &term[..eq];
            if !name.contains(':') && !name.contains('/') && is_modifier_name(name) {
                let value = &term[eq + 1..];
                match name.to_ascii_lowercase().as_str() {
                    "redirect" => {
                        if rec.redirect.is_some() {
                            return Err("redirect= appears more than once (RFC 7208 §6)".into());
                        }
                        rec.redirect = Some(parse_domain_spec(value)?);
                    }
                    "exp" => {
                        if rec.exp.is_some() {
                            return Err("exp= appears more than once (RFC 7208 §6)".into());
                        }
                        rec.exp = Some(parse_domain_spec(value)?);
                    }
                    // Unknown modifiers are ignored but must still be
                    // syntactically valid (§6, §12).
                    _ => {
                        parse_macro_string(value, false)?;
                    }
                }
                continue;
            }
        }
        let (qualifier, body) = match term.as_bytes()[0] {
            b'+' => (Qualifier::Pass, &term[1..]),
            b'-' => (Qualifier::Fail, &term[1..]),
            b'~' => (Qualifier::SoftFail, &term[1..]),
            b'?' => (Qualifier::Neutral, &term[1..]),
            _ => (Qualifier::Pass, term),
        };
        let name_end = body.find([':', '/']).unwrap_or(body.len());
        let name = body[..name_end].to_ascii_lowercase();
        let rest = &body[name_end..];
        let arg = rest.strip_prefix(':');
        let mechanism = match name.as_str() {
            "all" => {
                if !rest.is_empty() {
                    return Err(format!("\"all\" takes no argument: {term:?}"));
                }
                Mechanism::All
            }
            "include" | "exists" => {
                let a = arg.ok_or_else(|| format!("{name} needs a domain: {term:?}"))?;
                let d = parse_domain_spec(a)?;
                if name == "include" {
                    Mechanism::Include(d)
                } else {
                    Mechanism::Exists(d)
                }
            }
            "a" | "mx" => {
                let spec = match arg {
                    Some(a) => a,
                    None if rest.is_empty() || rest.starts_with('/') => rest,
                    None => return Err(format!("invalid term {term:?}")),
                };
                let (domain, v4, v6) = split_dual_cidr(spec)?;
                let domain = if arg.is_some() {
                    Some(parse_domain_spec(domain)?)
                } else {
                    None
                };
                if name == "a" {
                    Mechanism::A { domain, v4, v6 }
                } else {
                    Mechanism::Mx { domain, v4, v6 }
                }
            }
            "ptr" => {
                if !rest.is_empty() && arg.is_none() {
                    return Err(format!("invalid term {term:?}"));
                }
                Mechanism::Ptr(arg.map(parse_domain_spec).transpose()?)
            }
            "ip4" => {
                let a = arg.ok_or_else(|| format!("ip4 needs a network: {term:?}"))?;
                let (net, len) = match a.split_once('/') {
                    Some((n, l)) => (n, parse_cidr(l, 32)?),
                    None => (a, 32),
                };
                let ip: Ipv4Addr = net
                    .parse()
                    .map_err(|_| format!("invalid IPv4 network {net:?}"))?;
                Mechanism::Ip4(ip, len)
            }
            "ip6" => {
                let a = arg.ok_or_else(|| format!("ip6 needs a network: {term:?}"))?;
                let (net, len) = match a.split_once('/') {
                    Some((n, l)) => (n, parse_cidr(l, 128)?),
                    None => (a, 128),
                };
                let ip: Ipv6Addr = net
                    .parse()
                    .map_err(|_| format!("invalid IPv6 network {net:?}"))?;
                Mechanism::Ip6(ip, len)
            }
            _ => return Err(format!("unknown mechanism {term:?}")),
        };
        rec.directives.push(Directive {
            qualifier,
            mechanism,
            text: term.to_string(),
        });
    }
    Ok(rec)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strict_syntax() {
        assert!(parse_record("v=spf1 ip4:192.0.2.10 foo:bar -all").is_err());
        assert!(parse_record("v=spf1 ip4:999.1.1.1 -all").is_err());
        assert!(parse_record("v=spf1 ip4:192.0.2.0/33 -all").is_err());
        assert!(parse_record("v=spf1 redirect=a.test redirect=b.test").is_err());
        assert!(parse_record("v=spf1 a/24//64 mx:%{d}.example.test ~all").is_ok());
        assert!(parse_record("v=spf1 exists:%{ir}.%{l1r-}.%{d}.test -all").is_ok());
        assert!(!is_spf_record("v=spf10 -all"));
        assert!(!is_spf_record(" v=spf1 -all"));
        assert!(is_spf_record("V=SPF1 -all"));
    }
}
