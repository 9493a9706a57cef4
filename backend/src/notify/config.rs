//! `[notify]` in the configuration file: outbound webhooks and how hard to try.

use crate::config::ConfigError;
use crate::incidents::Phase;
use serde::Deserialize;
use std::time::Duration;

/// The message shape a webhook expects.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// Deferwatch's own JSON document, for scripts and incident tools.
    Generic,
    /// Slack incoming webhooks (`text` + Block Kit `blocks`, mrkdwn).
    Slack,
    /// Microsoft Teams: an Adaptive Card wrapped in a `message`.
    Teams,
}

impl Format {
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Generic => "generic",
            Format::Slack => "slack",
            Format::Teams => "teams",
        }
    }
}

impl std::str::FromStr for Format {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        match s {
            "generic" => Ok(Format::Generic),
            "slack" => Ok(Format::Slack),
            "teams" => Ok(Format::Teams),
            _ => Err(()),
        }
    }
}

/// Transitions that are not phase entries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Event {
    Opened,
    /// A recovered incident that deferred again within the reopen window.
    Reopened,
    Recovered,
}

impl Event {
    pub const ALL: [Event; 3] = [Event::Opened, Event::Reopened, Event::Recovered];

    pub fn as_str(self) -> &'static str {
        match self {
            Event::Opened => "opened",
            Event::Reopened => "reopened",
            Event::Recovered => "recovered",
        }
    }
}

/// Phases a webhook may ask for: the retry-threshold ladder and the stale close.
/// `recovered` is an event, not a phase to subscribe to, so it is refused here with a
/// pointer to `events`.
pub const NOTIFIABLE_PHASES: [Phase; 7] = [
    Phase::Deferred,
    Phase::NormalRetry,
    Phase::Persistent,
    Phase::Cooling,
    Phase::CoolingExtended,
    Phase::Escalate,
    Phase::Stale,
];

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Webhook {
    pub url: String,
    pub format: Format,
    pub phases: Vec<Phase>,
    pub events: Vec<Event>,
}

impl Webhook {
    /// Identifies the webhook in the database without storing its URL, which for
    /// Slack and Teams is the credential itself.
    pub fn id(&self) -> String {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(self.url.as_bytes()))
    }

    /// The URL as the delivery log shows it.
    pub fn label(&self) -> String {
        mask_url(&self.url)
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct NotifyConfig {
    pub webhooks: Vec<Webhook>,
    /// How often the background worker looks for transitions and due retries.
    pub interval: Duration,
    /// Per request.
    pub timeout: Duration,
    /// Delays before the 2nd, 3rd, … attempt; the last one repeats.
    pub backoff: Vec<Duration>,
    /// Attempts in all, the first included, before a notification is `failed`.
    pub max_attempts: u32,
    /// Transitions older than this (event time against the clock) are not sent: a
    /// replayed month-old log or the first start on an existing database must not
    /// page anyone about the past.
    pub max_age: Duration,
}

impl Default for NotifyConfig {
    fn default() -> Self {
        NotifyConfig {
            webhooks: Vec::new(),
            interval: Duration::from_secs(30),
            timeout: Duration::from_secs(10),
            backoff: [30, 120, 600, 1800]
                .into_iter()
                .map(Duration::from_secs)
                .collect(),
            max_attempts: 5,
            max_age: Duration::from_secs(24 * 3600),
        }
    }
}

impl NotifyConfig {
    /// Delay after the `attempts`-th failed attempt (1-based).
    pub fn backoff_after(&self, attempts: u32) -> Duration {
        let i = (attempts.max(1) - 1) as usize;
        self.backoff
            .get(i)
            .or(self.backoff.last())
            .copied()
            .unwrap_or(Duration::from_secs(30))
    }
}

/// `[notify]` in the file.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileNotify {
    #[serde(default, with = "humantime_serde")]
    pub interval: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub timeout: Option<Duration>,
    pub backoff: Option<Vec<String>>,
    pub max_attempts: Option<u32>,
    #[serde(default, with = "humantime_serde")]
    pub max_age: Option<Duration>,
    #[serde(default)]
    pub webhooks: Vec<FileWebhook>,
}

