//! Mailbox providers and security gateways, recognised from MX host names, recipient
//! domains and the wording of their replies.
//!
//! The app groups incidents by provider ("destination"), so MX and domain matching is
//! exact: whole DNS labels, ASCII case-insensitive, trailing dot ignored. MX suffixes come
//! from the providers' published MX sets (as also used by KumoMTA's bundled
//! `policy-extras/shaping.toml` provider rollups).

use std::sync::LazyLock;

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};

#[derive(Debug, PartialEq, Eq, Hash)]
pub struct Provider {
    pub key: &'static str,
    pub name: &'static str,
}

macro_rules! providers {
    ($($ident:ident = $key:literal, $name:literal;)*) => {
        $(pub static $ident: Provider = Provider { key: $key, name: $name };)*
        /// Every known provider.
        pub static ALL: &[&Provider] = &[$(&$ident),*];
    };
}

providers! {
    GOOGLE = "google", "Google";
    MICROSOFT = "microsoft", "Microsoft";
    YAHOO = "yahoo", "Yahoo";
    APPLE = "apple", "Apple";
    GMX = "gmx", "GMX";
    WEBDE = "webde", "WEB.DE";
    MAILCOM = "mailcom", "mail.com";
    IONOS = "ionos", "IONOS";
    ORANGE = "orange", "Orange";
    COMCAST = "comcast", "Comcast";
    MAILRU = "mailru", "Mail.ru";
    YANDEX = "yandex", "Yandex";
    PROOFPOINT = "proofpoint", "Proofpoint";
    MIMECAST = "mimecast", "Mimecast";
    BARRACUDA = "barracuda", "Barracuda";
    CISCO = "cisco", "Cisco Secure Email";
    MESSAGELABS = "messagelabs", "Broadcom Email Security (MessageLabs)";
    ZOHO = "zoho", "Zoho";
    FASTMAIL = "fastmail", "Fastmail";
    PROTON = "proton", "Proton";
    ATT = "att", "AT&T";
    COX = "cox", "Cox";
    SPECTRUM = "spectrum", "Spectrum";
    TONLINE = "tonline", "T-Online";
    FREE = "free", "Free";
    SFR = "sfr", "SFR";
    LAPOSTE = "laposte", "La Poste";
    LIBERO = "libero", "Libero";
    SEZNAM = "seznam", "Seznam";
    TENCENT = "tencent", "Tencent";
    NETEASE = "netease", "NetEase";
    NAVER = "naver", "Naver";
    GODADDY = "godaddy", "GoDaddy";
}

/// MX host suffixes (whole labels).
static MX_SUFFIXES: &[(&str, &Provider)] = &[
    ("google.com", &GOOGLE),
    ("googlemail.com", &GOOGLE),
    ("protection.outlook.com", &MICROSOFT),
    ("mx.microsoft", &MICROSOFT),
    ("hotmail.com", &MICROSOFT),
    ("outlook.com", &MICROSOFT),
    ("yahoodns.net", &YAHOO),
    ("yahoo.com", &YAHOO),
    ("aol.com", &YAHOO),
    ("icloud.com", &APPLE),
    ("me.com", &APPLE),
    ("gmx.net", &GMX),
    ("gmx.com", &GMX),
    ("gmx.de", &GMX),
    ("web.de", &WEBDE),
    ("mail.com", &MAILCOM),
    ("ionos.com", &IONOS),
    ("ionos.de", &IONOS),
    ("1and1.com", &IONOS),
    ("kundenserver.de", &IONOS),
    ("orange.fr", &ORANGE),
    ("wanadoo.fr", &ORANGE),
    ("comcast.net", &COMCAST),
    ("mail.ru", &MAILRU),
    ("yandex.ru", &YANDEX),
    ("yandex.net", &YANDEX),
    ("pphosted.com", &PROOFPOINT),
    ("ppe-hosted.com", &PROOFPOINT),
    ("mimecast.com", &MIMECAST),
    ("mimecast.co.za", &MIMECAST),
    ("mimecast-offshore.com", &MIMECAST),
    ("barracudanetworks.com", &BARRACUDA),
    ("iphmx.com", &CISCO),
    ("messagelabs.com", &MESSAGELABS),
    ("zoho.com", &ZOHO),
    ("zoho.eu", &ZOHO),
    ("zohomail.com", &ZOHO),
    ("messagingengine.com", &FASTMAIL),
    ("protonmail.ch", &PROTON),
    ("prodigy.net", &ATT),
    ("cox.net", &COX),
    ("charter.net", &SPECTRUM),
    ("rr.com", &SPECTRUM),
    ("t-online.de", &TONLINE),
    ("free.fr", &FREE),
    ("sfr.fr", &SFR),
    ("laposte.net", &LAPOSTE),
    ("libero.it", &LIBERO),
    ("seznam.cz", &SEZNAM),
    ("qq.com", &TENCENT),
    ("163.com", &NETEASE),
    ("126.com", &NETEASE),
    ("naver.com", &NAVER),
    ("secureserver.net", &GODADDY),
];

