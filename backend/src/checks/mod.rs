//! Sender- and destination-side DNS checks for deferral incidents (checks.md).
//!
//! Layout follows stalwartlabs/mail-auth: DNS sits behind a small resolver
//! wrapper (`dns`), record parsing is separate from lookups, and each check is
//! a pure evaluation over parsed records plus a thin async driver in
//! `checker`. Nothing here knows about HTTP handlers or SQL.

mod checker;
mod config;
pub mod dkim;
pub mod dmarc;
pub mod dns;
pub mod dnsbl;
pub mod helo;
pub mod mta_sts;
pub mod mx;
pub mod names;
pub mod ptr;
mod report;
pub mod spf;

pub use checker::Checker;
pub use config::{CheckConfig, ReturnCodeTable, ZoneSpec};
pub use report::{CheckChange, CheckError, CheckReport, CheckResult, Verdict, detect_change};
