//! What a search recommends at the end, whatever the strategy.

use serde::Serialize;

use super::outcome::{best_index, CandidateResult, TrialResult};

#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Recommendation {
    pub best_lr: f64,
    /// Mean smoothed final validation loss of `best_lr` over its replicates.
    #[serde(rename = "best_loss")]
    pub best_score: f64,
    /// Largest rate that trained to the end of its budget without diverging; for the range test
    /// alone, the rate at the minimum of its merged loss curve.
    pub max_stable_lr: f64,
    /// Cyclical-schedule range [max_stable/4, max_stable] (Smith; method.md §1).
    pub suggested_min_lr: f64,
    pub suggested_max_lr: f64,
    /// Range test only: its steep and valley suggestions (loss_curve.rs).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub steep_lr: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub valley_lr: Option<f64>,
    /// The hypergradient stage (`search.hypergradient`), once it ran.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hypergradient: Option<HypergradientOutcome>,
    /// How sure the pick is (edge descent): how flat the loss is around it, and whether it lies
    /// at an end of the range.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub confidence: Option<Confidence>,
}

/// Losses within this share of the best's count as as good.
pub const FLAT: f64 = 0.02;

/// How flat the full-budget loss is around the pick, from the rates trained at that budget.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Confidence {
    /// The smallest and largest rate trained whose loss is within 2% of the pick's: a wide span
    /// is a flat optimum (any rate in it does as well; a small error in the pick costs little).
    pub flat_from: f64,
    pub flat_to: f64,
    /// The loss of the nearest rates trained below and above the pick, over the pick's.
    pub below_ratio: Option<f64>,
    pub above_ratio: Option<f64>,
    /// "min_lr" or "max_lr" when the pick is the lowest or highest rate of the range: the best
    /// may lie beyond it, so extend that end.
    pub at_range_end: Option<&'static str>,
}

impl Confidence {
    /// One sentence for the text summary and the HTML page.
    pub fn sentence(&self) -> String {
        let ratio = |r: Option<f64>| r.map_or("(none)".to_string(), |r| format!("{r:.3}x"));
        let mut text = format!(
            "rates {:.3e} .. {:.3e} are within 2% of the pick's loss; the nearest rate trained to the \
             end below scores {}, above {}",
            self.flat_from,
            self.flat_to,
            ratio(self.below_ratio),
            ratio(self.above_ratio)
        );
        if let Some(end) = self.at_range_end {
            text += &format!("; the best lies at the range's end: extend {end} and search again");
        }
        text
    }
}

/// Where a hypergradient optimizer took the rate when started from the best fixed rate.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct HypergradientOutcome {
    pub start_lr: f64,
    /// Mean over replicates of the rate at each run's last step.
    pub final_lr: f64,
    /// Mean smoothed final validation loss, when every replicate completed.
    pub final_loss: Option<f64>,
    pub diverged: bool,
}

impl HypergradientOutcome {
    pub(crate) fn from_results(start_lr: f64, results: &[TrialResult]) -> HypergradientOutcome {
        let finals: Vec<f64> = results
            .iter()
            .filter_map(|r| r.curve.last().map(|p| p.lr))
            .collect();
        let scores: Vec<f64> = results.iter().filter_map(|r| r.score).collect();
        let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
        HypergradientOutcome {
            start_lr,
            final_lr: if finals.is_empty() {
                start_lr
            } else {
                mean(&finals)
            },
            final_loss: (!scores.is_empty() && scores.len() == results.len())
                .then(|| mean(&scores)),
            diverged: results.iter().any(|r| r.diverged),
        }
    }
}

impl Recommendation {
    pub(crate) fn new(best_lr: f64, best_score: f64, max_stable_lr: f64) -> Recommendation {
        Recommendation {
            best_lr,
            best_score,
            max_stable_lr,
            suggested_min_lr: max_stable_lr / 4.0,
            suggested_max_lr: max_stable_lr,
            steep_lr: None,
            valley_lr: None,
            hypergradient: None,
            confidence: None,
        }
    }
}

/// Best rate of the latest round that has a usable score (earlier rounds only when later ones
/// have none), and the stable range over every round. None before any candidate scored.
///
/// `max_stable_lr` counts only candidates that trained their full budget on every replicate
/// without diverging (`diverged == false` and a score): a rate that was pruned, cancelled or
/// failed early has not shown it is stable.
pub(crate) fn recommend(rounds: &[Vec<CandidateResult>]) -> Option<Recommendation> {
    let best = rounds
        .iter()
        .rev()
        .find_map(|r| best_index(r).map(|i| r[i]))?;
    let max_stable_lr = rounds
        .iter()
        .flatten()
        .filter(|c| c.usable())
        .map(|c| c.lr)
        .fold(best.lr, f64::max);
    Some(Recommendation::new(best.lr, best.score?, max_stable_lr))
}