/// Recipient domains hosted by a provider. An entry ending in `.*` stands for the label
/// under any country TLD (`hotmail.co.uk`, `yahoo.fr`).
static DOMAINS: &[(&str, &Provider)] = &[
    ("gmail.com", &GOOGLE),
    ("googlemail.com", &GOOGLE),
    ("outlook.*", &MICROSOFT),
    ("hotmail.*", &MICROSOFT),
    ("live.*", &MICROSOFT),
    ("msn.com", &MICROSOFT),
    ("passport.com", &MICROSOFT),
    ("windowslive.com", &MICROSOFT),
    ("yahoo.*", &YAHOO),
    ("ymail.com", &YAHOO),
    ("rocketmail.com", &YAHOO),
    ("aol.*", &YAHOO),
    ("aim.com", &YAHOO),
    ("verizon.net", &YAHOO),
    ("icloud.com", &APPLE),
    ("me.com", &APPLE),
    ("mac.com", &APPLE),
    ("gmx.*", &GMX),
    ("web.de", &WEBDE),
    ("mail.com", &MAILCOM),
    ("orange.fr", &ORANGE),
    ("wanadoo.fr", &ORANGE),
    ("comcast.net", &COMCAST),
    ("mail.ru", &MAILRU),
    ("inbox.ru", &MAILRU),
    ("list.ru", &MAILRU),
    ("bk.ru", &MAILRU),
    ("yandex.*", &YANDEX),
    ("ya.ru", &YANDEX),
    ("zoho.com", &ZOHO),
    ("zohomail.com", &ZOHO),
    ("fastmail.com", &FASTMAIL),
    ("fastmail.fm", &FASTMAIL),
    ("proton.me", &PROTON),
    ("protonmail.com", &PROTON),
    ("pm.me", &PROTON),
    ("att.net", &ATT),
    ("sbcglobal.net", &ATT),
    ("bellsouth.net", &ATT),
    ("cox.net", &COX),
    ("charter.net", &SPECTRUM),
    ("spectrum.net", &SPECTRUM),
    ("roadrunner.com", &SPECTRUM),
    ("t-online.de", &TONLINE),
    ("free.fr", &FREE),
    ("sfr.fr", &SFR),
    ("laposte.net", &LAPOSTE),
    ("libero.it", &LIBERO),
    ("seznam.cz", &SEZNAM),
    ("email.cz", &SEZNAM),
    ("qq.com", &TENCENT),
    ("163.com", &NETEASE),
    ("126.com", &NETEASE),
    ("naver.com", &NAVER),
];

