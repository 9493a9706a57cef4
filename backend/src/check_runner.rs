//! When checks run: on incident open (affected IPs, one unaffected IP for comparison,
//! the sender domain and HELO names seen, the destination), on demand, and
//! periodically for the subjects of open incidents. Results and changes are stored.

use crate::checks::{CheckChange, CheckError, CheckReport, Checker};
use crate::config::ChecksConfig;
use crate::incidents::Incident;
use crate::incidents::model::UNKNOWN_IP;
use crate::store::{DynStore, StoreError};
use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{Semaphore, mpsc};

/// What to check.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum CheckSubject {
    Ip {
        ip: IpAddr,
        helo: Option<String>,
        sender_domain: Option<String>,
        /// Selectors seen in events, checked with the configured ones.
        dkim_selectors: Vec<String>,
    },
    Domain {
        domain: String,
        dkim_selectors: Vec<String>,
    },
}

impl CheckSubject {
    /// The subject name results are stored under.
    pub fn key(&self) -> String {
        match self {
            CheckSubject::Ip { ip, .. } => ip.to_string(),
            CheckSubject::Domain { domain, .. } => domain.clone(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("checks are disabled in the configuration")]
    Disabled,
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Checker(CheckError),
}

/// Most affected IPs checked when an incident opens; the rest wait for the periodic run.
const MAX_AFFECTED_IPS: usize = 4;
/// A subject checked this recently is not queued again.
const MIN_GAP: Duration = Duration::from_secs(600);
/// Check runs in flight; each one bounds its DNS queries itself.
const PARALLEL_RUNS: usize = 4;

struct Inner {
    checker: Checker,
    checker_config: crate::checks::CheckConfig,
    store: DynStore,
    selectors: BTreeMap<String, Vec<String>>,
    recent: Mutex<HashMap<String, Instant>>,
}

#[derive(Clone)]
pub struct CheckRunner {
    inner: Option<Arc<Inner>>,
    queue: Option<mpsc::Sender<CheckSubject>>,
}

impl CheckRunner {
    pub fn disabled() -> Self {
        CheckRunner {
            inner: None,
            queue: None,
        }
    }

    /// Starts the background worker; must be called inside a Tokio runtime.
    pub fn spawn(cfg: &ChecksConfig, store: DynStore) -> Result<Self, CheckError> {
        if !cfg.enabled {
            return Ok(Self::disabled());
        }
        let inner = Arc::new(Inner {
            checker: Checker::new(cfg.checker_config())?,
            checker_config: cfg.checker_config(),
            store,
            selectors: cfg.dkim_selectors.clone(),
            recent: Mutex::new(HashMap::new()),
        });
        let (tx, mut rx) = mpsc::channel::<CheckSubject>(1024);
        let worker = inner.clone();
        tokio::spawn(async move {
            let slots = Arc::new(Semaphore::new(PARALLEL_RUNS));
            while let Some(subject) = rx.recv().await {
                let Ok(permit) = slots.clone().acquire_owned().await else {
                    break;
                };
                let w = worker.clone();
                tokio::spawn(async move {
                    if let Err(e) = run(&w, &subject).await {
                        tracing::warn!(subject = %subject.key(), error = %e, "check run not stored");
                    }
                    drop(permit);
                });
            }
        });
        Ok(CheckRunner {
            inner: Some(inner),
            queue: Some(tx),
        })
    }

    pub fn enabled(&self) -> bool {
        self.inner.is_some()
    }

    /// Runs the checks now and stores them; for the API. An operator asking again
    /// wants today's DNS, so this run bypasses the background runs' TTL cache.
    pub async fn run_now(
        &self,
        subject: &CheckSubject,
    ) -> Result<(CheckReport, Vec<CheckChange>), RunError> {
        let inner = self.inner.as_ref().ok_or(RunError::Disabled)?;
        let fresh = Checker::new(inner.checker_config.clone()).map_err(RunError::Checker)?;
        Ok(run_with(&fresh, inner, subject).await?)
    }

    /// Queues checks in the background, skipping subjects checked in the last minutes.
    pub fn enqueue(&self, subjects: Vec<CheckSubject>) {
        let (Some(inner), Some(queue)) = (&self.inner, &self.queue) else {
            return;
        };
        let mut recent = inner.recent.lock().unwrap_or_else(|e| e.into_inner());
        recent.retain(|_, at| at.elapsed() < MIN_GAP);
        for s in subjects {
            if recent.contains_key(&s.key()) {
                continue;
            }
            match queue.try_send(s.clone()) {
                Ok(()) => {
                    recent.insert(s.key(), Instant::now());
                }
                Err(_) => {
                    tracing::warn!(subject = %s.key(), "check queue full; the periodic run will catch up");
                    break;
                }
            }
        }
    }
}

async fn run(
    inner: &Inner,
    subject: &CheckSubject,
) -> Result<(CheckReport, Vec<CheckChange>), StoreError> {
    run_with(&inner.checker, inner, subject).await
}

async fn run_with(
    checker: &Checker,
    inner: &Inner,
    subject: &CheckSubject,
) -> Result<(CheckReport, Vec<CheckChange>), StoreError> {
    let report = match subject {
        CheckSubject::Ip {
            ip,
            helo,
            sender_domain,
            dkim_selectors,
        } => {
            let selectors = merged(
                sender_domain.as_ref().and_then(|d| inner.selectors.get(d)),
                dkim_selectors,
            );
            checker
                .check_ip(*ip, helo.as_deref(), sender_domain.as_deref(), &selectors)
                .await
        }
        CheckSubject::Domain {
            domain,
            dkim_selectors,
        } => {
            let selectors = merged(inner.selectors.get(domain), dkim_selectors);
            checker.check_domain(domain, &selectors).await
        }
    };
    let changes = inner.store.record_checks(&report).await?;
    for c in &changes {
        tracing::info!(subject = %report.subject, change = %c.description, "check changed");
    }
    Ok((report, changes))
}

/// Configured selectors first, then those seen in events, without repeats.
fn merged(configured: Option<&Vec<String>>, seen: &[String]) -> Vec<String> {
    let mut out: Vec<String> = configured.cloned().unwrap_or_default();
    for s in seen {
        if !out.contains(s) {
            out.push(s.clone());
        }
    }
    out
}

/// The names (IPs and domains) of `subjects_for`, as checks are stored under them.
pub fn subject_keys(inc: &Incident) -> Vec<String> {
    let mut v: Vec<String> = subjects_for(inc).iter().map(|s| s.key()).collect();
    v.dedup();
    v
}

/// The subjects worth checking for an incident: its affected IPs (the most deferred
/// first), one unaffected IP to compare with, the sender domain, and the destination.
pub fn subjects_for(inc: &Incident) -> Vec<CheckSubject> {
    let sender_domain = inc
        .sender_domains
        .sorted()
        .first()
        .map(|(d, _)| d.to_string());
    let selectors: Vec<String> = sender_domain
        .as_ref()
        .and_then(|d| inc.dkim_selectors.get(d))
        .cloned()
        .unwrap_or_default();
    let mut affected: Vec<(&String, u64)> = inc
        .routes
        .iter()
        .filter(|(ip, r)| *ip != UNKNOWN_IP && r.counts.deferred > 0)
        .map(|(ip, r)| (ip, r.counts.deferred))
        .collect();
    affected.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    let unaffected = inc
        .routes
        .iter()
        .filter(|(ip, r)| *ip != UNKNOWN_IP && r.counts.deferred == 0 && r.counts.delivered > 0)
        .max_by_key(|(_, r)| r.counts.delivered)
        .map(|(ip, _)| ip);
    let mut out: Vec<CheckSubject> = affected
        .iter()
        .take(MAX_AFFECTED_IPS)
        .map(|(ip, _)| *ip)
        .chain(unaffected)
        .filter_map(|ip| {
            let addr: IpAddr = ip.parse().ok()?;
            Some(CheckSubject::Ip {
                ip: addr,
                helo: inc.routes.get(ip).and_then(|r| r.helos.first().cloned()),
                sender_domain: sender_domain.clone(),
                dkim_selectors: selectors.clone(),
            })
        })
        .collect();
    if let Some(d) = &sender_domain {
        out.push(CheckSubject::Domain {
            domain: d.clone(),
            dkim_selectors: selectors.clone(),
        });
    }
    if let Some((d, _)) = inc.recipient_domains.sorted().first() {
        out.push(CheckSubject::Domain {
            domain: d.to_string(),
            dkim_selectors: Vec::new(),
        });
    }
    out.dedup();
    out
}
