//! The lrsweep coordinator: plans a learning-rate search, dispatches trials to workers over
//! gRPC, prunes from their streamed traces, and ends with a recommendation.
//!
//! Decisions are pure: `search` (a file per strategy), `prune` (divergence and rung rules) and
//! `sweep` (the state machine, which records every change it decides). Driven by thin async
//! layers: `hub` (one task owns the sweep, fed by channels), `service` (the gRPC face) and
//! `auth`, `health` (gRPC health for probes), `storage` (SQLite and the writer that keeps the sweep there), `server` (`run`), with
//! `local_workers`, `report` and `cli`.

pub mod auth;
pub mod cli;
pub mod error;
pub mod health;
pub mod hub;
pub mod local_workers;
pub mod metrics;
pub mod prune;
pub mod report;
pub mod search;
pub mod server;
pub mod service;
pub mod status;
pub mod storage;
pub mod sweep;
mod tls;
pub mod view;

pub use error::CoordinatorError;
pub use server::{run, CoordinatorConfig};
