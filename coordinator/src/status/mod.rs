//! `status`: where a running or finished sweep stands, from its database alone (read-only, so it
//! runs beside the coordinator). Building the status from rows (`build`), the ETA (`eta`) and
//! the text (`render`) are pure; `read` and `watch` do the I/O.

pub mod eta;
mod render;
mod watch;

use std::path::Path;

pub use eta::{Eta, EtaInput};
pub use render::render;
pub use watch::watch;

use crate::search::TrialStatus;
use crate::storage::store::now_ms;
use crate::storage::{stored_spec, Store, SweepRow, TrialRow, WorkerRow, WorkerState};
use crate::sweep::SweepStatus;
use crate::CoordinatorError;

/// A sweep as `status` shows it.
#[derive(Clone, Debug, PartialEq)]
pub struct Status {
    pub sweep_id: String,
    pub state: SweepStatus,
    /// The round of the latest planned trials, from 0.
    pub round: u32,
    /// Rounds the spec plans (a search may end sooner).
    pub rounds: u32,
    /// Trials of the whole sweep per status, in `TrialStatus::ALL` order.
    pub trials: Vec<(TrialStatus, u32)>,
    /// Trials of the current round: (done, all).
    pub round_done: (u32, u32),
    pub workers: Workers,
    /// The completed trial with the lowest final loss: (rate, loss).
    pub best: Option<(f64, f64)>,
    /// From the sweep's creation to now, or to its last attempt's end once it is over.
    pub elapsed_ms: i64,
    pub eta: Eta,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Workers {
    pub connected: u32,
    /// Connected workers running at least one trial.
    pub busy: u32,
    /// Slots of the connected workers, and how many run a trial.
    pub slots: u32,
    pub slots_busy: u32,
    /// Away with their lease still running (may come back).
    pub disconnected: u32,
    pub lost: u32,
    pub left: u32,
}

impl Status {
    pub fn count(&self, status: TrialStatus) -> u32 {
        self.trials
            .iter()
            .find(|(s, _)| *s == status)
            .map_or(0, |(_, n)| *n)
    }

    pub fn is_over(&self) -> bool {
        self.state != SweepStatus::Running
    }
}

/// The rows of one sweep, as read from its database.
pub struct Rows<'a> {
    pub sweep: &'a SweepRow,
    pub rounds: u32,
    pub trials: &'a [TrialRow],
    /// Each worker with the trials it runs now.
    pub workers: &'a [(WorkerRow, u32)],
    /// When the first attempt started and the last one ended.
    pub attempt_span: (Option<i64>, Option<i64>),
}

/// The status the rows show at `now_ms`.
pub fn build(rows: &Rows<'_>, now_ms: i64) -> Status {
    let round = rows.trials.iter().map(|t| t.round).max().unwrap_or(0);
    let trials = TrialStatus::ALL
        .iter()
        .map(|&s| {
            let n = rows.trials.iter().filter(|t| t.status == s).count();
            (s, n as u32)
        })
        .collect();
    let this_round: Vec<&TrialRow> = rows.trials.iter().filter(|t| t.round == round).collect();
    let open = |t: &&&TrialRow| matches!(t.status, TrialStatus::Queued | TrialStatus::Running);
    let round_done = (
        this_round.iter().filter(|t| !open(t)).count() as u32,
        this_round.len() as u32,
    );
    let best = rows
        .trials
        .iter()
        .filter(|t| t.status == TrialStatus::Completed)
        .filter_map(|t| t.final_loss.filter(|l| l.is_finite()).map(|l| (t.lr, l)))
        .min_by(|a, b| a.1.total_cmp(&b.1));
    let running = rows.sweep.status == SweepStatus::Running;
    let end_ms = match (running, rows.attempt_span.1) {
        (false, Some(last)) => last,
        _ => now_ms,
    };
    let eta = if running {
        eta::estimate(EtaInput {
            steps_run: rows.trials.iter().map(|t| t.steps_run).sum(),
            steps_left: this_round
                .iter()
                .filter(open)
                .map(|t| t.budget.saturating_sub(t.steps))
                .sum(),
            first_start_ms: rows.attempt_span.0,
            now_ms,
            last_round: round + 1 >= rows.rounds,
        })
    } else {
        Eta::Unknown("the sweep is not running")
    };
    Status {
        sweep_id: rows.sweep.sweep_id.clone(),
        state: rows.sweep.status,
        round,
        rounds: rows.rounds,
        trials,
        round_done,
        workers: workers(rows.workers),
        best,
        elapsed_ms: (end_ms - rows.sweep.created_at_ms).max(0),
        eta,
    }
}

fn workers(rows: &[(WorkerRow, u32)]) -> Workers {
    let mut w = Workers::default();
    for (row, running) in rows {
        match row.state {
            WorkerState::Connected => {
                w.connected += 1;
                w.slots += row.slots;
                w.slots_busy += running.min(&row.slots);
                if *running > 0 {
                    w.busy += 1;
                }
            }
            WorkerState::Registered | WorkerState::Disconnected => w.disconnected += 1,
            WorkerState::Lost => w.lost += 1,
            WorkerState::Left => w.left += 1,
        }
    }
    w
}

