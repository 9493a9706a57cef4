//! Checks against a real authoritative DNS server on loopback (and an
//! HTTPS server for MTA-STS). No resolver mock: the checker's hickory
//! resolver talks UDP/TCP to `support::dns::TestDns`.

#[path = "dns_support/mod.rs"]
mod support;

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use deferwatch::checks::{
    CheckConfig, CheckReport, CheckResult, Checker, ReturnCodeTable, Verdict, ZoneSpec,
    detect_change,
};
use support::https::{Reply, TestHttps};
use support::{Blackhole, Failure, TestDns};

fn zones(list: &[&str]) -> Vec<ZoneSpec> {
    list.iter()
        .map(|z| ZoneSpec::parse(z).expect("zone spec"))
        .collect()
}

fn config(ns: std::net::SocketAddr) -> CheckConfig {
    CheckConfig {
        nameservers: vec![ns],
        timeout: Duration::from_millis(800),
        attempts: 1,
        dnsbl: zones(&[
            "zen.spamhaus.org",
            "b.barracudacentral.org",
            "dnsbl-2.uceprotect.net",
            "generic.bl.test",
            "wild.bl.test",
            "dead.bl.test",
        ]),
        rhsbl: zones(&["dbl.spamhaus.org"]),
        ..CheckConfig::default()
    }
}

async fn server() -> TestDns {
    let s = TestDns::start(&support::all_zones()).await;
    // Reverse lookups for 198.51.100.0/24 never get an answer.
    s.fail("100.51.198.in-addr.arpa", Failure::Timeout);
    s
}

enum Subject {
    Ip {
        ip: &'static str,
        helo: Option<&'static str>,
        sender: Option<&'static str>,
        selectors: &'static [&'static str],
    },
    Domain {
        domain: &'static str,
        selectors: &'static [&'static str],
    },
}

struct Case {
    name: &'static str,
    subject: Subject,
    check: &'static str,
    verdict: Verdict,
    /// Substrings the detail must contain (case-insensitive).
    detail: &'static [&'static str],
    /// Substrings that must each appear in some record.
    records: &'static [&'static str],
}

const fn ip(ip: &'static str) -> Subject {
    Subject::Ip {
        ip,
        helo: None,
        sender: None,
        selectors: &[],
    }
}

const fn helo(ip: &'static str, helo: &'static str) -> Subject {
    Subject::Ip {
        ip,
        helo: Some(helo),
        sender: None,
        selectors: &[],
    }
}

const fn sender(ip: &'static str, domain: &'static str) -> Subject {
    Subject::Ip {
        ip,
        helo: None,
        sender: Some(domain),
        selectors: &[],
    }
}

const fn domain(d: &'static str) -> Subject {
    Subject::Domain {
        domain: d,
        selectors: &[],
    }
}

const fn dkim(selectors: &'static [&'static str]) -> Subject {
    Subject::Domain {
        domain: "dkim.test",
        selectors,
    }
}

use Verdict::{Error, Fail, None as Nothing, Pass, Warn};

