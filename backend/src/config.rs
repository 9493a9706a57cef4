//! Configuration: defaults, overridden by an optional TOML file, overridden by
//! environment variables and flags (clap reads both; see `cli`).

use crate::incidents::Thresholds;
use chrono::TimeDelta;
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub const DEFAULT_DATABASE_URL: &str = "sqlite://./data/deferwatch.db";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path}: {source}")]
    Parse {
        path: PathBuf,
        source: Box<toml::de::Error>,
    },
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

#[derive(Clone, Debug)]
pub struct Config {
    pub listen: SocketAddr,
    pub database_url: String,
    pub db_max_connections: u32,
    /// How long a request waits for a database connection before answering 503.
    pub db_acquire_timeout: Duration,
    /// Largest accepted ingest request body.
    pub max_body_bytes: usize,
    /// Most events (JSON array items or NDJSON lines) in one request.
    pub max_batch_events: usize,
    /// Ingest requests handled at once; more get 503 with Retry-After.
    pub max_ingest_concurrency: usize,
    /// Most events one group commit writes in a transaction.
    pub group_commit_max_events: usize,
    /// `Retry-After` seconds sent with a 503.
    pub retry_after_secs: u64,
    /// Events timestamped further ahead of the clock than this are rejected.
    pub max_future_skew: Duration,
    pub thresholds: Thresholds,
    pub sweep_interval: Duration,
    pub retention: Duration,
    pub prune_interval: Duration,
    /// How long a verified token stays cached; revocation takes this long at most.
    pub token_cache_ttl: Duration,
    /// The operator's own classification rules, tried before the built-in ones.
    pub rules_file: Option<PathBuf>,
    pub checks: ChecksConfig,
    /// Where users reach the dashboard (`https://…` makes cookies `Secure`; links in
    /// emails point here).
    pub public_url: Option<String>,
    /// How long a login lasts.
    pub session_ttl: Duration,
    /// Who receives escalation reports and notifications by email.
    pub report_recipients: Vec<String>,
    /// `smtp://host:port` or `smtps://user:pass@host:port` of the relay for reports.
    pub smtp_url: Option<String>,
    pub smtp_from: Option<String>,
    /// The sending organisation named in escalation reports.
    pub sender_org: Option<String>,
    /// How often the digest goes to the report recipients; None = no digest.
    pub digest_interval: Option<Duration>,
    /// Outbound webhooks on incident transitions (`[notify]`).
    pub notify: crate::notify::NotifyConfig,
    /// How far a signed webhook's timestamp may be from the clock. Longer than Postal's
    /// 36-minute retry span, so its retries of a signed body are still accepted; a replay
    /// inside the window is harmless, since the store deduplicates events.
    pub webhook_tolerance: Duration,
    /// `[sources.NAME]`: what a log source's lines map to (transport, sender domain →
    /// sending IP and HELO), keyed by source name.
    pub log_sources: std::collections::BTreeMap<String, crate::ingest::mta::LogSourceMap>,
}

/// Sender- and destination-side DNS checks.
#[derive(Clone, Debug)]
pub struct ChecksConfig {
    /// Run checks on incident open and periodically.
    pub enabled: bool,
    /// `IP:port` resolvers; empty = the system resolver. Blocklists refuse queries
    /// from public resolvers, so production points this at its own recursor.
    pub nameservers: Vec<SocketAddr>,
    pub timeout: Duration,
    pub attempts: usize,
    /// DNS queries in flight at most.
    pub concurrency: usize,
    pub dnsbl: Vec<crate::checks::ZoneSpec>,
    pub rhsbl: Vec<crate::checks::ZoneSpec>,
    /// How often active sending IPs and domains are checked again.
    pub interval: Duration,
    /// DKIM selectors to check, per sender domain.
    pub dkim_selectors: std::collections::BTreeMap<String, Vec<String>>,
}

