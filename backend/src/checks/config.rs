//! Check configuration, blocklist zones and their return-code tables
//! (checks.md §6.1–§6.3).

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use super::CheckError;
use super::Verdict;
use super::names;

#[derive(Clone, Debug)]
pub struct CheckConfig {
    /// Empty: the system resolver (/etc/resolv.conf). Blocklists refuse
    /// public resolvers (checks.md §0.4), so operators point this at their
    /// own recursive resolver.
    pub nameservers: Vec<SocketAddr>,
    /// Per query attempt.
    pub timeout: Duration,
    pub attempts: usize,
    /// Maximum DNS queries in flight for this checker.
    pub concurrency: usize,
    pub dnsbl: Vec<ZoneSpec>,
    pub rhsbl: Vec<ZoneSpec>,
    pub mta_sts_port: u16,
    pub mta_sts_extra_root_pem: Option<Vec<u8>>,
    /// Query each zone's RFC 5782 §5 test points before trusting a "not
    /// listed" answer (checks.md §6.2 step 6).
    pub zone_health_check: bool,
    /// Whole-request bound for the MTA-STS policy fetch.
    pub http_timeout: Duration,
}

/// IPv4 lists chosen for the default set: the widely used, free-to-query
/// lists of checks.md §6.3, excluding SORBS (dead, §6.2) and SenderScore
/// (needs a registered resolver). Eight zones, the benchmark's workload.
pub const DEFAULT_DNSBL: &[&str] = &[
    "zen.spamhaus.org",
    "b.barracudacentral.org",
    "bl.spamcop.net",
    "psbl.surriel.com",
    "bl.mailspike.net",
    "dnsbl-1.uceprotect.net",
    "dnsbl-2.uceprotect.net",
    "dnsbl-3.uceprotect.net",
];

pub const DEFAULT_RHSBL: &[&str] = &["dbl.spamhaus.org", "multi.surbl.org", "multi.uribl.com"];

impl Default for CheckConfig {
    fn default() -> Self {
        CheckConfig {
            nameservers: Vec::new(),
            // checkdmarc uses 2 s (checks.md §8.1); long enough for a slow
            // authoritative server, short enough for a dashboard.
            timeout: Duration::from_secs(2),
            attempts: 2,
            concurrency: 64,
            dnsbl: DEFAULT_DNSBL
                .iter()
                .filter_map(|z| ZoneSpec::parse(z).ok())
                .collect(),
            rhsbl: DEFAULT_RHSBL
                .iter()
                .filter_map(|z| ZoneSpec::parse(z).ok())
                .collect(),
            mta_sts_port: 443,
            mta_sts_extra_root_pem: None,
            zone_health_check: true,
            http_timeout: Duration::from_secs(10),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ZoneSpec {
    /// Lower-case, no trailing dot.
    pub zone: String,
    pub table: ReturnCodeTable,
}

impl ZoneSpec {
    /// `ZONE[=TABLE]` as given to `--dnsbl` / `--rhsbl`. Without TABLE the
    /// table is inferred from the zone name (so a DQS mirror
    /// `<key>.zen.dq.spamhaus.net` still reads Spamhaus codes), falling back
    /// to the generic rules of §6.2.
    pub fn parse(s: &str) -> Result<ZoneSpec, CheckError> {
        let bad = |reason: &str| CheckError::InvalidZoneSpec {
            spec: s.to_string(),
            reason: reason.to_string(),
        };
        let (zone, table) = match s.split_once('=') {
            Some((z, t)) => (z.trim(), Some(t.trim())),
            None => (s.trim(), None),
        };
        let zone = zone.trim_end_matches('.').to_ascii_lowercase();
        if names::hostname_syntax(&zone).is_err() {
            return Err(bad("not a valid DNS zone name"));
        }
        let table = match table {
            Some(t) => ReturnCodeTable::from_name(t).ok_or_else(|| {
                bad(&format!(
                    "unknown return-code table {t:?} (known: {})",
                    ReturnCodeTable::ALL
                        .iter()
                        .map(|t| t.name())
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
            })?,
            None => ReturnCodeTable::infer(&zone),
        };
        Ok(ZoneSpec { zone, table })
    }
}

impl std::fmt::Display for ZoneSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}={}", self.zone, self.table.name())
    }
}

/// A return-code table of checks.md §6.3, named as in the CLI flags.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ReturnCodeTable {
    SpamhausZen,
    SpamhausSblXblPbl,
    SpamhausDbl,
    SpamhausZrd,
    Barracuda,
    Spamcop,
    Uceprotect1,
    Uceprotect2,
    Uceprotect3,
    Psbl,
    MailspikeBl,
    MailspikeRep,
    Surbl,
    Uribl,
    Dnswl,
    Senderscore,
    /// §6.2/§6.3: `127.255.255.0/24` is an error, any other 127/8 is listed.
    Generic,
}

/// What one returned address means.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CodeMeaning {
    /// `Fail`/`Warn` = listed, `Pass` = allowlisted or neutral, `Error` =
    /// the list refused or could not answer (never "listed", §6.2 step 4).
    pub verdict: Verdict,
    pub text: String,
}