/// The status of sweep `sweep_id` (or the latest) in `store`, now.
pub fn read(store: &Store, sweep_id: Option<&str>) -> Result<Status, CoordinatorError> {
    let sweep = match sweep_id {
        Some(id) => store.sweep(id)?,
        None => store.latest_sweep()?,
    }
    .ok_or_else(|| CoordinatorError::Storage("no such sweep in the database".into()))?;
    let rows = Rows {
        rounds: stored_spec(&sweep)?.search.rounds,
        trials: &store.trials(&sweep.sweep_id)?,
        workers: &store.workers(&sweep.sweep_id)?,
        attempt_span: store.attempt_span(&sweep.sweep_id)?,
        sweep: &sweep,
    };
    Ok(build(&rows, now_ms()))
}

/// Opens `db` for reading only: `status` never writes.
pub fn open(db: &Path) -> Result<Store, CoordinatorError> {
    Store::open_read_only(db)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::prune::PruneReason;

    fn sweep(status: SweepStatus) -> SweepRow {
        SweepRow {
            sweep_id: "s".into(),
            spec_toml: String::new(),
            status,
            created_at_ms: 1_000_000,
        }
    }

    fn trial(id: u64, round: u32, status: TrialStatus, steps: u64, loss: Option<f64>) -> TrialRow {
        TrialRow {
            sweep_id: "s".into(),
            id,
            round,
            lr: 10f64.powi(-(id as i32)),
            replicate: 0,
            replicates: 1,
            fraction: 1.0,
            budget: 100,
            status,
            prune_reason: (status == TrialStatus::Pruned).then_some(PruneReason::Diverged),
            attempt: 1,
            steps,
            steps_run: steps,
            worker: None,
            error: None,
            final_loss: loss,
        }
    }

    fn worker(id: &str, state: WorkerState, slots: u32, running: u32) -> (WorkerRow, u32) {
        let row = WorkerRow {
            worker: id.into(),
            name: id.into(),
            host: "h".into(),
            slots,
            state,
            registered_at_ms: 1_000_000,
            last_seen_ms: 1_010_000,
        };
        (row, running)
    }

    fn trials() -> Vec<TrialRow> {
        vec![
            trial(0, 0, TrialStatus::Completed, 100, Some(0.5)),
            trial(1, 0, TrialStatus::Completed, 100, Some(0.2)),
            trial(2, 0, TrialStatus::Pruned, 10, Some(f64::INFINITY)),
            trial(3, 1, TrialStatus::Completed, 100, Some(f64::NAN)),
            trial(4, 1, TrialStatus::Running, 40, None),
            trial(5, 1, TrialStatus::Queued, 0, None),
        ]
    }

    #[test]
    fn a_running_sweep_shows_its_round_trials_workers_best_and_eta() {
        let sweep = sweep(SweepStatus::Running);
        let trials = trials();
        let workers = [
            worker("w1", WorkerState::Connected, 2, 1),
            worker("w2", WorkerState::Connected, 1, 0),
            worker("w3", WorkerState::Lost, 1, 0),
            worker("w4", WorkerState::Disconnected, 1, 0),
        ];
        let rows = Rows {
            sweep: &sweep,
            rounds: 3,
            trials: &trials,
            workers: &workers,
            attempt_span: (Some(1_000_000), Some(1_030_000)),
        };
        let status = build(&rows, 1_035_000);
        assert_eq!((status.round, status.rounds), (1, 3));
        assert_eq!(status.count(TrialStatus::Completed), 3);
        assert_eq!(status.count(TrialStatus::Failed), 0);
        assert_eq!(status.round_done, (1, 3));
        assert_eq!(
            status.workers,
            Workers {
                connected: 2,
                busy: 1,
                slots: 3,
                slots_busy: 1,
                disconnected: 1,
                lost: 1,
                left: 0
            }
        );
        // The NaN and infinite losses are never "best".
        assert_eq!(status.best, Some((0.1, 0.2)));
        assert_eq!(status.elapsed_ms, 35_000);
        // 350 steps in 35 s; 60 + 100 left in round 1, not the last.
        assert_eq!(
            status.eta,
            Eta::Estimate {
                seconds: 16.0,
                steps_left: 160,
                steps_per_second: 10.0,
                whole_sweep: false
            }
        );
        assert!(!status.is_over());
    }

    #[test]
    fn a_finished_sweep_has_no_eta_and_its_elapsed_time_stops() {
        let sweep = sweep(SweepStatus::Completed);
        let trials = trials();
        let rows = Rows {
            sweep: &sweep,
            rounds: 2,
            trials: &trials,
            workers: &[],
            attempt_span: (Some(1_000_000), Some(1_030_000)),
        };
        let status = build(&rows, 9_000_000);
        assert!(status.is_over());
        assert_eq!(status.elapsed_ms, 30_000);
        assert_eq!(status.eta, Eta::Unknown("the sweep is not running"));
        assert_eq!(status.workers, Workers::default());
    }
}
