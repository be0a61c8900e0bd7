//! The lrsweep coordinator: plans a coarse-to-fine learning-rate search, dispatches trials to
//! workers over gRPC, prunes from their streamed traces, and ends with a recommendation.
//!
//! Decisions are pure (`spec`, `search`, `prune`, `sweep`); `service` and `server` drive them.

pub mod cli;
pub mod durable;
pub mod error;
pub mod prune;
pub mod range_test;
pub mod report;
pub mod search;
pub mod server;
pub mod service;
pub mod spec;
pub mod store;
pub mod sweep;
pub mod view;

pub use error::CoordinatorError;
pub use server::{run, CoordinatorConfig};
