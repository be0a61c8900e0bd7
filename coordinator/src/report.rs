//! The sweep's result: the JSON report and the summary table printed at the end.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use serde::Serialize;

use crate::search::{Recommendation, TrialStatus};
use crate::sweep::{Sweep, SweepStatus};
use crate::CoordinatorError;

#[derive(Debug, Serialize)]
pub struct Report {
    pub sweep_id: String,
    /// `completed`, or `interrupted` when the coordinator was stopped before the search ended.
    pub outcome: SweepStatus,
    /// best_lr, best_loss, max_stable_lr, suggested_min_lr, suggested_max_lr, and steep_lr,
    /// valley_lr, hypergradient where they apply; none of them when nothing could be
    /// recommended.
    #[serde(flatten, serialize_with = "recommendation_or_nulls")]
    pub recommendation: Option<Recommendation>,
    pub rounds: u32,
    pub total_steps: u64,
    pub trials: Vec<TrialReport>,
    /// Strategy-specific content: the range test's merged and per-shard loss-vs-LR curves.
    #[serde(skip_serializing_if = "serde_json::Value::is_null")]
    pub search: serde_json::Value,
}

/// A recommendation's fields, or the same fields as `null` when there is none: a reader finds
/// `best_lr` in every report.
fn recommendation_or_nulls<S: serde::Serializer>(
    recommendation: &Option<Recommendation>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    #[derive(Serialize)]
    struct Nulls {
        best_lr: Option<f64>,
        best_loss: Option<f64>,
        max_stable_lr: Option<f64>,
        suggested_min_lr: Option<f64>,
        suggested_max_lr: Option<f64>,
    }
    match recommendation {
        Some(r) => r.serialize(serializer),
        None => Nulls {
            best_lr: None,
            best_loss: None,
            max_stable_lr: None,
            suggested_min_lr: None,
            suggested_max_lr: None,
        }
        .serialize(serializer),
    }
}

#[derive(Debug, Serialize)]
pub struct TrialReport {
    pub id: u64,
    pub lr: f64,
    pub round: u32,
    pub subset: SubsetReport,
    pub status: TrialStatus,
    pub prune_reason: Option<&'static str>,
    pub steps: u64,
    pub budget: u64,
    /// Smoothed final validation loss if completed, else the last smoothed training loss;
    /// null when not finite.
    pub final_loss: Option<f64>,
    pub worker: Option<String>,
    pub attempts: u32,
    pub error: Option<String>,
    /// Trials whose rate moves by itself (hypergradient optimizers): [step, rate] along the
    /// trace, at most `TRAJECTORY_POINTS` of them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lr_trajectory: Option<Vec<(u64, f64)>>,
}

const TRAJECTORY_POINTS: usize = 100;

#[derive(Debug, Serialize)]
pub struct SubsetReport {
    pub replicate: u32,
    pub replicates: u32,
    pub fraction: f64,
}

impl Report {
    pub fn from_sweep(sweep_id: &str, sweep: &Sweep) -> Report {
        Report {
            sweep_id: sweep_id.to_string(),
            outcome: if sweep.was_interrupted() {
                SweepStatus::Interrupted
            } else {
                SweepStatus::Completed
            },
            recommendation: sweep.recommendation(),
            search: sweep.search_report(),
            rounds: sweep.current_round() + 1,
            total_steps: sweep.total_steps(),
            trials: sweep
                .trials()
                .iter()
                .map(|t| TrialReport {
                    id: t.id,
                    lr: t.lr,
                    round: t.round,
                    subset: SubsetReport {
                        replicate: t.subset.replicate,
                        replicates: t.subset.replicates,
                        fraction: t.subset.fraction,
                    },
                    status: t.status,
                    prune_reason: t.prune_reason.map(|r| r.as_str()),
                    steps: t.steps,
                    budget: t.budget,
                    final_loss: t.final_loss().filter(|l| l.is_finite()),
                    worker: t.worker_name.clone(),
                    attempts: t.attempt,
                    error: t.error.clone(),
                    lr_trajectory: t
                        .trainer(&sweep.spec().trainer)
                        .built_in()
                        .and_then(|c| c.optimizer.hypergrad_lr())
                        .map(|_| {
                            let all: Vec<(u64, f64)> = t.lr_trajectory().collect();
                            let every = all.len().div_ceil(TRAJECTORY_POINTS).max(1);
                            all.into_iter().step_by(every).collect()
                        }),
                })
                .collect(),
        }
    }

    /// How many trials failed and the error most of them gave, e.g. "9 trials failed:
    /// /data/x.csv: cannot read: No such file or directory"; None when none failed.
    pub fn failures(&self) -> Option<String> {
        let errors: Vec<&str> = self
            .trials
            .iter()
            .filter(|t| t.status == TrialStatus::Failed)
            .map(|t| t.error.as_deref().unwrap_or("no error given"))
            .collect();
        let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
        for e in &errors {
            *counts.entry(e).or_default() += 1;
        }
        // Most common first; ties to the first in order of the text, so the line is stable.
        let (common, times) = counts
            .into_iter()
            .max_by(|a, b| a.1.cmp(&b.1).then(b.0.cmp(a.0)))?;
        let failed = errors.len();
        let trials = if failed == 1 { "trial" } else { "trials" };
        Some(if times == failed {
            format!("{failed} {trials} failed: {common}")
        } else {
            format!("{failed} {trials} failed, {times} of them with: {common}")
        })
    }

