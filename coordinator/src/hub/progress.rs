//! Where each round stands, followed from the sweep's changes before they go to the store: a
//! `round_progress` line when trials of a round finish, and the trial metrics. Costs a lookup
//! per trial changed and nothing per point beyond one counter add per batch.

use tracing::info;

use crate::metrics::Metrics;
use crate::prune::PruneReason;
use crate::search::TrialStatus;
use crate::sweep::{Change, Sweep, Trial};

/// Trials of one round by how they ended.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct RoundCount {
    pub(super) trials: u32,
    pub(super) done: u32,
    /// Pruned for a reason other than divergence.
    pub(super) pruned: u32,
    pub(super) diverged: u32,
    pub(super) cancelled: u32,
    pub(super) failed: u32,
}

impl RoundCount {
    /// Adds (`sign` 1) or takes away (-1) a trial in `status`.
    fn count(&mut self, status: TrialStatus, reason: Option<PruneReason>, sign: i32) {
        let add = |n: &mut u32| *n = n.saturating_add_signed(sign);
        add(&mut self.trials);
        if is_final(status) {
            add(&mut self.done);
        }
        match status {
            TrialStatus::Pruned if reason.is_some_and(|r| r.is_divergence()) => {
                add(&mut self.diverged)
            }
            TrialStatus::Pruned => add(&mut self.pruned),
            TrialStatus::Cancelled => add(&mut self.cancelled),
            TrialStatus::Failed => add(&mut self.failed),
            _ => {}
        }
    }

    /// `12 of 20 trials done (3 pruned, 1 diverged)`, cancelled and failed only when there are.
    pub(super) fn describe(&self) -> String {
        let mut text = format!(
            "{} of {} trials done ({} pruned, {} diverged",
            self.done, self.trials, self.pruned, self.diverged
        );
        if self.cancelled > 0 {
            text.push_str(&format!(", {} cancelled", self.cancelled));
        }
        if self.failed > 0 {
            text.push_str(&format!(", {} failed", self.failed));
        }
        text.push(')');
        text
    }
}

pub(super) struct Progress {
    /// Each trial's status and prune reason as last seen, by id.
    seen: Vec<(TrialStatus, Option<PruneReason>)>,
    rounds: Vec<RoundCount>,
    /// Rounds the spec plans; a search may end sooner.
    planned: u32,
}

impl Progress {
    /// Starts from the sweep as it is (a resumed one has trials done already).
    pub(super) fn new(sweep: &Sweep, metrics: Option<&Metrics>) -> Progress {
        let mut progress = Progress {
            seen: Vec::with_capacity(sweep.trials().len()),
            rounds: Vec::new(),
            planned: sweep.spec().search.rounds,
        };
        for trial in sweep.trials() {
            progress.saw(trial, metrics);
        }
        if let Some(m) = metrics {
            m.set_round(sweep.current_round());
        }
        progress
    }

    /// Takes in what changed since the last flush; logs the rounds in which trials finished.
    pub(super) fn observe(&mut self, sweep: &Sweep, metrics: Option<&Metrics>) {
        // Rounds in which trials finished, in the order first seen.
        let mut finished_in: Vec<u32> = Vec::new();
        for change in sweep.changes() {
            let trial = match change {
                Change::PointsAccepted { points, .. } => {
                    if let Some(m) = metrics {
                        m.points_accepted(points.len());
                    }
                    continue;
                }
                Change::RoundStarted { round, trials } => {
                    if let Some(m) = metrics {
                        m.set_round(*round);
                    }
                    for &id in trials {
                        self.saw(&sweep.trials()[id as usize], metrics);
                    }
                    continue;
                }
                Change::TrialChanged(id) => &sweep.trials()[*id as usize],
                Change::AttemptStarted { .. } | Change::AttemptEnded { .. } => continue,
            };
            if self.saw(trial, metrics) && !finished_in.contains(&trial.round) {
                finished_in.push(trial.round);
            }
        }
        for round in finished_in {
            self.log(round);
        }
    }

    /// Where `round` stands.
    pub(super) fn round(&self, round: u32) -> RoundCount {
        self.rounds.get(round as usize).copied().unwrap_or_default()
    }

    fn log(&self, round: u32) {
        let c = self.round(round);
        info!(
            event = "round_progress",
            round,
            rounds = self.planned,
            done = c.done,
            trials = c.trials,
            pruned = c.pruned,
            diverged = c.diverged,
            cancelled = c.cancelled,
            failed = c.failed,
            "round {}/{}: {}",
            round + 1,
            self.planned,
            c.describe()
        );
    }

