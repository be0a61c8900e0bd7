//! The trials a worker process holds, kept across reconnects: each one's stop signal, every
//! point it produced and its outcome, so that after a broken stream the worker can resend
//! whatever the coordinator missed. Also the running of one trial, by the built-in trainer or a
//! command.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use lrsweep_proto::domain::{TracePoint, Trainer, TrialAssignment, TrialId};
use lrsweep_proto::v1::worker_message::Kind as Up;
use lrsweep_proto::v1::{TraceBatch, TrialCompleted, TrialFailed, TrialProgress, WorkerMessage};

use crate::batcher::TraceBatcher;
use crate::command::{self, Placement};
use crate::data_cache::DataCache;
use crate::outbox::{Outbox, UpStream};
use crate::slots::Slot;
use crate::stop::StopSignal;
use crate::trainer::run_trial;
use crate::WorkerError;

/// Finished trials kept for a possible resend after a reconnect; older ones are forgotten.
const FINISHED_KEPT: usize = 16;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

pub fn up(kind: Up) -> WorkerMessage {
    WorkerMessage { kind: Some(kind) }
}

#[derive(Default)]
struct TrialLog {
    points: Vec<TracePoint>,
    /// Completed or failed, once training has ended that way.
    outcome: Option<Up>,
}

pub struct TrialState {
    attempt: u32,
    stop: StopSignal,
    log: Mutex<TrialLog>,
}

impl TrialState {
    /// Sends `points` and records them, under the log's lock so that a resend can never
    /// overtake them on the stream.
    fn publish(&self, trial_id: TrialId, points: Vec<TracePoint>, outbox: &Outbox) {
        let mut log = lock(&self.log);
        log.points.extend_from_slice(&points);
        outbox.send(up(Up::Trace(TraceBatch {
            trial_id,
            attempt: self.attempt,
            points: points.into_iter().map(Into::into).collect(),
        })));
    }

    fn finish(&self, outcome: Up, outbox: &Outbox) {
        let mut log = lock(&self.log);
        outbox.send(up(outcome.clone()));
        log.outcome = Some(outcome);
    }
}

/// Every trial this process holds, by id.
#[derive(Default)]
pub struct Trials {
    states: Mutex<HashMap<TrialId, Arc<TrialState>>>,
    finished: Mutex<VecDeque<TrialId>>,
}

impl Trials {
    pub fn add(&self, assignment: &TrialAssignment) -> Arc<TrialState> {
        let state = Arc::new(TrialState {
            attempt: assignment.attempt,
            stop: StopSignal::default(),
            log: Mutex::default(),
        });
        lock(&self.states).insert(assignment.trial_id, state.clone());
        state
    }

    /// Stops and forgets `attempt` of a trial; a newer attempt of it on this worker (handed back
    /// after a reconnect) is left alone.
    pub fn stop(&self, trial_id: TrialId, attempt: u32) {
        let mut states = lock(&self.states);
        if states.get(&trial_id).is_some_and(|s| s.attempt == attempt) {
            if let Some(state) = states.remove(&trial_id) {
                state.stop.stop();
            }
        }
    }

    pub fn stop_all(&self) {
        for (_, state) in lock(&self.states).drain() {
            state.stop.stop();
        }
    }

    /// Ids of trials still training, for heartbeats.
    pub fn running(&self) -> Vec<TrialId> {
        lock(&self.states)
            .iter()
            .filter(|(_, s)| lock(&s.log).outcome.is_none())
            .map(|(&id, _)| id)
            .collect()
    }

    /// What this process holds, for a (re)registration.
    pub fn progress(&self) -> Vec<TrialProgress> {
        lock(&self.states)
            .iter()
            .map(|(&trial_id, s)| TrialProgress {
                trial_id,
                attempt: s.attempt,
                last_step: lock(&s.log).points.last().map_or(0, |p| p.step),
            })
            .collect()
    }