/// `[[notify.webhooks]]` in the file.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileWebhook {
    pub url: String,
    pub format: Option<String>,
    pub phases: Option<Vec<String>>,
    pub events: Option<Vec<String>>,
}

impl FileNotify {
    pub fn resolve(self) -> Result<NotifyConfig, ConfigError> {
        let d = NotifyConfig::default();
        let invalid = |m: String| ConfigError::Invalid(m);
        let backoff = match self.backoff {
            None => d.backoff,
            Some(list) => {
                let parsed = list
                    .iter()
                    .map(|s| {
                        humantime::parse_duration(s.trim())
                            .ok()
                            .filter(|d| !d.is_zero())
                            .ok_or_else(|| {
                                invalid(format!(
                                    "notify.backoff: {s:?} is not a positive duration (e.g. \"30s\", \"2m\")"
                                ))
                            })
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                if parsed.is_empty() {
                    return Err(invalid(
                        "notify.backoff: give at least one delay, e.g. [\"30s\", \"2m\"]".into(),
                    ));
                }
                parsed
            }
        };
        let max_attempts = self.max_attempts.unwrap_or(d.max_attempts);
        if max_attempts == 0 {
            return Err(invalid("notify.max_attempts must be at least 1".into()));
        }
        let interval = self.interval.unwrap_or(d.interval);
        let timeout = self.timeout.unwrap_or(d.timeout);
        if interval.is_zero() || timeout.is_zero() {
            return Err(invalid(
                "notify.interval and notify.timeout must be positive".into(),
            ));
        }
        let webhooks = self
            .webhooks
            .into_iter()
            .enumerate()
            .map(|(i, w)| w.resolve(i))
            .collect::<Result<Vec<_>, _>>()?;
        let mut seen = std::collections::HashSet::new();
        for (i, w) in webhooks.iter().enumerate() {
            if !seen.insert(w.url.as_str()) {
                return Err(invalid(format!(
                    "notify.webhooks[{i}].url: the same URL is configured twice ({})",
                    w.label()
                )));
            }
        }
        Ok(NotifyConfig {
            webhooks,
            interval,
            timeout,
            backoff,
            max_attempts,
            max_age: self.max_age.unwrap_or(d.max_age),
        })
    }
}

impl FileWebhook {
    fn resolve(self, i: usize) -> Result<Webhook, ConfigError> {
        let key = |k: &str| format!("notify.webhooks[{i}].{k}");
        let url = self.url.trim().to_string();
        let parsed = reqwest::Url::parse(&url).map_err(|e| {
            ConfigError::Invalid(format!(
                "{}: {:?} is not a URL: {e}",
                key("url"),
                mask_url(&url)
            ))
        })?;
        if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
            return Err(ConfigError::Invalid(format!(
                "{}: {:?} must be an http:// or https:// URL with a host",
                key("url"),
                mask_url(&url)
            )));
        }
        let format = match self.format.as_deref().map(str::trim) {
            None => Format::Generic,
            Some(f) => f.parse().map_err(|_| {
                ConfigError::Invalid(format!(
                    "{}: unknown format {f:?}: use generic, slack or teams",
                    key("format")
                ))
            })?,
        };
        let phases = match self.phases {
            None => vec![Phase::Persistent, Phase::Escalate],
            Some(list) => list
                .iter()
                .map(|p| {
                    let p = p.trim();
                    match p.parse::<Phase>() {
                        Ok(ph) if NOTIFIABLE_PHASES.contains(&ph) => Ok(ph),
                        Ok(_) => Err(ConfigError::Invalid(format!(
                            "{}: {p:?} is an event, not a phase: list it in {}",
                            key("phases"),
                            key("events")
                        ))),
                        Err(()) => Err(ConfigError::Invalid(format!(
                            "{}: unknown phase {p:?}: use {}",
                            key("phases"),
                            NOTIFIABLE_PHASES.map(|p| p.as_str()).join(", ")
                        ))),
                    }
                })
                .collect::<Result<_, _>>()?,
        };
        let events = match self.events {
            None => Event::ALL.to_vec(),
            Some(list) => list
                .iter()
                .map(|e| {
                    let e = e.trim();
                    Event::ALL
                        .into_iter()
                        .find(|k| k.as_str() == e)
                        .ok_or_else(|| {
                            ConfigError::Invalid(format!(
                                "{}: unknown event {e:?}: use opened, reopened or recovered",
                                key("events")
                            ))
                        })
                })
                .collect::<Result<_, _>>()?,
        };
        Ok(Webhook {
            url,
            format,
            phases,
            events,
        })
    }
}

/// A webhook URL safe to show and log: user info, query and fragment dropped, the last
/// path segment hidden and the middle ones cut to their first four characters.
/// Slack (`/services/T…/B…/token`), Teams (`/webhookb2/…/IncomingWebhook/…`) and most
/// other services carry the credential in the path, so the path cannot be shown.
pub fn mask_url(url: &str) -> String {
    let Ok(u) = reqwest::Url::parse(url) else {
        return "(invalid URL)".into();
    };
    let mut out = format!("{}://{}", u.scheme(), u.host_str().unwrap_or(""));
    if let Some(port) = u.port() {
        out.push_str(&format!(":{port}"));
    }
    let segments: Vec<&str> = u.path_segments().map(|s| s.collect()).unwrap_or_default();
    for (i, seg) in segments.iter().enumerate() {
        out.push('/');
        if i == 0 || seg.is_empty() {
            out.push_str(seg);
        } else if i + 1 == segments.len() {
            out.push_str("****");
        } else {
            let keep: String = seg.chars().take(4).collect();
            if keep.len() < seg.len() {
                out.push_str(&keep);
                out.push('…');
            } else {
                out.push_str("****");
            }
        }
    }
    if u.query().is_some() {
        out.push_str("?…");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(toml_text: &str) -> Result<NotifyConfig, String> {
        let f: FileNotify = toml::from_str(toml_text).map_err(|e| e.to_string())?;
        f.resolve().map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_and_a_full_webhook() {
        let cfg = parse(
            r#"
            interval = "1m"
            backoff = ["10s", "1m"]
            max_attempts = 3
            [[webhooks]]
            url = "https://hooks.slack.com/services/T0001/B0002/abcdefSECRET"
            format = "slack"
            [[webhooks]]
            url = "http://127.0.0.1:9000/hook"
            phases = ["cooling", "escalate", "stale"]
            events = ["recovered"]
            "#,
        )
        .unwrap();
        assert_eq!(cfg.interval, Duration::from_secs(60));
        assert_eq!(cfg.max_attempts, 3);
        assert_eq!(cfg.timeout, Duration::from_secs(10));
        assert_eq!(cfg.backoff_after(1), Duration::from_secs(10));
        assert_eq!(cfg.backoff_after(2), Duration::from_secs(60));
        assert_eq!(cfg.backoff_after(7), Duration::from_secs(60));
        let slack = &cfg.webhooks[0];
        assert_eq!(slack.format, Format::Slack);
        assert_eq!(slack.phases, vec![Phase::Persistent, Phase::Escalate]);
        assert_eq!(slack.events, Event::ALL.to_vec());
        let generic = &cfg.webhooks[1];
        assert_eq!(generic.format, Format::Generic);
        assert_eq!(
            generic.phases,
            vec![Phase::Cooling, Phase::Escalate, Phase::Stale]
        );
        assert_eq!(generic.events, vec![Event::Recovered]);
        assert_eq!(
            NotifyConfig::default().backoff_after(4),
            Duration::from_secs(1800)
        );
    }

    #[test]
    fn errors_name_the_key() {
        let cases = [
            (
                "[[webhooks]]\nurl = \"ftp://x.example/a\"",
                "notify.webhooks[0].url: \"ftp://x.example/a\" must be an http:// or https:// URL",
            ),
            (
                "[[webhooks]]\nurl = \"not a url\"",
                "notify.webhooks[0].url: \"(invalid URL)\" is not a URL",
            ),
            (
                "[[webhooks]]\nurl = \"https://a.example/\"\n[[webhooks]]\nurl = \"https://a.example/h\"\nformat = \"discord\"",
                "notify.webhooks[1].format: unknown format \"discord\"",
            ),
            (
                "[[webhooks]]\nurl = \"https://a.example/\"\nphases = [\"escalated\"]",
                "notify.webhooks[0].phases: unknown phase \"escalated\": use deferred, normal_retry",
            ),
            (
                "[[webhooks]]\nurl = \"https://a.example/\"\nphases = [\"recovered\"]",
                "notify.webhooks[0].phases: \"recovered\" is an event, not a phase: list it in notify.webhooks[0].events",
            ),
            (
                "[[webhooks]]\nurl = \"https://a.example/\"\nevents = [\"closed\"]",
                "notify.webhooks[0].events: unknown event \"closed\"",
            ),
            (
                "backoff = [\"soon\"]",
                "notify.backoff: \"soon\" is not a positive duration",
            ),
            ("backoff = []", "notify.backoff: give at least one delay"),
            ("max_attempts = 0", "notify.max_attempts must be at least 1"),
            (
                "[[webhooks]]\nurl = \"https://a.example/x\"\n[[webhooks]]\nurl = \"https://a.example/x\"",
                "notify.webhooks[1].url: the same URL is configured twice",
            ),
        ];
        for (text, want) in cases {
            let err = parse(text).unwrap_err();
            assert!(err.contains(want), "{text}\n→ {err}\nwanted {want}");
        }
        assert!(parse("[[webhooks]]\nurl = \"https://a.example/\"\nchannel = \"x\"").is_err());
    }

    #[test]
    fn the_config_file_carries_notify() {
        let file: crate::config::FileConfig = toml::from_str(
            r#"
            public_url = "https://dw.example"
            [notify]
            interval = "10s"
            [[notify.webhooks]]
            url = "https://outlook.example/webhookb2/abc/IncomingWebhook/def/ghi"
            format = "teams"
            phases = ["escalate"]
            "#,
        )
        .unwrap();
        let cfg = file.resolve().unwrap();
        assert_eq!(cfg.notify.interval, Duration::from_secs(10));
        assert_eq!(cfg.notify.webhooks[0].format, Format::Teams);
        assert_eq!(
            cfg.notify.webhooks[0].label(),
            "https://outlook.example/webhookb2/****/Inco…/****/****"
        );
        assert!(
            crate::config::FileConfig::default()
                .resolve()
                .unwrap()
                .notify
                .webhooks
                .is_empty()
        );
        let bad: crate::config::FileConfig =
            toml::from_str("[[notify.webhooks]]\nurl = \"https://a.example/\"\nformat = \"pager\"")
                .unwrap();
        let err = bad.resolve().unwrap_err().to_string();
        assert_eq!(
            err,
            "invalid configuration: notify.webhooks[0].format: unknown format \"pager\": use generic, slack or teams"
        );
    }

    #[test]
    fn masks_secrets_in_urls() {
        let cases = [
            (
                "https://hooks.slack.com/services/T0001ABCD/B0002EFGH/abcdefSECRET",
                "https://hooks.slack.com/services/T000…/B000…/****",
            ),
            (
                "https://user:pw@example.org:8443/hooks/deferwatch?token=s3cret#x",
                "https://example.org:8443/hooks/****?…",
            ),
            (
                "http://127.0.0.1:9000/hook/ab",
                "http://127.0.0.1:9000/hook/****",
            ),
            ("http://127.0.0.1:9000/", "http://127.0.0.1:9000/"),
        ];
        for (url, want) in cases {
            assert_eq!(mask_url(url), want, "{url}");
        }
    }
}
