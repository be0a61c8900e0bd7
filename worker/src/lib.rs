//! The lrsweep worker: connects to a coordinator, trains the trials it is assigned on the data
//! subset each names, and streams their loss traces back while training.

pub mod backoff;
pub mod cli;
mod diagnose;
pub mod duration;
pub mod error;
pub mod one_trial;
pub mod session;
pub mod trainer;
pub mod trials;

pub use error::WorkerError;
pub use session::{run, WorkerConfig};