    fn finished(&self, trial_id: TrialId) {
        let mut finished = lock(&self.finished);
        finished.push_back(trial_id);
        while finished.len() > FINISHED_KEPT {
            if let Some(old) = finished.pop_front() {
                lock(&self.states).remove(&old);
            }
        }
    }

    /// After a reconnect: keeps the trials the coordinator still counts on, resending their
    /// points after the step it has, and their outcome; drops the rest. Opens `outbox` with
    /// `hello` while every kept trial's log is locked, so no new point can slip in ahead of the
    /// resend. Returns how many trials were kept and the session's upstream.
    pub fn resume(
        &self,
        keep: &[TrialProgress],
        outbox: &Arc<Outbox>,
        hello: WorkerMessage,
    ) -> (usize, UpStream) {
        let mut kept: Vec<(TrialId, u64, Arc<TrialState>)> = Vec::new();
        {
            let mut states = lock(&self.states);
            states.retain(|&id, state| {
                let wanted = keep
                    .iter()
                    .find(|k| k.trial_id == id && k.attempt == state.attempt);
                match wanted {
                    Some(k) => {
                        kept.push((id, k.last_step, state.clone()));
                        true
                    }
                    None => {
                        state.stop.stop();
                        false
                    }
                }
            });
        }
        kept.sort_by_key(|(id, _, _)| *id);
        let logs: Vec<MutexGuard<'_, TrialLog>> =
            kept.iter().map(|(_, _, s)| lock(&s.log)).collect();
        let stream = outbox.open(hello);
        for ((trial_id, last_step, state), log) in kept.iter().zip(&logs) {
            let missed: Vec<_> = log
                .points
                .iter()
                .filter(|p| p.step > *last_step)
                .map(|&p| p.into())
                .collect();
            if !missed.is_empty() {
                outbox.send(up(Up::Trace(TraceBatch {
                    trial_id: *trial_id,
                    attempt: state.attempt,
                    points: missed,
                })));
            }
            if let Some(outcome) = &log.outcome {
                outbox.send(up(outcome.clone()));
            }
        }
        (kept.len(), stream)
    }
}

/// How a trial's training ended.
pub enum TrialEnd {
    Completed(u64),
    Stopped,
    /// `permanent`: no other attempt can succeed (`TrialFailed.permanent`).
    Failed {
        error: String,
        permanent: bool,
    },
}

impl TrialEnd {
    /// A failure another attempt may not repeat.
    pub fn failed(error: String) -> TrialEnd {
        TrialEnd::Failed {
            error,
            permanent: false,
        }
    }
}

/// Runs one trial on `slot` to its end and publishes the outcome: the built-in trainer on a
/// blocking thread, a command trial's program under its supervisor.
pub async fn run(
    assignment: TrialAssignment,
    state: Arc<TrialState>,
    trials: &Trials,
    cache: Arc<DataCache>,
    outbox: Arc<Outbox>,
    slot: &Slot,
) -> TrialEnd {
    let (trial_id, attempt) = (assignment.trial_id, assignment.attempt);
    let end = match &assignment.trainer {
        Trainer::Command(spec) => {
            let placement = Placement {
                slot: slot.index,
                device: slot.device.as_deref(),
            };
            let mut publish = |points| state.publish(trial_id, points, &outbox);
            command::run(&assignment, spec, placement, &state.stop, &mut publish).await
        }
        Trainer::BuiltIn(_) => {
            let (state, outbox) = (state.clone(), outbox.clone());
            tokio::task::spawn_blocking(move || train(&assignment, &state, &cache, &outbox))
                .await
                .unwrap_or_else(|join| TrialEnd::Failed {
                    error: format!("trainer panicked: {join}"),
                    permanent: false,
                })
        }
    };
    settle(trial_id, attempt, &end, &state, trials, &outbox);
    end
}