#[rustfmt::skip]
const CASES: &[Case] = &[
    // ---- PTR / FCrDNS (checks.md §1) ----
    Case { name: "ptr_forward_confirmed", subject: ip("192.0.2.10"), check: "ptr", verdict: Pass, detail: &["forward-confirmed"], records: &["mail.good.test"] },
    Case { name: "fcrdns_pass", subject: ip("192.0.2.10"), check: "fcrdns", verdict: Pass, detail: &["resolves back"], records: &["mail.good.test -> 192.0.2.10"] },
    Case { name: "ptr_three_names_third_confirms", subject: ip("192.0.2.11"), check: "ptr", verdict: Warn, detail: &["3 PTR names"], records: &["a.multi.test", "c.multi.test"] },
    Case { name: "fcrdns_any_name_counts", subject: ip("192.0.2.11"), check: "fcrdns", verdict: Pass, detail: &["c.multi.test"], records: &["c.multi.test -> 192.0.2.11"] },
    Case { name: "ptr_forward_nxdomain_is_fail", subject: ip("192.0.2.12"), check: "fcrdns", verdict: Fail, detail: &["none of the ptr names"], records: &["nx.good.test -> (no address)"] },
    Case { name: "ptr_missing", subject: ip("192.0.2.13"), check: "ptr", verdict: Fail, detail: &["no ptr record", "4.7.23"], records: &[] },
    Case { name: "ptr_without_forward_match", subject: ip("192.0.2.14"), check: "ptr", verdict: Fail, detail: &["no ptr name resolves back"], records: &["mail.elsewhere.test"] },
    Case { name: "fcrdns_resolves_elsewhere", subject: ip("192.0.2.14"), check: "fcrdns", verdict: Fail, detail: &["none of the ptr names"], records: &["mail.elsewhere.test -> 192.0.2.99"] },
    Case { name: "ptr_generic_dynamic_name", subject: ip("192.0.2.16"), check: "ptr", verdict: Warn, detail: &["generic", "192-0-2-16"], records: &["192-0-2-16.dyn.isp.test"] },
    Case { name: "ptr_localhost_target", subject: ip("192.0.2.17"), check: "ptr", verdict: Fail, detail: &["not a usable host name"], records: &["localhost"] },
    Case { name: "fcrdns_forward_servfail_is_error", subject: ip("192.0.2.18"), check: "fcrdns", verdict: Error, detail: &["servfail"], records: &["host.servfail.test"] },
    Case { name: "ptr_rfc2317_cname", subject: ip("192.0.2.19"), check: "ptr", verdict: Pass, detail: &["mail19.good.test"], records: &["mail19.good.test"] },
    Case { name: "ptr_ipv6_reverse_name", subject: ip("2001:db8::10"), check: "ptr", verdict: Pass, detail: &["mail6.good.test"], records: &["mail6.good.test"] },
    Case { name: "ptr_ipv6_no_forward_match", subject: ip("2001:db8::11"), check: "fcrdns", verdict: Fail, detail: &["none of the ptr names"], records: &["2001:db8::99"] },
    Case { name: "ptr_ipv4_mapped_ipv6", subject: ip("::ffff:192.0.2.10"), check: "ptr", verdict: Pass, detail: &["192.0.2.10"], records: &["mail.good.test"] },
    Case { name: "ptr_timeout_is_error", subject: ip("198.51.100.7"), check: "ptr", verdict: Error, detail: &["timed out"], records: &[] },
    // ---- HELO (§2) ----
    Case { name: "helo_good", subject: helo("192.0.2.10", "mail.good.test"), check: "helo", verdict: Pass, detail: &["resolves to 192.0.2.10"], records: &["mail.good.test -> 192.0.2.10"] },
    Case { name: "helo_localhost", subject: helo("192.0.2.10", "localhost"), check: "helo", verdict: Fail, detail: &["loopback"], records: &["localhost"] },
    Case { name: "helo_single_label", subject: helo("192.0.2.10", "mailserver"), check: "helo", verdict: Fail, detail: &["single label"], records: &[] },
    Case { name: "helo_literal_matches", subject: helo("192.0.2.10", "[192.0.2.10]"), check: "helo", verdict: Warn, detail: &["address literal"], records: &["[192.0.2.10]"] },
    Case { name: "helo_literal_other_ip", subject: helo("192.0.2.10", "[192.0.2.99]"), check: "helo", verdict: Fail, detail: &["not the sending ip"], records: &[] },
    Case { name: "helo_not_found", subject: helo("192.0.2.10", "nx-helo.test"), check: "helo", verdict: Fail, detail: &["host not found"], records: &["nx-helo.test"] },
    Case { name: "helo_resolves_elsewhere", subject: helo("192.0.2.10", "other.good.test"), check: "helo", verdict: Warn, detail: &["resolves elsewhere", "differs from the ptr"], records: &["other.good.test -> 192.0.2.50"] },
    Case { name: "helo_mx_only", subject: helo("192.0.2.10", "mxonly.test"), check: "helo", verdict: Warn, detail: &["only an mx"], records: &["mxonly.test MX mail.good.test"] },
    Case { name: "helo_impersonates_provider", subject: helo("192.0.2.10", "gmail.com"), check: "helo", verdict: Fail, detail: &["impersonation"], records: &["gmail.com"] },
    Case { name: "helo_syntax_fail_is_final_despite_dns", subject: helo("192.0.2.10", "bad_name.servfail.test"), check: "helo", verdict: Fail, detail: &["invalid"], records: &[] },
    Case { name: "helo_spf_identity_used_without_sender", subject: helo("192.0.2.10", "mail.good.test"), check: "spf", verdict: Pass, detail: &["helo mail.good.test"], records: &["v=spf1 a -all"] },
    // ---- SPF evaluation (§3) ----
    Case { name: "spf_pass_ip4", subject: sender("192.0.2.10", "spf-pass.test"), check: "spf", verdict: Pass, detail: &["spf pass", "ip4:192.0.2.0/24"], records: &["v=spf1 ip4:192.0.2.0/24 -all", "lookups=0"] },
    Case { name: "spf_fail", subject: sender("192.0.2.10", "spf-fail.test"), check: "spf", verdict: Fail, detail: &["spf fail", "-all"], records: &["result=fail"] },
    Case { name: "spf_softfail_is_warn", subject: sender("192.0.2.10", "spf-soft.test"), check: "spf", verdict: Warn, detail: &["softfail"], records: &["result=softfail"] },
    Case { name: "spf_none_is_fail", subject: sender("192.0.2.10", "spf-none.test"), check: "spf", verdict: Fail, detail: &["spf none", "require spf"], records: &["result=none"] },
    Case { name: "spf_two_records_permerror", subject: sender("192.0.2.10", "spf-two.test"), check: "spf", verdict: Fail, detail: &["permerror", "2 spf records"], records: &["v=spf1 -all", "v=spf1 ip4:192.0.2.10 -all"] },
    Case { name: "spf_eleven_includes_over_limit", subject: sender("192.0.2.10", "spf-limit.test"), check: "spf", verdict: Fail, detail: &["permerror", "more than 10"], records: &["lookups=11"] },
    Case { name: "spf_ten_includes_ok", subject: sender("192.0.2.10", "spf-ten.test"), check: "spf", verdict: Warn, detail: &["spf pass", "10 of 10"], records: &["lookups=10"] },
    Case { name: "spf_three_void_lookups", subject: sender("192.0.2.10", "spf-void.test"), check: "spf", verdict: Fail, detail: &["permerror", "void lookups", "nx3"], records: &["result=permerror"] },
    Case { name: "spf_void_per_address_family", subject: sender("2001:db8::10", "spf-dual.test"), check: "spf", verdict: Fail, detail: &["permerror", "void only for this address family"], records: &["result=permerror"] },
    Case { name: "spf_redirect_loop", subject: sender("192.0.2.10", "spf-loop.test"), check: "spf", verdict: Fail, detail: &["permerror", "redirect loop"], records: &["redirect=spf-loop-b.test"] },
    Case { name: "spf_redirect_followed", subject: sender("192.0.2.10", "spf-redirect.test"), check: "spf", verdict: Pass, detail: &["via redirect to spf-pass.test"], records: &["lookups=1"] },
    Case { name: "spf_redirect_to_no_record", subject: sender("192.0.2.10", "spf-redirect-none.test"), check: "spf", verdict: Fail, detail: &["permerror", "no spf record"], records: &["result=permerror"] },
    Case { name: "spf_mx_mechanism", subject: sender("192.0.2.10", "spf-mx.test"), check: "spf", verdict: Pass, detail: &["mx in the record"], records: &["lookups=1"] },
    Case { name: "spf_exists_macro_i", subject: sender("192.0.2.10", "spf-macro.test"), check: "spf", verdict: Pass, detail: &["exists:%{i}"], records: &["result=pass"] },
    Case { name: "spf_exists_is_a_only", subject: sender("2001:db8::10", "spf-exists6.test"), check: "spf", verdict: Fail, detail: &["spf fail"], records: &["result=fail"] },
    Case { name: "spf_split_strings_joined", subject: sender("192.0.2.10", "spf-split.test"), check: "spf", verdict: Pass, detail: &["spf pass"], records: &["v=spf1 ip4:192.0.2.10 -all"] },
    Case { name: "spf_unknown_mechanism_permerror", subject: sender("192.0.2.10", "spf-syntax.test"), check: "spf", verdict: Fail, detail: &["permerror", "unknown mechanism"], records: &["foo:bar"] },
    Case { name: "spf_include_servfail_temperror", subject: sender("192.0.2.10", "spf-temp.test"), check: "spf", verdict: Error, detail: &["temperror", "451 4.4.3"], records: &["result=temperror"] },
    Case { name: "spf_ptr_pass_lowered_by_lint", subject: sender("192.0.2.10", "spf-ptr.test"), check: "spf", verdict: Warn, detail: &["spf pass", "should not be used"], records: &["result=pass"] },
    Case { name: "spf_ipv6_client", subject: sender("2001:db8::10", "spf-v6.test"), check: "spf", verdict: Pass, detail: &["ip6:2001:db8::/32"], records: &["result=pass"] },
    Case { name: "spf_domain_lint_plus_all", subject: domain("spf-plusall.test"), check: "spf", verdict: Fail, detail: &["+all"], records: &["v=spf1 +all"] },
    Case { name: "spf_domain_lint_over_limit", subject: domain("spf-limit.test"), check: "spf", verdict: Fail, detail: &["over the limit"], records: &["lookups=11"] },
    // ---- DKIM (§4) ----
    Case { name: "dkim_2048_split_strings", subject: dkim(&["s2048"]), check: "dkim", verdict: Pass, detail: &["2048-bit"], records: &["s2048: v=DKIM1"] },
    Case { name: "dkim_1024_warns", subject: dkim(&["s1024"]), check: "dkim", verdict: Warn, detail: &["1024-bit", "recommends 2048"], records: &["s1024:"] },
    Case { name: "dkim_512_fails", subject: dkim(&["s512"]), check: "dkim", verdict: Fail, detail: &["512-bit", "below the 1024-bit"], records: &["s512:"] },
    Case { name: "dkim_revoked", subject: dkim(&["revoked"]), check: "dkim", verdict: Fail, detail: &["revoked"], records: &["p="] },
    Case { name: "dkim_missing_selector", subject: dkim(&["nosuch"]), check: "dkim", verdict: Fail, detail: &["no key record"], records: &[] },
    Case { name: "dkim_garbage_key", subject: dkim(&["garbage"]), check: "dkim", verdict: Fail, detail: &["not an rsa public key"], records: &["bm90IGEga2V5"] },
    Case { name: "dkim_ed25519", subject: dkim(&["ed"]), check: "dkim", verdict: Warn, detail: &["ed25519"], records: &["k=ed25519"] },
    Case { name: "dkim_testing_flag", subject: dkim(&["testing"]), check: "dkim", verdict: Warn, detail: &["t=y"], records: &["t=y"] },
    Case { name: "dkim_pkcs1_key", subject: dkim(&["pkcs1"]), check: "dkim", verdict: Warn, detail: &["1024-bit"], records: &["pkcs1:"] },
    Case { name: "dkim_wrong_version", subject: dkim(&["v2"]), check: "dkim", verdict: Fail, detail: &["v=dkim2"], records: &["v=DKIM2"] },
    Case { name: "dkim_sha1_only", subject: dkim(&["sha1"]), check: "dkim", verdict: Fail, detail: &["sha256"], records: &["h=sha1"] },
    Case { name: "dkim_worst_of_several", subject: dkim(&["s2048", "s512"]), check: "dkim", verdict: Fail, detail: &["selector s2048", "selector s512"], records: &["s2048:", "s512:"] },
    Case { name: "dkim_no_selector_is_none", subject: dkim(&[]), check: "dkim", verdict: Nothing, detail: &["no dkim selector"], records: &[] },
    // ---- DMARC (§5) ----
    Case { name: "dmarc_reject", subject: domain("dmarc-ok.test"), check: "dmarc", verdict: Pass, detail: &["policy reject", "at dmarc-ok.test"], records: &["p=reject"] },
    Case { name: "dmarc_at_org_domain", subject: domain("mail.sub.dmarc-ok.test"), check: "dmarc", verdict: Pass, detail: &["organizational domain dmarc-ok.test"], records: &["p=reject"] },
    Case { name: "dmarc_p_none", subject: domain("dmarc-none.test"), check: "dmarc", verdict: Warn, detail: &["no protection"], records: &["p=none"] },
    Case { name: "dmarc_two_records", subject: domain("dmarc-two.test"), check: "dmarc", verdict: Fail, detail: &["2 dmarc records"], records: &["p=none", "p=reject"] },
    Case { name: "dmarc_missing", subject: domain("dmarc-missing.test"), check: "dmarc", verdict: Fail, detail: &["no dmarc record", "4.7.31"], records: &[] },
    Case { name: "dmarc_external_rua_unauthorised", subject: domain("dmarc-ext.test"), check: "dmarc", verdict: Warn, detail: &["has not authorised", "reports.test"], records: &["rua=mailto:dmarc@reports.test"] },
    Case { name: "dmarc_external_rua_authorised", subject: domain("dmarc-ext-ok.test"), check: "dmarc", verdict: Pass, detail: &["reports.test authorised"], records: &["p=reject"] },
    Case { name: "dmarc_invalid_p_with_rua", subject: domain("dmarc-badp.test"), check: "dmarc", verdict: Warn, detail: &["p=block is invalid", "p=none"], records: &["p=block"] },
    Case { name: "dmarc_pct", subject: domain("dmarc-pct.test"), check: "dmarc", verdict: Warn, detail: &["pct=50"], records: &["pct=50"] },
    Case { name: "dmarc_no_p_no_rua_unusable", subject: domain("dmarc-nop.test"), check: "dmarc", verdict: Fail, detail: &["unusable"], records: &["sp=reject"] },
    Case { name: "dmarc_found_only_by_rfc9989_tree_walk", subject: domain("a.b.treewalk.test"), check: "dmarc", verdict: Warn, detail: &["b.treewalk.test", "only rfc 9989"], records: &["p=reject"] },
    Case { name: "dmarc_servfail_is_error", subject: domain("x.servfail.test"), check: "dmarc", verdict: Error, detail: &["servfail"], records: &[] },
    // ---- blocklists (§6) ----
    Case { name: "dnsbl_not_listed", subject: ip("192.0.2.10"), check: "dnsbl:zen.spamhaus.org", verdict: Pass, detail: &["not listed"], records: &[] },
    Case { name: "dnsbl_listed_with_txt", subject: ip("192.0.2.20"), check: "dnsbl:zen.spamhaus.org", verdict: Fail, detail: &["listed", "sbl"], records: &["127.0.0.2", "TXT Listed in SBL"] },
    Case { name: "dnsbl_public_resolver_code_is_error", subject: ip("192.0.2.21"), check: "dnsbl:zen.spamhaus.org", verdict: Error, detail: &["public/open resolver", "not a listing"], records: &["127.255.255.254"] },
    Case { name: "dnsbl_pbl_code", subject: ip("192.0.2.22"), check: "dnsbl:zen.spamhaus.org", verdict: Fail, detail: &["pbl"], records: &["127.0.0.11"] },
    Case { name: "dnsbl_ipv6_listed", subject: ip("2001:db8::66"), check: "dnsbl:zen.spamhaus.org", verdict: Fail, detail: &["xbl"], records: &["127.0.0.4"] },
    Case { name: "dnsbl_ipv4_only_list_ipv6_is_none", subject: ip("2001:db8::10"), check: "dnsbl:b.barracudacentral.org", verdict: Nothing, detail: &["no ipv6 data"], records: &[] },
    Case { name: "dnsbl_barracuda_listed", subject: ip("192.0.2.20"), check: "dnsbl:b.barracudacentral.org", verdict: Fail, detail: &["listed"], records: &["127.0.0.2"] },
    Case { name: "dnsbl_uceprotect_l2_is_warn", subject: ip("192.0.2.24"), check: "dnsbl:dnsbl-2.uceprotect.net", verdict: Warn, detail: &["collateral"], records: &["127.0.0.2"] },
    Case { name: "dnsbl_answer_outside_127_is_error", subject: ip("192.0.2.23"), check: "dnsbl:generic.bl.test", verdict: Error, detail: &["outside 127.0.0.0/8"], records: &["10.0.0.1"] },
    Case { name: "dnsbl_generic_table_listed", subject: ip("192.0.2.25"), check: "dnsbl:generic.bl.test", verdict: Fail, detail: &["127.0.0.3 listed"], records: &["127.0.0.3"] },
    Case { name: "dnsbl_wildcard_zone_untrusted", subject: ip("192.0.2.10"), check: "dnsbl:wild.bl.test", verdict: Error, detail: &["negative test point", "wildcarded"], records: &[] },
    Case { name: "dnsbl_dead_zone_untrusted", subject: ip("192.0.2.20"), check: "dnsbl:dead.bl.test", verdict: Error, detail: &["does not list its test point"], records: &["127.0.0.2"] },
    Case { name: "rhsbl_listed", subject: sender("192.0.2.10", "bad-domain.test"), check: "rhsbl:dbl.spamhaus.org", verdict: Fail, detail: &["spam domain"], records: &["127.0.1.2", "TXT https://check.spamhaus.org"] },
    Case { name: "rhsbl_not_listed", subject: domain("dmarc-ok.test"), check: "rhsbl:dbl.spamhaus.org", verdict: Pass, detail: &["not listed"], records: &[] },
    Case { name: "rhsbl_ip_query_code_is_error", subject: domain("ipquery.test"), check: "rhsbl:dbl.spamhaus.org", verdict: Error, detail: &["not a listing"], records: &["127.0.1.255"] },
    // ---- MX (§7.1, §7.2) ----
    Case { name: "mx_with_backup", subject: domain("mx-ok.test"), check: "mx", verdict: Pass, detail: &["backup mx"], records: &["10 mx1.mx-ok.test", "20 mx2.mx-ok.test", "mx1.mx-ok.test -> 192.0.2.25"] },
    Case { name: "mx_null", subject: domain("nullmx.test"), check: "mx", verdict: Fail, detail: &["null mx", "rfc 7505"], records: &["0 ."] },
    Case { name: "mx_implicit", subject: domain("nomx.test"), check: "mx", verdict: Warn, detail: &["implicit mx"], records: &["nomx.test -> 192.0.2.27"] },
    Case { name: "mx_private_address", subject: domain("mx-private.test"), check: "mx", verdict: Fail, detail: &["private"], records: &["mx.mx-private.test -> 10.0.0.5"] },
    Case { name: "mx_cname_target", subject: domain("mx-cname.test"), check: "mx", verdict: Warn, detail: &["cname"], records: &["10 alias.mx-cname.test"] },
    Case { name: "mx_nxdomain", subject: domain("does-not-exist.test"), check: "mx", verdict: Fail, detail: &["does not exist"], records: &[] },
    Case { name: "mx_timeout_is_error", subject: domain("slow.timeout.test"), check: "mx", verdict: Error, detail: &["timed out"], records: &[] },
    // ---- MTA-STS / TLS-RPT without HTTPS ----
    Case { name: "mta_sts_absent_is_none", subject: domain("sts-none.test"), check: "mta_sts", verdict: Nothing, detail: &["no mta-sts record"], records: &[] },
    Case { name: "mta_sts_two_records", subject: domain("sts-two.test"), check: "mta_sts", verdict: Fail, detail: &["2 mta-sts records"], records: &["id=1", "id=2"] },
    Case { name: "mta_sts_bad_id", subject: domain("sts-badid.test"), check: "mta_sts", verdict: Fail, detail: &["invalid"], records: &["not_valid!"] },
    Case { name: "tls_rpt_absent_is_none", subject: domain("sts-none.test"), check: "tls_rpt", verdict: Nothing, detail: &["no tls-rpt"], records: &[] },
];

