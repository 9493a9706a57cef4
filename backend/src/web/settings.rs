//! Settings edited in the browser: validated field by field, stored as one JSON
//! document, and laid over the file/environment configuration at start and on save.

use crate::config::{Config, ConfigError, WindowsConfig};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;

pub const SETTINGS_KEY: &str = "runtime";

/// Every value as the admin typed it (already validated), so the form shows back
/// exactly what was saved.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RuntimeSettings {
    pub values: BTreeMap<String, String>,
}

pub struct FieldSpec {
    pub name: &'static str,
    pub label: &'static str,
    pub help: &'static str,
    pub multiline: bool,
    pub group: &'static str,
}

const fn f(
    group: &'static str,
    name: &'static str,
    label: &'static str,
    help: &'static str,
    multiline: bool,
) -> FieldSpec {
    FieldSpec {
        name,
        label,
        help,
        multiline,
        group,
    }
}

pub const FIELDS: &[FieldSpec] = &[
    f(
        "Retry-threshold windows",
        "normal_retry",
        "Normal retry from",
        "Age at which a deferral becomes normal retry, e.g. 15m.",
        false,
    ),
    f(
        "Retry-threshold windows",
        "persistent",
        "Persistent from",
        "e.g. 1h: lower pressure, confirm scope.",
        false,
    ),
    f(
        "Retry-threshold windows",
        "cooling",
        "Cooling from",
        "e.g. 6h: pause the affected route.",
        false,
    ),
    f(
        "Retry-threshold windows",
        "cooling_extended",
        "Extended cooling from",
        "e.g. 12h.",
        false,
    ),
    f(
        "Retry-threshold windows",
        "escalate",
        "Escalate from",
        "e.g. 24h, when there is no recovery trend.",
        false,
    ),
    f(
        "Retry-threshold windows",
        "quiet_period",
        "Quiet period",
        "Affected routes delivering this long without a deferral: recovered. e.g. 2h.",
        false,
    ),
    f(
        "Checks",
        "dnsbl",
        "IP blocklists",
        "One zone per line, ZONE or ZONE=TABLE (see the README for the tables).",
        true,
    ),
    f(
        "Checks",
        "rhsbl",
        "Domain blocklists",
        "One zone per line.",
        true,
    ),
    f(
        "Checks",
        "check_interval",
        "Check interval",
        "How often open incidents' IPs and domains are checked again, e.g. 1h.",
        false,
    ),
    f(
        "Checks",
        "nameservers",
        "Nameservers",
        "IP:port, one per line; empty = the system resolver. Blocklists refuse public resolvers.",
        true,
    ),
    f(
        "Reports",
        "report_recipients",
        "Report recipients",
        "Email addresses that receive escalation reports, one per line.",
        true,
    ),
    f(
        "Reports",
        "smtp_url",
        "SMTP relay",
        "smtp://host:25, smtp://host:587 (STARTTLS) or smtps://user:password@host:465.",
        false,
    ),
    f(
        "Reports",
        "smtp_from",
        "From address",
        "Envelope and header sender of reports, e.g. postmaster@example.com.",
        false,
    ),
    f(
        "Reports",
        "sender_org",
        "Your organisation",
        "Named in escalation reports.",
        false,
    ),
    f(
        "Reports",
        "digest_interval",
        "Digest every",
        "Email a digest of open incidents to the report recipients this often, e.g. 24h; empty = no digest.",
        false,
    ),
];

/// The values shown in the form for the current configuration.
pub fn current_values(cfg: &Config) -> BTreeMap<String, String> {
    let t = &cfg.thresholds;
    let d = |td: chrono::TimeDelta| {
        humantime::format_duration(td.to_std().unwrap_or_default()).to_string()
    };
    let mut m = BTreeMap::new();
    m.insert("normal_retry".into(), d(t.normal_retry));
    m.insert("persistent".into(), d(t.persistent));
    m.insert("cooling".into(), d(t.cooling));
    m.insert("cooling_extended".into(), d(t.cooling_extended));
    m.insert("escalate".into(), d(t.escalate));
    m.insert("quiet_period".into(), d(t.quiet_period));
    let zones = |z: &[crate::checks::ZoneSpec]| {
        z.iter()
            .map(|z| z.to_string())
            .collect::<Vec<_>>()
            .join("\n")
    };
    m.insert("dnsbl".into(), zones(&cfg.checks.dnsbl));
    m.insert("rhsbl".into(), zones(&cfg.checks.rhsbl));
    m.insert(
        "check_interval".into(),
        humantime::format_duration(cfg.checks.interval).to_string(),
    );
    m.insert(
        "nameservers".into(),
        cfg.checks
            .nameservers
            .iter()
            .map(|s| s.to_string())
            .collect::<Vec<_>>()
            .join("\n"),
    );
    m.insert("report_recipients".into(), cfg.report_recipients.join("\n"));
    m.insert("smtp_url".into(), cfg.smtp_url.clone().unwrap_or_default());
    m.insert(
        "smtp_from".into(),
        cfg.smtp_from.clone().unwrap_or_default(),
    );
    m.insert(
        "sender_org".into(),
        cfg.sender_org.clone().unwrap_or_default(),
    );
    m.insert(
        "digest_interval".into(),
        cfg.digest_interval
            .map(|d| humantime::format_duration(d).to_string())
            .unwrap_or_default(),
    );
    m
}

