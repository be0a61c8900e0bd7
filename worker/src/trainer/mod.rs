//! Pure training code: one trial is a model trained by minibatch SGD on a replicate subset of
//! the prepared data, reporting its loss after every step. No I/O, no async: the caller decides
//! where this runs and where the trace goes.

mod data;
mod model;
mod optim;
mod rng;

use std::sync::Arc;

use lrsweep_proto::domain::{OptimizerSpec, TracePoint, TrialAssignment};
use ndarray::Axis;

use crate::WorkerError;
pub use data::PreparedData;
use model::Model;
use optim::Sgd;
use rng::{Rng, Stream};

/// One trial's model, optimizer and minibatch cursor.
#[derive(Debug)]
pub struct Trainer {
    data: Arc<PreparedData>,
    model: Model,
    optim: Sgd,
    /// This trial's rows of the training split, in the current epoch's order.
    order: Vec<usize>,
    /// Position in `order` of the next minibatch.
    cursor: usize,
    batch_size: usize,
    batch_rng: Rng,
    steps: u64,
}

impl Trainer {
    /// Builds the model for `assignment` on its data subset. Weight init and minibatch order are
    /// seeded from (trainer.seed, subset.replicate) only — not from the lr — so trials with
    /// different learning rates on the same replicate are paired (identical init, identical
    /// batches).
    pub fn new(
        assignment: &TrialAssignment,
        data: Arc<PreparedData>,
    ) -> Result<Trainer, WorkerError> {
        let config = &assignment.trainer;
        config
            .validate()
            .map_err(|(field, why)| WorkerError::InvalidTrial(format!("trainer.{field}: {why}")))?;
        let lr = assignment.lr;
        if !(lr.is_finite() && lr >= 0.0) {
            return Err(WorkerError::InvalidTrial(format!(
                "learning rate {lr} must be finite and non-negative"
            )));
        }
        // Trials are only comparable if they share the split; refuse data prepared for another.
        if !data.matches(config) {
            return Err(WorkerError::InvalidTrial(
                "prepared data does not match the trial's dataset, seed or validation fraction"
                    .into(),
            ));
        }
        let mut order = data.subset_indices(&assignment.subset)?;

        let replicate = u64::from(assignment.subset.replicate);
        let mut init_rng = Rng::new(config.seed, Stream::Init, replicate);
        let model = Model::new(
            &config.model,
            data.features(),
            data.classes(),
            &mut init_rng,
        )?;
        let OptimizerSpec::Sgd { momentum } = config.optimizer;
        let optim = Sgd::new(lr, momentum, &model);
        let mut batch_rng = Rng::new(config.seed, Stream::Batches, replicate);
        batch_rng.shuffle(&mut order);
        // The cap makes any batch size at least the subset size mean full-batch descent.
        let batch_size = (config.batch_size as usize).min(order.len());

        Ok(Trainer {
            data,
            model,
            optim,
            order,
            cursor: 0,
            batch_size,
            batch_rng,
            steps: 0,
        })
    }

    /// One minibatch SGD step. Returns the point with `step` (1-based count of updates done),
    /// `train_loss` = minibatch mean cross-entropy before the update, `lr`, and no `val_loss`.
    /// NaN and infinite losses are returned as they are.
    pub fn step(&mut self) -> TracePoint {
        // Every batch has the same size: an epoch's leftover rows (fewer than a batch) are
        // skipped and the next epoch reshuffles, so losses of all steps are comparable.
        if self.cursor + self.batch_size > self.order.len() {
            self.batch_rng.shuffle(&mut self.order);
            self.cursor = 0;
        }
        let rows = &self.order[self.cursor..self.cursor + self.batch_size];
        self.cursor += self.batch_size;

        let x = self.data.train_x().select(Axis(0), rows);
        let labels = self.data.train_y();
        let y: Vec<usize> = rows.iter().map(|&r| labels[r]).collect();
        let (train_loss, grads) = self.model.loss_and_grad(x.view(), &y);
        self.optim.step(&mut self.model, &grads);
        self.steps += 1;
        TracePoint {
            step: self.steps,
            train_loss,
            lr: self.optim.lr(),
            val_loss: None,
        }
    }

    /// Mean cross-entropy over the whole validation split with the current weights.
    pub fn validation_loss(&self) -> f64 {
        self.model.loss(self.data.val_x().view(), self.data.val_y())
    }
}

/// Outcome of [`run_trial`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TrialRun {
    /// Steps done.
    pub steps: u64,
    /// Whether `should_stop` ended the trial before `assignment.steps`.
    pub stopped: bool,
}

