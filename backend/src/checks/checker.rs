//! The entry point: runs the checks for a sending IP or a domain
//! concurrently and assembles the report.

use std::net::IpAddr;
use std::sync::Arc;

use chrono::Utc;
use futures::future::join_all;

use super::dns::{Dns, DnsSettings};
use super::names::{lower_no_dot, normalize_ip};
use super::spf::{self, SpfIdentity, SpfResult};
use super::{
    CheckConfig, CheckError, CheckReport, CheckResult, dkim, dmarc, dnsbl, helo, mta_sts, mx, ptr,
};

/// Cheap to clone; `Send + Sync`. Clones share the resolver, its cache
/// and its concurrency limit.
#[derive(Clone)]
pub struct Checker {
    inner: Arc<Inner>,
}

struct Inner {
    cfg: CheckConfig,
    dns: Dns,
    http: reqwest::Client,
}

impl Checker {
    pub fn new(cfg: CheckConfig) -> Result<Checker, CheckError> {
        if cfg.concurrency == 0 {
            return Err(CheckError::InvalidConfig(
                "concurrency must be at least 1".into(),
            ));
        }
        if cfg.timeout.is_zero() {
            return Err(CheckError::InvalidConfig("timeout must be positive".into()));
        }
        let dns = Dns::new(&DnsSettings {
            nameservers: cfg.nameservers.clone(),
            timeout: cfg.timeout,
            attempts: cfg.attempts,
            concurrency: cfg.concurrency,
        })?;
        let http = mta_sts::build_client(
            &dns,
            cfg.mta_sts_port,
            cfg.mta_sts_extra_root_pem.as_deref(),
            cfg.http_timeout,
        )?;
        Ok(Checker {
            inner: Arc::new(Inner { cfg, dns, http }),
        })
    }

    pub fn config(&self) -> &CheckConfig {
        &self.inner.cfg
    }

    /// The resolver wrapper (query and cache counters, direct lookups).
    pub fn dns(&self) -> &Dns {
        &self.inner.dns
    }

    /// `dnsbl:<zone>` for every configured IP list, in configuration order.
    pub async fn check_blocklists(&self, ip: IpAddr) -> Vec<CheckResult> {
        let cfg = &self.inner.cfg;
        join_all(
            cfg.dnsbl
                .iter()
                .map(|z| dnsbl::check_ip(&self.inner.dns, ip, z, cfg.zone_health_check)),
        )
        .await
    }

    /// `rhsbl:<zone>` for every configured domain list.
    pub async fn check_domain_blocklists(&self, domain: &str) -> Vec<CheckResult> {
        let cfg = &self.inner.cfg;
        join_all(
            cfg.rhsbl
                .iter()
                .map(|z| dnsbl::check_domain(&self.inner.dns, domain, z, cfg.zone_health_check)),
        )
        .await
    }

    async fn dkim_check(&self, domain: &str, selectors: &[String]) -> CheckResult {
        let dns = &self.inner.dns;
        let findings = join_all(selectors.iter().filter(|s| !s.trim().is_empty()).map(
            |s| async move {
                let (name, answer) = dkim::lookup_selector(dns, domain, s).await;
                dkim::evaluate_selector(s.trim(), &name, &answer)
            },
        ))
        .await;
        dkim::evaluate(domain, &findings)
    }

