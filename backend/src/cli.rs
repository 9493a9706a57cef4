//! The command line: `deferwatch serve`, `migrate`, `source`, `token`, `sweep`,
//! `prune`, `bench`. Flags can also come from the environment (shown in `--help`).

use crate::clock::{Clock, SystemClock};
use crate::config::{Config, FileConfig, WindowsConfig};
use crate::store::{self, ConnectOptions, DynStore};
use crate::web::auth::{API_TOKEN_PREFIX, SOURCE_TOKEN_PREFIX, hash_token, new_token};
use clap::{Args, Parser, Subcommand};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

#[derive(Parser, Debug)]
#[command(
    name = "deferwatch",
    version,
    about = "Email deliverability incidents: persistent SMTP deferrals, their phase, scope and evidence"
)]
pub struct Cli {
    /// Optional TOML configuration file (keys as in the README).
    #[arg(long, global = true, env = "DEFERWATCH_CONFIG")]
    pub config: Option<PathBuf>,
    /// sqlite://PATH (default sqlite://./data/deferwatch.db) or postgres://USER@HOST/DB.
    #[arg(long, global = true, env = "DATABASE_URL")]
    pub database_url: Option<String>,
    /// Your own classification rules (TOML, same shape as the built-in rules); they are
    /// tried before the built-in ones.
    #[arg(long, global = true, env = "DEFERWATCH_RULES_FILE")]
    pub rules_file: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the HTTP server (ingest, read API, metrics).
    Serve(Box<ServeArgs>),
    /// Create or upgrade the database schema, then exit.
    Migrate,
    /// Manage event sources and their ingest tokens.
    #[command(subcommand)]
    Source(SourceCmd),
    /// Manage API tokens for the read API and /metrics.
    #[command(subcommand)]
    Token(TokenCmd),
    /// Manage dashboard users (passwords are read from a prompt, or from stdin when
    /// it is not a terminal).
    #[command(subcommand)]
    User(UserCmd),
    /// Let time pass for open incidents once (recovered / stale), then exit.
    Sweep,
    /// Delete raw events older than the retention, then exit.
    Prune,
    /// Classify SMTP replies: TEXT, or one reply per line on standard input.
    Classify {
        /// One JSON object per reply instead of a line of text.
        #[arg(long)]
        json: bool,
        /// The MX host that answered, to name the provider.
        #[arg(long)]
        mx_host: Option<String>,
        text: Option<String>,
    },
    /// Classify every stored event again with the current rules and update incidents.
    Reclassify {
        /// Events per transaction.
        #[arg(long, default_value_t = 1000)]
        batch: i64,
    },
    /// Run the DNS checks for a sending IP or a domain now and print them.
    #[command(subcommand)]
    Check(CheckCmd),
    /// Drive a real server with load and print events/s and latency percentiles.
    Bench(Box<crate::bench::BenchArgs>),
    /// Print an incident's escalation report (`report ID`), or email it through the
    /// configured relay (`report send ID --to ADDR`).
    Report(ReportArgs),
    /// Backfill history from log files (gzip accepted): every event stored, incidents
    /// built by event time as live ingestion would have.
    Import(ImportArgs),
    /// Follow a log file (surviving rotation) and send its events as they are written.
    Tail(TailArgs),
}

#[derive(Args, Debug)]
pub struct ImportArgs {
    /// The source the lines belong to (created with `source add NAME --format …`).
    #[arg(long)]
    pub source: String,
    /// postfix, exim or powermta.
    #[arg(long)]
    pub format: String,
    /// Parse and count only; store nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Events per transaction.
    #[arg(long, default_value_t = crate::ingest::logfile::IMPORT_BATCH_EVENTS)]
    pub batch: usize,
    /// Print the summary as JSON.
    #[arg(long)]
    pub json: bool,
    /// Log files, oldest first (`maillog.2.gz maillog.1 maillog`).
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
}

#[derive(Args, Debug)]
pub struct TailArgs {
    #[arg(long)]
    pub source: String,
    /// postfix, exim or powermta.
    #[arg(long)]
    pub format: String,
    /// Post the lines to this server (`http://host:8421`) instead of writing to the
    /// database; the server parses them with its own `[sources.NAME]` map.
    #[arg(long, env = "DEFERWATCH_SERVER")]
    pub server: Option<String>,
    /// The source's token, with --server.
    #[arg(long, env = "DEFERWATCH_SOURCE_TOKEN")]
    pub token: Option<String>,
    /// Where the read position is kept (default: ./data/tail-SOURCE-….json).
    #[arg(long)]
    pub state: Option<PathBuf>,
    /// With no saved position, read the file's existing lines first instead of
    /// starting at its end.
    #[arg(long)]
    pub from_start: bool,
    /// Most lines per batch.
    #[arg(long, default_value_t = 1000)]
    pub batch_lines: usize,
    /// Longest wait before a partial batch is sent.
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    pub flush_interval: Duration,
    pub file: PathBuf,
}

#[derive(Args, Debug)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct ReportArgs {
    #[command(subcommand)]
    pub cmd: Option<ReportCmd>,
    /// The incident's id, as in the dashboard and the API.
    #[arg(required = true)]
    pub incident: Option<i64>,
    /// text (what postmaster forms take), html, or eml (a complete message to open in
    /// a mail client).
    #[arg(long, default_value = "text", value_parser = ["text", "html", "eml"])]
    pub format: String,
    /// Recipient written into an .eml (repeatable); default postmaster@ the most
    /// deferred recipient domain.
    #[arg(long)]
    pub to: Vec<String>,
}

