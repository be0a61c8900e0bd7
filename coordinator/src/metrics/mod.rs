//! The coordinator's Prometheus metrics: what the hub updates as it decides, the runtime's lag
//! (`runtime_lag`, sampled beside the server), and their text encoding for `/metrics`
//! (`serve`). Every value is an atomic: updating one on the ingest path costs an atomic add,
//! never an allocation or a lock. No label carries a trial id.

mod runtime_lag;
mod serve;

use std::sync::Arc;
use std::time::{Duration, Instant};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

pub use serve::serve;

use crate::prune::PruneReason;
use crate::search::TrialStatus;

/// Latency buckets, in seconds, of stop orders and of the runtime's queue: a stop goes out as
/// soon as the hub decides it, within a millisecond unless the hub is behind, so the resolution
/// is finest there; the tail catches a hub queued behind a saturated store or runtime.
const LATENCY_BUCKETS: [f64; 12] = [
    0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0,
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusLabel {
    status: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FinishedLabels {
    status: &'static str,
    /// The prune reason, or `none`.
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: &'static str,
    /// The database schema version it reads and writes.
    schema: i64,
}

/// Cheap to clone: every clone updates the same values.
#[derive(Clone)]
pub struct Metrics {
    registry: Arc<Registry>,
    workers_connected: Gauge,
    /// One gauge per trial status, indexed like `TrialStatus::ALL`.
    trials: Vec<Gauge>,
    finished: Family<FinishedLabels, Counter>,
    trace_points: Counter,
    round: Gauge,
    stop_latency: Histogram,
    runtime_lag: Histogram,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::default();
        let workers_connected = Gauge::default();
        registry.register(
            "lrsweep_workers_connected",
            "Workers with an open stream to the coordinator",
            workers_connected.clone(),
        );
        let trials_family = Family::<StatusLabel, Gauge>::default();
        // Every status from the start, so a query sees 0 rather than no series.
        let trials = TrialStatus::ALL
            .iter()
            .map(|s| {
                trials_family
                    .get_or_create(&StatusLabel { status: s.as_str() })
                    .clone()
            })
            .collect();
        registry.register(
            "lrsweep_trials",
            "Trials of the sweep by status",
            trials_family,
        );
        let finished = Family::<FinishedLabels, Counter>::default();
        registry.register(
            "lrsweep_trials_finished",
            "Trials that reached a final status, by status and prune reason",
            finished.clone(),
        );
        let trace_points = Counter::default();
        registry.register(
            "lrsweep_trace_points",
            "Trace points accepted from workers",
            trace_points.clone(),
        );
        let round = Gauge::default();
        registry.register(
            "lrsweep_round",
            "The round the search is in, from 0",
            round.clone(),
        );
        let stop_latency = Histogram::new(LATENCY_BUCKETS);
        registry.register(
            "lrsweep_stop_order_latency_seconds",
            "From receiving the trace batch that triggered a stop or prune to handing the stop order to the worker's stream",
            stop_latency.clone(),
        );
        let runtime_lag = Histogram::new(LATENCY_BUCKETS);
        registry.register(
            "lrsweep_runtime_lag_seconds",
            "How much later than asked a task sleeping 10 ms woke: how long ready tasks, a stop order's among them, wait for the runtime",
            runtime_lag.clone(),
        );
        let build = Family::<BuildLabels, Gauge>::default();
        build
            .get_or_create(&BuildLabels {
                version: env!("CARGO_PKG_VERSION"),
                schema: crate::storage::store::SCHEMA_VERSION,
            })
            .set(1);
        registry.register("lrsweep_build_info", "The coordinator's build", build);
        Metrics {
            registry: Arc::new(registry),
            workers_connected,
            trials,
            finished,
            trace_points,
            round,
            stop_latency,
            runtime_lag,
        }
    }

    pub fn set_workers_connected(&self, n: usize) {
        self.workers_connected.set(n as i64);
    }

    /// A trial moved from `from` (None: it is new) to `to`.
    pub fn trial_moved(&self, from: Option<TrialStatus>, to: TrialStatus) {
        if let Some(from) = from {
            self.trials[status_index(from)].dec();
        }
        self.trials[status_index(to)].inc();
    }

    pub fn trial_finished(&self, status: TrialStatus, reason: Option<PruneReason>) {
        self.finished
            .get_or_create(&FinishedLabels {
                status: status.as_str(),
                reason: reason.map_or("none", |r| r.as_str()),
            })
            .inc();
    }

    pub fn points_accepted(&self, n: usize) {
        self.trace_points.inc_by(n as u64);
    }

    pub fn set_round(&self, round: u32) {
        self.round.set(i64::from(round));
    }

    /// A stop order caused by the trace batch received at `received` is on its way.
    pub fn stop_sent(&self, received: Instant) {
        self.stop_latency.observe(received.elapsed().as_secs_f64());
    }

    fn runtime_lag(&self, late: Duration) {
        self.runtime_lag.observe(late.as_secs_f64());
    }

    /// Every metric in the OpenMetrics text format (which Prometheus scrapes).
    pub fn encode(&self) -> String {
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }
}

fn status_index(status: TrialStatus) -> usize {
    TrialStatus::ALL
        .iter()
        .position(|s| *s == status)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_text_names_every_metric_by_the_conventions() {
        let m = Metrics::new();
        m.set_workers_connected(3);
        m.trial_moved(None, TrialStatus::Queued);
        m.trial_moved(Some(TrialStatus::Queued), TrialStatus::Running);
        m.trial_moved(Some(TrialStatus::Running), TrialStatus::Pruned);
        m.trial_finished(TrialStatus::Pruned, Some(PruneReason::Diverged));
        m.points_accepted(250);
        m.set_round(1);
        m.stop_sent(Instant::now());
        m.runtime_lag(Duration::from_millis(3));
        let text = m.encode();
        for line in [
            "# TYPE lrsweep_workers_connected gauge",
            "lrsweep_workers_connected 3",
            "lrsweep_trials{status=\"queued\"} 0",
            "lrsweep_trials{status=\"pruned\"} 1",
            "# TYPE lrsweep_trials_finished counter",
            "lrsweep_trials_finished_total{status=\"pruned\",reason=\"diverged\"} 1",
            "lrsweep_trace_points_total 250",
            "lrsweep_round 1",
            "# TYPE lrsweep_stop_order_latency_seconds histogram",
            "lrsweep_stop_order_latency_seconds_count 1",
            "lrsweep_stop_order_latency_seconds_bucket{le=\"1.0\"} 1",
            "# TYPE lrsweep_runtime_lag_seconds histogram",
            "lrsweep_runtime_lag_seconds_count 1",
            "lrsweep_runtime_lag_seconds_bucket{le=\"0.002\"} 0",
            "lrsweep_runtime_lag_seconds_bucket{le=\"0.005\"} 1",
        ] {
            assert!(text.lines().any(|l| l == line), "no `{line}` in:\n{text}");
        }
        let build = format!(
            "lrsweep_build_info{{version=\"{}\",schema=\"{}\"}} 1",
            env!("CARGO_PKG_VERSION"),
            crate::storage::store::SCHEMA_VERSION
        );
        assert!(text.lines().any(|l| l == build), "no `{build}` in:\n{text}");
    }
}