/// Trains one trial with the built-in trainer on this (blocking) thread, streaming its points.
fn train(
    assignment: &TrialAssignment,
    state: &TrialState,
    cache: &DataCache,
    outbox: &Outbox,
) -> TrialEnd {
    let trial_id = assignment.trial_id;
    let result = assignment
        .trainer
        .built_in()
        .ok_or_else(|| WorkerError::InvalidTrial("not a built-in trainer".into()))
        .and_then(|config| cache.get(config))
        .and_then(|data| {
            let mut batcher = TraceBatcher::default();
            let run = run_trial(
                assignment,
                data,
                &|| state.stop.is_stopped(),
                &mut |point| {
                    if let Some(batch) = batcher.push(point) {
                        outbox.wait_for_room(&state.stop);
                        state.publish(trial_id, batch, outbox);
                    }
                },
            )?;
            if let Some(batch) = batcher.take() {
                state.publish(trial_id, batch, outbox);
            }
            Ok(run)
        });
    match result {
        Ok(run) if run.stopped => TrialEnd::Stopped,
        Ok(run) => TrialEnd::Completed(run.steps),
        Err(e) => TrialEnd::Failed {
            permanent: e.is_permanent(),
            error: e.to_string(),
        },
    }
}

/// Publishes how a trial ended; a stopped trial needs no word, the coordinator stopped it.
fn settle(
    trial_id: TrialId,
    attempt: u32,
    end: &TrialEnd,
    state: &TrialState,
    trials: &Trials,
    outbox: &Outbox,
) {
    let outcome = match end {
        TrialEnd::Completed(steps) => Up::Completed(TrialCompleted {
            trial_id,
            attempt,
            steps: *steps,
        }),
        TrialEnd::Failed { error, permanent } => Up::Failed(TrialFailed {
            trial_id,
            attempt,
            error: error.clone(),
            permanent: *permanent,
        }),
        TrialEnd::Stopped => {
            trials.stop(trial_id, attempt);
            return;
        }
    };
    state.finish(outcome, outbox);
    trials.finished(trial_id);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outbox::MAX_MESSAGE_POINTS;
    use lrsweep_proto::domain::{Subset, TrainerConfig};
    use lrsweep_proto::v1::Hello;
    use tokio_stream::StreamExt;

    #[tokio::test]
    async fn a_long_resend_goes_in_messages_the_coordinator_takes() {
        let trials = Trials::default();
        let outbox = Arc::new(Outbox::default());
        let assignment = TrialAssignment {
            trial_id: 7,
            attempt: 2,
            round: 0,
            lr: 0.1,
            steps: 10_000,
            eval_every: 100,
            subset: Subset {
                fraction: 1.0,
                replicate: 0,
                replicates: 1,
            },
            trainer: TrainerConfig::default().into(),
        };
        let state = trials.add(&assignment);
        // Trained while disconnected: the points are only in the log.
        let points: Vec<TracePoint> = (1..=10_000)
            .map(|step| TracePoint {
                step,
                train_loss: 1.0 / step as f64,
                lr: 0.1,
                val_loss: None,
            })
            .collect();
        state.publish(7, points, &outbox);
        let keep = [TrialProgress {
            trial_id: 7,
            attempt: 2,
            last_step: 1_000,
        }];
        let hello = up(Up::Hello(Hello {
            worker_id: "w1".into(),
        }));
        let (kept, mut stream) = trials.resume(&keep, &outbox, hello);
        assert_eq!(kept, 1);
        outbox.close();
        assert!(matches!(
            stream.next().await.unwrap().kind,
            Some(Up::Hello(_))
        ));
        let mut steps = Vec::new();
        while let Some(message) = stream.next().await {
            let Some(Up::Trace(batch)) = message.kind else {
                panic!("only the resend follows the hello")
            };
            assert_eq!((batch.trial_id, batch.attempt), (7, 2));
            assert!(
                batch.points.len() <= MAX_MESSAGE_POINTS,
                "{}",
                batch.points.len()
            );
            steps.extend(batch.points.iter().map(|p| p.step));
        }
        assert_eq!(steps, (1_001..=10_000).collect::<Vec<u64>>());
    }
}