impl Default for ChecksConfig {
    fn default() -> Self {
        let d = crate::checks::CheckConfig::default();
        ChecksConfig {
            enabled: true,
            nameservers: d.nameservers,
            timeout: d.timeout,
            attempts: d.attempts,
            concurrency: d.concurrency,
            dnsbl: d.dnsbl,
            rhsbl: d.rhsbl,
            interval: Duration::from_secs(6 * 3600),
            dkim_selectors: Default::default(),
        }
    }
}

impl ChecksConfig {
    pub fn checker_config(&self) -> crate::checks::CheckConfig {
        crate::checks::CheckConfig {
            nameservers: self.nameservers.clone(),
            timeout: self.timeout,
            attempts: self.attempts.max(1),
            concurrency: self.concurrency.max(1),
            dnsbl: self.dnsbl.clone(),
            rhsbl: self.rhsbl.clone(),
            ..crate::checks::CheckConfig::default()
        }
    }
}

/// `[checks]` in the file.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileChecks {
    pub enabled: Option<bool>,
    pub nameservers: Option<Vec<String>>,
    #[serde(default, with = "humantime_serde")]
    pub timeout: Option<Duration>,
    pub attempts: Option<usize>,
    pub concurrency: Option<usize>,
    pub dnsbl: Option<Vec<String>>,
    pub rhsbl: Option<Vec<String>>,
    #[serde(default, with = "humantime_serde")]
    pub interval: Option<Duration>,
    pub dkim_selectors: Option<std::collections::BTreeMap<String, Vec<String>>>,
}

impl FileChecks {
    /// Fields set in `over` win.
    pub fn overlay_public(self, over: FileChecks) -> FileChecks {
        self.overlay(over)
    }

    fn overlay(self, over: FileChecks) -> FileChecks {
        FileChecks {
            enabled: over.enabled.or(self.enabled),
            nameservers: over.nameservers.or(self.nameservers),
            timeout: over.timeout.or(self.timeout),
            attempts: over.attempts.or(self.attempts),
            concurrency: over.concurrency.or(self.concurrency),
            dnsbl: over.dnsbl.or(self.dnsbl),
            rhsbl: over.rhsbl.or(self.rhsbl),
            interval: over.interval.or(self.interval),
            dkim_selectors: over.dkim_selectors.or(self.dkim_selectors),
        }
    }

    fn resolve(self) -> Result<ChecksConfig, ConfigError> {
        let d = ChecksConfig::default();
        let zones =
            |v: Option<Vec<String>>, default: Vec<crate::checks::ZoneSpec>, key: &str| match v {
                None => Ok(default),
                Some(list) => list
                    .iter()
                    .filter(|s| !s.trim().is_empty())
                    .map(|s| {
                        crate::checks::ZoneSpec::parse(s)
                            .map_err(|e| ConfigError::Invalid(format!("checks.{key}: {e}")))
                    })
                    .collect(),
            };
        let nameservers = match self.nameservers {
            None => d.nameservers,
            Some(list) => list
                .iter()
                .filter(|s| !s.trim().is_empty())
                .map(|s| {
                    s.trim().parse::<SocketAddr>().map_err(|_| {
                        ConfigError::Invalid(format!(
                            "checks.nameservers: {s:?} is not IP:port (e.g. 127.0.0.1:53)"
                        ))
                    })
                })
                .collect::<Result<_, _>>()?,
        };
        Ok(ChecksConfig {
            enabled: self.enabled.unwrap_or(d.enabled),
            nameservers,
            timeout: self.timeout.unwrap_or(d.timeout),
            attempts: self.attempts.unwrap_or(d.attempts),
            concurrency: self.concurrency.unwrap_or(d.concurrency),
            dnsbl: zones(self.dnsbl, d.dnsbl, "dnsbl")?,
            rhsbl: zones(self.rhsbl, d.rhsbl, "rhsbl")?,
            interval: self.interval.unwrap_or(d.interval),
            dkim_selectors: self.dkim_selectors.unwrap_or(d.dkim_selectors),
        })
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 8421)),
            database_url: DEFAULT_DATABASE_URL.into(),
            db_max_connections: 10,
            db_acquire_timeout: Duration::from_secs(5),
            max_body_bytes: 10 * 1024 * 1024,
            max_batch_events: 10_000,
            max_ingest_concurrency: 256,
            group_commit_max_events: 5_000,
            retry_after_secs: 5,
            max_future_skew: Duration::from_secs(3600),
            thresholds: Thresholds::default(),
            sweep_interval: Duration::from_secs(60),
            retention: Duration::from_secs(30 * 86_400),
            prune_interval: Duration::from_secs(3600),
            token_cache_ttl: Duration::from_secs(10),
            rules_file: None,
            checks: ChecksConfig::default(),
            public_url: None,
            session_ttl: Duration::from_secs(7 * 86_400),
            report_recipients: Vec::new(),
            smtp_url: None,
            smtp_from: None,
            sender_org: None,
            digest_interval: None,
            notify: crate::notify::NotifyConfig::default(),
            webhook_tolerance: Duration::from_secs(3600),
            log_sources: Default::default(),
        }
    }
}

