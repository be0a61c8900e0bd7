//! The trials a worker process holds, kept across reconnects: each one's stop flag, every point
//! it produced and its outcome, so that after a broken stream the worker can resend whatever the
//! coordinator missed. Also the outbox (the current stream, if any) and the training thread.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use lrsweep_proto::domain::{TracePoint, TrainerConfig, TrialAssignment, TrialId};
use lrsweep_proto::v1::worker_message::Kind as Up;
use lrsweep_proto::v1::{TraceBatch, TrialCompleted, TrialFailed, TrialProgress, WorkerMessage};
use tokio::sync::mpsc;

use crate::trainer::{run_trial, PreparedData};
use crate::WorkerError;

/// Points are sent in batches of at most this many...
const BATCH_POINTS: usize = 32;
/// ...or after this long, so the coordinator sees a divergence within milliseconds.
const BATCH_AGE: Duration = Duration::from_millis(5);
/// Finished trials kept for a possible resend after a reconnect; older ones are forgotten.
const FINISHED_KEPT: usize = 16;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

pub fn up(kind: Up) -> WorkerMessage {
    WorkerMessage { kind: Some(kind) }
}

/// The stream of the current session, or none while disconnected. Messages sent while none is
/// open are dropped: the trial logs keep what must be resent.
#[derive(Default)]
pub struct Outbox(Mutex<Option<mpsc::UnboundedSender<WorkerMessage>>>);

impl Outbox {
    pub fn send(&self, message: WorkerMessage) -> bool {
        lock(&self.0)
            .as_ref()
            .is_some_and(|tx| tx.send(message).is_ok())
    }

    pub fn open(&self, tx: mpsc::UnboundedSender<WorkerMessage>) {
        *lock(&self.0) = Some(tx);
    }

    pub fn close(&self) {
        *lock(&self.0) = None;
    }
}

#[derive(Default)]
struct TrialLog {
    points: Vec<TracePoint>,
    /// Completed or failed, once training has ended that way.
    outcome: Option<Up>,
}

pub struct TrialState {
    attempt: u32,
    stop: AtomicBool,
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
            stop: AtomicBool::new(false),
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
                state.stop.store(true, Ordering::Relaxed);
            }
        }
    }

    pub fn stop_all(&self) {
        for (_, state) in lock(&self.states).drain() {
            state.stop.store(true, Ordering::Relaxed);
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
    /// points after the step it has, and their outcome; drops the rest. Opens `outbox` while
    /// every kept trial's log is locked, so no new point can slip in ahead of the resend.
    pub fn resume(
        &self,
        keep: &[TrialProgress],
        outbox: &Outbox,
        tx: mpsc::UnboundedSender<WorkerMessage>,
    ) -> usize {
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
                        state.stop.store(true, Ordering::Relaxed);
                        false
                    }
                }
            });
        }
        kept.sort_by_key(|(id, _, _)| *id);
        let logs: Vec<MutexGuard<'_, TrialLog>> =
            kept.iter().map(|(_, _, s)| lock(&s.log)).collect();
        outbox.open(tx);
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
        kept.len()
    }
}

/// Prepared datasets, shared by all trials with the same data settings.
#[derive(Default)]
pub struct DataCache(Mutex<HashMap<String, Arc<PreparedData>>>);

impl DataCache {
    pub fn get(&self, trainer: &TrainerConfig) -> Result<Arc<PreparedData>, WorkerError> {
        let key = format!(
            "{}|{}|{}|{}",
            serde_json::to_string(&trainer.dataset).unwrap_or_default(),
            trainer.seed,
            trainer.validation_fraction,
            trainer.standardize
        );
        let mut cache = lock(&self.0);
        if let Some(data) = cache.get(&key) {
            return Ok(data.clone());
        }
        let data = Arc::new(PreparedData::prepare(trainer)?);
        cache.insert(key, data.clone());
        Ok(data)
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

/// Trains one trial on this (blocking) thread, streaming its points in small batches, then
/// publishes the outcome. A panic in the trainer is caught by the caller's thread join.
pub fn train(
    assignment: &TrialAssignment,
    state: &TrialState,
    trials: &Trials,
    cache: &DataCache,
    outbox: &Outbox,
) -> TrialEnd {
    let (trial_id, attempt) = (assignment.trial_id, assignment.attempt);
    let result = cache
        .get(&assignment.trainer)
        .and_then(|data| {
            let mut batch: Vec<TracePoint> = Vec::with_capacity(BATCH_POINTS);
            let mut oldest = Instant::now();
            let run = run_trial(
                assignment,
                data,
                &|| state.stop.load(Ordering::Relaxed),
                &mut |point| {
                    if batch.is_empty() {
                        oldest = Instant::now();
                    }
                    batch.push(point);
                    // Anything the coordinator may act on at once goes out at once.
                    let urgent = !point.train_loss.is_finite() || point.val_loss.is_some();
                    if urgent || batch.len() >= BATCH_POINTS || oldest.elapsed() >= BATCH_AGE {
                        state.publish(trial_id, std::mem::take(&mut batch), outbox);
                    }
                },
            )?;
            if !batch.is_empty() {
                state.publish(trial_id, batch, outbox);
            }
            Ok(run)
        })
        .map_err(|e| TrialEnd::Failed {
            permanent: e.is_permanent(),
            error: e.to_string(),
        });
    let end = match result {
        Ok(run) if run.stopped => TrialEnd::Stopped,
        Ok(run) => TrialEnd::Completed(run.steps),
        Err(failed) => failed,
    };
    settle(trial_id, attempt, &end, state, trials, outbox);
    end
}

/// Publishes how a trial ended; a stopped trial needs no word, the coordinator stopped it.
pub fn settle(
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