/// Runs `assignment.steps` steps, asking `should_stop()` before every step (returning early
/// with `stopped` if it says so) and passing every step's point to `emit`. Steps that are
/// multiples of `assignment.eval_every`, and the final step, carry the validation loss.
pub fn run_trial(
    assignment: &TrialAssignment,
    data: Arc<PreparedData>,
    should_stop: &dyn Fn() -> bool,
    emit: &mut dyn FnMut(TracePoint),
) -> Result<TrialRun, WorkerError> {
    if assignment.eval_every == 0 {
        return Err(WorkerError::InvalidTrial(
            "eval_every must be at least 1".into(),
        ));
    }
    let mut trainer = Trainer::new(assignment, data)?;
    for done in 0..assignment.steps {
        if should_stop() {
            return Ok(TrialRun {
                steps: done,
                stopped: true,
            });
        }
        let mut point = trainer.step();
        if point.step % assignment.eval_every == 0 || point.step == assignment.steps {
            point.val_loss = Some(trainer.validation_loss());
        }
        emit(point);
    }
    Ok(TrialRun {
        steps: assignment.steps,
        stopped: false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use lrsweep_proto::domain::{DatasetSpec, ModelSpec, Subset, TrainerConfig};
    use std::cell::Cell;
    use std::time::Instant;

    const SEED: u64 = 3;

    fn digits() -> Arc<PreparedData> {
        Arc::new(PreparedData::prepare(&DatasetSpec::Digits, SEED, 0.2).unwrap())
    }

    fn assignment(lr: f64, model: ModelSpec, steps: u64) -> TrialAssignment {
        TrialAssignment {
            trial_id: 1,
            attempt: 1,
            lr,
            steps,
            eval_every: 10,
            subset: Subset {
                fraction: 1.0,
                replicate: 0,
                replicates: 1,
            },
            trainer: TrainerConfig {
                model,
                batch_size: 32,
                seed: SEED,
                ..TrainerConfig::default()
            },
        }
    }

    fn mlp() -> ModelSpec {
        ModelSpec::Mlp { hidden: vec![32] }
    }

    fn trace(trainer: &mut Trainer, steps: usize) -> Vec<TracePoint> {
        (0..steps).map(|_| trainer.step()).collect()
    }

    #[test]
    fn trainer_is_sendable() {
        fn assert_send<T: Send>() {}
        assert_send::<Trainer>();
    }

    #[test]
    fn steps_count_from_one_and_carry_the_lr() {
        let mut trainer = Trainer::new(&assignment(0.05, mlp(), 3), digits()).unwrap();
        let points = trace(&mut trainer, 3);
        let steps: Vec<u64> = points.iter().map(|p| p.step).collect();
        assert_eq!(steps, [1, 2, 3]);
        assert!(points.iter().all(|p| p.lr == 0.05 && p.val_loss.is_none()));
        // Softmax starts at zero weights: the first loss is exactly uniform over 10 classes.
        let mut softmax = Trainer::new(&assignment(0.05, ModelSpec::Softmax, 1), digits()).unwrap();
        assert!((softmax.step().train_loss - 10f64.ln()).abs() < 1e-12);
    }

    #[test]
    fn paired_trials_share_init_and_batches() {
        let data = digits();
        let mut a = Trainer::new(&assignment(0.1, mlp(), 5), data.clone()).unwrap();
        let mut b = Trainer::new(&assignment(0.01, mlp(), 5), data.clone()).unwrap();
        assert_eq!(a.validation_loss(), b.validation_loss());
        let (ta, tb) = (trace(&mut a, 2), trace(&mut b, 2));
        assert_eq!(ta[0].train_loss, tb[0].train_loss);
        // After the first update the rates show.
        assert_ne!(ta[1].train_loss, tb[1].train_loss);

        let mut c = Trainer::new(&assignment(0.1, mlp(), 5), data.clone()).unwrap();
        let mut a_again = Trainer::new(&assignment(0.1, mlp(), 5), data.clone()).unwrap();
        let (tc, td) = (trace(&mut c, 100), trace(&mut a_again, 100));
        assert_eq!(tc, td);

        // Another replicate (or seed) is a different pairing.
        let mut other = assignment(0.1, mlp(), 5);
        other.subset = Subset {
            fraction: 1.0,
            replicate: 1,
            replicates: 2,
        };
        let mut e = Trainer::new(&other, data).unwrap();
        assert_ne!(e.step().train_loss, ta[0].train_loss);
    }

    #[test]
    fn mlp_learns_digits() {
        let started = Instant::now();
        let mut trainer = Trainer::new(&assignment(0.1, mlp(), 300), digits()).unwrap();
        let before = trainer.validation_loss();
        let points = trace(&mut trainer, 300);
        let after = trainer.validation_loss();
        eprintln!(
            "lr 0.1: val loss {before:.3} -> {after:.3} in {:?}",
            started.elapsed()
        );
        assert!(points.iter().all(|p| p.train_loss.is_finite()));
        assert!(after < 0.5, "validation loss {after}");
    }

    #[test]
    fn tiny_lr_barely_moves() {
        let mut trainer = Trainer::new(&assignment(1e-6, mlp(), 300), digits()).unwrap();
        let before = trainer.validation_loss();
        trace(&mut trainer, 300);
        let after = trainer.validation_loss();
        assert!((after - before).abs() < 1e-2, "{before} -> {after}");
    }

    #[test]
    fn huge_lr_explodes_without_panicking() {
        let mut trainer = Trainer::new(&assignment(100.0, mlp(), 50), digits()).unwrap();
        let points = trace(&mut trainer, 50);
        let worst = points.iter().map(|p| p.train_loss).fold(0.0, |m: f64, l| {
            if l.is_finite() {
                m.max(l)
            } else {
                f64::INFINITY
            }
        });
        assert!(worst > 100.0, "largest loss {worst}");
        let _ = trainer.validation_loss();
    }

    #[test]
    fn momentum_and_full_batch_train() {
        let mut a = assignment(0.05, mlp(), 100);
        a.trainer.optimizer = OptimizerSpec::Sgd { momentum: 0.9 };
        a.trainer.batch_size = 100_000; // capped to the subset: full batch
        a.subset.fraction = 0.25;
        let mut trainer = Trainer::new(&a, digits()).unwrap();
        assert_eq!(trainer.batch_size, trainer.order.len());
        let points = trace(&mut trainer, 100);
        assert!(points[99].train_loss < 0.5 * points[0].train_loss);
    }

    #[test]
    fn invalid_trials_are_rejected() {
        let data = digits();
        let reject = |a: TrialAssignment| {
            matches!(
                Trainer::new(&a, data.clone()),
                Err(WorkerError::InvalidTrial(_))
            )
        };
        assert!(reject(assignment(f64::NAN, mlp(), 1)));
        assert!(reject(assignment(-1.0, mlp(), 1)));
        assert!(reject(assignment(
            0.1,
            ModelSpec::Mlp { hidden: vec![] },
            1
        )));
        let mut a = assignment(0.1, mlp(), 1);
        a.trainer.batch_size = 0;
        assert!(reject(a));
        let mut a = assignment(0.1, mlp(), 1);
        a.trainer.seed = SEED + 1;
        assert!(reject(a), "data prepared for another seed");
        let mut a = assignment(0.1, mlp(), 1);
        a.subset.replicate = 1;
        assert!(reject(a));
        let mut a = assignment(0.1, mlp(), 1);
        a.eval_every = 0;
        assert!(matches!(
            run_trial(&a, data.clone(), &|| false, &mut |_| {}),
            Err(WorkerError::InvalidTrial(_))
        ));
    }

    #[test]
    fn run_trial_honours_should_stop() {
        let data = digits();
        let a = assignment(0.1, ModelSpec::Softmax, 50);
        let asked = Cell::new(0);
        let should_stop = || {
            asked.set(asked.get() + 1);
            asked.get() > 7
        };
        let mut points = Vec::new();
        let run = run_trial(&a, data, &should_stop, &mut |p| points.push(p)).unwrap();
        assert_eq!(
            run,
            TrialRun {
                steps: 7,
                stopped: true
            }
        );
        assert_eq!(points.len(), 7);
        assert_eq!(asked.get(), 8);
        assert_eq!(points.last().map(|p| p.step), Some(7));
    }

    #[test]
    fn run_trial_evaluates_at_multiples_and_the_end() {
        let data = digits();
        for (steps, evaluated) in [(25, vec![10, 20, 25]), (20, vec![10, 20]), (3, vec![3])] {
            let a = assignment(0.1, ModelSpec::Softmax, steps);
            let asked = Cell::new(0);
            let mut points = Vec::new();
            let run = run_trial(
                &a,
                data.clone(),
                &|| {
                    asked.set(asked.get() + 1);
                    false
                },
                &mut |p| points.push(p),
            )
            .unwrap();
            assert_eq!(
                run,
                TrialRun {
                    steps,
                    stopped: false
                }
            );
            assert_eq!(asked.get(), steps);
            assert_eq!(points.len() as u64, steps);
            let got: Vec<u64> = points
                .iter()
                .filter(|p| p.val_loss.is_some())
                .map(|p| p.step)
                .collect();
            assert_eq!(got, evaluated);
            assert!(points
                .iter()
                .filter_map(|p| p.val_loss)
                .all(|v| v.is_finite() && v < 10f64.ln()));
        }
    }
}