async fn run(checker: &Checker, s: &Subject) -> CheckReport {
    match s {
        Subject::Ip {
            ip,
            helo,
            sender,
            selectors,
        } => {
            let ip: IpAddr = ip.parse().expect("case IP");
            let sel: Vec<String> = selectors.iter().map(|s| s.to_string()).collect();
            checker.check_ip(ip, *helo, *sender, &sel).await
        }
        Subject::Domain { domain, selectors } => {
            let sel: Vec<String> = selectors.iter().map(|s| s.to_string()).collect();
            checker.check_domain(domain, &sel).await
        }
    }
}

fn judge(case: &Case, report: &CheckReport) -> Result<(), String> {
    let Some(r) = report.get(case.check) else {
        return Err(format!(
            "no {} check in report {:?}",
            case.check,
            report.checks.iter().map(|c| &c.name).collect::<Vec<_>>()
        ));
    };
    let mut problems = Vec::new();
    if r.verdict != case.verdict {
        problems.push(format!(
            "verdict {} != expected {}",
            r.verdict, case.verdict
        ));
    }
    let detail = r.detail.to_lowercase();
    for d in case.detail {
        if !detail.contains(&d.to_lowercase()) {
            problems.push(format!("detail lacks {d:?}"));
        }
    }
    for want in case.records {
        if !r.records.iter().any(|x| x.contains(want)) {
            problems.push(format!("records lack {want:?}"));
        }
    }
    if r.detail.is_empty() {
        problems.push("empty detail".into());
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "{}\n      detail: {}\n      records: {:?}",
            problems.join("; "),
            r.detail,
            r.records
        ))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn table_of_cases_against_loopback_dns() {
    let dns = server().await;
    let checker = Checker::new(config(dns.addr)).expect("checker");
    let mut failures = Vec::new();
    for case in CASES {
        let report = run(&checker, &case.subject).await;
        match judge(case, &report) {
            Ok(()) => println!("ok   {}", case.name),
            Err(e) => {
                println!("FAIL {}: {e}", case.name);
                failures.push(case.name);
            }
        }
    }
    println!("{} cases, {} failed", CASES.len(), failures.len());
    assert!(CASES.len() >= 30);
    assert!(failures.is_empty(), "failed cases: {failures:?}");
}

