//! Ingest: the HTTP endpoints that take events, one adapter per source format, and the
//! group commit that makes them durable before anything is acknowledged.

pub mod committer;
pub mod esp;
pub mod exim;
pub mod follow;
pub mod http;
pub mod json;
pub mod kumomta;
pub mod logfile;
pub mod mta;
pub mod postfix;
pub mod powermta;
pub mod webhook;

pub use committer::Committer;

use serde::Serialize;

#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// The body as a whole cannot be read as events.
    #[error("{0}")]
    Body(String),
    #[error("{got} events in one request; the limit is {max}")]
    TooManyEvents { got: usize, max: usize },
    /// The store could not commit; nothing was written.
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    Store(String),
}

/// Why one item was not stored.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Rejection {
    pub field: Option<String>,
    pub reason: String,
    #[serde(rename = "id", skip_serializing_if = "Option::is_none")]
    pub ext_id: Option<String>,
}
