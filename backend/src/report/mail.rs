//! The report as an email: a complete RFC 5322 message (multipart/alternative, plain
//! text first as postmasters read it, HTML second) built with lettre, and the SMTP
//! client that hands it to the configured relay.
//!
//! A send succeeds only when the relay accepted the message at the end of DATA; every
//! other outcome is an error that carries the relay's own reply when there was one.

use super::EscalationReport;
use chrono::{DateTime, Utc};
use lettre::message::{Mailbox, Mailboxes, Message, MultiPart, header};
use lettre::transport::smtp::Error as SmtpError;
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use std::time::Duration;

/// How long one send may take before it counts as failed: a relay that hangs must not
/// hold an operator's request (or the CLI) forever.
const SEND_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// An address that is not a mailbox; `field` is `from` or `to`.
    #[error("{field}: {reason}")]
    Address { field: &'static str, reason: String },
    #[error("the report could not be rendered: {0}")]
    Render(String),
    #[error("the message could not be built: {0}")]
    Build(String),
}

/// Parses every recipient, naming the first that is not a valid address.
pub fn parse_recipients(to: &[String]) -> Result<Vec<Mailbox>, ReportError> {
    if to.is_empty() {
        return Err(ReportError::Address {
            field: "to",
            reason: "at least one recipient is needed".into(),
        });
    }
    to.iter()
        .map(|a| {
            a.trim()
                .parse::<Mailbox>()
                .map_err(|e| ReportError::Address {
                    field: "to",
                    reason: format!("{a:?} is not an email address: {e}"),
                })
        })
        .collect()
}

pub fn parse_from(from: &str) -> Result<Mailbox, ReportError> {
    from.trim()
        .parse::<Mailbox>()
        .map_err(|e| ReportError::Address {
            field: "from",
            reason: format!("{from:?} is not an email address: {e}"),
        })
}

/// A fresh Message-ID in the sender's domain, so replies and bounces can be matched
/// to the send record.
pub fn new_message_id(from: &Mailbox) -> String {
    format!(
        "<deferwatch.{}@{}>",
        hex::encode(rand::random::<[u8; 12]>()),
        from.email.domain()
    )
}

impl EscalationReport {
    /// The complete message as it goes over the wire (CRLF line ends), for a .eml
    /// download or the relay. `message_id` includes its angle brackets.
    pub fn to_eml(
        &self,
        from: &str,
        to: &[String],
        date: DateTime<Utc>,
        message_id: &str,
    ) -> Result<Vec<u8>, ReportError> {
        let from = parse_from(from)?;
        let to = parse_recipients(to)?;
        Ok(self.message(from, to, date, message_id)?.formatted())
    }

    fn message(
        &self,
        from: Mailbox,
        to: Vec<Mailbox>,
        date: DateTime<Utc>,
        message_id: &str,
    ) -> Result<Message, ReportError> {
        let html = self.to_html()?;
        let to: Mailboxes = to.into_iter().collect();
        Message::builder()
            .from(from)
            .mailbox(header::To::from(to))
            .subject(self.subject.clone())
            .date(date.into())
            .message_id(Some(message_id.to_string()))
            .multipart(MultiPart::alternative_plain_html(self.body_text(), html))
            .map_err(|e| ReportError::Build(e.to_string()))
    }
}

/// What the relay said when it accepted the message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SendOutcome {
    pub message_id: String,
    /// Its reply to the end of DATA, e.g. `250 2.0.0 Ok: queued as 4Xh2`.
    pub relay_response: String,
}