#[tokio::test]
async fn report_json_shape() {
    let dns = server().await;
    let checker = Checker::new(config(dns.addr)).expect("checker");
    let report = checker
        .check_ip(
            "192.0.2.10".parse().expect("ip"),
            Some("mail.good.test"),
            Some("spf-pass.test"),
            &["s1".to_string()],
        )
        .await;
    let names: Vec<&str> = report.checks.iter().map(|c| c.name.as_str()).collect();
    for want in [
        "ptr",
        "fcrdns",
        "helo",
        "spf",
        "dkim",
        "dmarc",
        "dnsbl:zen.spamhaus.org",
        "rhsbl:dbl.spamhaus.org",
    ] {
        assert!(names.contains(&want), "missing {want} in {names:?}");
    }
    println!("{}", serde_json::to_string_pretty(&report).expect("json"));
    let v: serde_json::Value = serde_json::to_value(&report).expect("json");
    assert_eq!(v["subject"], "192.0.2.10");
    assert!(v["checked_at"].is_string());
    let first = &v["checks"][0];
    assert_eq!(first["name"], "ptr");
    assert_eq!(first["verdict"], "pass");
    assert!(first["detail"].is_string());
    assert!(first["records"].is_array());
    let back: CheckReport = serde_json::from_value(v).expect("round trip");
    assert_eq!(back, report);

    let domain = checker.check_domain("sts-none.test", &[]).await;
    let names: Vec<&str> = domain.checks.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "spf",
            "dkim",
            "dmarc",
            "rhsbl:dbl.spamhaus.org",
            "mx",
            "mta_sts",
            "tls_rpt"
        ]
    );
}

