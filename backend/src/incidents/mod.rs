//! Grouping deferrals into incidents, phases, scope and recovery. Plain Rust: events in,
//! incidents out; no HTTP, no SQL.

pub mod advice;
pub mod destination;
pub mod engine;
pub mod model;
pub mod overview;
pub mod phase;
pub mod scope;

pub use destination::destination;
pub use engine::{Engine, EngineHandle, Timeline};
pub use model::{Incident, PhaseChange, Status};
pub use overview::{Overview, overview};
pub use phase::{Phase, Thresholds};
pub use scope::{Scope, scope};

#[cfg(test)]
mod tests;