    /// Records the trial's status; true when it just reached a final one.
    fn saw(&mut self, trial: &Trial, metrics: Option<&Metrics>) -> bool {
        let id = trial.id as usize;
        let now = (trial.status, trial.prune_reason);
        let before = self.seen.get(id).copied();
        if before == Some(now) {
            return false;
        }
        if self.rounds.len() <= trial.round as usize {
            self.rounds
                .resize(trial.round as usize + 1, RoundCount::default());
        }
        let count = &mut self.rounds[trial.round as usize];
        match before {
            Some((status, reason)) => {
                count.count(status, reason, -1);
                self.seen[id] = now;
            }
            None => {
                // Trials are numbered in the order they are planned.
                self.seen.resize(id + 1, now);
            }
        }
        count.count(now.0, now.1, 1);
        // A trial first seen final finished under an earlier coordinator: not counted again.
        let finished = is_final(now.0) && before.is_some_and(|(s, _)| !is_final(s));
        if let Some(m) = metrics {
            m.trial_moved(before.map(|(s, _)| s), now.0);
            if finished {
                m.trial_finished(now.0, now.1);
            }
        }
        finished
    }
}

fn is_final(status: TrialStatus) -> bool {
    !matches!(status, TrialStatus::Queued | TrialStatus::Running)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sweep::Command;
    use lrsweep_proto::domain::TracePoint;
    use lrsweep_proto::spec::RungRule;

    /// Two rounds of 4 and 3 rates on one worker, no rung pruning.
    fn sweep() -> Sweep {
        let mut spec = crate::search::test_support::c2f_spec();
        spec.search.min_lr = 1e-3;
        spec.search.max_lr = 1.0;
        spec.search.rounds = 2;
        crate::search::test_support::coarse(&mut spec).candidates_per_round = 3;
        spec.search.steps = vec![20];
        spec.search.replicates = 1;
        spec.search.eval_every = 10;
        spec.pruning.rule = RungRule::None;
        let mut sweep = Sweep::new(spec);
        sweep.add_worker("w1".into(), "alpha".into(), 1);
        sweep
    }

    fn trace(lr: f64, to: u64, loss: f64) -> Vec<TracePoint> {
        (1..=to)
            .map(|step| TracePoint {
                step,
                train_loss: loss,
                lr,
                val_loss: (step % 10 == 0).then_some(loss),
            })
            .collect()
    }

    #[test]
    fn rounds_and_metrics_follow_the_sweeps_changes() {
        let mut sweep = sweep();
        let metrics = Metrics::new();
        let mut progress = Progress::new(&sweep, Some(&metrics));
        let mut commands = sweep.dispatch();
        let mut finished = 0;
        while let Some(Command::Assign {
            worker,
            assignment: a,
        }) = commands.pop()
        {
            // The first trial diverges at its 5th step; every other one trains its budget.
            let (to, loss) = if finished == 0 {
                (5, f64::NAN)
            } else {
                (a.steps, 0.5)
            };
            commands.extend(
                sweep
                    .on_trace(&worker, a.trial_id, a.attempt, &trace(a.lr, to, loss))
                    .unwrap(),
            );
            if finished > 0 {
                commands.extend(
                    sweep
                        .on_completed(&worker, a.trial_id, a.attempt, a.steps)
                        .unwrap(),
                );
            }
            finished += 1;
            progress.observe(&sweep, Some(&metrics));
            sweep.take_changes();
        }
        assert!(sweep.is_finished());
        let first = progress.round(0);
        assert_eq!((first.done, first.trials, first.diverged), (4, 4, 1));
        let second = progress.round(1);
        assert_eq!(second.done, second.trials);
        let text = metrics.encode();
        let total = sweep.trials().len();
        for line in [
            "lrsweep_trials{status=\"running\"} 0".to_string(),
            "lrsweep_trials{status=\"queued\"} 0".to_string(),
            format!("lrsweep_trials{{status=\"completed\"}} {}", total - 1),
            "lrsweep_trials_finished_total{status=\"pruned\",reason=\"nan\"} 1".to_string(),
            "lrsweep_round 1".to_string(),
            format!("lrsweep_trace_points_total {}", 5 + 20 * (total as u64 - 1)),
        ] {
            assert!(text.lines().any(|l| l == line), "no `{line}` in:\n{text}");
        }
    }

    #[test]
    fn a_round_counts_each_trial_once_by_how_it_ended() {
        let mut c = RoundCount::default();
        for _ in 0..5 {
            c.count(TrialStatus::Queued, None, 1);
        }
        let finish = |c: &mut RoundCount, status, reason| {
            c.count(TrialStatus::Queued, None, -1);
            c.count(status, reason, 1);
        };
        finish(&mut c, TrialStatus::Completed, None);
        finish(&mut c, TrialStatus::Pruned, Some(PruneReason::Rung));
        finish(&mut c, TrialStatus::Pruned, Some(PruneReason::Nan));
        finish(
            &mut c,
            TrialStatus::Cancelled,
            Some(PruneReason::CancelledByMonotonicity),
        );
        assert_eq!(
            c,
            RoundCount {
                trials: 5,
                done: 4,
                pruned: 1,
                diverged: 1,
                cancelled: 1,
                failed: 0
            }
        );
        assert_eq!(
            c.describe(),
            "4 of 5 trials done (1 pruned, 1 diverged, 1 cancelled)"
        );
    }
}