#[tokio::test]
async fn timeouts_are_error_not_fail() {
    let hole = Blackhole::start().await;
    let cfg = CheckConfig {
        nameservers: vec![hole.addr],
        timeout: Duration::from_millis(300),
        attempts: 1,
        dnsbl: zones(&["zen.spamhaus.org"]),
        rhsbl: vec![],
        ..CheckConfig::default()
    };
    let checker = Checker::new(cfg).expect("checker");
    let started = Instant::now();
    let report = checker
        .check_ip(
            "192.0.2.10".parse().expect("ip"),
            Some("mail.good.test"),
            Some("spf-pass.test"),
            &[],
        )
        .await;
    let elapsed = started.elapsed();
    for c in &report.checks {
        if c.name == "dkim" {
            assert_eq!(c.verdict, Verdict::None);
            continue;
        }
        assert_eq!(c.verdict, Verdict::Error, "{}: {}", c.name, c.detail);
        assert!(
            c.detail.contains("timed out")
                || c.detail.contains("DNS error")
                || c.detail.contains("failed"),
            "{}: {}",
            c.name,
            c.detail
        );
    }
    assert!(elapsed < Duration::from_secs(5), "took {elapsed:?}");
}

#[tokio::test]
async fn answers_are_cached_within_ttl() {
    let dns = server().await;
    let checker = Checker::new(config(dns.addr)).expect("checker");
    let ip: IpAddr = "192.0.2.20".parse().expect("ip");
    let first = checker.check_ip(ip, None, None, &[]).await;
    let after_first = dns.queries();
    let second = checker.check_ip(ip, None, None, &[]).await;
    assert_eq!(
        dns.queries(),
        after_first,
        "second run must be served from the cache"
    );
    assert!(checker.dns().cache_hits() > 0);
    let listed = second.get("dnsbl:zen.spamhaus.org").expect("zen");
    assert_eq!(listed.verdict, Verdict::Fail);
    // TTL of the zone data is 300 s; the cached copy reports no more.
    let ttl = listed.ttl_seconds.expect("ttl");
    assert!(ttl <= 300 && ttl > 0, "ttl {ttl}");
    assert_eq!(
        first.get("dnsbl:zen.spamhaus.org").map(|c| c.verdict),
        Some(Verdict::Fail)
    );
}