#[derive(Subcommand, Debug)]
pub enum ReportCmd {
    /// Email the report through DEFERWATCH_SMTP_URL from DEFERWATCH_SMTP_FROM (or the
    /// settings saved in the dashboard); every attempt is recorded.
    Send {
        /// The incident's id.
        incident: i64,
        /// Recipient address (repeatable).
        #[arg(long, required = true)]
        to: Vec<String>,
    },
}

#[derive(Subcommand, Debug)]
pub enum SourceCmd {
    /// Create a source and print its token (shown once; only its hash is stored).
    Add {
        name: String,
        /// Event format the source sends: json (POST /api/v1/events); kumomta, postfix,
        /// exim, powermta; sendgrid, mailgun, ses, postal, sparkpost, mandrill, brevo
        /// (POST /api/v1/ingest/FORMAT).
        #[arg(long, default_value = "json")]
        format: String,
        #[command(flatten)]
        keys: KeyArgs,
    },
    /// Set what a webhook source verifies its provider's requests with (replaces all
    /// three; give the ones the format needs).
    Keys {
        name: String,
        #[command(flatten)]
        keys: KeyArgs,
    },
    List,
    /// Issue a new token for a source; the old one stops working.
    Rotate {
        name: String,
    },
    Revoke {
        name: String,
    },
}

/// A webhook source's verification keys.
#[derive(Args, Debug, Default)]
pub struct KeyArgs {
    /// Signing secret: the HMAC key (mailgun, mandrill) or `user:password` / a bearer
    /// token the webhook sends (sparkpost, brevo). `-` reads it from standard input, so
    /// it stays out of the shell history and the process list.
    #[arg(long)]
    pub secret: Option<String>,
    /// Public key file: SendGrid's verification key, Postal's signing key (PEM or the
    /// base64 the provider shows), or an SNS signing certificate to pin for ses.
    #[arg(long)]
    pub public_key: Option<PathBuf>,
    /// The webhook URL exactly as configured at the provider (mandrill signs it).
    #[arg(long)]
    pub webhook_url: Option<String>,
}

impl KeyArgs {
    fn read(&self) -> Result<crate::store::SourceKeys, CliError> {
        let secret = match self.secret.as_deref() {
            Some("-") => {
                let mut line = String::new();
                std::io::stdin().read_line(&mut line)?;
                Some(line.trim().to_string())
            }
            other => other.map(|s| s.trim().to_string()),
        }
        .filter(|s| !s.is_empty());
        let public_key = match &self.public_key {
            Some(p) => Some(
                std::fs::read_to_string(p)
                    .map_err(|e| CliError::Usage(format!("--public-key {}: {e}", p.display())))?,
            ),
            None => None,
        }
        .map(|k| k.trim().to_string())
        .filter(|k| !k.is_empty());
        Ok(crate::store::SourceKeys {
            secret,
            public_key,
            webhook_url: self.webhook_url.clone().filter(|u| !u.trim().is_empty()),
        })
    }
}

