//! The HTTP edge: authentication, the read API, and the one error type.

pub mod api;
pub mod auth;
pub mod error;