impl CodeMeaning {
    fn new(verdict: Verdict, text: impl Into<String>) -> Self {
        CodeMeaning {
            verdict,
            text: text.into(),
        }
    }
}

impl ReturnCodeTable {
    pub const ALL: &'static [ReturnCodeTable] = &[
        ReturnCodeTable::SpamhausZen,
        ReturnCodeTable::SpamhausSblXblPbl,
        ReturnCodeTable::SpamhausDbl,
        ReturnCodeTable::SpamhausZrd,
        ReturnCodeTable::Barracuda,
        ReturnCodeTable::Spamcop,
        ReturnCodeTable::Uceprotect1,
        ReturnCodeTable::Uceprotect2,
        ReturnCodeTable::Uceprotect3,
        ReturnCodeTable::Psbl,
        ReturnCodeTable::MailspikeBl,
        ReturnCodeTable::MailspikeRep,
        ReturnCodeTable::Surbl,
        ReturnCodeTable::Uribl,
        ReturnCodeTable::Dnswl,
        ReturnCodeTable::Senderscore,
        ReturnCodeTable::Generic,
    ];

    pub fn name(self) -> &'static str {
        match self {
            ReturnCodeTable::SpamhausZen => "spamhaus-zen",
            ReturnCodeTable::SpamhausSblXblPbl => "spamhaus-sbl-xbl-pbl",
            ReturnCodeTable::SpamhausDbl => "spamhaus-dbl",
            ReturnCodeTable::SpamhausZrd => "spamhaus-zrd",
            ReturnCodeTable::Barracuda => "barracuda",
            ReturnCodeTable::Spamcop => "spamcop",
            ReturnCodeTable::Uceprotect1 => "uceprotect-1",
            ReturnCodeTable::Uceprotect2 => "uceprotect-2",
            ReturnCodeTable::Uceprotect3 => "uceprotect-3",
            ReturnCodeTable::Psbl => "psbl",
            ReturnCodeTable::MailspikeBl => "mailspike-bl",
            ReturnCodeTable::MailspikeRep => "mailspike-rep",
            ReturnCodeTable::Surbl => "surbl",
            ReturnCodeTable::Uribl => "uribl",
            ReturnCodeTable::Dnswl => "dnswl",
            ReturnCodeTable::Senderscore => "senderscore",
            ReturnCodeTable::Generic => "generic",
        }
    }

    pub fn from_name(name: &str) -> Option<ReturnCodeTable> {
        let name = name.to_ascii_lowercase();
        ReturnCodeTable::ALL
            .iter()
            .copied()
            .find(|t| t.name() == name)
    }

    /// Default table from the zone's own name (§6.1), matching on the
    /// trailing labels so mirrors and keyed feeds are recognised.
    pub fn infer(zone: &str) -> ReturnCodeTable {
        let z = zone.trim_end_matches('.').to_ascii_lowercase();
        let ends = |suffix: &str| z == suffix || z.ends_with(&format!(".{suffix}"));
        if ends("zen.spamhaus.org") || ends("zen.dq.spamhaus.net") {
            ReturnCodeTable::SpamhausZen
        } else if ["sbl.spamhaus.org", "xbl.spamhaus.org", "pbl.spamhaus.org"]
            .iter()
            .any(|s| ends(s))
            || ends("sbl-xbl.spamhaus.org")
            || ends("sbl.dq.spamhaus.net")
            || ends("xbl.dq.spamhaus.net")
            || ends("pbl.dq.spamhaus.net")
        {
            ReturnCodeTable::SpamhausSblXblPbl
        } else if ends("dbl.spamhaus.org") || ends("dbl.dq.spamhaus.net") {
            ReturnCodeTable::SpamhausDbl
        } else if ends("zrd.spamhaus.org") || ends("zrd.dq.spamhaus.net") {
            ReturnCodeTable::SpamhausZrd
        } else if ends("b.barracudacentral.org") {
            ReturnCodeTable::Barracuda
        } else if ends("bl.spamcop.net") {
            ReturnCodeTable::Spamcop
        } else if ends("dnsbl-1.uceprotect.net") {
            ReturnCodeTable::Uceprotect1
        } else if ends("dnsbl-2.uceprotect.net") {
            ReturnCodeTable::Uceprotect2
        } else if ends("dnsbl-3.uceprotect.net") {
            ReturnCodeTable::Uceprotect3
        } else if ends("psbl.surriel.com") {
            ReturnCodeTable::Psbl
        } else if ends("bl.mailspike.net") {
            ReturnCodeTable::MailspikeBl
        } else if ends("rep.mailspike.net") {
            ReturnCodeTable::MailspikeRep
        } else if ends("multi.surbl.org") {
            ReturnCodeTable::Surbl
        } else if ends("multi.uribl.com") {
            ReturnCodeTable::Uribl
        } else if ends("list.dnswl.org") || ends("dwl.dnswl.org") {
            ReturnCodeTable::Dnswl
        } else if ends("bl.score.senderscore.com") {
            ReturnCodeTable::Senderscore
        } else {
            ReturnCodeTable::Generic
        }
    }

    /// Lists with IPv4 data only (§6.1): an IPv6 address is "n/a", not clean.
    pub fn ipv4_only(self) -> bool {
        matches!(
            self,
            ReturnCodeTable::Barracuda
                | ReturnCodeTable::Spamcop
                | ReturnCodeTable::Psbl
                | ReturnCodeTable::Uceprotect1
                | ReturnCodeTable::Uceprotect2
                | ReturnCodeTable::Uceprotect3
        )
    }

    /// Positive test point for a domain list, relative to the zone (§6.3
    /// "test points"; RFC 5782 §5 `TEST` for lists with none of their own).
    /// `None` for lists that publish none.
    pub fn domain_test_point(self) -> Option<&'static str> {
        match self {
            ReturnCodeTable::SpamhausDbl => Some("dbltest.com"),
            ReturnCodeTable::Surbl => Some("test.surbl.org"),
            ReturnCodeTable::Uribl => Some("test.uribl.com"),
            ReturnCodeTable::SpamhausZrd | ReturnCodeTable::Dnswl => None,
            _ => Some("test"),
        }
    }

    /// Whether the list is expected to list the IPv4 test point 127.0.0.2
    /// (RFC 5782 §5); allowlists and reputation lists do not promise it.
    pub fn has_ipv4_test_point(self) -> bool {
        !matches!(
            self,
            ReturnCodeTable::MailspikeRep | ReturnCodeTable::Dnswl | ReturnCodeTable::Senderscore
        )
    }

    /// Meaning of one A record returned by the list (§6.2 steps 2–4).
    pub fn interpret(self, code: Ipv4Addr) -> CodeMeaning {
        use ReturnCodeTable as T;
        use Verdict::{Error, Fail, Pass, Warn};
        let o = code.octets();
        if o[0] != 127 {
            return CodeMeaning::new(
                Error,
                format!(
                    "answer {code} is outside 127.0.0.0/8: the zone is broken or wildcarded, not a listing"
                ),
            );
        }
        let spamhaus_error = |last: u8| -> Option<CodeMeaning> {
            if o[1] == 255 && o[2] == 255 {
                let why = match last {
                    250 | 251 => "the Spamhaus DQS key was rejected",
                    252 => "the zone name has a typo",
                    254 => {
                        "the query came through a public/open resolver (or one with generic rDNS) that Spamhaus refuses"
                    }
                    255 => "the resolver exceeded the Spamhaus query limit",
                    _ => "Spamhaus refused the query",
                };
                return Some(CodeMeaning::new(
                    Error,
                    format!("{code}: {why}; this is not a listing"),
                ));
            }
            None
        };
        match self {
            T::SpamhausZen | T::SpamhausSblXblPbl => {
                if let Some(e) = spamhaus_error(o[3]) {
                    return e;
                }
                if o[1] == 0 && o[2] == 0 {
                    let text = match o[3] {
                        2 => "SBL (Spamhaus Block List)",
                        3 => "CSS (SBL, automated snowshoe detection)",
                        9 => "DROP (hijacked or criminal network)",
                        4..=7 => "XBL (exploited host: bot, proxy or malware)",
                        10 => "PBL, ISP-maintained (this address should not send direct-to-MX)",
                        11 => {
                            "PBL, Spamhaus-maintained (this address should not send direct-to-MX)"
                        }
                        30 => "BCL (botnet controller)",
                        _ => "listed with an unrecognised code",
                    };
                    return CodeMeaning::new(Fail, format!("{code} {text}"));
                }
                CodeMeaning::new(Fail, format!("{code} listed with an unrecognised code"))
            }
            T::SpamhausDbl | T::SpamhausZrd => {
                if let Some(e) = spamhaus_error(o[3]) {
                    return e;
                }
                if self == T::SpamhausDbl && o[1] == 0 && o[2] == 1 {
                    let text = match o[3] {
                        2 => "spam domain",
                        4 => "phishing domain",
                        5 => "malware domain",
                        6 => "botnet C&C domain",
                        102 => "abused legitimate domain (spam)",
                        103 => "abused redirector/shortener",
                        104 => "abused legitimate domain (phishing)",
                        105 => "abused legitimate domain (malware)",
                        106 => "abused legitimate domain (botnet C&C)",
                        255 => {
                            return CodeMeaning::new(
                                Error,
                                format!(
                                    "{code}: an IP address was sent to a domain list; not a listing"
                                ),
                            );
                        }
                        _ => "listed with an unrecognised code",
                    };
                    return CodeMeaning::new(Fail, format!("{code} {text}"));
                }
                if self == T::SpamhausZrd && o[1] == 0 && o[2] == 2 && (2..=24).contains(&o[3]) {
                    return CodeMeaning::new(
                        Warn,
                        format!(
                            "{code} newly observed domain, first seen {} h ago",
                            o[3] - 2
                        ),
                    );
                }
                CodeMeaning::new(Fail, format!("{code} listed with an unrecognised code"))
            }
            T::Barracuda | T::Spamcop | T::Psbl | T::Uceprotect1 => match code {
                c if c == Ipv4Addr::new(127, 0, 0, 2) => {
                    CodeMeaning::new(Fail, format!("{code} listed"))
                }
                _ => generic(code),
            },
            T::Uceprotect2 | T::Uceprotect3 => {
                let scope = if self == T::Uceprotect2 {
                    "the surrounding allocation"
                } else {
                    "the whole network (ASN)"
                };
                match generic(code) {
                    m if m.verdict == Fail => CodeMeaning::new(
                        Warn,
                        format!("{code} collateral listing of {scope}, not of this address alone"),
                    ),
                    m => m,
                }
            }
            T::MailspikeBl => {
                let text = match (o[1], o[2], o[3]) {
                    (0, 0, 2) => "listed",
                    (0, 0, 10) => "worst reputation",
                    (0, 0, 11) => "very bad reputation",
                    (0, 0, 12) => "bad reputation",
                    _ => return generic(code),
                };
                CodeMeaning::new(Fail, format!("{code} {text}"))
            }
            T::MailspikeRep => match (o[1], o[2], o[3]) {
                (0, 0, 10..=12) => CodeMeaning::new(Warn, format!("{code} bad reputation")),
                (0, 0, 13..=16) => CodeMeaning::new(Pass, format!("{code} neutral reputation")),
                (0, 0, 17..=20) => CodeMeaning::new(Pass, format!("{code} good reputation")),
                _ => generic(code),
            },
            T::Surbl => {
                if o[1..3] != [0, 0] {
                    return generic(code);
                }
                let bits = o[3];
                if bits & 1 == 1 {
                    return CodeMeaning::new(
                        Error,
                        format!(
                            "{code}: SURBL refused the query (blocked resolver); not a listing"
                        ),
                    );
                }
                let names = [
                    (4, "DM"),
                    (8, "PH phishing"),
                    (16, "MW malware"),
                    (32, "CT"),
                    (64, "ABUSE"),
                    (128, "CR cracked"),
                ];
                let hit: Vec<&str> = names
                    .iter()
                    .filter(|(b, _)| bits & b != 0)
                    .map(|(_, n)| *n)
                    .collect();
                if hit.is_empty() {
                    CodeMeaning::new(Fail, format!("{code} listed with an unrecognised code"))
                } else {
                    CodeMeaning::new(Fail, format!("{code} listed: {}", hit.join(", ")))
                }
            }
            T::Uribl => {
                if o[1..3] != [0, 0] {
                    return generic(code);
                }
                let bits = o[3];
                if bits == 1 || bits & 1 == 1 {
                    return CodeMeaning::new(
                        Error,
                        format!(
                            "{code}: URIBL refused the query (public resolver or volume); not a listing"
                        ),
                    );
                }
                if bits & 2 != 0 {
                    CodeMeaning::new(Fail, format!("{code} URIBL black"))
                } else if bits & 12 != 0 {
                    let which = if bits & 4 != 0 { "grey" } else { "red" };
                    CodeMeaning::new(Warn, format!("{code} URIBL {which}"))
                } else {
                    CodeMeaning::new(Fail, format!("{code} listed with an unrecognised code"))
                }
            }
            T::Dnswl => {
                if o[3] == 255 || o[2] == 10 {
                    return CodeMeaning::new(
                        Error,
                        format!("{code}: DNSWL refused the query (over limit); not a result"),
                    );
                }
                let trust = match o[3] {
                    0 => "none",
                    1 => "low",
                    2 => "medium",
                    3 => "high",
                    _ => "unknown",
                };
                CodeMeaning::new(Pass, format!("{code} allowlisted (trust {trust})"))
            }
            T::Senderscore => {
                if code == Ipv4Addr::new(127, 255, 255, 255) {
                    return CodeMeaning::new(
                        Error,
                        format!("{code}: unregistered resolver; not a listing"),
                    );
                }
                generic(code)
            }
            T::Generic => generic(code),
        }
    }
}

fn generic(code: Ipv4Addr) -> CodeMeaning {
    let o = code.octets();
    if o[0] == 127 && o[1] == 255 && o[2] == 255 {
        CodeMeaning::new(
            Verdict::Error,
            format!(
                "{code}: query refused or over limit (127.255.255.0/24 convention); not a listing"
            ),
        )
    } else if o[0] == 127 {
        CodeMeaning::new(Verdict::Fail, format!("{code} listed"))
    } else {
        CodeMeaning::new(
            Verdict::Error,
            format!("answer {code} is outside 127.0.0.0/8: the zone is broken or wildcarded"),
        )
    }
}
