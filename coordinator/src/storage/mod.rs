//! The sweep on disk: the SQLite store (`store`), how values sit in its columns (`columns`) and
//! trace points in its blobs (`point_blob`), and the writer that keeps a running sweep there and
//! rebuilds it after a crash (`durable`).

mod columns;
pub mod durable;
mod point_blob;
pub mod store;
mod workers;

pub use durable::{load_sweep, stored_spec, Durable, Then};
pub use store::{Changes, Store, SweepRow, TrialRow};
pub use workers::{WorkerRow, WorkerState};
