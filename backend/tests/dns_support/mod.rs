//! Test support: loopback DNS and HTTPS servers and the test zones.
#![allow(dead_code, unused_imports)]

pub mod dns;
pub mod https;

use std::net::IpAddr;

use deferwatch::checks::names::reverse_name;
pub use dns::{Blackhole, Failure, TestDns, zone};

/// RSA public keys (SubjectPublicKeyInfo, base64), generated once with
/// `openssl genrsa N` + `openssl rsa -pubout -outform DER`.
pub const RSA_512: &str = "MFwwDQYJKoZIhvcNAQEBBQADSwAwSAJBAM9tD9Ai9bePwAc9IOyLLC5y8Y3U7NSDz/6WeKN7gZfkLyfRtm9DGDkmjlN5wXvjtMGiRCEO7Wg0FF6AFlv1DK8CAwEAAQ==";
pub const RSA_1024: &str = "MIGfMA0GCSqGSIb3DQEBAQUAA4GNADCBiQKBgQDlLAtNaOt4RrwdtxxuNHRkoj2xpwzff5i0+KwE6FhSSFj3zHg4Ey+or+XRRxXfVkDD/Z8GEBNenMj1FvRuRLlst2XjvxgLy6gEDBl3ckxcHeboB2Fk28K2g+wduqN25e6wQoajhX3n3HnqTEF+9vhcLmzhwJCgum0pp/NvCVRJjQIDAQAB";
pub const RSA_2048: &str = "MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA4oQK8f30HO2hjZVchEn+hHuBwgdxygXPr+kBMxBLU7/BsPBFLoh63KZHL0uLwHGULeS3EnLXQuWIevdCIdt1XYOguUSQYLF+8j4uML24VaBARAXhnL1Gba8ITbMGnD8qUYXPqpQWdGv3fid0EaHAMNw4gOvIRm0HkWUgs9qWunQN3KAPzp6IG7fwFAMcin8f1HIa2r+wpw4PihgoqfNFWrgY0sAn9xlMVGosDRwxDtAEeOfBUr+azclroBiutcvjkf+UOCif+aDbSrwUKf/aEaEz4Reg8c/fsQUS+okKfrKODwzUMYglks2iwwA4xucysoaOyKQquBl2I4NQLXq9iwIDAQAB";
/// The 1024-bit key as a bare PKCS#1 RSAPublicKey (`-RSAPublicKey_out`).
pub const RSA_1024_PKCS1: &str = "MIGJAoGBAOUsC01o63hGvB23HG40dGSiPbGnDN9/mLT4rAToWFJIWPfMeDgTL6iv5dFHFd9WQMP9nwYQE16cyPUW9G5EuWy3ZeO/GAvLqAQMGXdyTFwd5ugHYWTbwraD7B26o3bl7rBChqOFfefceepMQX72+FwubOHAkKC6bSmn828JVEmNAgMBAAE=";
/// Raw 32-byte Ed25519 public key (RFC 8463).
pub const ED25519: &str = "OxAnZbOlpMzG/IHTH/hFINNNHeCNwvhR5/yl+ztdUcE=";

/// A TXT value split into <=200-byte character-strings, as a zone file
/// must for keys longer than 255 bytes (RFC 6376 §3.6.2.2).
pub fn txt_strings(s: &str) -> String {
    s.as_bytes()
        .chunks(200)
        .map(|c| format!("\"{}\"", String::from_utf8_lossy(c)))
        .collect::<Vec<_>>()
        .join(" ")
}

fn rev(ip: &str) -> String {
    let ip: IpAddr = ip.parse().expect("test IP");
    format!("{}.", reverse_name(ip))
}

fn spf_includes(n: usize) -> String {
    let includes: Vec<String> = (1..=n)
        .map(|i| format!("include:l{i}.spf-limit.test"))
        .collect();
    format!("v=spf1 {} ip4:192.0.2.10 -all", includes.join(" "))
}

