//! The HTTP edge: the dashboard pages, authentication, the read API, and the one
//! error type.

pub mod api;
pub mod auth;
pub mod charts;
pub mod error;
pub mod pages;
pub mod reports_api;
pub mod session;
pub mod settings;
pub mod views;
