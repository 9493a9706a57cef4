//! The normalized delivery-outcome event every source format is turned into.

use crate::smtp::{Action, Cause, Classification, Stage};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventType {
    Deferred,
    Delivered,
    Bounced,
}

impl EventType {
    pub const ALL: [EventType; 3] = [
        EventType::Deferred,
        EventType::Delivered,
        EventType::Bounced,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Deferred => "deferred",
            EventType::Delivered => "delivered",
            EventType::Bounced => "bounced",
        }
    }
}

impl fmt::Display for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for EventType {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        EventType::ALL
            .into_iter()
            .find(|t| t.as_str() == s)
            .ok_or(())
    }
}

/// An event that passed validation and classification, ready to be stored and fed to
/// the incident engine.
#[derive(Clone, Debug)]
pub struct NewEvent {
    pub source_id: i64,
    /// The sender's idempotency key, if it gave one.
    pub ext_id: Option<String>,
    /// Unique per source and event: from `ext_id` or, without one, from the content.
    pub dedupe_key: String,
    pub kind: EventType,
    pub time: DateTime<Utc>,
    pub received_at: DateTime<Utc>,
    pub recipient: String,
    pub recipient_domain: String,
    pub sender: Option<String>,
    pub source_ip: Option<String>,
    pub helo: Option<String>,
    pub mx_host: Option<String>,
    pub mx_ip: Option<String>,
    /// Mail provider key (`google`, `microsoft`, …) or the recipient domain.
    pub destination: String,
    pub response: Option<String>,
    pub code: Option<u16>,
    pub enhanced: Option<String>,
    pub stage: Stage,
    pub classification: Option<Classification>,
    pub attempt: Option<i32>,
    pub pool: Option<String>,
    pub message_id: Option<String>,
    /// DKIM selector the message was signed with, when the source reports it; the
    /// checks then test that key.
    pub dkim_selector: Option<String>,
    /// The item exactly as the source sent it (JSON text), kept as evidence.
    pub raw: String,
}

impl NewEvent {
    pub fn cause(&self) -> Option<Cause> {
        self.classification.as_ref().map(|c| c.cause)
    }
}

/// An event as read back from the store.
#[derive(Clone, Debug, Serialize)]
pub struct StoredEvent {
    pub id: i64,
    pub source: String,
    #[serde(rename = "event_id")]
    pub ext_id: Option<String>,
    #[serde(rename = "type")]
    pub kind: EventType,
    #[serde(with = "crate::time_format")]
    pub timestamp: DateTime<Utc>,
    #[serde(with = "crate::time_format")]
    pub received_at: DateTime<Utc>,
    pub recipient: String,
    pub recipient_domain: String,
    pub sender: Option<String>,
    pub source_ip: Option<String>,
    pub helo: Option<String>,
    pub mx_host: Option<String>,
    pub mx_ip: Option<String>,
    pub destination: String,
    pub response: Option<String>,
    pub code: Option<u16>,
    pub enhanced: Option<String>,
    pub stage: Stage,
    pub cause: Option<Cause>,
    pub action: Option<Action>,
    pub classification: Option<serde_json::Value>,
    pub attempt: Option<i32>,
    pub pool: Option<String>,
    pub message_id: Option<String>,
    pub incident_id: Option<i64>,
    pub raw: serde_json::Value,
}