#[derive(Subcommand, Debug)]
pub enum TokenCmd {
    /// Create an API token and print it (shown once).
    Add {
        name: String,
    },
    List,
    Revoke {
        name: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum UserCmd {
    /// Create a user.
    Add {
        name: String,
        #[arg(long, default_value = "viewer", value_parser = ["admin", "viewer"])]
        role: String,
    },
    List,
    /// Set a new password; the user's sessions end.
    Passwd {
        name: String,
    },
    /// Delete a user and end their sessions.
    Remove {
        name: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum CheckCmd {
    /// PTR/FCrDNS, HELO, SPF, blocklists for a sending IP (DKIM/DMARC with a sender domain).
    Ip {
        ip: std::net::IpAddr,
        #[arg(long)]
        helo: Option<String>,
        #[arg(long)]
        sender_domain: Option<String>,
        #[command(flatten)]
        opts: CheckOpts,
    },
    /// SPF, DKIM, DMARC, domain blocklists, MX, MTA-STS and TLS-RPT for a domain.
    Domain {
        domain: String,
        #[command(flatten)]
        opts: CheckOpts,
    },
}

#[derive(Args, Debug)]
pub struct CheckOpts {
    /// DKIM selector to check (repeatable).
    #[arg(long = "dkim-selector")]
    pub dkim_selectors: Vec<String>,
    /// Resolver, IP:port (repeatable); default: the configured ones, else the system's.
    #[arg(long = "nameserver")]
    pub nameservers: Vec<String>,
    /// IP blocklist ZONE[=TABLE] (repeatable); replaces the configured set.
    #[arg(long = "dnsbl")]
    pub dnsbl: Vec<String>,
    /// Domain blocklist ZONE[=TABLE] (repeatable); replaces the configured set.
    #[arg(long = "rhsbl")]
    pub rhsbl: Vec<String>,
    /// Print {"subject", "checks": [{"name", "verdict", "detail", "records"}], "checked_at"}.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug, Default)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "DEFERWATCH_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// Fill a fresh embedded database with a labelled demo data set, generated
    /// relative to now and fed through the real ingest path.
    #[arg(long)]
    pub demo: bool,
    /// Where users reach the dashboard, e.g. https://deferwatch.example.com.
    #[arg(long, env = "DEFERWATCH_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// How long a browser login lasts.
    #[arg(long, env = "DEFERWATCH_SESSION_TTL", value_parser = humantime::parse_duration)]
    pub session_ttl: Option<Duration>,
    /// Email addresses that receive escalation reports (comma-separated).
    #[arg(
        long = "report-recipient",
        env = "DEFERWATCH_REPORT_RECIPIENTS",
        value_delimiter = ','
    )]
    pub report_recipients: Vec<String>,
    /// SMTP relay for reports: smtp://host:port or smtps://user:pass@host:port.
    #[arg(long, env = "DEFERWATCH_SMTP_URL")]
    pub smtp_url: Option<String>,
    #[arg(long, env = "DEFERWATCH_SMTP_FROM")]
    pub smtp_from: Option<String>,
    /// Your organisation, named in escalation reports.
    #[arg(long, env = "DEFERWATCH_SENDER_ORG")]
    pub sender_org: Option<String>,
    /// Email a digest of open incidents to the report recipients this often (e.g. 24h).
    #[arg(long, env = "DEFERWATCH_DIGEST_INTERVAL", value_parser = humantime::parse_duration)]
    pub digest_interval: Option<Duration>,
    #[arg(long, env = "DEFERWATCH_MAX_BODY_BYTES")]
    pub max_body_bytes: Option<usize>,
    #[arg(long, env = "DEFERWATCH_MAX_BATCH_EVENTS")]
    pub max_batch_events: Option<usize>,
    #[arg(long, env = "DEFERWATCH_MAX_INGEST_CONCURRENCY")]
    pub max_ingest_concurrency: Option<usize>,
    #[arg(long, env = "DEFERWATCH_GROUP_COMMIT_MAX_EVENTS")]
    pub group_commit_max_events: Option<usize>,
    #[arg(long, env = "DEFERWATCH_DB_MAX_CONNECTIONS")]
    pub db_max_connections: Option<u32>,
    #[arg(long, env = "DEFERWATCH_DB_ACQUIRE_TIMEOUT", value_parser = humantime::parse_duration)]
    pub db_acquire_timeout: Option<Duration>,
    #[arg(long, env = "DEFERWATCH_RETRY_AFTER_SECS")]
    pub retry_after_secs: Option<u64>,
    #[arg(long, env = "DEFERWATCH_MAX_FUTURE_SKEW", value_parser = humantime::parse_duration)]
    pub max_future_skew: Option<Duration>,
    /// How far a signed webhook's timestamp may be from the clock (default 1h).
    #[arg(long, env = "DEFERWATCH_WEBHOOK_TOLERANCE", value_parser = humantime::parse_duration)]
    pub webhook_tolerance: Option<Duration>,
    #[arg(long, env = "DEFERWATCH_SWEEP_INTERVAL", value_parser = humantime::parse_duration)]
    pub sweep_interval: Option<Duration>,
    /// How long raw events are kept after they were received (incidents stay).
    #[arg(long, env = "DEFERWATCH_RETENTION", value_parser = humantime::parse_duration)]
    pub retention: Option<Duration>,
    #[arg(long, env = "DEFERWATCH_PRUNE_INTERVAL", value_parser = humantime::parse_duration)]
    pub prune_interval: Option<Duration>,
    #[arg(long, env = "DEFERWATCH_TOKEN_CACHE_TTL", value_parser = humantime::parse_duration)]
    pub token_cache_ttl: Option<Duration>,
    #[command(flatten)]
    pub windows: WindowArgs,
    /// Run DNS checks on incident open and periodically (true/false).
    #[arg(long, env = "DEFERWATCH_CHECKS")]
    pub checks: Option<bool>,
    /// Resolver for checks, IP:port; repeat or comma-separate for several.
    #[arg(
        long = "nameserver",
        env = "DEFERWATCH_NAMESERVERS",
        value_delimiter = ','
    )]
    pub nameservers: Vec<String>,
    /// IP blocklist zone, ZONE[=TABLE]; replaces the default set.
    #[arg(long = "dnsbl", env = "DEFERWATCH_DNSBL", value_delimiter = ',')]
    pub dnsbl: Vec<String>,
    /// Domain blocklist zone, ZONE[=TABLE]; replaces the default set.
    #[arg(long = "rhsbl", env = "DEFERWATCH_RHSBL", value_delimiter = ',')]
    pub rhsbl: Vec<String>,
    /// How often the subjects of open incidents are checked again.
    #[arg(long, env = "DEFERWATCH_CHECK_INTERVAL", value_parser = humantime::parse_duration)]
    pub check_interval: Option<Duration>,
}

fn non_empty(v: &[String]) -> Option<Vec<String>> {
    (!v.is_empty()).then(|| v.to_vec())
}

#[derive(Args, Debug, Default, Clone)]
pub struct WindowArgs {
    #[arg(long, env = "DEFERWATCH_WINDOW_NORMAL_RETRY", value_parser = humantime::parse_duration)]
    pub window_normal_retry: Option<Duration>,
    #[arg(long, env = "DEFERWATCH_WINDOW_PERSISTENT", value_parser = humantime::parse_duration)]
    pub window_persistent: Option<Duration>,
    #[arg(long, env = "DEFERWATCH_WINDOW_COOLING", value_parser = humantime::parse_duration)]
    pub window_cooling: Option<Duration>,
    #[arg(long, env = "DEFERWATCH_WINDOW_COOLING_EXTENDED", value_parser = humantime::parse_duration)]
    pub window_cooling_extended: Option<Duration>,
    #[arg(long, env = "DEFERWATCH_WINDOW_ESCALATE", value_parser = humantime::parse_duration)]
    pub window_escalate: Option<Duration>,
    #[arg(long, env = "DEFERWATCH_QUIET_PERIOD", value_parser = humantime::parse_duration)]
    pub quiet_period: Option<Duration>,
    #[arg(long, env = "DEFERWATCH_REOPEN_WINDOW", value_parser = humantime::parse_duration)]
    pub reopen_window: Option<Duration>,
    #[arg(long, env = "DEFERWATCH_STALE_AFTER", value_parser = humantime::parse_duration)]
    pub stale_after: Option<Duration>,
    #[arg(long, env = "DEFERWATCH_TREND_WINDOW", value_parser = humantime::parse_duration)]
    pub trend_window: Option<Duration>,
}

