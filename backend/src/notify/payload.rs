//! Message bodies for one transition, per webhook format. Pure: built once when the
//! transition is queued and stored, so every retry sends the same bytes.

use super::config::Format;
use super::transition::{Kind, Transition};
use crate::incidents::{Incident, Phase};
use crate::time_format;
use serde_json::{Value, json};

/// What the message says, shared by the three formats.
struct Summary {
    headline: String,
    scope: String,
    top_cause: Option<String>,
    url: Option<String>,
}

fn summary(inc: &Incident, tr: &Transition, public_url: Option<&str>) -> Summary {
    let headline = match tr.kind {
        Kind::Opened => format!(
            "Incident #{} opened: deferrals to {}",
            inc.id, inc.destination
        ),
        Kind::Reopened => format!(
            "Incident #{} reopened: deferrals to {} again",
            inc.id, inc.destination
        ),
        Kind::EnteredPhase(p) => format!(
            "Incident #{} towards {} is {}",
            inc.id,
            inc.destination,
            phase_label(p)
        ),
        Kind::Recovered => format!("Incident #{} towards {} recovered", inc.id, inc.destination),
    };
    Summary {
        headline,
        scope: crate::incidents::scope(inc).summary,
        top_cause: inc.top_causes().into_iter().next().map(|(c, _)| c),
        url: public_url.map(|u| format!("{}/incidents/{}", u.trim_end_matches('/'), inc.id)),
    }
}

fn phase_label(p: Phase) -> &'static str {
    match p {
        Phase::Deferred => "deferred",
        Phase::NormalRetry => "in normal retry",
        Phase::Persistent => "persistent",
        Phase::Cooling => "cooling",
        Phase::CoolingExtended => "in extended cooling",
        Phase::Escalate => "to escalate",
        Phase::Recovered => "recovered",
        Phase::Stale => "stale",
    }
}

/// The guidance that goes with the transition: the runbook's line for the phase.
fn guidance(tr: &Transition) -> &'static str {
    match tr.kind {
        Kind::Opened | Kind::Reopened => tr.to.guidance(),
        Kind::EnteredPhase(p) => p.guidance(),
        Kind::Recovered => Phase::Recovered.guidance(),
    }
}