#[tokio::test]
async fn change_detected_when_ip_becomes_listed() {
    let dns = server().await;
    let ip: IpAddr = "192.0.2.30".parse().expect("ip");
    let before = Checker::new(config(dns.addr))
        .expect("checker")
        .check_ip(ip, None, None, &[])
        .await;
    dns.load(&support::zone(
        "zen.spamhaus.org",
        "30.2.0.192 A 127.0.0.2\n30.2.0.192 A 127.0.0.4\n",
    ));
    // A fresh checker stands in for "after the negative TTL expired".
    let after = Checker::new(config(dns.addr))
        .expect("checker")
        .check_ip(ip, None, None, &[])
        .await;
    let b = before.get("dnsbl:zen.spamhaus.org").expect("before");
    let a = after.get("dnsbl:zen.spamhaus.org").expect("after");
    let change = detect_change(b, a).expect("a change");
    assert_eq!(change.previous, Verdict::Pass);
    assert_eq!(change.current, Verdict::Fail);
    assert!(
        change.description.contains("pass → fail"),
        "{}",
        change.description
    );
    assert!(change.records_added.contains(&"127.0.0.2".to_string()));
    // Same result again: no change, whatever the record order.
    let mut reordered = a.clone();
    reordered.records.reverse();
    assert!(detect_change(a, &reordered).is_none());
}