    pub fn to_json(&self) -> String {
        // Plain data with string keys: encoding cannot fail.
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    pub fn write(&self, path: &Path) -> Result<(), CoordinatorError> {
        let text = self.to_json();
        // Write then rename, so a crash never leaves a half-written report behind.
        let tmp = path.with_extension("json.tmp");
        std::fs::write(&tmp, text + "\n")
            .and_then(|()| std::fs::rename(&tmp, path))
            .map_err(|e| CoordinatorError::io(format!("writing report {}", path.display()), e))
    }

    /// Human-readable summary: one line per rate and round, then the recommendation.
    pub fn summary(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "{:>5}  {:>10}  {:>9}  {:>9}  {:>11}  statuses",
            "round", "lr", "steps", "budget", "final_loss"
        );
        // A rate's replicates are planned together: neighbours in trial order.
        for reps in self
            .trials
            .chunk_by(|a, b| (a.round, a.lr) == (b.round, b.lr))
        {
            let (round, lr) = (reps[0].round, reps[0].lr);
            let steps: u64 = reps.iter().map(|t| t.steps).sum();
            let budget: u64 = reps.iter().map(|t| t.budget).sum();
            let losses: Vec<f64> = reps
                .iter()
                .filter(|t| t.status == TrialStatus::Completed)
                .filter_map(|t| t.final_loss)
                .collect();
            let loss = if losses.len() == reps.len() {
                format!("{:.4}", losses.iter().sum::<f64>() / losses.len() as f64)
            } else {
                "-".to_string()
            };
            let statuses: Vec<String> = reps
                .iter()
                .map(|t| match t.prune_reason {
                    Some(reason) => reason.to_string(),
                    None => t.status.as_str().to_string(),
                })
                .collect();
            let _ = writeln!(
                out,
                "{round:>5}  {lr:>10.3e}  {steps:>9}  {budget:>9}  {loss:>11}  {}",
                statuses.join(",")
            );
        }
        let _ = writeln!(out);
        let _ = writeln!(out, "outcome          {}", self.outcome.as_str());
        if let Some(failures) = self.failures() {
            let _ = writeln!(out, "failed           {failures}");
        }
        let Some(rec) = &self.recommendation else {
            let _ = writeln!(
                out,
                "best_lr          none (no rate trained without diverging or failing)"
            );
            let _ = writeln!(out, "total_steps      {}", self.total_steps);
            return out;
        };
        let _ = writeln!(out, "best_lr          {:.4e}", rec.best_lr);
        let _ = writeln!(out, "max_stable_lr    {:.4e}", rec.max_stable_lr);
        let _ = writeln!(
            out,
            "cyclical range   {:.4e} .. {:.4e}",
            rec.suggested_min_lr, rec.suggested_max_lr
        );
        if let Some(confidence) = &rec.confidence {
            let _ = writeln!(out, "confidence       {}", confidence.sentence());
        }
        if let Some(hd) = &rec.hypergradient {
            let _ = writeln!(
                out,
                "hypergradient    {:.4e} -> {:.4e}{}",
                hd.start_lr,
                hd.final_lr,
                if hd.diverged { " (diverged)" } else { "" }
            );
        }
        let _ = writeln!(out, "total_steps      {}", self.total_steps);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trial(id: u64, status: TrialStatus, error: Option<&str>) -> TrialReport {
        TrialReport {
            id,
            lr: 0.1,
            round: 0,
            subset: SubsetReport {
                replicate: 0,
                replicates: 1,
                fraction: 1.0,
            },
            status,
            prune_reason: None,
            steps: 0,
            budget: 10,
            final_loss: None,
            worker: None,
            attempts: 1,
            error: error.map(str::to_string),
            lr_trajectory: None,
        }
    }

    fn report(trials: Vec<TrialReport>) -> Report {
        Report {
            sweep_id: "s".into(),
            outcome: SweepStatus::Completed,
            recommendation: None,
            rounds: 1,
            total_steps: 0,
            trials,
            search: serde_json::Value::Null,
        }
    }

    #[test]
    fn no_recommendation_is_written_as_nulls() {
        let json: serde_json::Value = serde_json::from_str(&report(Vec::new()).to_json()).unwrap();
        for field in [
            "best_lr",
            "best_loss",
            "max_stable_lr",
            "suggested_min_lr",
            "suggested_max_lr",
        ] {
            assert_eq!(json.get(field), Some(&serde_json::Value::Null), "{field}");
        }
        assert_eq!(json["outcome"], "completed");
    }

    #[test]
    fn failures_name_the_most_common_error_and_its_count() {
        let missing = "/data/x.csv: cannot read: No such file or directory";
        let nine = || -> Vec<TrialReport> {
            (0..9)
                .map(|i| trial(i, TrialStatus::Failed, Some(missing)))
                .collect()
        };
        assert_eq!(
            report(nine()).failures().unwrap(),
            format!("9 trials failed: {missing}")
        );
        let mut trials = nine();
        trials.push(trial(9, TrialStatus::Failed, Some("out of memory")));
        trials.push(trial(10, TrialStatus::Completed, None));
        assert_eq!(
            report(trials).failures().unwrap(),
            format!("10 trials failed, 9 of them with: {missing}")
        );
        assert_eq!(
            report(vec![trial(0, TrialStatus::Completed, None)]).failures(),
            None
        );
    }
}