#[derive(Debug, thiserror::Error)]
pub enum MailError {
    #[error("smtp_url: {0}")]
    Config(String),
    #[error(transparent)]
    Report(#[from] ReportError),
    /// The relay answered with a 4xx or 5xx reply: nothing was sent.
    #[error("the relay refused the message: {reply}")]
    Refused { reply: String },
    /// No reply to act on: connection, TLS or timeout failure.
    #[error("the relay could not be reached: {reason}")]
    Unreachable { reason: String },
}

impl MailError {
    /// The text to show and record as the relay's answer.
    pub fn relay_reply(&self) -> String {
        match self {
            MailError::Refused { reply } => reply.clone(),
            other => other.to_string(),
        }
    }
}

impl From<SmtpError> for MailError {
    fn from(e: SmtpError) -> Self {
        match e.status() {
            // lettre keeps the reply text as the error's source.
            Some(code) => MailError::Refused {
                reply: match std::error::Error::source(&e) {
                    Some(text) => format!("{code} {text}"),
                    None => code.to_string(),
                },
            },
            None => MailError::Unreachable {
                reason: e.to_string(),
            },
        }
    }
}

/// The SMTP client for one relay, from lettre's URL form: `smtp://127.0.0.1:2525`,
/// `smtp://user:pass@host:587?tls=required`, `smtps://host:465`.
pub struct Mailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
}

impl Mailer {
    pub fn from_url(smtp_url: &str, from: &str) -> Result<Mailer, MailError> {
        let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(smtp_url)
            .map_err(|e| MailError::Config(format!("{}: {e}", crate::store::redact_url(smtp_url))))?
            .timeout(Some(SEND_TIMEOUT))
            .build();
        Ok(Mailer {
            transport,
            from: parse_from(from)?,
        })
    }

    /// A Message-ID for the next send, known before sending so that a refused
    /// attempt is recorded under it too.
    pub fn new_message_id(&self) -> String {
        new_message_id(&self.from)
    }

    /// Sends a plain-text message (the digest); `Ok` only when the relay accepted it.
    pub async fn send_text(
        &self,
        subject: &str,
        body: String,
        to: &[String],
        date: DateTime<Utc>,
    ) -> Result<SendOutcome, MailError> {
        let message_id = self.new_message_id();
        let mut builder = Message::builder()
            .from(self.from.clone())
            .subject(subject)
            .date(date.into())
            .message_id(Some(message_id.clone()));
        for mb in parse_recipients(to)? {
            builder = builder.to(mb);
        }
        let message = builder
            .header(header::ContentType::TEXT_PLAIN)
            .body(body)
            .map_err(|e| MailError::Config(format!("digest message: {e}")))?;
        let response = self.transport.send(message).await?;
        let text: Vec<&str> = response.message().collect();
        Ok(SendOutcome {
            message_id,
            relay_response: format!("{} {}", response.code(), text.join(" "))
                .trim_end()
                .to_string(),
        })
    }

    /// Sends the report; `Ok` only when the relay accepted it.
    pub async fn send(
        &self,
        report: &EscalationReport,
        to: &[String],
        date: DateTime<Utc>,
        message_id: &str,
    ) -> Result<SendOutcome, MailError> {
        let to = parse_recipients(to)?;
        let message = report.message(self.from.clone(), to, date, message_id)?;
        let response = self.transport.send(message).await?;
        let text: Vec<&str> = response.message().collect();
        Ok(SendOutcome {
            message_id: message_id.to_string(),
            relay_response: format!("{} {}", response.code(), text.join(" "))
                .trim_end()
                .to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_stay_out_of_errors() {
        assert_eq!(
            crate::store::redact_url("smtp://user:secret@host:587?tls=required"),
            "smtp://user:***@host:587?tls=required"
        );
        assert_eq!(
            crate::store::redact_url("smtp://127.0.0.1:2525"),
            "smtp://127.0.0.1:2525"
        );
        let e = Mailer::from_url("smtq://user:secret@host", "a@b.example")
            .err()
            .expect("unknown scheme refused");
        assert!(!e.to_string().contains("secret"), "{e}");
    }

    #[test]
    fn recipients_must_be_addresses() {
        assert!(parse_recipients(&[]).is_err());
        let e = parse_recipients(&["postmaster@example.com".into(), "not an address".into()])
            .unwrap_err();
        assert!(e.to_string().starts_with("to: \"not an address\""), "{e}");
        assert_eq!(
            parse_recipients(&[" postmaster@example.com ".into()]).unwrap()[0]
                .email
                .to_string(),
            "postmaster@example.com"
        );
    }
}
