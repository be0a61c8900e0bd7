//! The lrsweep worker: connects to a coordinator, trains the trials it is assigned on the data
//! subset each names — with the built-in trainer, or by running the user's own program — and
//! streams their loss traces back while training.

pub mod backoff;
pub mod batcher;
pub mod cli;
pub mod command;
pub mod data_cache;
mod diagnose;
pub mod duration;
pub mod error;
pub mod one_trial;
pub mod outbox;
pub mod session;
pub mod slots;
pub mod stop;
pub mod trainer;
pub mod trials;

pub use error::WorkerError;
pub use session::{run, WorkerConfig};
