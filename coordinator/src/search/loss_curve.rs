//! The LR range test's analysis (method.md §2), pure: merge the shards' smoothed-loss curves into
//! one loss-vs-LR curve with a spread band, and read the rate suggestions off it.
//!
//! Definitions, on the suggestion curve (the merged mean at the steps every shard reported,
//! trimmed like fastai: the first ⌊N/10⌋ points for a ramp of N steps and the last 5, unless that
//! leaves fewer than 2 points, in which case nothing is trimmed):
//! - `minimum`: the point of lowest loss (the first one on ties).
//! - `max_stable_lr`: the rate of `minimum`, where the merged loss stops improving. Beyond it the
//!   rate makes training worse; that is the instability the runs end on. The loss can only show
//!   the instability once it has grown, so this errs high: 1.1–2× of 2/λ_max on a noisy
//!   quadratic, up to 3.5× on a noise-free one (the ground-truth tests below).
//! - `steep`: the left point of the consecutive pair with the most negative slope
//!   Δloss / Δln(lr) (forward differences, as fastai); none when the loss never falls.
//! - `valley`: in the longest run of strictly decreasing loss (the first of equally long runs)
//!   from index a to b, the point at index a + ⌊(b − a)/2⌋, about halfway in; none when the loss
//!   never falls.
//! - suggested cyclical range: [max_stable_lr / 4, max_stable_lr] (method.md §1).

use std::collections::BTreeMap;

use serde::Serialize;

use super::outcome::CurvePoint;

/// fastai drops this many points at the end: the last steps before the stop are the blow-up.
const TRIM_END: usize = 5;

/// One step of the merged curve: the shards' smoothed losses at that step.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct MergedPoint {
    pub step: u64,
    pub lr: f64,
    pub mean: f64,
    pub min: f64,
    pub max: f64,
    /// Shards with a point at this step.
    pub shards: u32,
}

/// A point of the curve the suggestions are read from.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct LossPoint {
    pub step: u64,
    pub lr: f64,
    pub loss: f64,
}

#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Suggestions {
    pub steep: Option<LossPoint>,
    pub valley: Option<LossPoint>,
    pub minimum: LossPoint,
    /// `minimum.lr`.
    pub max_stable_lr: f64,
    /// Whether some run blew up within the ramp. If none did, the loss was still falling at the
    /// ramp's end, and `max_stable_lr` is only a lower bound: widen `max_lr`.
    pub instability_reached: bool,
    pub suggested_min_lr: f64,
    pub suggested_max_lr: f64,
}

/// Everything the range test found; its report content.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Analysis {
    pub merged: Vec<MergedPoint>,
    /// The curves that were merged, in replicate order.
    pub shards: Vec<Vec<CurvePoint>>,
    /// None when the merged curve is empty.
    pub suggestions: Option<Suggestions>,
}

/// Merges the runs of one range test (one curve per shard, each in step order with one point
/// per step). Every shard ramps the same way, so points are aligned by step; the rate is the
/// first shard's. The merged curve ends before the first step at which any shard's rate or
/// smoothed loss is not finite: past a NaN no value of that step is comparable.
pub fn merge(curves: &[Vec<CurvePoint>]) -> Vec<MergedPoint> {
    let mut by_step: BTreeMap<u64, Vec<CurvePoint>> = BTreeMap::new();
    for curve in curves {
        for p in curve {
            by_step.entry(p.step).or_default().push(*p);
        }
    }
    let mut merged = Vec::with_capacity(by_step.len());
    for (step, points) in by_step {
        if points
            .iter()
            .any(|p| !p.lr.is_finite() || !p.smoothed.is_finite())
        {
            break;
        }
        let losses = points.iter().map(|p| p.smoothed);
        merged.push(MergedPoint {
            step,
            lr: points[0].lr,
            mean: losses.clone().sum::<f64>() / points.len() as f64,
            min: losses.clone().fold(f64::INFINITY, f64::min),
            max: losses.fold(f64::NEG_INFINITY, f64::max),
            shards: points.len() as u32,
        });
    }
    merged
}

/// Merges the shards' curves and reads the suggestions from the steps that every shard with a
/// curve reported: where one shard's run has ended, the mean over the others would jump by the
/// offset between shards and fake a valley. `ramp_steps` is the planned ramp length N.
pub fn analyse(shards: Vec<Vec<CurvePoint>>, ramp_steps: u64, blew_up: bool) -> Analysis {
    let merged = merge(&shards);
    let reporting = shards.iter().filter(|c| !c.is_empty()).count() as u32;
    let curve: Vec<LossPoint> = merged
        .iter()
        .filter(|p| p.shards == reporting)
        .map(|p| LossPoint {
            step: p.step,
            lr: p.lr,
            loss: p.mean,
        })
        .collect();
    Analysis {
        suggestions: suggest(&curve, ramp_steps, blew_up),
        merged,
        shards,
    }
}