    /// Checks for a sending IP: `ptr`, `fcrdns`, `helo` (if given), `spf`
    /// (MAIL FROM domain and HELO), `dnsbl:*`; with a sender domain also
    /// `dkim`, `dmarc` and `rhsbl:*`. `sender_domain` may be an address.
    pub async fn check_ip(
        &self,
        ip: IpAddr,
        helo: Option<&str>,
        sender_domain: Option<&str>,
        dkim_selectors: &[String],
    ) -> CheckReport {
        let ip = normalize_ip(ip);
        let dns = &self.inner.dns;
        let sender = sender_domain
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(SpfIdentity::from_sender);
        let helo = helo.map(str::trim).filter(|h| !h.is_empty());
        let helo_syntax = helo.map(helo::parse_helo);
        let helo_name = match &helo_syntax {
            Some(helo::HeloSyntax::Name(n)) => Some(n.clone()),
            _ => None,
        };
        let helo_for_macros = helo.unwrap_or("unknown").to_string();

        let ptr_fut = ptr::lookup(dns, ip);
        let helo_dns_fut = async {
            match &helo_name {
                Some(n) => Some(helo::lookup(dns, n).await),
                None => None,
            }
        };
        // RFC 7208 §2.3: the HELO identity is checked as postmaster@<helo>.
        let helo_spf_fut = async {
            match &helo_name {
                Some(n) => Some(
                    spf::check_host(dns, ip, &SpfIdentity::postmaster(n), &helo_for_macros).await,
                ),
                None => None,
            }
        };
        let mail_from_fut = async {
            match &sender {
                Some(id) => Some(spf::check_host(dns, ip, id, &helo_for_macros).await),
                None => None,
            }
        };
        let lint_fut = async {
            match &sender {
                Some(id) => Some(spf::lint(dns, &id.domain).await),
                None => None,
            }
        };
        let domain_checks = async {
            match &sender {
                Some(id) => {
                    let (dk, dm, rh) = tokio::join!(
                        self.dkim_check(&id.domain, dkim_selectors),
                        dmarc::check(dns, &id.domain),
                        self.check_domain_blocklists(&id.domain)
                    );
                    let mut v = vec![dk, dm];
                    v.extend(rh);
                    v
                }
                None => vec![],
            }
        };
        let (ptr_f, helo_dns, helo_spf, mail_from, lint, domain_results, bl) = tokio::join!(
            ptr_fut,
            helo_dns_fut,
            helo_spf_fut,
            mail_from_fut,
            lint_fut,
            domain_checks,
            self.check_blocklists(ip)
        );

        let mut checks = vec![ptr::evaluate_ptr(&ptr_f), ptr::evaluate_fcrdns(&ptr_f)];
        if let (Some(h), Some(syntax)) = (helo, &helo_syntax) {
            let literal_spf =
                matches!(syntax, helo::HeloSyntax::Literal(_)).then_some(SpfResult::None);
            checks.push(helo::evaluate(
                h,
                ip,
                syntax,
                helo_dns.as_ref(),
                &ptr_f.names(),
                helo_spf.as_ref().map(|o| o.result).or(literal_spf),
            ));
        }
        if sender.is_some() || helo_spf.is_some() {
            checks.push(spf::evaluate_ip(
                ip,
                mail_from.as_ref(),
                sender.as_ref().map(|s| s.domain.as_str()),
                helo_name.as_deref().zip(helo_spf.as_ref()),
                lint.as_ref(),
            ));
        }
        let (auth, rhsbl): (Vec<CheckResult>, Vec<CheckResult>) = domain_results
            .into_iter()
            .partition(|c| c.name == "dkim" || c.name == "dmarc");
        checks.extend(auth);
        checks.extend(bl);
        checks.extend(rhsbl);
        CheckReport {
            subject: ip.to_string(),
            checks,
            checked_at: Utc::now(),
        }
    }

    /// Checks for a domain: `spf` (record sanity), `dkim`, `dmarc`,
    /// `rhsbl:*`, `mx`, `mta_sts`, `tls_rpt`.
    pub async fn check_domain(&self, domain: &str, dkim_selectors: &[String]) -> CheckReport {
        let domain = lower_no_dot(domain);
        let dns = &self.inner.dns;
        let cfg = &self.inner.cfg;
        let mx_and_sts = async {
            let f = mx::lookup(dns, &domain).await;
            let sts = mta_sts::check(
                dns,
                &self.inner.http,
                cfg.mta_sts_port,
                &domain,
                &f.exchanges(),
            )
            .await;
            (mx::evaluate(&f), sts)
        };
        let (lint, dk, dm, rh, (mx_r, sts), tls) = tokio::join!(
            spf::lint(dns, &domain),
            self.dkim_check(&domain, dkim_selectors),
            dmarc::check(dns, &domain),
            self.check_domain_blocklists(&domain),
            mx_and_sts,
            mta_sts::check_tls_rpt(dns, &domain)
        );
        let mut checks = vec![spf::evaluate_lint(&domain, &lint), dk, dm];
        checks.extend(rh);
        checks.extend([mx_r, sts, tls]);
        CheckReport {
            subject: domain,
            checks,
            checked_at: Utc::now(),
        }
    }
}
