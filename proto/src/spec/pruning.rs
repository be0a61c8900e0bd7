//! The `[pruning]` table: when a running trial is stopped.

use serde::{Deserialize, Serialize};

use super::{check, SpecResult};

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RungRule {
    /// Stop a trial once a smaller rate of its round has a lower value at the same milestone.
    /// The best rate for a longer run is at or below the best for a shorter one (short runs
    /// favour large rates), so a rate beaten by a smaller one early stays beaten.
    #[default]
    Dominated,
    /// Asynchronous successive halving: keep the best 1/η at each milestone.
    Asha,
    /// Median stopping rule: stop a trial whose best value is worse than its peers' median.
    Median,
    /// Only divergence and NaN stop trials.
    None,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PruningSpec {
    /// A trial diverged once its smoothed loss exceeds this multiple of its best or initial loss.
    pub divergence_factor: f64,
    /// β of the debiased exponential moving average applied to the training loss.
    pub smoothing: f64,
    pub rule: RungRule,
    /// η: rungs sit at grace·η^k of the budget; ASHA keeps about 1/η of the trials at each.
    pub reduction_factor: f64,
    /// The first rung sits at this fraction of the round's step budget.
    pub grace_fraction: f64,
    /// An ASHA or median judgement needs at least this many other trials' values (the
    /// dominated rule needs one smaller rate's).
    pub min_peers: u32,
}

impl Default for PruningSpec {
    fn default() -> Self {
        PruningSpec {
            divergence_factor: 4.0,
            smoothing: 0.98,
            rule: RungRule::Dominated,
            reduction_factor: 2.0,
            grace_fraction: 0.1,
            min_peers: 2,
        }
    }
}

impl PruningSpec {
    pub(crate) fn validate(&self) -> SpecResult {
        check(
            self.divergence_factor.is_finite() && self.divergence_factor > 1.0,
            "pruning.divergence_factor",
            "must be finite and > 1",
        )?;
        check(
            (0.0..1.0).contains(&self.smoothing),
            "pruning.smoothing",
            "must lie in [0, 1)",
        )?;
        check(
            self.reduction_factor.is_finite() && self.reduction_factor > 1.0,
            "pruning.reduction_factor",
            "must be finite and > 1",
        )?;
        check(
            self.grace_fraction > 0.0 && self.grace_fraction < 1.0,
            "pruning.grace_fraction",
            "must lie in (0, 1)",
        )?;
        // With no peers there is nothing to compare against (the median of nothing).
        check(
            self.min_peers >= 1,
            "pruning.min_peers",
            "must be at least 1",
        )
    }
}