impl ServeArgs {
    fn as_file_config(&self, database_url: Option<String>) -> FileConfig {
        let w = &self.windows;
        FileConfig {
            listen: self.listen,
            database_url,
            db_max_connections: self.db_max_connections,
            db_acquire_timeout: self.db_acquire_timeout,
            max_body_bytes: self.max_body_bytes,
            max_batch_events: self.max_batch_events,
            max_ingest_concurrency: self.max_ingest_concurrency,
            group_commit_max_events: self.group_commit_max_events,
            retry_after_secs: self.retry_after_secs,
            max_future_skew: self.max_future_skew,
            webhook_tolerance: self.webhook_tolerance,
            sources: None,
            sweep_interval: self.sweep_interval,
            retention: self.retention,
            prune_interval: self.prune_interval,
            token_cache_ttl: self.token_cache_ttl,
            rules_file: None,
            public_url: self.public_url.clone(),
            session_ttl: self.session_ttl,
            report_recipients: non_empty(&self.report_recipients),
            smtp_url: self.smtp_url.clone(),
            smtp_from: self.smtp_from.clone(),
            sender_org: self.sender_org.clone(),
            digest_interval: self.digest_interval,
            checks: crate::config::FileChecks {
                enabled: self.checks,
                nameservers: non_empty(&self.nameservers),
                dnsbl: non_empty(&self.dnsbl),
                rhsbl: non_empty(&self.rhsbl),
                interval: self.check_interval,
                ..Default::default()
            },
            notify: None,
            windows: WindowsConfig {
                normal_retry: w.window_normal_retry,
                persistent: w.window_persistent,
                cooling: w.window_cooling,
                cooling_extended: w.window_cooling_extended,
                escalate: w.window_escalate,
                quiet_period: w.quiet_period,
                reopen_window: w.reopen_window,
                stale_after: w.stale_after,
                trend_window: w.trend_window,
            },
        }
    }
}