/// Strings receivers put in their replies. Gmail appends `gsmtp` to every reply (Google,
/// "Gmail SMTP errors and codes", support.google.com/a/answer/3726730); Microsoft names
/// its front-end hosts (`*.prod.protection.outlook.com`) and postmaster site; Yahoo points
/// at its Sender Hub.
static TEXT_NEEDLES: &[(&str, &Provider)] = &[
    ("gsmtp", &GOOGLE),
    ("support.google.com", &GOOGLE),
    ("google.com/mail", &GOOGLE),
    ("protection.outlook.com", &MICROSOFT),
    ("postmaster.live.com", &MICROSOFT),
    ("sendersupport.olc", &MICROSOFT),
    ("prod.outlook.com", &MICROSOFT),
    ("outlook.com", &MICROSOFT),
    ("hotmail.com", &MICROSOFT),
    ("exchangelabs.com", &MICROSOFT),
    ("messaging.microsoft.com", &MICROSOFT),
    ("postmaster.yahooinc.com", &YAHOO),
    ("senders.yahooinc.com", &YAHOO),
    ("postmaster.yahoo.com", &YAHOO),
    ("yahoo.com/postmaster", &YAHOO),
    ("help.yahoo.com", &YAHOO),
    ("yahoodns.net", &YAHOO),
    ("aol.com", &YAHOO),
    ("support.apple.com", &APPLE),
    ("icloud.com", &APPLE),
    ("mail.icloud", &APPLE),
    ("gmx.net", &GMX),
    ("gmx.com", &GMX),
    ("gmx.de", &GMX),
    ("web.de", &WEBDE),
    ("postmaster.1und1.de", &IONOS),
    ("ionos.com", &IONOS),
    ("orange.fr", &ORANGE),
    ("postmaster.orange", &ORANGE),
    ("wanadoo.fr", &ORANGE),
    ("comcast.net", &COMCAST),
    ("xfinity.com", &COMCAST),
    ("help.mail.ru", &MAILRU),
    ("mail.ru", &MAILRU),
    ("yandex", &YANDEX),
    ("pphosted.com", &PROOFPOINT),
    ("proofpoint", &PROOFPOINT),
    ("mimecast", &MIMECAST),
    // Not plain "barracuda": other receivers name the Barracuda blocklist in their replies.
    ("ess.barracudanetworks.com", &BARRACUDA),
    ("cuda_nsu", &BARRACUDA),
    ("iphmx.com", &CISCO),
    ("messagelabs", &MESSAGELABS),
    ("zoho.com", &ZOHO),
    ("zohomail", &ZOHO),
    ("messagingengine.com", &FASTMAIL),
    ("protonmail", &PROTON),
    ("att.net", &ATT),
    ("cox.net", &COX),
    ("charter.net", &SPECTRUM),
    ("t-online.de", &TONLINE),
    ("qq.com", &TENCENT),
    ("secureserver.net", &GODADDY),
];

static TEXT_AUTOMATON: LazyLock<Option<AhoCorasick>> = LazyLock::new(|| {
    AhoCorasickBuilder::new()
        .ascii_case_insensitive(true)
        .match_kind(MatchKind::LeftmostFirst)
        .build(TEXT_NEEDLES.iter().map(|(n, _)| *n))
        .ok()
});

/// Provider by its key (`"google"`).
pub fn provider_by_key(key: &str) -> Option<&'static Provider> {
    ALL.iter()
        .copied()
        .find(|p| p.key.eq_ignore_ascii_case(key))
}

fn normalise(host: &str) -> &str {
    let h = host.trim();
    h.strip_suffix('.').unwrap_or(h)
}

/// `host` is `suffix` or ends with `.suffix` (ASCII case-insensitive).
fn label_suffix(host: &str, suffix: &str) -> bool {
    let (h, s) = (host.as_bytes(), suffix.as_bytes());
    if h.len() == s.len() {
        return h.eq_ignore_ascii_case(s);
    }
    h.len() > s.len()
        && h[h.len() - s.len()..].eq_ignore_ascii_case(s)
        && h[h.len() - s.len() - 1] == b'.'
}

/// Provider of an MX host (`gmail-smtp-in.l.google.com.` → Google).
pub fn provider_from_mx(mx_host: &str) -> Option<&'static Provider> {
    let host = normalise(mx_host);
    if host.is_empty() {
        return None;
    }
    MX_SUFFIXES
        .iter()
        .find(|(suffix, _)| label_suffix(host, suffix))
        .map(|(_, p)| *p)
}