/// The TOML file: every key optional, same names as the environment variables
/// without the `DEFERWATCH_` prefix, in lower case. Durations as "15m", "6h", "30d".
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub listen: Option<SocketAddr>,
    pub database_url: Option<String>,
    pub db_max_connections: Option<u32>,
    #[serde(default, with = "humantime_serde")]
    pub db_acquire_timeout: Option<Duration>,
    pub max_body_bytes: Option<usize>,
    pub max_batch_events: Option<usize>,
    pub max_ingest_concurrency: Option<usize>,
    pub group_commit_max_events: Option<usize>,
    pub retry_after_secs: Option<u64>,
    #[serde(default, with = "humantime_serde")]
    pub max_future_skew: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub sweep_interval: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub retention: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub prune_interval: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub token_cache_ttl: Option<Duration>,
    pub rules_file: Option<PathBuf>,
    pub public_url: Option<String>,
    #[serde(default, with = "humantime_serde")]
    pub session_ttl: Option<Duration>,
    pub report_recipients: Option<Vec<String>>,
    pub smtp_url: Option<String>,
    pub smtp_from: Option<String>,
    pub sender_org: Option<String>,
    #[serde(default, with = "humantime_serde")]
    pub digest_interval: Option<Duration>,
    #[serde(default)]
    pub windows: WindowsConfig,
    #[serde(default)]
    pub checks: FileChecks,
    /// `[notify]`: only in the file (a list of webhooks has no flag form).
    #[serde(default)]
    pub notify: Option<crate::notify::config::FileNotify>,
    #[serde(default, with = "humantime_serde")]
    pub webhook_tolerance: Option<Duration>,
    /// `[sources.NAME]`: only in the file.
    #[serde(default)]
    pub sources: Option<std::collections::BTreeMap<String, crate::ingest::mta::LogSourceMap>>,
}

/// `[windows]` in the file, `DEFERWATCH_WINDOW_*` in the environment.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WindowsConfig {
    #[serde(default, with = "humantime_serde")]
    pub normal_retry: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub persistent: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub cooling: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub cooling_extended: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub escalate: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub quiet_period: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub reopen_window: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub stale_after: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub trend_window: Option<Duration>,
}

impl WindowsConfig {
    /// Fields set in `over` win.
    pub fn overlay(&self, over: &WindowsConfig) -> WindowsConfig {
        WindowsConfig {
            normal_retry: over.normal_retry.or(self.normal_retry),
            persistent: over.persistent.or(self.persistent),
            cooling: over.cooling.or(self.cooling),
            cooling_extended: over.cooling_extended.or(self.cooling_extended),
            escalate: over.escalate.or(self.escalate),
            quiet_period: over.quiet_period.or(self.quiet_period),
            reopen_window: over.reopen_window.or(self.reopen_window),
            stale_after: over.stale_after.or(self.stale_after),
            trend_window: over.trend_window.or(self.trend_window),
        }
    }