/// Errors the command line reports before exiting with status 1.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error(transparent)]
    Store(#[from] store::StoreError),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Usage(String),
    #[error("{0}")]
    Bench(String),
    #[error(transparent)]
    Log(#[from] crate::ingest::logfile::LogError),
}

fn load_config(cli: &Cli, serve: Option<&ServeArgs>) -> Result<Config, CliError> {
    let file = match &cli.config {
        Some(p) => FileConfig::load(p)?,
        None => FileConfig::default(),
    };
    let mut over = match serve {
        Some(s) => s.as_file_config(cli.database_url.clone()),
        None => FileConfig {
            database_url: cli.database_url.clone(),
            ..FileConfig::default()
        },
    };
    over.rules_file = cli.rules_file.clone();
    Ok(file.overlay(over).resolve()?)
}

async fn open_store(cfg: &Config) -> Result<DynStore, CliError> {
    let opts = ConnectOptions {
        max_connections: cfg.db_max_connections,
        acquire_timeout: cfg.db_acquire_timeout,
    };
    store::connect(&cfg.database_url, &opts).await.map_err(|e| {
        CliError::Usage(format!(
            "cannot open database {}: {e}",
            store::redact_url(&cfg.database_url)
        ))
    })
}

pub async fn run(cli: Cli) -> Result<(), CliError> {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    match &cli.command {
        Command::Serve(args) => {
            let mut cfg = load_config(&cli, Some(args))?;
            if args.demo {
                prepare_demo_database(&mut cfg, cli.database_url.is_some())?;
            }
            let store = open_store(&cfg).await?;
            if args.demo && !store.list_sources().await?.is_empty() {
                return Err(CliError::Usage(
                    "--demo fills a fresh database, and this one already has sources: \
                     drop --database-url to use the throwaway ./data/demo.db"
                        .into(),
                ));
            }
            apply_saved_settings(&store, &mut cfg).await?;
            let listener = tokio::net::TcpListener::bind(cfg.listen)
                .await
                .map_err(|e| CliError::Usage(format!("cannot listen on {}: {e}", cfg.listen)))?;
            tracing::info!(
                listen = %cfg.listen,
                database = %store::redact_url(&cfg.database_url),
                "deferwatch serving"
            );
            let classifier = cfg.classifier()?;
            tracing::info!(
                rules = classifier.rule_count(),
                "classification rules loaded"
            );
            let state = crate::app::AppState::new(cfg, store, clock, classifier)
                .map_err(|e| CliError::Usage(format!("checks: {e}")))?;
            if args.demo {
                crate::demo::seed(&state, listener.local_addr()?).await?;
            }
            crate::app::serve(state, listener, shutdown_signal()).await?;
            Ok(())
        }
        Command::Migrate => {
            let cfg = load_config(&cli, None)?;
            open_store(&cfg).await?;
            println!(
                "database {} is up to date",
                store::redact_url(&cfg.database_url)
            );
            Ok(())
        }
        Command::Source(cmd) => {
            let cfg = load_config(&cli, None)?;
            let store = open_store(&cfg).await?;
            match cmd {
                SourceCmd::Add { name, format, keys } => {
                    validate_name(name)?;
                    let formats = crate::ingest::http::source_formats();
                    if !formats.contains(&format.as_str()) {
                        return Err(CliError::Usage(format!(
                            "unknown format {format:?}: supported formats are: {}",
                            formats.join(", ")
                        )));
                    }
                    let keys = keys.read()?;
                    crate::ingest::webhook::check_keys(format, &keys).map_err(CliError::Usage)?;
                    let token = new_token(SOURCE_TOKEN_PREFIX);
                    let s = store
                        .create_source(name, format, &hash_token(&token), clock.now())
                        .await?;
                    store.set_source_keys(name, &keys).await?;
                    println!("source {:?} created (format {}).", s.name, s.format);
                    println!("token (shown once, store it now): {token}");
                    let base = cfg
                        .public_url
                        .clone()
                        .unwrap_or_else(|| format!("http://{}", cfg.listen));
                    let url = crate::web::pages::ingest_url_for(&base, format, &token);
                    if format == "json" {
                        println!(
                            "send events: curl -H 'Authorization: Bearer {token}' --data-binary @events.ndjson {url}"
                        );
                    } else if url.contains("?token=") {
                        println!("webhook URL to configure at the provider: {url}");
                    } else {
                        println!(
                            "send records: curl -H 'Authorization: Bearer {token}' --data-binary @records {url}"
                        );
                    }
                }
                SourceCmd::Keys { name, keys } => {
                    let source = store
                        .list_sources()
                        .await?
                        .into_iter()
                        .find(|s| &s.name == name)
                        .ok_or_else(|| CliError::Usage(format!("no source named {name:?}")))?;
                    let keys = keys.read()?;
                    crate::ingest::webhook::check_keys(&source.format, &keys)
                        .map_err(CliError::Usage)?;
                    store.set_source_keys(name, &keys).await?;
                    println!(
                        "keys of source {name:?} updated (format {}).",
                        source.format
                    );
                }
                SourceCmd::List => {
                    println!(
                        "{:<24} {:<10} {:<26} {:<26} status",
                        "name", "format", "created", "last event"
                    );
                    for s in store.list_sources().await? {
                        println!(
                            "{:<24} {:<10} {:<26} {:<26} {}",
                            s.name,
                            s.format,
                            crate::time_format::fmt(s.created_at),
                            s.last_event_at
                                .map(crate::time_format::fmt)
                                .unwrap_or_else(|| "-".into()),
                            if s.revoked_at.is_some() {
                                "revoked"
                            } else {
                                "active"
                            }
                        );
                    }
                }
                SourceCmd::Rotate { name } => {
                    let token = new_token(SOURCE_TOKEN_PREFIX);
                    if !store.rotate_source_token(name, &hash_token(&token)).await? {
                        return Err(CliError::Usage(format!("no source named {name:?}")));
                    }
                    println!("new token for {name:?} (shown once): {token}");
                }
                SourceCmd::Revoke { name } => {
                    if !store.revoke_source(name, clock.now()).await? {
                        return Err(CliError::Usage(format!("no active source named {name:?}")));
                    }
                    println!("source {name:?} revoked");
                }
            }
            Ok(())
        }
        Command::Token(cmd) => {
            let cfg = load_config(&cli, None)?;
            let store = open_store(&cfg).await?;
            match cmd {
                TokenCmd::Add { name } => {
                    validate_name(name)?;
                    let token = new_token(API_TOKEN_PREFIX);
                    store
                        .create_api_token(name, &hash_token(&token), clock.now())
                        .await?;
                    println!("API token {name:?} created.");
                    println!("token (shown once, store it now): {token}");
                }
                TokenCmd::List => {
                    for t in store.list_api_tokens().await? {
                        println!(
                            "{:<24} {:<26} {}",
                            t.name,
                            crate::time_format::fmt(t.created_at),
                            if t.revoked_at.is_some() {
                                "revoked"
                            } else {
                                "active"
                            }
                        );
                    }
                }
                TokenCmd::Revoke { name } => {
                    if !store.revoke_api_token(name, clock.now()).await? {
                        return Err(CliError::Usage(format!(
                            "no active API token named {name:?}"
                        )));
                    }
                    println!("API token {name:?} revoked");
                }
            }
            Ok(())
        }
        Command::User(cmd) => {
            let cfg = load_config(&cli, None)?;
            let store = open_store(&cfg).await?;
            match cmd {
                UserCmd::Add { name, role } => {
                    let password = read_password()?;
                    crate::web::session::validate_credentials(name, &password)
                        .map_err(|(f, r)| CliError::Usage(format!("{f}: {r}")))?;
                    let hash = crate::web::session::hash_password(&password)
                        .map_err(|e| CliError::Usage(e.to_string()))?;
                    let role: crate::store::web::Role = role.parse().map_err(CliError::Usage)?;
                    match store.create_user(name, &hash, role, clock.now()).await {
                        Ok(_) => println!("user {name:?} created ({})", role.as_str()),
                        Err(store::StoreError::Conflict(_)) => {
                            return Err(CliError::Usage(format!("user {name:?} already exists")));
                        }
                        Err(e) => return Err(e.into()),
                    }
                }
                UserCmd::List => {
                    for u in store.list_users().await? {
                        println!(
                            "{:<24} {:<7} created {}  last login {}",
                            u.username,
                            u.role.as_str(),
                            crate::time_format::fmt(u.created_at),
                            u.last_login_at
                                .map(crate::time_format::fmt)
                                .unwrap_or_else(|| "never".into())
                        );
                    }
                }
                UserCmd::Passwd { name } => {
                    let password = read_password()?;
                    crate::web::session::validate_credentials(name, &password)
                        .map_err(|(f, r)| CliError::Usage(format!("{f}: {r}")))?;
                    let hash = crate::web::session::hash_password(&password)
                        .map_err(|e| CliError::Usage(e.to_string()))?;
                    if !store.set_password(name, &hash).await? {
                        return Err(CliError::Usage(format!("no user named {name:?}")));
                    }
                    println!("password of {name:?} changed; their sessions ended");
                }
                UserCmd::Remove { name } => {
                    if !store.delete_user(name).await? {
                        return Err(CliError::Usage(format!("no user named {name:?}")));
                    }
                    println!("user {name:?} removed");
                }
            }
            Ok(())
        }
        Command::Classify {
            json,
            mx_host,
            text,
        } => {
            let cfg = load_config(&cli, None)?;
            let classifier = cfg.classifier()?;
            let print = |line: &str| {
                let c = classifier.classify_text(line, mx_host.as_deref());
                if *json {
                    let mut v = serde_json::to_value(&c).unwrap_or_default();
                    v["input"] = line.into();
                    println!("{v}");
                } else {
                    println!("{}", describe(&c));
                }
            };
            match text {
                Some(t) => print(t),
                None => {
                    use std::io::BufRead;
                    for line in std::io::stdin().lock().lines() {
                        let line = line?;
                        if !line.trim().is_empty() {
                            print(&line);
                        }
                    }
                }
            }
            Ok(())
        }
        Command::Reclassify { batch } => {
            let cfg = load_config(&cli, None)?;
            let classifier = cfg.classifier()?;
            let store = open_store(&cfg).await?;
            let engine = crate::incidents::Engine::new(cfg.thresholds.clone());
            let (mut after, mut total) = (0, crate::store::ReclassifyPage::default());
            loop {
                let page = store
                    .reclassify_page(after, (*batch).max(1), &classifier, &engine, clock.now())
                    .await?;
                total.examined += page.examined;
                total.changed += page.changed;
                total.cause_changed += page.cause_changed;
                match page.last_id {
                    Some(id) => after = id,
                    None => break,
                }
            }
            println!(
                "examined {} events: {} classifications updated, {} changed cause",
                total.examined, total.changed, total.cause_changed
            );
            Ok(())
        }
        Command::Check(cmd) => {
            let opts = match cmd {
                CheckCmd::Ip { opts, .. } | CheckCmd::Domain { opts, .. } => opts,
            };
            let mut file = match &cli.config {
                Some(p) => FileConfig::load(p)?,
                None => FileConfig::default(),
            };
            file.checks =
                std::mem::take(&mut file.checks).overlay_public(crate::config::FileChecks {
                    nameservers: non_empty(&opts.nameservers),
                    dnsbl: non_empty(&opts.dnsbl),
                    rhsbl: non_empty(&opts.rhsbl),
                    ..Default::default()
                });
            let cfg = file.resolve()?;
            let checker = crate::checks::Checker::new(cfg.checks.checker_config())
                .map_err(|e| CliError::Usage(e.to_string()))?;
            let report = match cmd {
                CheckCmd::Ip {
                    ip,
                    helo,
                    sender_domain,
                    ..
                } => {
                    checker
                        .check_ip(
                            *ip,
                            helo.as_deref(),
                            sender_domain.as_deref(),
                            &opts.dkim_selectors,
                        )
                        .await
                }
                CheckCmd::Domain { domain, .. } => {
                    checker.check_domain(domain, &opts.dkim_selectors).await
                }
            };
            if opts.json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&report).unwrap_or_default()
                );
            } else {
                println!(
                    "{}  (checked at {})",
                    report.subject,
                    crate::time_format::fmt(report.checked_at)
                );
                for c in &report.checks {
                    println!("  {:<28} {:<5}  {}", c.name, c.verdict.as_str(), c.detail);
                    for r in &c.records {
                        println!("  {:<28}        {r}", "");
                    }
                }
            }
            Ok(())
        }
        Command::Report(args) => run_report(&cli, args, clock.now()).await,
        Command::Import(args) => run_import(&cli, args, clock).await,
        Command::Tail(args) => run_tail(&cli, args, clock).await,
        Command::Sweep => {
            let cfg = load_config(&cli, None)?;
            let store = open_store(&cfg).await?;
            let engine = crate::incidents::Engine::new(cfg.thresholds.clone());
            let r = store.sweep(&engine, clock.now()).await?;
            println!(
                "examined {} due incidents: {} recovered, {} stale",
                r.examined, r.recovered, r.stale
            );
            Ok(())
        }
        Command::Prune => {
            let cfg = load_config(&cli, None)?;
            let store = open_store(&cfg).await?;
            let retention = chrono::TimeDelta::from_std(cfg.retention)
                .map_err(|_| CliError::Usage("retention too large".into()))?;
            let r = store.prune(clock.now() - retention).await?;
            println!(
                "pruned {} events and {} dead letters",
                r.events, r.dead_letters
            );
            Ok(())
        }
        Command::Bench(args) => {
            let cfg = load_config(&cli, None)?;
            crate::bench::run(args, cli.database_url.is_some().then_some(cfg.database_url))
                .await
                .map_err(CliError::Bench)
        }
    }
}

