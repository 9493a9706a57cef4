//! SMTP replies: parsing what MTAs report, and classifying it into a cause and an action.
//! Knows nothing of HTTP or SQL.

pub mod classify;
pub mod provider;
pub mod reply;

pub use classify::{Action, Cause, Classification, Classifier, Origin, RulesError};
pub use provider::{Provider, provider_from_domain, provider_from_mx, provider_from_text};
pub use reply::{EnhancedCode, Reply, Stage, parse_reply};
