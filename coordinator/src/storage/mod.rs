//! The sweep on disk: the SQLite store (`store`), how values sit in its columns (`columns`), and
//! the writer that keeps a running sweep there and rebuilds it after a crash (`durable`).

mod columns;
pub mod durable;
pub mod store;
mod workers;

pub use durable::{load_sweep, stored_spec, Durable, Then};
pub use store::{Changes, Store, SweepRow, TrialRow};
pub use workers::{WorkerRow, WorkerState};