/// One line for a person: the verdict first, then where it came from.
fn describe(c: &crate::smtp::Classification) -> String {
    let mut s = format!("{} -> {}", c.cause.as_str(), c.action.as_str());
    if let Some(code) = c.code {
        s.push_str(&format!("  code {code}"));
    }
    if let Some(e) = c.enhanced {
        s.push_str(&format!(" {e}"));
    }
    s.push_str(&format!(
        "  stage {}  origin {}",
        c.stage.as_str(),
        c.origin.as_str()
    ));
    if let Some(p) = &c.provider {
        s.push_str(&format!("  provider {p}"));
    }
    if let Some(r) = &c.reference {
        s.push_str(&format!("  ref {r}"));
    }
    if let Some(h) = c.retry_hint_seconds {
        s.push_str(&format!("  retry in {h}s"));
    }
    s.push_str(&format!("\n  {}", c.explanation));
    s
}

fn validate_name(name: &str) -> Result<(), CliError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err(CliError::Usage(format!(
            "invalid name {name:?}: use 1-64 letters, digits, '-', '_' or '.'"
        )))
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutting down: finishing in-flight requests");
}

async fn run_report(
    cli: &Cli,
    args: &ReportArgs,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<(), CliError> {
    use crate::report::gather;
    use std::io::Write;
    let mut cfg = load_config(cli, None)?;
    // The relay settings from the environment, as `serve` takes them; settings saved
    // in the dashboard still win, as they do for the server.
    for (var, slot) in [
        ("DEFERWATCH_SMTP_URL", &mut cfg.smtp_url),
        ("DEFERWATCH_SMTP_FROM", &mut cfg.smtp_from),
    ] {
        if let Ok(v) = std::env::var(var)
            && !v.trim().is_empty()
        {
            *slot = Some(v);
        }
    }
    let store = open_store(&cfg).await?;
    // The report names the sender and uses the thresholds the dashboard shows.
    apply_saved_settings(&store, &mut cfg).await?;
    let id = match &args.cmd {
        Some(ReportCmd::Send { incident, .. }) => *incident,
        None => args
            .incident
            .ok_or_else(|| CliError::Usage("report: give an incident id".into()))?,
    };
    let inc = store
        .incident(id)
        .await?
        .ok_or_else(|| CliError::Usage(format!("no incident {id}")))?;
    let report = gather::report(&*store, &cfg, &cfg.thresholds, &inc, now).await?;
    match &args.cmd {
        Some(ReportCmd::Send { to, .. }) => {
            let user = std::env::var("USER").unwrap_or_default();
            let username = if user.is_empty() {
                "cli".to_string()
            } else {
                format!("cli:{user}")
            };
            match gather::send_and_record(&*store, &cfg, &report, id, to, &username, now).await {
                Ok((_, outcome)) => {
                    println!(
                        "sent to {}: Message-ID {}; relay answered: {}",
                        to.join(", "),
                        outcome.message_id,
                        outcome.relay_response
                    );
                    Ok(())
                }
                Err(gather::SendError::Relay { error, .. }) => Err(CliError::Usage(format!(
                    "not sent (attempt recorded): {error}"
                ))),
                Err(gather::SendError::Store(e)) => Err(e.into()),
                Err(e) => Err(CliError::Usage(e.to_string())),
            }
        }
        None => {
            let body = match args.format.as_str() {
                "html" => report
                    .to_html()
                    .map_err(|e| CliError::Usage(e.to_string()))?
                    .into_bytes(),
                "eml" => {
                    let from = cfg
                        .smtp_from
                        .as_deref()
                        .filter(|f| !f.trim().is_empty())
                        .ok_or_else(|| {
                            CliError::Usage(
                                "an .eml needs a From address: set DEFERWATCH_SMTP_FROM".into(),
                            )
                        })?;
                    let mut to = args.to.clone();
                    if to.is_empty() {
                        to.extend(crate::web::reports_api::suggested_recipient(&inc));
                    }
                    let from_box = crate::report::mail::parse_from(from)
                        .map_err(|e| CliError::Usage(e.to_string()))?;
                    let message_id = crate::report::mail::new_message_id(&from_box);
                    report
                        .to_eml(from, &to, now, &message_id)
                        .map_err(|e| CliError::Usage(e.to_string()))?
                }
                _ => report.to_text().into_bytes(),
            };
            let mut out = std::io::stdout().lock();
            out.write_all(&body)?;
            out.flush()?;
            Ok(())
        }
    }
}

/// A password from a prompt (asked twice), or the first line of stdin when it is not
/// a terminal, so scripts can pipe it in without it showing in `ps`.
fn read_password() -> Result<String, CliError> {
    use std::io::{BufRead, IsTerminal};
    if std::io::stdin().is_terminal() {
        let a = rpassword::prompt_password("Password: ")?;
        let b = rpassword::prompt_password("Repeat password: ")?;
        if a != b {
            return Err(CliError::Usage("the passwords differ".into()));
        }
        Ok(a)
    } else {
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line)?;
        let p = line.trim_end_matches(['\n', '\r']).to_string();
        if p.is_empty() {
            return Err(CliError::Usage("no password on standard input".into()));
        }
        Ok(p)
    }
}