fn lines(v: &str) -> Vec<String> {
    v.lines()
        .flat_map(|l| l.split(','))
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect()
}

fn duration(v: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(v.trim())
        .map_err(|e| format!("{v:?} is not a duration like 15m, 6h or 1d ({e})"))?;
    if d.is_zero() {
        return Err("must be longer than zero".into());
    }
    Ok(d)
}

fn email_ok(a: &str) -> bool {
    match a.rsplit_once('@') {
        Some((local, domain)) => {
            !local.is_empty()
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
                && !a
                    .chars()
                    .any(|c| c.is_whitespace() || c == '<' || c == '>' || c == ',')
        }
        None => false,
    }
}

/// Applies the settings to `cfg`, or names every field that is wrong and why.
pub fn apply(
    values: &BTreeMap<String, String>,
    cfg: &mut Config,
) -> Result<(), Vec<(String, String)>> {
    let mut errors: Vec<(String, String)> = Vec::new();
    let get = |k: &str| values.get(k).map(|s| s.trim()).unwrap_or("");
    let mut windows = WindowsConfig::default();
    for (name, slot) in [
        ("normal_retry", &mut windows.normal_retry),
        ("persistent", &mut windows.persistent),
        ("cooling", &mut windows.cooling),
        ("cooling_extended", &mut windows.cooling_extended),
        ("escalate", &mut windows.escalate),
        ("quiet_period", &mut windows.quiet_period),
    ] {
        match duration(get(name)) {
            Ok(d) => *slot = Some(d),
            Err(e) => errors.push((name.into(), e)),
        }
    }
    let mut thresholds = cfg.thresholds.clone();
    if errors.is_empty() {
        match windows.apply(&mut thresholds) {
            Ok(()) => {
                if let Err(e) = thresholds.validate() {
                    errors.push(("normal_retry".into(), e.to_string()));
                }
            }
            Err(ConfigError::Invalid(e)) => errors.push(("normal_retry".into(), e)),
            Err(e) => errors.push(("normal_retry".into(), e.to_string())),
        }
    }
    let mut zones = |key: &str| -> Vec<crate::checks::ZoneSpec> {
        let mut out = Vec::new();
        for z in lines(get(key)) {
            match crate::checks::ZoneSpec::parse(&z) {
                Ok(spec) => out.push(spec),
                Err(e) => errors.push((key.into(), format!("{z:?}: {e}"))),
            }
        }
        out
    };
    let dnsbl = zones("dnsbl");
    let rhsbl = zones("rhsbl");
    let interval = match duration(get("check_interval")) {
        Ok(d) if d < Duration::from_secs(60) => {
            errors.push((
                "check_interval".into(),
                "at least 1m: blocklists rate-limit frequent queries".into(),
            ));
            None
        }
        Ok(d) => Some(d),
        Err(e) => {
            errors.push(("check_interval".into(), e));
            None
        }
    };
    let mut nameservers = Vec::new();
    for n in lines(get("nameservers")) {
        match n.parse::<std::net::SocketAddr>() {
            Ok(a) => nameservers.push(a),
            Err(_) => errors.push((
                "nameservers".into(),
                format!("{n:?} is not IP:port, e.g. 127.0.0.1:53"),
            )),
        }
    }
    let recipients = lines(get("report_recipients"));
    for r in &recipients {
        if !email_ok(r) {
            errors.push((
                "report_recipients".into(),
                format!("{r:?} is not an email address"),
            ));
        }
    }
    let smtp_url = get("smtp_url");
    if !smtp_url.is_empty() {
        let scheme_ok = ["smtp://", "smtps://"]
            .iter()
            .any(|s| smtp_url.starts_with(s));
        let host_ok = smtp_url
            .split_once("://")
            .map(|(_, rest)| rest.rsplit('@').next().unwrap_or(""))
            .is_some_and(|h| !h.is_empty() && !h.starts_with(':'));
        if !scheme_ok || !host_ok {
            errors.push((
                "smtp_url".into(),
                "use smtp://host:port or smtps://user:password@host:port".into(),
            ));
        }
    }
    let smtp_from = get("smtp_from");
    if !smtp_from.is_empty() && !email_ok(smtp_from) {
        errors.push((
            "smtp_from".into(),
            format!("{smtp_from:?} is not an email address"),
        ));
    }
    let digest = get("digest_interval");
    let digest_interval = if digest.is_empty() {
        None
    } else {
        match duration(digest) {
            Ok(d) if d < Duration::from_secs(3600) => {
                errors.push((
                    "digest_interval".into(),
                    "at least 1h: a digest is a summary, not an alert".into(),
                ));
                None
            }
            Ok(d) => Some(d),
            Err(e) => {
                errors.push(("digest_interval".into(), e));
                None
            }
        }
    };
    if digest_interval.is_some() && recipients.is_empty() {
        errors.push((
            "digest_interval".into(),
            "a digest needs report recipients".into(),
        ));
    }
    if !recipients.is_empty() && smtp_url.is_empty() {
        errors.push((
            "smtp_url".into(),
            "report recipients need an SMTP relay to send through".into(),
        ));
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    cfg.thresholds = thresholds;
    cfg.checks.dnsbl = dnsbl;
    cfg.checks.rhsbl = rhsbl;
    if let Some(i) = interval {
        cfg.checks.interval = i;
    }
    cfg.checks.nameservers = nameservers;
    cfg.report_recipients = recipients;
    let opt = |s: &str| (!s.is_empty()).then(|| s.to_string());
    cfg.smtp_url = opt(smtp_url);
    cfg.smtp_from = opt(smtp_from);
    cfg.sender_org = opt(get("sender_org"));
    cfg.digest_interval = digest_interval;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(overrides: &[(&str, &str)]) -> BTreeMap<String, String> {
        let mut v = current_values(&Config::default());
        for (k, val) in overrides {
            v.insert(k.to_string(), val.to_string());
        }
        v
    }

    #[test]
    fn the_defaults_round_trip() {
        let mut cfg = Config::default();
        apply(&values(&[]), &mut cfg).unwrap();
        assert_eq!(cfg.thresholds, Config::default().thresholds);
        assert_eq!(cfg.checks.dnsbl, Config::default().checks.dnsbl);
    }

    #[test]
    fn each_bad_field_is_named_with_its_reason() {
        let cases: &[(&str, &str, &str)] = &[
            ("persistent", "soon", "not a duration"),
            ("cooling", "30m", "must increase"),
            ("nameservers", "8.8.8.8", "not IP:port"),
            ("report_recipients", "ops-at-example", "not an email"),
            ("smtp_url", "mail.example.com", "smtp://"),
            ("check_interval", "10s", "at least 1m"),
            ("dnsbl", "zen.spamhaus.org=nonsense", "zen.spamhaus.org"),
        ];
        for (field, value, reason) in cases {
            let mut cfg = Config::default();
            let errs = apply(&values(&[(field, value)]), &mut cfg).unwrap_err();
            let expected_field = if *field == "cooling" {
                "normal_retry"
            } else {
                field
            };
            assert!(
                errs.iter()
                    .any(|(f, r)| f == expected_field && r.contains(reason)),
                "{field}={value}: {errs:?}"
            );
            assert_eq!(
                cfg.thresholds,
                Config::default().thresholds,
                "nothing applied"
            );
        }
    }

    #[test]
    fn recipients_need_a_relay() {
        let mut cfg = Config::default();
        let errs = apply(
            &values(&[("report_recipients", "ops@example.com")]),
            &mut cfg,
        )
        .unwrap_err();
        assert_eq!(errs[0].0, "smtp_url");
        apply(
            &values(&[
                ("report_recipients", "ops@example.com, noc@example.com"),
                ("smtp_url", "smtp://127.0.0.1:2525"),
                ("persistent", "2h"),
            ]),
            &mut cfg,
        )
        .unwrap();
        assert_eq!(
            cfg.report_recipients,
            vec!["ops@example.com", "noc@example.com"]
        );
        assert_eq!(cfg.thresholds.persistent, chrono::TimeDelta::hours(2));
    }
}