fn utc(t: chrono::DateTime<chrono::Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

pub fn build(format: Format, inc: &Incident, tr: &Transition, public_url: Option<&str>) -> Value {
    let s = summary(inc, tr, public_url);
    match format {
        Format::Generic => generic(inc, tr, &s),
        Format::Slack => slack(inc, tr, &s),
        Format::Teams => teams(inc, tr, &s),
    }
}

fn generic(inc: &Incident, tr: &Transition, s: &Summary) -> Value {
    json!({
        "event": tr.kind.event(),
        "summary": s.headline,
        "incident": {
            "id": inc.id,
            "destination": inc.destination,
            "phase": inc.phase,
            "status": inc.status,
            "first_seen": time_format::fmt(inc.first_seen),
            "last_seen": time_format::fmt(inc.last_seen),
            "closed_at": inc.closed_at.map(time_format::fmt),
            "deferred_count": inc.counts.deferred,
            "delivered_count": inc.counts.delivered,
            "scope": s.scope,
            "top_cause": s.top_cause,
        },
        "transition": {
            "key": tr.key(),
            "event": tr.kind.event(),
            "phase": tr.kind.phase(),
            "from": tr.from,
            "to": tr.to,
            "at": time_format::fmt(tr.at),
            "reason": tr.reason,
            "guidance": guidance(tr),
        },
        "url": s.url,
    })
}

/// Slack mrkdwn treats `&`, `<` and `>` as control characters; everything else is
/// literal enough for a destination name or an SMTP reason.
fn slack_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Slack incoming webhook: `text` is the notification and fallback, `blocks` the
/// message (Block Kit section with mrkdwn fields, and a context line).
fn slack(inc: &Incident, tr: &Transition, s: &Summary) -> Value {
    let title = match &s.url {
        Some(u) => format!("*<{}|{}>*", u, slack_escape(&s.headline)),
        None => format!("*{}*", slack_escape(&s.headline)),
    };
    let field = |name: &str, value: &str| json!({"type": "mrkdwn", "text": format!("*{name}*\n{}", slack_escape(value))});
    let mut fields = vec![
        field("Destination", &inc.destination),
        field("Phase", inc.phase.as_str()),
        field("First seen", &utc(inc.first_seen)),
        field("Last seen", &utc(inc.last_seen)),
        field("Deferred", &inc.counts.deferred.to_string()),
        field("Scope", &s.scope),
    ];
    if let Some(c) = &s.top_cause {
        fields.push(field("Top cause", c));
    }
    json!({
        "text": s.headline,
        "blocks": [
            {"type": "section", "text": {"type": "mrkdwn", "text": format!("{title}\n{}", slack_escape(guidance(tr)))}},
            {"type": "section", "fields": fields},
            {"type": "context", "elements": [{"type": "mrkdwn", "text": slack_escape(&format!("{} at {} ({})", tr.kind.event(), utc(tr.at), tr.reason))}]},
        ],
    })
}

/// Microsoft Teams: an Adaptive Card (schema 1.4) in a `message` with one attachment,
/// the shape Microsoft documents for incoming webhooks ("Send Adaptive Cards using an
/// Incoming Webhook", learn.microsoft.com, Teams platform docs) and that the Workflows
/// "post to a channel when a webhook request is received" template, which replaces
/// the retired Office 365 connectors, also accepts. The legacy MessageCard only works
/// with the connectors.
fn teams(inc: &Incident, tr: &Transition, s: &Summary) -> Value {
    let mut facts = vec![
        json!({"title": "Destination", "value": inc.destination}),
        json!({"title": "Phase", "value": inc.phase.as_str()}),
        json!({"title": "Status", "value": inc.status.as_str()}),
        json!({"title": "First seen", "value": utc(inc.first_seen)}),
        json!({"title": "Last seen", "value": utc(inc.last_seen)}),
        json!({"title": "Deferred", "value": inc.counts.deferred.to_string()}),
        json!({"title": "Scope", "value": s.scope}),
    ];
    if let Some(c) = &s.top_cause {
        facts.push(json!({"title": "Top cause", "value": c}));
    }
    let mut card = json!({
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "type": "AdaptiveCard",
        "version": "1.4",
        "body": [
            {"type": "TextBlock", "text": s.headline, "weight": "Bolder", "size": "Medium", "wrap": true},
            {"type": "TextBlock", "text": guidance(tr), "wrap": true},
            {"type": "FactSet", "facts": facts},
            {"type": "TextBlock", "text": format!("{} at {} ({})", tr.kind.event(), utc(tr.at), tr.reason), "isSubtle": true, "size": "Small", "wrap": true},
        ],
    });
    if let Some(u) = &s.url {
        card["actions"] =
            json!([{"type": "Action.OpenUrl", "title": "Open in Deferwatch", "url": u}]);
    }
    json!({
        "type": "message",
        "summary": s.headline,
        "attachments": [{
            "contentType": "application/vnd.microsoft.card.adaptive",
            "contentUrl": null,
            "content": card,
        }],
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::incidents::{PhaseChange, Status};
    use chrono::{DateTime, Utc};

    fn t(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    fn incident() -> Incident {
        let mut inc: Incident = serde_json::from_value(json!({
            "id": 42, "destination": "google <&>", "status": "open", "phase": "escalate",
            "first_seen": "2026-11-20T04:00:00.000Z", "last_seen": "2026-11-21T04:30:00.000Z",
            "last_deferral": "2026-11-21T04:30:00.000Z",
            "counts": {"deferred": 26, "delivered": 3, "bounced": 0},
            "routes": {
                "198.51.100.25": {"deferred": 26, "delivered": 0, "bounced": 0},
                "198.51.100.26": {"deferred": 0, "delivered": 30, "bounced": 0}
            },
            "mx_hosts": {}, "recipient_domains": {"items": {"gmail.com": 26}},
            "causes": {"ip_reputation": 20, "rate_limit": 6}, "stages": {"rcpt": 26},
            "replies": [], "hourly": {}, "recent": {},
            "recovery_trend": false, "phase_history": []
        }))
        .unwrap();
        inc.phase_history = vec![PhaseChange {
            at: t("2026-11-20T04:00:00Z"),
            from: None,
            to: Phase::Deferred,
            reason: "first deferral".into(),
        }];
        inc
    }

    fn transition(kind: Kind, at: &str, to: Phase) -> Transition {
        Transition {
            incident_id: 42,
            kind,
            at: t(at),
            from: Some(Phase::CoolingExtended),
            to,
            reason: "deferring for 24h".into(),
        }
    }

    #[test]
    fn payloads_per_format() {
        let inc = incident();
        let esc = transition(
            Kind::EnteredPhase(Phase::Escalate),
            "2026-11-21T04:00:00Z",
            Phase::Escalate,
        );
        let scope = crate::incidents::scope(&inc).summary;
        struct Case {
            format: Format,
            url: Option<&'static str>,
            want: Value,
        }
        let cases = [
            Case {
                format: Format::Generic,
                url: Some("https://dw.example/"),
                want: json!({
                    "event": "entered_phase",
                    "summary": "Incident #42 towards google <&> is to escalate",
                    "incident": {
                        "id": 42, "destination": "google <&>", "phase": "escalate",
                        "status": "open", "first_seen": "2026-11-20T04:00:00.000Z",
                        "last_seen": "2026-11-21T04:30:00.000Z", "closed_at": null,
                        "deferred_count": 26, "delivered_count": 3,
                        "scope": scope, "top_cause": "ip_reputation"
                    },
                    "transition": {
                        "key": "42:entered_phase:escalate:1795233600000",
                        "event": "entered_phase", "phase": "escalate",
                        "from": "cooling_extended", "to": "escalate",
                        "at": "2026-11-21T04:00:00.000Z", "reason": "deferring for 24h",
                        "guidance": Phase::Escalate.guidance()
                    },
                    "url": "https://dw.example/incidents/42"
                }),
            },
            Case {
                format: Format::Slack,
                url: Some("https://dw.example"),
                want: json!({
                    "text": "Incident #42 towards google <&> is to escalate",
                    "blocks": [
                        {"type": "section", "text": {"type": "mrkdwn", "text": format!(
                            "*<https://dw.example/incidents/42|Incident #42 towards google &lt;&amp;&gt; is to escalate>*\n{}",
                            Phase::Escalate.guidance())}},
                        {"type": "section", "fields": [
                            {"type": "mrkdwn", "text": "*Destination*\ngoogle &lt;&amp;&gt;"},
                            {"type": "mrkdwn", "text": "*Phase*\nescalate"},
                            {"type": "mrkdwn", "text": "*First seen*\n2026-11-20 04:00:00 UTC"},
                            {"type": "mrkdwn", "text": "*Last seen*\n2026-11-21 04:30:00 UTC"},
                            {"type": "mrkdwn", "text": "*Deferred*\n26"},
                            {"type": "mrkdwn", "text": format!("*Scope*\n{scope}")},
                            {"type": "mrkdwn", "text": "*Top cause*\nip_reputation"}
                        ]},
                        {"type": "context", "elements": [{"type": "mrkdwn",
                            "text": "entered_phase at 2026-11-21 04:00:00 UTC (deferring for 24h)"}]}
                    ]
                }),
            },
            Case {
                format: Format::Teams,
                url: None,
                want: json!({
                    "type": "message",
                    "summary": "Incident #42 towards google <&> is to escalate",
                    "attachments": [{
                        "contentType": "application/vnd.microsoft.card.adaptive",
                        "contentUrl": null,
                        "content": {
                            "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
                            "type": "AdaptiveCard", "version": "1.4",
                            "body": [
                                {"type": "TextBlock", "text": "Incident #42 towards google <&> is to escalate", "weight": "Bolder", "size": "Medium", "wrap": true},
                                {"type": "TextBlock", "text": Phase::Escalate.guidance(), "wrap": true},
                                {"type": "FactSet", "facts": [
                                    {"title": "Destination", "value": "google <&>"},
                                    {"title": "Phase", "value": "escalate"},
                                    {"title": "Status", "value": "open"},
                                    {"title": "First seen", "value": "2026-11-20 04:00:00 UTC"},
                                    {"title": "Last seen", "value": "2026-11-21 04:30:00 UTC"},
                                    {"title": "Deferred", "value": "26"},
                                    {"title": "Scope", "value": scope},
                                    {"title": "Top cause", "value": "ip_reputation"}
                                ]},
                                {"type": "TextBlock", "text": "entered_phase at 2026-11-21 04:00:00 UTC (deferring for 24h)", "isSubtle": true, "size": "Small", "wrap": true}
                            ]
                        }
                    }]
                }),
            },
        ];
        for c in cases {
            assert_eq!(build(c.format, &inc, &esc, c.url), c.want, "{:?}", c.format);
        }
    }

    #[test]
    fn headlines_per_kind() {
        let mut inc = incident();
        let cases = [
            (Kind::Opened, "Incident #42 opened: deferrals to google <&>"),
            (
                Kind::Reopened,
                "Incident #42 reopened: deferrals to google <&> again",
            ),
            (
                Kind::EnteredPhase(Phase::Persistent),
                "Incident #42 towards google <&> is persistent",
            ),
            (Kind::Recovered, "Incident #42 towards google <&> recovered"),
        ];
        inc.status = Status::Recovered;
        for (kind, want) in cases {
            let tr = transition(kind, "2026-11-21T06:00:00Z", Phase::Recovered);
            let v = build(Format::Generic, &inc, &tr, None);
            assert_eq!(v["summary"], want);
            assert_eq!(v["event"], kind.event());
            assert_eq!(v["url"], Value::Null);
            assert_eq!(build(Format::Slack, &inc, &tr, None)["text"], want);
        }
    }
}
