//! Deferwatch: ingest SMTP delivery outcomes, group persistent deferrals into
//! incidents, track them through the retry-threshold windows.

pub mod app;
pub mod bench;
pub mod check_runner;
pub mod checks;
pub mod cli;
pub mod clock;
pub mod config;
pub mod demo;
pub mod event;
pub mod incidents;
pub mod ingest;
pub mod loggen;
pub mod metrics;
pub mod notify;
pub mod report;
pub mod smtp;
pub mod store;
pub mod time_format;
pub mod web;