    pub fn apply(&self, t: &mut Thresholds) -> Result<(), ConfigError> {
        let set =
            |slot: &mut TimeDelta, v: Option<Duration>, name: &str| -> Result<(), ConfigError> {
                if let Some(d) = v {
                    *slot = TimeDelta::from_std(d).map_err(|_| {
                        ConfigError::Invalid(format!("windows.{name} is too large"))
                    })?;
                }
                Ok(())
            };
        set(&mut t.normal_retry, self.normal_retry, "normal_retry")?;
        set(&mut t.persistent, self.persistent, "persistent")?;
        set(&mut t.cooling, self.cooling, "cooling")?;
        set(
            &mut t.cooling_extended,
            self.cooling_extended,
            "cooling_extended",
        )?;
        set(&mut t.escalate, self.escalate, "escalate")?;
        set(&mut t.quiet_period, self.quiet_period, "quiet_period")?;
        set(&mut t.reopen_window, self.reopen_window, "reopen_window")?;
        set(&mut t.stale_after, self.stale_after, "stale_after")?;
        set(&mut t.trend_window, self.trend_window, "trend_window")?;
        Ok(())
    }
}

impl Config {
    /// The built-in rules, plus the user's rules file when one is configured. A broken
    /// file is an error naming the file and line, never silently ignored.
    pub fn classifier(&self) -> Result<crate::smtp::Classifier, ConfigError> {
        match &self.rules_file {
            None => Ok(crate::smtp::Classifier::builtin()),
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.clone(),
                    source,
                })?;
                crate::smtp::Classifier::with_user_rules(&text, &path.display().to_string())
                    .map_err(|e| ConfigError::Invalid(format!("rules file: {e}")))
            }
        }
    }
}