#[test]
fn change_detected_when_record_changes_with_same_verdict() {
    let old = CheckResult::new(
        "spf",
        Verdict::Pass,
        "x",
        vec!["v=spf1 ip4:192.0.2.0/24 -all".into()],
    );
    let new = CheckResult::new(
        "spf",
        Verdict::Pass,
        "y",
        vec!["v=spf1 ip4:192.0.2.0/25 -all".into()],
    );
    let c = detect_change(&old, &new).expect("record change");
    assert!(c.description.starts_with("spf: still pass"));
    assert_eq!(
        c.records_removed,
        vec!["v=spf1 ip4:192.0.2.0/24 -all".to_string()]
    );
}

#[test]
fn zone_spec_parsing() {
    let z = ZoneSpec::parse("zen.spamhaus.org").expect("zen");
    assert_eq!(z.table, ReturnCodeTable::SpamhausZen);
    let dqs = ZoneSpec::parse("abc123key.zen.dq.spamhaus.net.").expect("dqs");
    assert_eq!(dqs.table, ReturnCodeTable::SpamhausZen);
    assert_eq!(dqs.zone, "abc123key.zen.dq.spamhaus.net");
    let mirror = ZoneSpec::parse("rbl.internal.example=spamcop").expect("mirror");
    assert_eq!(mirror.table, ReturnCodeTable::Spamcop);
    assert_eq!(
        ZoneSpec::parse("list.example.test").expect("g").table,
        ReturnCodeTable::Generic
    );
    assert!(ZoneSpec::parse("x.test=no-such-table").is_err());
    assert!(ZoneSpec::parse("not a zone").is_err());
    let d = CheckConfig::default();
    assert_eq!(d.dnsbl.len(), 8);
    assert!(d.dnsbl.iter().all(|z| z.zone != "dnsbl.sorbs.net"));
}