/// The `test.` zone: senders, SPF, DKIM, DMARC, MX, MTA-STS fixtures.
pub fn test_zone() -> String {
    let body = format!(
        r#"
; --- hosts for PTR / HELO ---
mail.good           A     192.0.2.10
mail.good           TXT   "v=spf1 a -all"
mail19.good         A     192.0.2.19
mail6.good          AAAA  2001:db8::10
mail6-bad.good      AAAA  2001:db8::99
a.multi             A     192.0.2.200
b.multi             A     192.0.2.201
c.multi             A     192.0.2.11
mail.elsewhere      A     192.0.2.99
192-0-2-16.dyn.isp  A     192.0.2.16
other.good          A     192.0.2.50
mxonly              MX    10 mail.good.test.

; --- SPF ---
spf-pass            TXT   "v=spf1 ip4:192.0.2.0/24 -all"
spf-pass            TXT   "google-site-verification=abc"
spf-fail            TXT   "v=spf1 ip4:198.51.100.0/24 -all"
spf-soft            TXT   "v=spf1 ip4:198.51.100.0/24 ~all"
spf-none            TXT   "some other text"
spf-two             TXT   "v=spf1 ip4:192.0.2.10 -all"
spf-two             TXT   "v=spf1 -all"
spf-limit TXT {spf_limit}
spf-ten TXT {spf_ten}
l1.spf-limit        TXT   "v=spf1 ip4:203.0.113.1 -all"
l2.spf-limit        TXT   "v=spf1 ip4:203.0.113.2 -all"
l3.spf-limit        TXT   "v=spf1 ip4:203.0.113.3 -all"
l4.spf-limit        TXT   "v=spf1 ip4:203.0.113.4 -all"
l5.spf-limit        TXT   "v=spf1 ip4:203.0.113.5 -all"
l6.spf-limit        TXT   "v=spf1 ip4:203.0.113.6 -all"
l7.spf-limit        TXT   "v=spf1 ip4:203.0.113.7 -all"
l8.spf-limit        TXT   "v=spf1 ip4:203.0.113.8 -all"
l9.spf-limit        TXT   "v=spf1 ip4:203.0.113.9 -all"
l10.spf-limit       TXT   "v=spf1 ip4:203.0.113.10 -all"
l11.spf-limit       TXT   "v=spf1 ip4:203.0.113.11 -all"
spf-void            TXT   "v=spf1 a:nx1.spf-void.test a:nx2.spf-void.test a:nx3.spf-void.test ip4:192.0.2.10 -all"
spf-dual            TXT   "v=spf1 a:v4.spf-dual.test a:v4b.spf-dual.test a:v4c.spf-dual.test ip6:2001:db8::10 -all"
v4.spf-dual         A     192.0.2.60
v4b.spf-dual        A     192.0.2.61
v4c.spf-dual        A     192.0.2.62
spf-loop            TXT   "v=spf1 redirect=spf-loop-b.test"
spf-loop-b          TXT   "v=spf1 redirect=spf-loop.test"
spf-redirect        TXT   "v=spf1 redirect=spf-pass.test"
spf-redirect-none   TXT   "v=spf1 redirect=spf-none.test"
spf-mx              TXT   "v=spf1 mx -all"
spf-mx              MX    10 mail.good.test.
spf-macro           TXT   "v=spf1 exists:%{{i}}._ip.spf-macro.test -all"
192.0.2.10._ip.spf-macro A 127.0.0.2
spf-exists6         TXT   "v=spf1 exists:only6.spf-exists6.test -all"
only6.spf-exists6   AAAA  2001:db8::10
spf-split           TXT   "v=spf1 ip4:192.0.2.10" " -all"
spf-syntax          TXT   "v=spf1 ip4:192.0.2.10 foo:bar -all"
spf-temp            TXT   "v=spf1 include:x.servfail.test -all"
spf-ptr             TXT   "v=spf1 ptr:good.test -all"
spf-v6              TXT   "v=spf1 ip6:2001:db8::/32 -all"
spf-plusall         TXT   "v=spf1 +all"

; --- DKIM ---
s2048._domainkey.dkim     TXT {k2048}
s1024._domainkey.dkim     TXT "v=DKIM1; k=rsa; p={k1024}"
s512._domainkey.dkim      TXT "v=DKIM1; k=rsa; p={k512}"
revoked._domainkey.dkim   TXT "v=DKIM1; k=rsa; p="
garbage._domainkey.dkim   TXT "v=DKIM1; k=rsa; p=bm90IGEga2V5"
ed._domainkey.dkim        TXT "v=DKIM1; k=ed25519; p={ed}"
testing._domainkey.dkim   TXT {k2048t}
pkcs1._domainkey.dkim     TXT "v=DKIM1; p={p1024}"
v2._domainkey.dkim        TXT "v=DKIM2; k=rsa; p={k1024}"
sha1._domainkey.dkim      TXT "v=DKIM1; h=sha1; p={k1024}"

; --- DMARC ---
_dmarc.dmarc-ok           TXT "v=DMARC1; p=reject; rua=mailto:agg@dmarc-ok.test"
_dmarc.dmarc-none         TXT "v=DMARC1; p=none; rua=mailto:agg@dmarc-none.test"
_dmarc.dmarc-two          TXT "v=DMARC1; p=none; rua=mailto:agg@dmarc-two.test"
_dmarc.dmarc-two          TXT "v=DMARC1; p=reject; rua=mailto:agg@dmarc-two.test"
_dmarc.dmarc-ext          TXT "v=DMARC1; p=reject; rua=mailto:dmarc@reports.test"
_dmarc.dmarc-ext-ok       TXT "v=DMARC1; p=reject; rua=mailto:dmarc@reports.test"
dmarc-ext-ok.test._report._dmarc.reports TXT "v=DMARC1"
_dmarc.dmarc-badp         TXT "v=DMARC1; p=block; rua=mailto:agg@dmarc-badp.test"
_dmarc.dmarc-pct          TXT "v=DMARC1; p=quarantine; pct=50; rua=mailto:agg@dmarc-pct.test"
_dmarc.dmarc-nop          TXT "v=DMARC1; sp=reject"
dmarc-missing             A   192.0.2.1
_dmarc.b.treewalk         TXT "v=DMARC1; p=reject; rua=mailto:agg@treewalk.test"

; --- MX ---
mx-ok                     MX  10 mx1.mx-ok.test.
mx-ok                     MX  20 mx2.mx-ok.test.
mx1.mx-ok                 A   192.0.2.25
mx2.mx-ok                 A   192.0.2.26
nullmx                    MX  0 .
nomx                      A   192.0.2.27
mx-private                MX  10 mx.mx-private.test.
mx.mx-private             A   10.0.0.5
mx-cname                  MX  10 alias.mx-cname.test.
alias.mx-cname            CNAME mx1.mx-ok.test.

; --- MTA-STS / TLS-RPT ---
_mta-sts.sts-ok           TXT "v=STSv1; id=20261122T000000"
mta-sts.sts-ok            A   127.0.0.1
sts-ok                    MX  10 mx.sts-ok.test.
mx.sts-ok                 A   192.0.2.40
_smtp._tls.sts-ok         TXT "v=TLSRPTv1; rua=mailto:tls@sts-ok.test"
_mta-sts.sts-uncovered    TXT "v=STSv1; id=1"
mta-sts.sts-uncovered     A   127.0.0.1
sts-uncovered             MX  10 mx.sts-uncovered.test.
mx.sts-uncovered          A   192.0.2.41
_mta-sts.sts-redirect     TXT "v=STSv1; id=1"
mta-sts.sts-redirect      A   127.0.0.1
sts-redirect              MX  10 mx.sts-ok.test.
_mta-sts.sts-badcert      TXT "v=STSv1; id=1"
mta-sts.sts-badcert       A   127.0.0.1
sts-badcert               MX  10 mx.sts-ok.test.
_mta-sts.sts-two          TXT "v=STSv1; id=1"
_mta-sts.sts-two          TXT "v=STSv1; id=2"
sts-two                   MX  10 mx.sts-ok.test.
sts-none                  MX  10 mx.sts-ok.test.
_mta-sts.sts-badid        TXT "v=STSv1; id=not_valid!"
sts-badid                 MX  10 mx.sts-ok.test.
"#,
        spf_limit = txt_strings(&spf_includes(11)),
        spf_ten = txt_strings(&spf_includes(10)),
        k2048 = txt_strings(&format!("v=DKIM1; k=rsa; p={RSA_2048}")),
        k2048t = txt_strings(&format!("v=DKIM1; k=rsa; t=y; p={RSA_2048}")),
        k1024 = RSA_1024,
        k512 = RSA_512,
        ed = ED25519,
        p1024 = RSA_1024_PKCS1,
    );
    zone("test", &body)
}