impl FileConfig {
    pub fn load(path: &Path) -> Result<FileConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        toml::from_str(&text).map_err(|source| ConfigError::Parse {
            path: path.to_path_buf(),
            source: Box::new(source),
        })
    }

    /// Fields set in `over` (flags and environment) win over the file's.
    pub fn overlay(self, over: FileConfig) -> FileConfig {
        FileConfig {
            listen: over.listen.or(self.listen),
            database_url: over.database_url.or(self.database_url),
            db_max_connections: over.db_max_connections.or(self.db_max_connections),
            db_acquire_timeout: over.db_acquire_timeout.or(self.db_acquire_timeout),
            max_body_bytes: over.max_body_bytes.or(self.max_body_bytes),
            max_batch_events: over.max_batch_events.or(self.max_batch_events),
            max_ingest_concurrency: over.max_ingest_concurrency.or(self.max_ingest_concurrency),
            group_commit_max_events: over
                .group_commit_max_events
                .or(self.group_commit_max_events),
            retry_after_secs: over.retry_after_secs.or(self.retry_after_secs),
            max_future_skew: over.max_future_skew.or(self.max_future_skew),
            sweep_interval: over.sweep_interval.or(self.sweep_interval),
            retention: over.retention.or(self.retention),
            prune_interval: over.prune_interval.or(self.prune_interval),
            token_cache_ttl: over.token_cache_ttl.or(self.token_cache_ttl),
            rules_file: over.rules_file.or(self.rules_file),
            public_url: over.public_url.or(self.public_url),
            session_ttl: over.session_ttl.or(self.session_ttl),
            report_recipients: over.report_recipients.or(self.report_recipients),
            smtp_url: over.smtp_url.or(self.smtp_url),
            smtp_from: over.smtp_from.or(self.smtp_from),
            sender_org: over.sender_org.or(self.sender_org),
            digest_interval: over.digest_interval.or(self.digest_interval),
            windows: self.windows.overlay(&over.windows),
            checks: self.checks.overlay(over.checks),
            notify: over.notify.or(self.notify),
            webhook_tolerance: over.webhook_tolerance.or(self.webhook_tolerance),
            sources: over.sources.or(self.sources),
        }
    }

    pub fn resolve(self) -> Result<Config, ConfigError> {
        let d = Config::default();
        let mut thresholds = d.thresholds.clone();
        self.windows.apply(&mut thresholds)?;
        thresholds
            .validate()
            .map_err(|e| ConfigError::Invalid(e.to_string()))?;
        let positive = |v: usize, name: &str| {
            if v == 0 {
                Err(ConfigError::Invalid(format!("{name} must be at least 1")))
            } else {
                Ok(v)
            }
        };
        let cfg = Config {
            listen: self.listen.unwrap_or(d.listen),
            database_url: self.database_url.unwrap_or(d.database_url),
            db_max_connections: self
                .db_max_connections
                .unwrap_or(d.db_max_connections)
                .max(1),
            db_acquire_timeout: self.db_acquire_timeout.unwrap_or(d.db_acquire_timeout),
            max_body_bytes: positive(
                self.max_body_bytes.unwrap_or(d.max_body_bytes),
                "max_body_bytes",
            )?,
            max_batch_events: positive(
                self.max_batch_events.unwrap_or(d.max_batch_events),
                "max_batch_events",
            )?,
            max_ingest_concurrency: positive(
                self.max_ingest_concurrency
                    .unwrap_or(d.max_ingest_concurrency),
                "max_ingest_concurrency",
            )?,
            group_commit_max_events: positive(
                self.group_commit_max_events
                    .unwrap_or(d.group_commit_max_events),
                "group_commit_max_events",
            )?,
            retry_after_secs: self.retry_after_secs.unwrap_or(d.retry_after_secs),
            max_future_skew: self.max_future_skew.unwrap_or(d.max_future_skew),
            thresholds,
            sweep_interval: self.sweep_interval.unwrap_or(d.sweep_interval),
            retention: self.retention.unwrap_or(d.retention),
            prune_interval: self.prune_interval.unwrap_or(d.prune_interval),
            token_cache_ttl: self.token_cache_ttl.unwrap_or(d.token_cache_ttl),
            rules_file: self.rules_file,
            checks: self.checks.resolve()?,
            public_url: self.public_url.map(|u| u.trim_end_matches('/').to_string()),
            session_ttl: self.session_ttl.unwrap_or(d.session_ttl),
            report_recipients: self.report_recipients.unwrap_or_default(),
            smtp_url: self.smtp_url,
            smtp_from: self.smtp_from,
            sender_org: self.sender_org,
            digest_interval: self.digest_interval.filter(|d| !d.is_zero()),
            notify: self.notify.unwrap_or_default().resolve()?,
            webhook_tolerance: self.webhook_tolerance.unwrap_or(d.webhook_tolerance),
            log_sources: self.sources.unwrap_or_default(),
        };
        if cfg.sweep_interval.is_zero() || cfg.prune_interval.is_zero() {
            return Err(ConfigError::Invalid(
                "sweep_interval and prune_interval must be positive".into(),
            ));
        }
        Ok(cfg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_values_apply_and_flags_win() {
        let file: FileConfig = toml::from_str(
            r#"
            listen = "0.0.0.0:9000"
            retention = "7d"
            [windows]
            persistent = "2h"
            "#,
        )
        .unwrap();
        let flags = FileConfig {
            listen: Some("127.0.0.1:9100".parse().unwrap()),
            ..FileConfig::default()
        };
        let cfg = file.overlay(flags).resolve().unwrap();
        assert_eq!(cfg.listen.port(), 9100);
        assert_eq!(cfg.retention, Duration::from_secs(7 * 86_400));
        assert_eq!(cfg.thresholds.persistent, TimeDelta::hours(2));
        assert_eq!(cfg.thresholds.cooling, TimeDelta::hours(6));
    }

    #[test]
    fn unknown_keys_and_disordered_windows_are_errors() {
        assert!(toml::from_str::<FileConfig>("listn = \"x\"").is_err());
        let file: FileConfig = toml::from_str("[windows]\ncooling = \"30m\"").unwrap();
        let err = file.resolve().unwrap_err().to_string();
        assert!(err.contains("must increase"), "{err}");
    }
}
