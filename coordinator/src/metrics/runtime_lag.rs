//! How long a ready task waits for the runtime: a task that asks to sleep `EVERY` and records how
//! much later it woke. Every stop order crosses several tasks (the session's read, the hub, the
//! response stream, the HTTP/2 connection); when the runtime has more ready work than time, each
//! waits about this long, and this is where a saturated coordinator's stop latency goes
//! (BENCHMARKS.md, "Stop orders while saturated").

use std::convert::Infallible;
use std::time::{Duration, Instant};

use super::Metrics;

/// 100 wakes a second: a fine sample at no measurable cost. Tokio's timer rounds up to the
/// millisecond, so an idle runtime reads up to about 1 ms.
pub(super) const EVERY: Duration = Duration::from_millis(10);

/// Samples until dropped (it lives as long as the metrics server).
pub(super) async fn sample(metrics: Metrics) -> Infallible {
    loop {
        let asked = Instant::now();
        tokio::time::sleep(EVERY).await;
        metrics.runtime_lag(asked.elapsed().saturating_sub(EVERY));
    }
}
