//! Pruning decisions from streamed loss traces (method.md §4), pure and per point: a
//! [`TraceMonitor`] per trial catches NaN and divergence from the trial's own trace, a
//! [`RungBoard`] per round compares trials against each other at milestone steps.

mod incumbent;
mod monitor;
mod reason;
mod rungs;

pub use incumbent::{behind, Incumbent};
pub use monitor::TraceMonitor;
pub use reason::PruneReason;
pub use rungs::RungBoard;
#[cfg(test)]
mod test_support;
