//! Table-driven checks of the whole classification record for typical replies.

use deferwatch::smtp::{Action, Cause, Classifier, Origin, Stage, parse_reply};

struct Case {
    text: &'static str,
    mx: Option<&'static str>,
    cause: Cause,
    action: Action,
    provider: Option<&'static str>,
    reference: Option<&'static str>,
    origin: Origin,
    stage: Stage,
    retry: Option<u64>,
}

#[test]
fn classification_records() {
    let c = Classifier::builtin();
    let cases = [
        Case {
            text: "host mta6.am0.yahoodns.net[67.195.204.72] said: 421 4.7.0 [TSS04] Messages from 192.0.2.25 temporarily deferred due to unexpected volume or user complaints - 4.16.55.1; see https://postmaster.yahooinc.com/error-codes (in reply to MAIL FROM command)",
            mx: None,
            cause: Cause::Reputation,
            action: Action::PauseAndInvestigateReputation,
            provider: Some("Yahoo"),
            reference: Some("TSS04"),
            origin: Origin::Remote,
            stage: Stage::Mail,
            retry: None,
        },
        Case {
            text: "451 4.7.650 The mail server [192.0.2.5] has been temporarily rate limited due to IP reputation. For e-mail delivery information, see https://postmaster.live.com (S775)",
            mx: Some("hotmail-com.olc.protection.outlook.com."),
            cause: Cause::Reputation,
            action: Action::PauseAndInvestigateReputation,
            provider: Some("Microsoft"),
            reference: Some("S775"),
            origin: Origin::Remote,
            stage: Stage::Unknown,
            retry: None,
        },
        Case {
            text: "421-4.7.28 Gmail has detected an unusual rate of mail originating\n421-4.7.28 from your IP address. Please try again later.\n421 4.7.28 https://support.google.com/mail/?p=UnsolicitedRateLimitError - gsmtp",
            mx: Some("gmail-smtp-in.l.google.com"),
            cause: Cause::RateLimit,
            action: Action::ReduceRate,
            provider: Some("Google"),
            reference: Some("4.7.28"),
            origin: Origin::Remote,
            stage: Stage::Unknown,
            retry: None,
        },
        Case {
            text: "SMTP error from remote mail server after RCPT TO:<a@example.org>: 451 4.7.1 Greylisting in action, please come back in 00:05:00",
            mx: None,
            cause: Cause::Greylisting,
            action: Action::RetryNormally,
            provider: None,
            reference: None,
            origin: Origin::Remote,
            stage: Stage::Rcpt,
            retry: Some(300),
        },
        Case {
            text: "connect to mx1.example.com[192.0.2.10]:25: Connection timed out",
            mx: Some("mx1.example.com"),
            cause: Cause::Network,
            action: Action::RetryNormally,
            provider: None,
            reference: None,
            origin: Origin::Local,
            stage: Stage::Connect,
            retry: None,
        },
        Case {
            text: "451 4.4.1 No answer from any hosts listed in MX",
            mx: Some("aspmx.l.google.com"),
            cause: Cause::Network,
            action: Action::RetryNormally,
            provider: Some("Google"),
            reference: None,
            origin: Origin::Local,
            stage: Stage::Connect,
            retry: None,
        },
        Case {
            text: "host mx.example.net[203.0.113.10] refused to talk to me: 421 4.7.0 mx.example.net Error: too many connections from 192.0.2.25",
            mx: None,
            cause: Cause::ConnectionLimit,
            action: Action::ReduceConcurrency,
            provider: None,
            reference: None,
            origin: Origin::Remote,
            stage: Stage::Connect,
            retry: None,
        },
        Case {
            text: "550 5.7.1 Service unavailable; client [192.0.2.25] blocked using Spamhaus; please try again later",
            mx: None,
            cause: Cause::Permanent,
            action: Action::None,
            provider: None,
            reference: None,
            origin: Origin::Remote,
            stage: Stage::Unknown,
            retry: None,
        },
        Case {
            text: "421 4.7.0 [TLS] Must issue a STARTTLS command first (in reply to MAIL FROM command)",
            mx: None,
            cause: Cause::TlsRequired,
            action: Action::EnableTls,
            provider: None,
            reference: None,
            origin: Origin::Remote,
            stage: Stage::Mail,
            retry: None,
        },
        Case {
            text: "451 4.7.26 Unauthenticated email from example.com is not accepted due to domain's DMARC policy, but temporary DNS failures prevent authentication. - gsmtp",
            mx: None,
            cause: Cause::Authentication,
            action: Action::FixAuthentication,
            provider: Some("Google"),
            reference: Some("4.7.26"),
            origin: Origin::Remote,
            stage: Stage::Unknown,
            retry: None,
        },
    ];
    for k in &cases {
        let r = c.classify_text(k.text, k.mx);
        assert_eq!(
            r.cause, k.cause,
            "cause of {:?} (rule {:?})",
            k.text, r.rule
        );
        assert_eq!(r.action, k.action, "action of {:?}", k.text);
        assert_eq!(
            r.provider.as_deref(),
            k.provider,
            "provider of {:?}",
            k.text
        );
        assert_eq!(
            r.reference.as_deref(),
            k.reference,
            "reference of {:?}",
            k.text
        );
        assert_eq!(r.origin, k.origin, "origin of {:?}", k.text);
        assert_eq!(r.stage, k.stage, "stage of {:?}", k.text);
        assert_eq!(r.retry_hint_seconds, k.retry, "retry of {:?}", k.text);
        assert!(!r.explanation.is_empty());
        let reply = parse_reply(k.text);
        assert_eq!(r.code, reply.code);
    }
}

#[test]
fn fallback_uses_enhanced_code_then_basic_code() {
    let c = Classifier::builtin();
    let cases = [
        ("452 4.2.2 zzz", Cause::Mailbox),
        ("451 4.4.1 zzz", Cause::Network),
        ("421 4.3.0 zzz", Cause::ServerBusy),
        ("450 4.7.25 zzz", Cause::Authentication),
        ("451 4.7.5 zzz", Cause::TlsRequired),
        ("451 4.7.28 zzz", Cause::RateLimit),
        ("450 4.5.3 zzz", Cause::PolicyOther),
        ("421 zzz", Cause::ServerBusy),
        ("450 zzz", Cause::Mailbox),
        ("554 4.7.1 zzz", Cause::Permanent),
        ("5.1.1 zzz", Cause::Permanent),
        ("zzz", Cause::Network),
    ];
    for (t, want) in cases {
        let r = c.classify_text(t, None);
        assert_eq!(r.rule, None, "{t}");
        assert_eq!(r.cause, want, "{t}");
    }
}

#[test]
fn json_shape() {
    let c = Classifier::builtin();
    let r = c.classify_text(
        "421 4.7.0 [TSS04] Messages from 192.0.2.25 temporarily deferred",
        Some("mta5.am0.yahoodns.net"),
    );
    let v = serde_json::to_value(&r).expect("serialises");
    assert_eq!(v["enhanced"], "4.7.0");
    assert_eq!(v["cause"], "reputation");
    assert_eq!(v["action"], "pause_and_investigate_reputation");
    assert_eq!(v["origin"], "remote");
    assert_eq!(v["stage"], "unknown");
    assert_eq!(v["provider"], "Yahoo");
}