#[tokio::test]
async fn mta_sts_policy_fetch_over_https() {
    let dns = server().await;
    let mut replies = HashMap::new();
    replies.insert(
        "mta-sts.sts-ok.test".to_string(),
        Reply::policy(
            "version: STSv1\r\nmode: enforce\r\nmx: mx.sts-ok.test\r\nmax_age: 86400\r\n",
        ),
    );
    replies.insert(
        "mta-sts.sts-uncovered.test".to_string(),
        Reply::policy("version: STSv1\r\nmode: enforce\r\nmx: *.other.test\r\nmax_age: 86400\r\n"),
    );
    replies.insert(
        "mta-sts.sts-redirect.test".to_string(),
        Reply {
            status: 301,
            content_type: "text/html".into(),
            body: String::new(),
            location: Some("https://elsewhere.test/".into()),
        },
    );
    let https = TestHttps::start(
        &[
            "mta-sts.sts-ok.test",
            "mta-sts.sts-uncovered.test",
            "mta-sts.sts-redirect.test",
        ],
        replies,
    )
    .await;
    let cfg = CheckConfig {
        mta_sts_port: https.addr.port(),
        mta_sts_extra_root_pem: Some(https.ca_pem.clone()),
        ..config(dns.addr)
    };
    let checker = Checker::new(cfg).expect("checker");

    let ok = checker.check_domain("sts-ok.test", &[]).await;
    let sts = ok.get("mta_sts").expect("mta_sts");
    assert_eq!(sts.verdict, Verdict::Pass, "{}", sts.detail);
    assert!(sts.detail.contains("mode enforce"), "{}", sts.detail);
    assert!(sts.records.iter().any(|r| r.contains("mx: mx.sts-ok.test")));
    let tls = ok.get("tls_rpt").expect("tls_rpt");
    assert_eq!(tls.verdict, Verdict::Pass, "{}", tls.detail);
    assert!(tls.detail.contains("mailto:tls@sts-ok.test"));

    let unc = checker.check_domain("sts-uncovered.test", &[]).await;
    let sts = unc.get("mta_sts").expect("mta_sts");
    assert_eq!(sts.verdict, Verdict::Fail, "{}", sts.detail);
    assert!(
        sts.detail.contains("mx.sts-uncovered.test"),
        "{}",
        sts.detail
    );

    let red = checker.check_domain("sts-redirect.test", &[]).await;
    let sts = red.get("mta_sts").expect("mta_sts");
    assert_eq!(sts.verdict, Verdict::Fail, "{}", sts.detail);
    assert!(sts.detail.contains("redirect"), "{}", sts.detail);

    // Certificate does not name mta-sts.sts-badcert.test.
    let bad = checker.check_domain("sts-badcert.test", &[]).await;
    let sts = bad.get("mta_sts").expect("mta_sts");
    assert_eq!(sts.verdict, Verdict::Fail, "{}", sts.detail);
    assert!(
        sts.detail.to_lowercase().contains("certificate"),
        "{}",
        sts.detail
    );
}

#[test]
fn checker_is_shareable_and_validates_config() {
    fn shareable<T: Send + Sync + Clone + 'static>() {}
    shareable::<Checker>();
    let bad = CheckConfig {
        concurrency: 0,
        ..CheckConfig::default()
    };
    assert!(Checker::new(bad).is_err());
}

#[tokio::test]
async fn system_resolver_is_the_default() {
    // Only builds the resolver from /etc/resolv.conf; no query leaves the host.
    if std::path::Path::new("/etc/resolv.conf").exists() {
        let c = Checker::new(CheckConfig::default()).expect("system resolver");
        assert!(c.config().nameservers.is_empty());
        assert_eq!(c.config().mta_sts_port, 443);
    }
}

#[tokio::test]
async fn several_nameservers_first_silent() {
    // A silent server first, the real one second: answers still arrive.
    let dns = server().await;
    let hole = Blackhole::start().await;
    let cfg = CheckConfig {
        nameservers: vec![hole.addr, dns.addr],
        timeout: Duration::from_millis(400),
        attempts: 2,
        ..config(dns.addr)
    };
    let checker = Checker::new(cfg).expect("checker");
    let report = checker
        .check_ip("192.0.2.10".parse().expect("ip"), None, None, &[])
        .await;
    let ptr = report.get("ptr").expect("ptr");
    assert_eq!(ptr.verdict, Verdict::Pass, "{}", ptr.detail);
}