/// The suggestions (module docs) from a loss-vs-rate curve in step order; `ramp_steps` is the
/// planned ramp length N. The curve is cut before its first non-finite loss or non-positive rate.
/// None for an empty curve.
pub fn suggest(curve: &[LossPoint], ramp_steps: u64, blew_up: bool) -> Option<Suggestions> {
    let usable = curve
        .iter()
        .position(|p| !p.loss.is_finite() || !p.lr.is_finite() || p.lr <= 0.0)
        .unwrap_or(curve.len());
    let curve = &curve[..usable];
    let start = (ramp_steps / 10) as usize;
    // The end is trimmed for the blow-up's last steps; a run that never blew up has none, and
    // trimming it would put a fake minimum a few steps before the ramp's end.
    let end = if blew_up {
        curve.len().saturating_sub(TRIM_END)
    } else {
        curve.len()
    };
    let curve = if end >= start + 2 {
        &curve[start..end]
    } else {
        curve
    };

    let minimum = *curve.iter().min_by(|a, b| a.loss.total_cmp(&b.loss))?;
    let steep = curve
        .windows(2)
        .filter_map(|w| {
            let d_log_lr = w[1].lr.ln() - w[0].lr.ln();
            let slope = (w[1].loss - w[0].loss) / d_log_lr;
            (d_log_lr > 0.0 && slope < 0.0).then_some((slope, w[0]))
        })
        .min_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, p)| p);
    Some(Suggestions {
        steep,
        valley: longest_descent(curve).map(|(a, b)| curve[a + (b - a) / 2]),
        minimum,
        max_stable_lr: minimum.lr,
        instability_reached: blew_up,
        suggested_min_lr: minimum.lr / 4.0,
        suggested_max_lr: minimum.lr,
    })
}