/// `serve --demo` without a database URL uses its own throwaway file, recreated at each
/// start so the data is always relative to now and never mixes with real data.
fn prepare_demo_database(cfg: &mut Config, explicit_url: bool) -> Result<(), CliError> {
    if explicit_url {
        return Ok(());
    }
    let path = std::path::Path::new("./data/demo.db");
    for suffix in ["", "-wal", "-shm"] {
        let p = PathBuf::from(format!("{}{suffix}", path.display()));
        match std::fs::remove_file(&p) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(CliError::Usage(format!(
                    "cannot reset {}: {e}",
                    p.display()
                )));
            }
        }
    }
    cfg.database_url = "sqlite://./data/demo.db".into();
    // The demo's IPs are documentation addresses: asking real blocklists about them
    // would only produce noise, so the demo brings its own check results.
    cfg.checks.enabled = false;
    Ok(())
}

/// Settings saved in the browser win over the file and environment. A saved value that
/// no longer validates (say, a blocklist table this version dropped) is reported and
/// skipped, never half-applied.
async fn apply_saved_settings(store: &DynStore, cfg: &mut Config) -> Result<(), CliError> {
    let Some(doc) = store.setting(crate::web::settings::SETTINGS_KEY).await? else {
        return Ok(());
    };
    let saved: crate::web::settings::RuntimeSettings = match serde_json::from_str(&doc) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "saved settings are unreadable; using the configuration file");
            return Ok(());
        }
    };
    let mut candidate = cfg.clone();
    match crate::web::settings::apply(&saved.values, &mut candidate) {
        Ok(()) => {
            *cfg = candidate;
            tracing::info!("settings saved in the dashboard applied");
        }
        Err(errors) => {
            for (field, reason) in errors {
                tracing::error!(field = %field, reason = %reason, "saved setting invalid; using the configuration file");
            }
        }
    }
    Ok(())
}