/// Reverse zones (IPv4 and IPv6).
pub fn reverse_zones() -> Vec<String> {
    let v4 = format!(
        r#"
{r10} PTR mail.good.test.
{r11} PTR a.multi.test.
{r11} PTR b.multi.test.
{r11} PTR c.multi.test.
{r12} PTR nx.good.test.
{r14} PTR mail.elsewhere.test.
{r16} PTR 192-0-2-16.dyn.isp.test.
{r17} PTR localhost.
{r18} PTR host.servfail.test.
{r19} CNAME 19.0-26.2.0.192.in-addr.arpa.
19.0-26.2.0.192.in-addr.arpa. PTR mail19.good.test.
"#,
        r10 = rev("192.0.2.10"),
        r11 = rev("192.0.2.11"),
        r12 = rev("192.0.2.12"),
        r14 = rev("192.0.2.14"),
        r16 = rev("192.0.2.16"),
        r17 = rev("192.0.2.17"),
        r18 = rev("192.0.2.18"),
        r19 = rev("192.0.2.19"),
    );
    let v6 = format!(
        "{} PTR mail6.good.test.\n{} PTR mail6-bad.good.test.\n",
        rev("2001:db8::10"),
        rev("2001:db8::11")
    );
    vec![zone("in-addr.arpa", &v4), zone("ip6.arpa", &v6)]
}