/// First and last index of the first longest run of strictly decreasing loss (at least two
/// points), if any.
fn longest_descent(curve: &[LossPoint]) -> Option<(usize, usize)> {
    let mut best: Option<(usize, usize)> = None;
    let mut run_start = 0;
    for i in 1..curve.len() {
        if curve[i].loss >= curve[i - 1].loss {
            run_start = i;
        } else if best.is_none_or(|(a, b)| i - run_start > b - a) {
            best = Some((run_start, i));
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::prune::TraceMonitor;
    use crate::search::{build_strategy, TrialResult, TrialStatus};
    use lrsweep_proto::domain::{ScheduleSpec, TracePoint};
    use lrsweep_proto::rng::SplitMix64;
    use lrsweep_proto::spec::{PruningSpec, SweepSpec};

    fn curve(start_step: u64, losses: &[f64]) -> Vec<CurvePoint> {
        losses
            .iter()
            .enumerate()
            .map(|(i, &smoothed)| {
                let step = start_step + i as u64;
                CurvePoint {
                    step,
                    lr: 1e-3 * 2f64.powi(step as i32),
                    smoothed,
                }
            })
            .collect()
    }

    fn points(losses: &[f64]) -> Vec<LossPoint> {
        curve(1, losses)
            .into_iter()
            .map(|p| LossPoint {
                step: p.step,
                lr: p.lr,
                loss: p.smoothed,
            })
            .collect()
    }

    #[test]
    fn merge_gives_mean_min_max_and_shard_count() {
        let a = curve(1, &[3.0, 2.0, 1.0, 5.0]);
        let b = curve(1, &[4.0, 3.0, 2.0]);
        let merged = merge(&[a.clone(), b]);
        let rows: Vec<_> = merged
            .iter()
            .map(|p| (p.step, p.mean, p.min, p.max, p.shards))
            .collect();
        assert_eq!(
            rows,
            vec![
                (1, 3.5, 3.0, 4.0, 2),
                (2, 2.5, 2.0, 3.0, 2),
                (3, 1.5, 1.0, 2.0, 2),
                (4, 5.0, 5.0, 5.0, 1),
            ]
        );
        assert!(merged.iter().zip(&a).all(|(m, p)| m.lr == p.lr));
    }

    #[test]
    fn merge_cuts_at_the_first_non_finite_value_of_any_shard() {
        let a = curve(1, &[3.0, 2.0, 1.0, 0.5]);
        let b = curve(1, &[4.0, 3.0, f64::NAN, 0.1]);
        let merged = merge(&[a.clone(), b]);
        assert_eq!(merged.len(), 2);
        let mut bad_lr = a.clone();
        bad_lr[1].lr = f64::INFINITY;
        assert_eq!(merge(&[bad_lr, a]).len(), 1);
        assert!(merge(&[]).is_empty());
        assert!(merge(&[vec![], vec![]]).is_empty());
        assert!(merge(&[curve(1, &[f64::NAN])]).is_empty());
    }

    #[test]
    fn suggestions_on_a_hand_checked_curve() {
        // N = 20: the first 2 and the last 5 points are trimmed, so the low values at indices
        // 0, 1 and 15 are never picked.
        let losses = [
            0.5, 0.2, // trimmed
            4.0, 4.1, 3.9, 3.8, 3.7, 3.6, 3.5, 2.0, 1.9, 2.5, 2.4, 2.3, 9.0, // kept: 2..=14
            0.1, 50.0, 100.0, 200.0, 400.0, // trimmed
        ];
        let curve = points(&losses);
        let s = suggest(&curve, 20, true).unwrap();
        // Steepest drop: 3.5 → 2.0 between indices 8 and 9; the left point is the suggestion.
        assert_eq!(s.steep.unwrap().step, 9);
        // Longest strictly decreasing run: indices 3..=10 (4.1 down to 1.9), 8 points; halfway
        // in is index 3 + 7/2 = 6.
        assert_eq!(s.valley.unwrap().step, 7);
        assert_eq!(s.minimum, curve[10]);
        assert_eq!(s.max_stable_lr, curve[10].lr);
        assert_eq!(s.suggested_min_lr, curve[10].lr / 4.0);
        assert_eq!(s.suggested_max_lr, curve[10].lr);
    }

    #[test]
    fn short_flat_rising_and_nan_curves_do_not_panic() {
        assert!(suggest(&[], 100, true).is_none());
        let one = points(&[2.0]);
        let s = suggest(&one, 100, true).unwrap();
        assert_eq!(
            (s.max_stable_lr, s.steep, s.valley),
            (one[0].lr, None, None)
        );
        // Too short to trim: the whole curve counts.
        let three = points(&[3.0, 1.0, 2.0]);
        let s = suggest(&three, 100, true).unwrap();
        assert_eq!(s.minimum, three[1]);
        assert_eq!((s.steep, s.valley), (Some(three[0]), Some(three[0])));
        // The loss never falls: no steep, no valley; the minimum is the first point.
        let rising = points(&[1.0, 1.0, 2.0, 3.0]);
        let s = suggest(&rising, 0, true).unwrap();
        assert_eq!((s.steep, s.valley, s.minimum), (None, None, rising[0]));
        // Cut at the first NaN: the 0.5 after it does not count.
        let nan = points(&[3.0, 2.0, f64::NAN, 0.5]);
        assert_eq!(suggest(&nan, 0, true).unwrap().minimum, nan[1]);
        assert!(suggest(&points(&[f64::NAN, 1.0]), 0, true).is_none());
        // No run blew up: nothing is trimmed from the end, and the minimum is a lower bound.
        let falling = points(&[5.0, 4.0, 3.0, 2.0, 1.5, 1.2, 1.1, 1.05]);
        let s = suggest(&falling, 0, false).unwrap();
        assert_eq!(s.minimum, falling[7]);
        assert!(!s.instability_reached);
        assert!(suggest(&falling, 0, true).unwrap().minimum.step < falling[7].step);
    }

    #[test]
    fn analyse_reads_suggestions_only_where_every_shard_reported() {
        // Shard b sits 10 above a and ends early; past its end the mean would drop by 5.
        let a = curve(1, &[5.0, 4.0, 3.0, 2.9, 2.8, 2.7]);
        let b = curve(1, &[15.0, 14.0, 13.0, 14.0]);
        let analysis = analyse(vec![a.clone(), b, vec![]], 0, true);
        assert_eq!(analysis.merged.len(), 6);
        let s = analysis.suggestions.unwrap();
        assert_eq!(s.minimum.step, 3);
        assert_eq!(s.minimum.loss, 8.0);
        assert_eq!(s.max_stable_lr, a[2].lr);
        assert!(analyse(vec![], 100, true).suggestions.is_none());
    }

    /// One range-test run on the diagonal quadratic f(w) = ½Σλ_i w_i², w = 1: gradient steps
    /// w_i ← w_i − η(λ_i w_i + σ√λ_i ξ) with ξ standard normal (σ = 0: full-batch GD; σ > 0:
    /// minibatch noise with covariance ∝ H, the noisy quadratic model). The loss goes through
    /// the sweep's own `TraceMonitor` (debiased EMA β = 0.98, stop at 4× best or NaN), so the run
    /// ends exactly where the sweep would stop it.
    fn quadratic_run(
        lambdas: &[f64],
        sigma: f64,
        seed: u64,
        plan_lr: f64,
        end_lr: f64,
        n: u64,
    ) -> TrialResult {
        let mut rng = SplitMix64::new(seed);
        let mut normal = || {
            // Box–Muller; 1 − u keeps the logarithm finite.
            let (u, v) = (1.0 - rng.unit(), rng.unit());
            (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
        };
        let mut w = vec![1.0; lambdas.len()];
        let mut monitor = TraceMonitor::new(&PruningSpec::default());
        let mut curve = Vec::new();
        let mut diverged = false;
        for k in 0..n {
            // The exponential ramp, lr_k = start·(end/start)^(k/N) (method.md §2).
            let lr = plan_lr * (end_lr / plan_lr).powf(k as f64 / n as f64);
            let loss: f64 = lambdas.iter().zip(&w).map(|(l, x)| 0.5 * l * x * x).sum();
            let point = TracePoint {
                step: k + 1,
                train_loss: loss,
                lr,
                val_loss: None,
            };
            let verdict = monitor.observe(&point);
            if let Some(smoothed) = monitor.smoothed() {
                curve.push(CurvePoint {
                    step: k + 1,
                    lr,
                    smoothed,
                });
            }
            if verdict.is_some() {
                diverged = true;
                break;
            }
            for (x, l) in w.iter_mut().zip(lambdas) {
                *x -= lr * (l * *x + sigma * l.sqrt() * normal());
            }
        }
        TrialResult {
            lr: plan_lr,
            replicate: 0,
            status: if diverged {
                TrialStatus::Pruned
            } else {
                TrialStatus::Completed
            },
            diverged,
            score: None,
            curve,
            validation: Vec::new(),
        }
    }

    /// The range test's max_stable_lr over 2/λ_max, through the whole strategy: the default
    /// range-test plan (1e-7 → 10 over 100 steps, exponential, 2 shards), one simulated run per
    /// shard (shard r draws its noise from seed `seed + r`, its own data).
    fn max_stable_over_truth(lambda_max: f64, sigma: f64, seed: u64) -> f64 {
        let spec = SweepSpec::from_toml_str("[search]\nstrategy = \"range-test\"").unwrap();
        let mut strategy = build_strategy(&spec);
        let plan = strategy.first_round();
        let Some(ScheduleSpec::RangeTest { end_lr, .. }) = plan.schedule else {
            panic!("{plan:?}");
        };
        // A spread spectrum: the slow modes keep the loss up while the top one is unstable.
        let lambdas: Vec<f64> = [1.0, 0.3, 0.1, 0.03, 0.01]
            .iter()
            .map(|f| f * lambda_max)
            .collect();
        let results: Vec<TrialResult> = (0..plan.replicates)
            .map(|r| TrialResult {
                replicate: r,
                ..quadratic_run(
                    &lambdas,
                    sigma,
                    seed + r as u64,
                    plan.lrs[0],
                    end_lr,
                    plan.steps,
                )
            })
            .collect();
        assert!(strategy.next_round(&results).is_none());
        strategy.recommendation().unwrap().max_stable_lr / (2.0 / lambda_max)
    }

    #[test]
    fn ground_truth_noisy_quadratic_max_stable_within_factor_two_of_two_over_lambda() {
        for lambda_max in [0.5, 3.0, 40.0] {
            for seed in [0, 10, 20, 30, 40] {
                let ratio = max_stable_over_truth(lambda_max, 0.1, seed);
                assert!(
                    (0.5..=2.0).contains(&ratio),
                    "λ_max {lambda_max}, seed {seed}: max_stable_lr = {ratio:.2} × 2/λ_max"
                );
            }
        }
    }

    #[test]
    fn ground_truth_full_batch_gd_overshoots_by_the_regrowth_lag() {
        // Noise-free GD nearly annihilates the top mode on the step where ηλ_max ≈ 1; the loss
        // shows the instability only once that mode has regrown, about ten ramp steps (×1.2
        // each) past 2/λ_max. The range test cannot see earlier than the loss does, so here it
        // overshoots: bounded, never below 2/λ_max / 2. (λ_max = 0.5: the ramp ends at
        // 2.5 × 2/λ_max before the loss turns, and the trim leaves the minimum 5 steps short.)
        for lambda_max in [0.5, 3.0, 40.0] {
            let ratio = max_stable_over_truth(lambda_max, 0.0, 0);
            assert!(
                (0.5..=4.0).contains(&ratio),
                "λ_max {lambda_max}: max_stable_lr = {ratio:.2} × 2/λ_max"
            );
        }
    }
}