async fn run_import(cli: &Cli, args: &ImportArgs, clock: Arc<dyn Clock>) -> Result<(), CliError> {
    use crate::ingest::logfile;
    let cfg = load_config(cli, None)?;
    let store = open_store(&cfg).await?;
    let source = logfile::source_for(&store, &args.source, &args.format).await?;
    let classifier = Arc::new(cfg.classifier()?);
    let engine = crate::incidents::Engine::new(cfg.thresholds.clone());
    let started = std::time::Instant::now();
    let job = logfile::ImportJob {
        format: args.format.clone(),
        source_id: source.id,
        map: source_map(&cfg, &source.name),
        classifier,
        now: clock.now(),
        max_future_skew: future_skew(&cfg),
        store: (!args.dry_run).then(|| (store.clone(), engine)),
        batch_events: args.batch,
    };
    let counts = logfile::import(job, args.files.clone()).await?;
    let secs = started.elapsed().as_secs_f64();
    if args.json {
        let mut v = serde_json::to_value(&counts).unwrap_or_default();
        v["seconds"] = serde_json::json!(secs);
        v["lines_per_second"] = serde_json::json!(logfile::rate(counts.lines, started));
        v["dry_run"] = serde_json::json!(args.dry_run);
        println!("{v}");
    } else {
        println!(
            "{} lines in {secs:.2} s ({:.0} lines/s): {} deferred, {} delivered, {} bounced, {} ignored, {} rejected",
            counts.lines,
            logfile::rate(counts.lines, started),
            counts.deferred,
            counts.delivered,
            counts.bounced,
            counts.ignored,
            counts.rejected
        );
        if args.dry_run {
            println!("dry run: nothing stored");
        } else {
            println!(
                "{} events stored, {} already stored, {} incidents",
                counts.stored,
                counts.duplicates,
                counts.incidents.len()
            );
        }
    }
    Ok(())
}

async fn run_tail(cli: &Cli, args: &TailArgs, clock: Arc<dyn Clock>) -> Result<(), CliError> {
    use crate::ingest::logfile;
    if !logfile::FILE_FORMATS.contains(&args.format.as_str()) {
        return Err(CliError::Usage(format!(
            "--format {}: log files can be followed for {}",
            args.format,
            logfile::FILE_FORMATS.join(", ")
        )));
    }
    let cfg = load_config(cli, None)?;
    let sink = match &args.server {
        Some(server) => {
            let token = args.token.clone().ok_or_else(|| {
                CliError::Usage("--server needs --token (or DEFERWATCH_SOURCE_TOKEN)".into())
            })?;
            let client = reqwest::Client::builder()
                .timeout(Duration::from_secs(60))
                .build()
                .map_err(|e| CliError::Usage(format!("HTTP client: {e}")))?;
            logfile::TailSink::Server {
                client,
                url: format!(
                    "{}/api/v1/ingest/{}",
                    server.trim_end_matches('/'),
                    args.format
                ),
                token,
            }
        }
        None => {
            let store = open_store(&cfg).await?;
            let source = logfile::source_for(&store, &args.source, &args.format).await?;
            logfile::TailSink::Store {
                store,
                engine: crate::incidents::Engine::new(cfg.thresholds.clone()),
                source_id: source.id,
                map: source_map(&cfg, &source.name),
                classifier: Arc::new(cfg.classifier()?),
                max_future_skew: future_skew(&cfg),
            }
        }
    };
    let state_path = match &args.state {
        Some(p) => p.clone(),
        None => {
            let dir = PathBuf::from("data");
            std::fs::create_dir_all(&dir)?;
            logfile::default_state_path(&dir, &args.source, &args.file)
        }
    };
    let job = logfile::TailJob {
        path: args.file.clone(),
        state_path,
        format: args.format.clone(),
        start: if args.from_start {
            crate::ingest::follow::StartAt::Beginning
        } else {
            crate::ingest::follow::StartAt::End
        },
        batch_lines: args.batch_lines,
        flush_interval: args.flush_interval,
        clock,
    };
    eprintln!(
        "following {} for source {:?} ({})",
        args.file.display(),
        args.source,
        args.server.as_deref().unwrap_or("writing to the database")
    );
    let counts = logfile::tail(job, sink, shutdown_signal()).await?;
    eprintln!(
        "stopped: {} lines, {} events stored, {} rejected",
        counts.lines, counts.stored, counts.rejected
    );
    Ok(())
}

/// What `[sources.NAME]` maps a log source's lines to; empty when not configured.
fn source_map(cfg: &Config, name: &str) -> crate::ingest::mta::LogSourceMap {
    cfg.log_sources.get(name).cloned().unwrap_or_default()
}

fn future_skew(cfg: &Config) -> chrono::TimeDelta {
    chrono::TimeDelta::from_std(cfg.max_future_skew).unwrap_or(chrono::TimeDelta::hours(1))
}