/// Blocklist zones under their real names (so table inference is
/// exercised) plus broken ones.
pub fn blocklist_zones() -> Vec<String> {
    let zen = format!(
        r#"
2.0.0.127   A 127.0.0.2
2.0.0.127   A 127.0.0.4
2.0.0.127   A 127.0.0.10
20.2.0.192  A 127.0.0.2
20.2.0.192  TXT "Listed in SBL, see https://check.spamhaus.org/"
21.2.0.192  A 127.255.255.254
22.2.0.192  A 127.0.0.11
{v6}        A 127.0.0.4
"#,
        v6 = deferwatch::checks::names::reversed_labels("2001:db8::66".parse().expect("ip"))
    );
    vec![
        zone("zen.spamhaus.org", &zen),
        zone(
            "b.barracudacentral.org",
            "2.0.0.127 A 127.0.0.2\n20.2.0.192 A 127.0.0.2\n",
        ),
        zone(
            "dnsbl-2.uceprotect.net",
            "2.0.0.127 A 127.0.0.2\n24.2.0.192 A 127.0.0.2\n",
        ),
        zone(
            "generic.bl.test",
            "2.0.0.127 A 127.0.0.2\n23.2.0.192 A 10.0.0.1\n25.2.0.192 A 127.0.0.3\n",
        ),
        // Wildcarded: lists its negative test point too (§6.2 step 6).
        zone("wild.bl.test", "* A 127.0.0.2\n"),
        // Does not list its positive test point (blocked resolver).
        zone("dead.bl.test", "20.2.0.192 A 127.0.0.2\n"),
        zone(
            "dbl.spamhaus.org",
            "dbltest.com A 127.0.1.2\nbad-domain.test A 127.0.1.2\nbad-domain.test TXT \"https://check.spamhaus.org/listed/?searchterm=bad-domain.test\"\nipquery.test A 127.0.1.255\n",
        ),
    ]
}

pub fn all_zones() -> Vec<String> {
    let mut z = vec![test_zone()];
    z.extend(reverse_zones());
    z.extend(blocklist_zones());
    z
}