/// Provider hosting a recipient domain (`hotmail.co.uk` → Microsoft).
pub fn provider_from_domain(recipient_domain: &str) -> Option<&'static Provider> {
    let domain = normalise(recipient_domain);
    let domain = domain.rsplit_once('@').map_or(domain, |(_, d)| d);
    if domain.is_empty() {
        return None;
    }
    DOMAINS
        .iter()
        .find(|(pattern, _)| match pattern.strip_suffix(".*") {
            Some(label) => {
                // `label.tld` or `label.sld.tld` (yahoo.co.uk); the rest must be short
                // country/generic labels, not an arbitrary domain that starts with `live.`.
                let b = domain.as_bytes();
                b.len() > label.len() + 1
                    && b[..label.len()].eq_ignore_ascii_case(label.as_bytes())
                    && b[label.len()] == b'.'
                    && {
                        let rest = &domain[label.len() + 1..];
                        let labels: Vec<&str> = rest.split('.').collect();
                        (1..=2).contains(&labels.len())
                            && labels.iter().all(|l| {
                                (2..=3).contains(&l.len())
                                    && l.bytes().all(|c| c.is_ascii_alphabetic())
                            })
                    }
            }
            None => domain.eq_ignore_ascii_case(pattern),
        })
        .map(|(_, p)| *p)
}

/// Provider named by a reply's wording (`… - gsmtp`).
pub fn provider_from_text(reply_text: &str) -> Option<&'static Provider> {
    let ac = TEXT_AUTOMATON.as_ref()?;
    let hay = reply_text.as_bytes();
    for m in ac.find_iter(hay) {
        let (needle, provider) = TEXT_NEEDLES[m.pattern().as_usize()];
        // Whole-word only, so "gsmtp" does not fire inside another token.
        let before_ok = m.start() == 0 || !is_word(hay[m.start() - 1]);
        let after_ok = m.end() == hay.len() || !is_word(hay[m.end()]) || needle.ends_with('.');
        if before_ok && after_ok {
            return Some(provider);
        }
    }
    None
}

fn is_word(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'-'
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mx_hosts() {
        let cases = [
            ("aspmx.l.google.com", Some("google")),
            ("GMAIL-SMTP-IN.L.GOOGLE.COM.", Some("google")),
            ("contoso-com.mail.protection.outlook.com", Some("microsoft")),
            ("hotmail-com.olc.protection.outlook.com.", Some("microsoft")),
            ("contoso-com.r-v1.mx.microsoft", Some("microsoft")),
            ("mta5.am0.yahoodns.net", Some("yahoo")),
            ("mx01.mail.icloud.com", Some("apple")),
            ("mx00.gmx.net", Some("gmx")),
            ("mx-ha03.web.de", Some("webde")),
            ("mx0a-001.pphosted.com", Some("proofpoint")),
            ("eu-smtp-inbound-1.mimecast.com", Some("mimecast")),
            ("mx1.hc1234-56.iphmx.com", Some("cisco")),
            ("d12345a.ess.barracudanetworks.com", Some("barracuda")),
            ("mx1a1.comcast.net", Some("comcast")),
            ("smtp-in.orange.fr", Some("orange")),
            ("mxs.mail.ru", Some("mailru")),
            ("mx.yandex.ru", Some("yandex")),
            ("notgoogle.com", None),
            ("google.com.evil.example", None),
            ("", None),
            (".", None),
        ];
        for (host, want) in cases {
            assert_eq!(provider_from_mx(host).map(|p| p.key), want, "{host}");
        }
    }

    #[test]
    fn recipient_domains() {
        let cases = [
            ("gmail.com", Some("google")),
            ("Hotmail.co.uk", Some("microsoft")),
            ("live.fr", Some("microsoft")),
            ("yahoo.co.jp", Some("yahoo")),
            ("aol.com", Some("yahoo")),
            ("me.com", Some("apple")),
            ("gmx.de", Some("gmx")),
            ("web.de", Some("webde")),
            ("orange.fr.", Some("orange")),
            ("live.example.org", None),
            ("mygmail.com", None),
        ];
        for (d, want) in cases {
            assert_eq!(provider_from_domain(d).map(|p| p.key), want, "{d}");
        }
    }

    #[test]
    fn reply_texts() {
        assert_eq!(
            provider_from_text("try later - gsmtp").map(|p| p.key),
            Some("google")
        );
        assert_eq!(
            provider_from_text("[DM6NAM12FT034.eop-nam12.prod.protection.outlook.com]")
                .map(|p| p.key),
            Some("microsoft")
        );
        assert_eq!(
            provider_from_text("see https://postmaster.yahooinc.com/error-codes").map(|p| p.key),
            Some("yahoo")
        );
        assert_eq!(provider_from_text("xgsmtpx"), None);
    }
}
