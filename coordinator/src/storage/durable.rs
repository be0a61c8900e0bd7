//! Keeps the sweep in the SQLite store as it runs, and rebuilds it from there: after a crash
//! (`resume`) or for a report from the database alone. The mapping between the sweep's trials
//! and the store's rows lives here.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use lrsweep_proto::domain::Subset;
use lrsweep_proto::spec::SweepSpec;
use tokio::sync::mpsc as queue;
use tracing::{error, info, warn, Span};

use super::store::{Changes, Checkpointer, Store, SweepRow, TrialRow};
use super::workers::WorkerRow;
use crate::sweep::{Change, Sweep, SweepStatus, Trial, TrialRecord};
use crate::CoordinatorError;

/// Events queued for the writer before `sync` waits: backpressure on the hub (and through it on
/// the sessions) once the store falls this far behind (about 30k points).
const QUEUE_EVENTS: usize = 1024;

/// How often the WAL is copied into the database file, off the writer's thread.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(500);

/// A write the file system refused (full, read-only, an I/O error) is retried after this, doubled
/// up to `RETRY_MAX` while it keeps failing.
const RETRY_FIRST: Duration = Duration::from_millis(100);
const RETRY_MAX: Duration = Duration::from_secs(2);

/// Runs once the event's changes are committed (`true`), or once it is known they never will be
/// (`false`: the store failed). Sends the commands that followed from them.
pub type Then = Box<dyn FnOnce(bool) + Send>;

struct Job {
    changes: Changes,
    then: Then,
}

/// The store of one running sweep, written by a thread of its own with group commit: every event
/// queued while a transaction commits goes into the next one, and each event's `then` runs only
/// after its changes are committed. So the commands an event causes still go out only once what
/// caused them is durable, but the sweep's lock is not held through SQLite I/O, and a commit is
/// paid per group rather than per event.
///
/// A write the file system refuses for now (disk full, a read-only file, an I/O error) stalls the
/// writer: it keeps the group in memory and retries it until it commits, so no assignment decided
/// after it goes out meanwhile (stop orders do: the hub sends them at once, and resume decides
/// them again), and the sweep goes on where it was once space returns. Each group is one
/// transaction: nothing is half-written. Any other failed write is remembered and ends the
/// sweep: a coordinator that cannot record what happens can no longer promise to lose nothing.
/// Nothing is written after it.
pub struct Durable {
    sweep_id: String,
    /// None once closed.
    writer: Option<(queue::Sender<Job>, JoinHandle<Store>)>,
    /// Dropping the sender stops the checkpoints; None for an in-memory store.
    checkpoints: Option<(Sender<()>, JoinHandle<()>)>,
    shared: Arc<Shared>,
    /// Worker rows recorded since the last `sync`, written with the sweep's next changes.
    workers: Vec<WorkerRow>,
}

/// What the writer thread tells the hub.
#[derive(Default)]
struct Shared {
    failure: OnceLock<String>,
    /// When the store last refused a write: None if it never did, `Stalled` while it still does.
    stall: Mutex<Option<Stall>>,
    /// Set by `close`: a write still refused then is given up.
    closing: AtomicBool,
}

#[derive(Clone, Copy)]
enum Stall {
    Stalled,
    EndedAt(Instant),
}

impl Durable {
    /// Starts the writer thread on `store`, and the checkpoint thread for a file.
    pub fn new(mut store: Store, sweep_id: String) -> Result<Durable, CoordinatorError> {
        let checkpoints = match store.checkpointer()? {
            Some(checkpointer) => Some(checkpoint_every(checkpointer, CHECKPOINT_EVERY)?),
            None => None,
        };
        let (jobs, mut pending) = queue::channel(QUEUE_EVENTS);
        let shared = Arc::new(Shared::default());
        let thread = {
            let (sweep_id, shared) = (sweep_id.clone(), shared.clone());
            let span = Span::current();
            std::thread::Builder::new()
                .name("lrsweep-store".into())
                .spawn(move || {
                    let _entered = span.enter();
                    write_groups(store, &sweep_id, &mut pending, &shared)
                })
                .map_err(|e| CoordinatorError::io("starting the store writer", e))?
        };
        Ok(Durable {
            sweep_id,
            writer: Some((jobs, thread)),
            checkpoints,
            shared,
            workers: Vec::new(),
        })
    }

    pub fn failure(&self) -> Option<&str> {
        self.shared.failure.get().map(String::as_str)
    }

    /// Until when the store refused writes: now while it still does, None if it never did.
    /// Nothing reached the workers meanwhile, so that time does not count against their leases.
    pub fn stalled_until(&self) -> Option<Instant> {
        let stall = *self.shared.stall.lock().unwrap_or_else(|e| e.into_inner());
        stall.map(|s| match s {
            Stall::Stalled => Instant::now(),
            Stall::EndedAt(at) => at,
        })
    }

    fn fail(&self, e: &CoordinatorError) {
        fail(&self.shared.failure, e);
    }

    /// Queues what the sweep changed since the last call for the writer; `then` runs once it is
    /// committed. Nothing changed and nothing to send: nothing queued. Waits (without blocking
    /// a thread) while the writer's queue is full.
    pub async fn sync(&mut self, sweep: &mut Sweep, then: Option<Then>) {
        let changed = sweep.take_changes();
        let mut changes = rows(&self.sweep_id, sweep, changed);
        changes.workers = std::mem::take(&mut self.workers);
        if changes.is_empty() && then.is_none() {
            return;
        }
        let then = then.unwrap_or_else(|| Box::new(|_| {}));
        let Some((jobs, _)) = &self.writer else {
            then(false);
            return;
        };
        if let Err(queue::error::SendError(job)) = jobs.send(Job { changes, then }).await {
            self.fail(&CoordinatorError::Storage(
                "the store writer stopped".into(),
            ));
            (job.then)(false);
        }
    }

    /// Queues a worker's row for the next `sync`.
    pub fn record_worker(&mut self, row: WorkerRow) {
        self.workers.push(row);
    }

    /// Waits for everything queued to be written and stops the writer; returns its store.
    pub fn close(&mut self) -> Option<Store> {
        let (jobs, thread) = self.writer.take()?;
        self.shared.closing.store(true, Ordering::Relaxed);
        drop(jobs);
        let store = thread.join();
        if let Some((stop, checkpoints)) = self.checkpoints.take() {
            drop(stop);
            let _ = checkpoints.join();
        }
        match store {
            Ok(store) => Some(store),
            Err(_) => {
                self.fail(&CoordinatorError::Storage(
                    "the store writer panicked".into(),
                ));
                None
            }
        }
    }

    /// Records the end of the sweep after everything queued; returns the failure, if any.
    pub fn finish(&mut self, interrupted: bool, report_json: &str) -> Option<String> {
        if let Some(mut store) = self.close() {
            if self.failure().is_none() {
                let status = if interrupted {
                    SweepStatus::Interrupted
                } else {
                    SweepStatus::Completed
                };
                let result = store
                    .set_sweep_status(&self.sweep_id, status)
                    .and_then(|()| store.put_meta(&self.sweep_id, "report", report_json));
                if let Err(e) = result {
                    self.fail(&e);
                }
            }
        }
        self.failure().map(str::to_string)
    }
}

fn fail(failure: &OnceLock<String>, e: &CoordinatorError) {
    error!(event = "storage_failed", error = %e);
    let _ = failure.set(e.to_string());
}

/// Runs `checkpointer` every `period` on a thread of its own until the returned sender drops.
fn checkpoint_every(
    checkpointer: Checkpointer,
    period: Duration,
) -> Result<(Sender<()>, JoinHandle<()>), CoordinatorError> {
    let (stop, stopped) = mpsc::channel::<()>();
    let span = Span::current();
    let thread = std::thread::Builder::new()
        .name("lrsweep-checkpoint".into())
        .spawn(move || {
            let _entered = span.enter();
            while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(period) {
                // Harmless when it fails: the WAL keeps every commit until the next one.
                if let Err(e) = checkpointer.run() {
                    warn!(event = "checkpoint_failed", error = %e);
                }
            }
        })
        .map_err(|e| CoordinatorError::io("starting the checkpoint thread", e))?;
    Ok((stop, thread))
}

/// The writer thread: takes every event queued, commits them in one transaction, then runs their
/// `then`s in order. Returns the store once the queue is closed and drained.
fn write_groups(
    mut store: Store,
    sweep_id: &str,
    pending: &mut queue::Receiver<Job>,
    shared: &Shared,
) -> Store {
    while let Some(first) = pending.blocking_recv() {
        let mut group = vec![first];
        while let Ok(job) = pending.try_recv() {
            group.push(job);
        }
        let (changes, thens): (Vec<Changes>, Vec<Then>) =
            group.into_iter().map(|job| (job.changes, job.then)).unzip();
        let committed = shared.failure.get().is_none()
            && commit_retrying(&mut store, sweep_id, &changes, shared);
        for then in thens {
            then(committed);
        }
    }
    store
}

/// Commits one group, retrying a write the file system refused until it passes (or the store is
/// closed meanwhile); false once the store failed for good.
fn commit_retrying(
    store: &mut Store,
    sweep_id: &str,
    changes: &[Changes],
    shared: &Shared,
) -> bool {
    let (mut retries, mut delay, mut since) = (0u32, RETRY_FIRST, None);
    loop {
        match store.commit(sweep_id, changes) {
            Ok(()) => {
                if let Some(since) = since {
                    let ended = Instant::now();
                    info!(
                        event = "storage_recovered",
                        retries,
                        stalled_ms = ended.duration_since(since).as_millis() as u64
                    );
                    *shared.stall.lock().unwrap_or_else(|e| e.into_inner()) =
                        Some(Stall::EndedAt(ended));
                }
                return true;
            }
            Err(e @ CoordinatorError::DbUnavailable(_))
                if !shared.closing.load(Ordering::Relaxed) =>
            {
                if since.is_none() {
                    since = Some(Instant::now());
                    *shared.stall.lock().unwrap_or_else(|e| e.into_inner()) = Some(Stall::Stalled);
                }
                retries += 1;
                error!(
                    event = "storage_write_failed",
                    error = %e,
                    retries,
                    retry_in_ms = delay.as_millis() as u64,
                    "nothing is dispatched until the write succeeds"
                );
                std::thread::sleep(delay);
                delay = (delay * 2).min(RETRY_MAX);
            }
            Err(e) => {
                fail(&shared.failure, &e);
                return false;
            }
        }
    }
}

/// The sweep's changes as rows: every attempt started, point batch and attempt ended as decided,
/// and one row per trial that changed, as it stands now.
fn rows(sweep_id: &str, sweep: &Sweep, changes: Vec<Change>) -> Changes {
    let mut rows = Changes::default();
    let mut changed = BTreeSet::new();
    for change in changes {
        match change {
            Change::RoundStarted { trials, .. } => changed.extend(trials),
            Change::TrialChanged(trial) => {
                changed.insert(trial);
            }
            Change::AttemptStarted {
                trial,
                attempt,
                worker,
            } => rows.started.push((trial, attempt, worker)),
            Change::PointsAccepted {
                trial,
                attempt,
                points,
            } => rows.points.push((trial, attempt, points)),
            Change::AttemptEnded {
                trial,
                attempt,
                outcome,
                error,
            } => rows.ended.push((trial, attempt, outcome, error)),
        }
    }
    let trials = sweep.trials();
    rows.trials = changed
        .into_iter()
        .map(|id| row(sweep_id, &trials[id as usize]))
        .collect();
    rows
}

fn row(sweep_id: &str, t: &Trial) -> TrialRow {
    TrialRow {
        sweep_id: sweep_id.to_string(),
        id: t.id,
        round: t.round,
        lr: t.lr,
        replicate: t.subset.replicate,
        replicates: t.subset.replicates,
        fraction: t.subset.fraction,
        budget: t.budget,
        status: t.status,
        prune_reason: t.prune_reason,
        attempt: t.attempt,
        steps: t.steps,
        steps_run: t.steps_run,
        worker: t.worker_name.clone(),
        error: t.error.clone(),
        final_loss: t.final_loss(),
    }
}

fn record(store: &Store, row: TrialRow) -> Result<TrialRecord, CoordinatorError> {
    let points = if row.attempt > 0 {
        store.points(&row.sweep_id, row.id, row.attempt)?
    } else {
        Vec::new()
    };
    Ok(TrialRecord {
        id: row.id,
        round: row.round,
        lr: row.lr,
        subset: Subset {
            fraction: row.fraction,
            replicate: row.replicate,
            replicates: row.replicates,
        },
        status: row.status,
        prune_reason: row.prune_reason,
        attempt: row.attempt,
        steps_run: row.steps_run,
        worker_name: row.worker,
        error: row.error,
        settled_loss: row.final_loss,
        points,
    })
}

/// The stored spec of a sweep, parsed.
pub fn stored_spec(sweep: &SweepRow) -> Result<SweepSpec, CoordinatorError> {
    Ok(SweepSpec::from_toml_str(&sweep.spec_toml)?)
}

/// Rebuilds a stored sweep's state machine from its rows and traces.
pub fn load_sweep(store: &Store, sweep: &SweepRow) -> Result<Sweep, CoordinatorError> {
    let records = store
        .trials(&sweep.sweep_id)?
        .into_iter()
        .map(|row| record(store, row))
        .collect::<Result<Vec<_>, _>>()?;
    Sweep::resume(stored_spec(sweep)?, records)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::prune::PruneReason;
    use crate::search::TrialStatus;
    use crate::sweep::Command;
    use lrsweep_proto::domain::TracePoint;
    use lrsweep_proto::spec::RungRule;

    /// Runs the hub's side of a `sync` to completion, as the hub's task would.
    fn block_on<F: std::future::Future>(future: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a test runtime")
            .block_on(future)
    }

    fn spec() -> SweepSpec {
        let mut spec = crate::search::test_support::c2f_spec();
        spec.search.min_lr = 1e-3;
        spec.search.max_lr = 1.0;
        spec.search.rounds = 2;
        crate::search::test_support::coarse(&mut spec).candidates_per_round = 3;
        spec.search.steps = vec![50, 100];
        spec.search.data_fraction = vec![0.5, 1.0];
        spec.search.replicates = 1;
        spec.search.eval_every = 10;
        spec.pruning.rule = RungRule::None;
        spec
    }

    fn points(lr: f64, from: u64, to: u64, budget: u64) -> Vec<TracePoint> {
        let level = 0.1 + (lr.log10() + 1.0).powi(2);
        (from..=to)
            .map(|step| TracePoint {
                step,
                train_loss: level + 1.0 / step as f64,
                lr,
                val_loss: (step % 10 == 0 || step == budget).then_some(level),
            })
            .collect()
    }

    /// Runs `sweep` on one worker, saving as the hub does, until `stop_after` trials completed.
    fn play(sweep: &mut Sweep, durable: &mut Durable, stop_after: usize) {
        let mut done = 0;
        let mut commands = sweep.dispatch();
        block_on(durable.sync(sweep, None));
        while let Some(Command::Assign {
            worker,
            assignment: a,
        }) = commands.pop()
        {
            if done == stop_after {
                // Half a trace, then the coordinator "dies".
                let half = points(a.lr, 1, a.steps / 2, a.steps);
                sweep
                    .on_trace(&worker, a.trial_id, a.attempt, &half)
                    .unwrap();
                block_on(durable.sync(sweep, None));
                return;
            }
            let all = points(a.lr, 1, a.steps, a.steps);
            let mut next = sweep
                .on_trace(&worker, a.trial_id, a.attempt, &all)
                .unwrap();
            next.extend(
                sweep
                    .on_completed(&worker, a.trial_id, a.attempt, a.steps)
                    .unwrap(),
            );
            block_on(durable.sync(sweep, None));
            commands.extend(next);
            done += 1;
        }
    }

    fn fresh_store(spec: &SweepSpec) -> Store {
        with_sweep(Store::open_in_memory().unwrap(), spec)
    }

    /// `store` with sweep "s" of `spec`, running.
    fn with_sweep(mut store: Store, spec: &SweepSpec) -> Store {
        store
            .create_sweep(&SweepRow {
                sweep_id: "s".into(),
                spec_toml: spec.to_toml(),
                status: SweepStatus::Running,
                created_at_ms: 0,
            })
            .unwrap();
        store
    }

    #[test]
    fn a_sweep_resumes_from_the_store_without_rerunning_completed_trials() {
        let spec = spec();
        let mut sweep = Sweep::new(spec.clone());
        sweep.add_worker("w1".into(), "alpha".into(), 1);
        let mut durable = Durable::new(fresh_store(&spec), "s".into()).unwrap();
        // Round 0 has 4 rates; die during the 6th trial (in round 1).
        play(&mut sweep, &mut durable, 5);
        let store = durable.close().unwrap();
        assert!(durable.failure().is_none());

        let row = store.sweep("s").unwrap().unwrap();
        let mut resumed = load_sweep(&store, &row).unwrap();
        assert_eq!(resumed.current_round(), 1);
        let before: Vec<(TrialStatus, u32)> = sweep
            .trials()
            .iter()
            .map(|t| (t.status, t.attempt))
            .collect();
        let after: Vec<(TrialStatus, u32)> = resumed
            .trials()
            .iter()
            .map(|t| (t.status, t.attempt))
            .collect();
        assert_eq!(before.len(), after.len());
        for (b, a) in before.iter().zip(&after) {
            match b.0 {
                // The trial cut off mid-run goes back to the queue, keeping its attempt count.
                TrialStatus::Running => assert_eq!(*a, (TrialStatus::Queued, b.1)),
                _ => assert_eq!(a, b),
            }
        }
        // Completed trials keep their scores (rebuilt from their stored traces).
        for (b, a) in sweep.trials().iter().zip(resumed.trials()) {
            if b.status == TrialStatus::Completed {
                assert_eq!(b.final_loss(), a.final_loss());
            }
        }
        // Finishing the resumed sweep runs only what was left.
        resumed.add_worker("w9".into(), "beta".into(), 1);
        let mut durable = Durable::new(store, "s".into()).unwrap();
        play(&mut resumed, &mut durable, usize::MAX);
        assert!(resumed.is_finished());
        let rerun = resumed.trials().iter().filter(|t| t.attempt > 1).count();
        assert_eq!(rerun, 1);
        assert!(resumed.recommendation().is_some());
    }

    /// The hub sends a stop order before the points that caused it are committed. Whether the
    /// coordinator dies after that commit or before it, the resumed sweep reaches the same
    /// verdict on that trial: from the stored trace, or by running the trial again.
    #[test]
    fn resume_decides_a_stop_again() {
        let spec = spec();
        // The first trial dispatched (the largest rate) trains for 20 steps, then blows up.
        let calm = |a: &lrsweep_proto::domain::TrialAssignment| points(a.lr, 1, 20, a.steps);
        let blowup = |a: &lrsweep_proto::domain::TrialAssignment| -> Vec<TracePoint> {
            (21..=30)
                .map(|step| TracePoint {
                    step,
                    train_loss: 10f64.powi(step as i32 - 18),
                    lr: a.lr,
                    val_loss: None,
                })
                .collect()
        };
        let first = |commands: Vec<Command>| match commands.into_iter().next() {
            Some(Command::Assign { worker, assignment }) => (worker, assignment),
            other => panic!("expected an assignment, got {other:?}"),
        };
        let verdict = |sweep: &Sweep, trial: u64| {
            let t = &sweep.trials()[trial as usize];
            (t.status, t.prune_reason, t.steps)
        };
        for committed in [true, false] {
            let mut live = Sweep::new(spec.clone());
            live.add_worker("w1".into(), "alpha".into(), 1);
            let mut durable = Durable::new(fresh_store(&spec), "s".into()).unwrap();
            let (worker, a) = first(live.dispatch());
            live.on_trace(&worker, a.trial_id, a.attempt, &calm(&a))
                .unwrap();
            block_on(durable.sync(&mut live, None));
            let stopped = live
                .on_trace(&worker, a.trial_id, a.attempt, &blowup(&a))
                .unwrap();
            let stop: Vec<_> = stopped
                .iter()
                .filter(|c| matches!(c, Command::Stop { trial, .. } if *trial == a.trial_id))
                .collect();
            assert_eq!(stop.len(), 1, "the live sweep stops the trial: {stopped:?}");
            if committed {
                block_on(durable.sync(&mut live, None));
            }
            // The coordinator dies here; the worker has the stop order and no longer trains.
            let store = durable.close().unwrap();
            let row = store.sweep("s").unwrap().unwrap();
            let mut resumed = load_sweep(&store, &row).unwrap();
            if !committed {
                // Only the calm points were stored: the trial runs again from its start.
                let t = &resumed.trials()[a.trial_id as usize];
                assert_eq!((t.status, t.attempt), (TrialStatus::Queued, 1));
                resumed.add_worker("w2".into(), "beta".into(), 1);
                let (worker, again) = first(resumed.dispatch());
                assert_eq!((again.trial_id, again.attempt), (a.trial_id, 2));
                resumed
                    .on_trace(&worker, again.trial_id, again.attempt, &calm(&again))
                    .unwrap();
                resumed
                    .on_trace(&worker, again.trial_id, again.attempt, &blowup(&again))
                    .unwrap();
            }
            assert_eq!(
                verdict(&resumed, a.trial_id),
                (TrialStatus::Pruned, Some(PruneReason::Diverged), 30),
                "committed before the crash: {committed}"
            );
            assert_eq!(verdict(&resumed, a.trial_id), verdict(&live, a.trial_id));
        }
    }

    #[test]
    fn a_store_that_disagrees_with_the_spec_is_refused() {
        let spec = spec();
        let mut sweep = Sweep::new(spec.clone());
        sweep.add_worker("w1".into(), "alpha".into(), 1);
        let mut durable = Durable::new(fresh_store(&spec), "s".into()).unwrap();
        play(&mut sweep, &mut durable, 2);
        let store = durable.close().unwrap();
        let mut row = store.sweep("s").unwrap().unwrap();
        let mut other = spec.clone();
        other.search.max_lr = 10.0;
        row.spec_toml = other.to_toml();
        let err = load_sweep(&store, &row).err().expect("refused");
        assert!(err.to_string().contains("cannot resume"), "{err}");
    }

    /// (event, committed) in the order the writer told each event's `then`.
    type Told = Arc<std::sync::Mutex<Vec<(u32, bool)>>>;

    fn told() -> (Told, impl Fn(u32) -> Option<Then>) {
        let log = Arc::new(std::sync::Mutex::new(Vec::new()));
        let tell = {
            let log = log.clone();
            move |event: u32| -> Option<Then> {
                let log = log.clone();
                Some(Box::new(move |committed| {
                    log.lock().unwrap().push((event, committed))
                }))
            }
        };
        (log, tell)
    }

    #[test]
    fn commands_wait_for_the_commit_in_event_order() {
        let spec = spec();
        let mut sweep = Sweep::new(spec.clone());
        sweep.add_worker("w1".into(), "alpha".into(), 1);
        let mut durable = Durable::new(fresh_store(&spec), "s".into()).unwrap();
        let (log, tell) = told();
        let commands = sweep.dispatch();
        block_on(durable.sync(&mut sweep, tell(1)));
        let Some(Command::Assign {
            worker,
            assignment: a,
        }) = commands.first()
        else {
            panic!("one assignment: {commands:?}");
        };
        let trace = points(a.lr, 1, 10, a.steps);
        sweep
            .on_trace(worker, a.trial_id, a.attempt, &trace)
            .unwrap();
        block_on(durable.sync(&mut sweep, tell(2)));
        // Nothing changed, nothing to send: no job at all.
        block_on(durable.sync(&mut sweep, None));
        let store = durable.close().unwrap();
        assert_eq!(*log.lock().unwrap(), vec![(1, true), (2, true)]);
        assert_eq!(store.points("s", a.trial_id, a.attempt).unwrap().len(), 10);
        assert_eq!(
            store.trials("s").unwrap()[a.trial_id as usize].status,
            TrialStatus::Running
        );
    }

    /// Another connection holds the write lock past the busy timeout: the writer's commit fails
    /// with SQLITE_BUSY, a failure that may pass. The group is kept and retried, its `then`
    /// waits, and once the lock is released it commits and is told so; the sweep goes on.
    #[test]
    fn a_write_refused_for_now_is_retried_until_it_commits() {
        let path =
            std::env::temp_dir().join(format!("lrsweep-durable-busy-{}.db", std::process::id()));
        let spec = spec();
        let store = with_sweep(Store::open(&path).unwrap(), &spec);
        let mut durable = Durable::new(store, "s".into()).unwrap();
        let blocker = rusqlite::Connection::open(&path).unwrap();
        blocker.execute_batch("BEGIN IMMEDIATE").unwrap();

        let mut sweep = Sweep::new(spec);
        sweep.add_worker("w1".into(), "alpha".into(), 1);
        let (log, tell) = told();
        sweep.dispatch();
        block_on(durable.sync(&mut sweep, tell(1)));
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while durable.stalled_until().is_none() {
            assert!(
                std::time::Instant::now() < deadline,
                "the writer never stalled"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(log.lock().unwrap().is_empty(), "told before the commit");
        blocker.execute_batch("ROLLBACK").unwrap();

        let store = durable.close().unwrap();
        assert_eq!(durable.failure(), None);
        assert_eq!(*log.lock().unwrap(), vec![(1, true)]);
        assert_eq!(store.trials("s").unwrap().len(), sweep.trials().len());
        drop((store, blocker));
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
        }
    }

    #[test]
    fn after_a_failed_write_nothing_more_is_written_or_confirmed() {
        let spec = spec();
        let path =
            std::env::temp_dir().join(format!("lrsweep-durable-failed-{}.db", std::process::id()));
        let _ = std::fs::remove_file(&path);
        drop(with_sweep(Store::open(&path).unwrap(), &spec));
        // A disk that fails the write of the eleventh point, and only that one: a writer that went
        // on after the failure would store the later points.
        rusqlite::Connection::open(&path)
            .unwrap()
            .execute_batch(
                "CREATE TRIGGER full BEFORE INSERT ON point_batches WHEN NEW.first_step = 11 \
                 BEGIN SELECT RAISE(ABORT, 'disk full'); END",
            )
            .unwrap();
        let mut sweep = Sweep::new(spec.clone());
        sweep.add_worker("w1".into(), "alpha".into(), 1);
        let mut durable = Durable::new(Store::open(&path).unwrap(), "s".into()).unwrap();
        let (log, tell) = told();
        let Some(Command::Assign {
            worker,
            assignment: a,
        }) = sweep.dispatch().pop()
        else {
            panic!("an assignment");
        };
        // The writer may fold queued events into one commit: each waits for its answer here,
        // so that the failure falls between events 2 and 3.
        let answered = |n: usize| {
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
            while log.lock().unwrap().len() < n {
                assert!(
                    std::time::Instant::now() < deadline,
                    "event {n} never answered"
                );
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
        };
        block_on(durable.sync(&mut sweep, tell(1)));
        answered(1);
        for (event, steps) in [(2, 1..=10), (3, 11..=20), (4, 21..=30)] {
            let (from, to) = steps.into_inner();
            sweep
                .on_trace(
                    &worker,
                    a.trial_id,
                    a.attempt,
                    &points(a.lr, from, to, a.steps),
                )
                .unwrap();
            block_on(durable.sync(&mut sweep, tell(event)));
            answered(event as usize);
        }
        // Closed: later events are told at once that they will not be committed.
        sweep.finish_early();
        block_on(durable.sync(&mut sweep, tell(5)));
        let store = durable.close().unwrap();
        assert_eq!(
            *log.lock().unwrap(),
            vec![(1, true), (2, true), (3, false), (4, false), (5, false)],
            "{:?}",
            durable.failure()
        );
        // The store holds what was confirmed and nothing after: not the points of the events
        // after the failure, not the early finish.
        let stored = store.points("s", a.trial_id, a.attempt).unwrap();
        assert_eq!(stored.iter().map(|p| p.step).max(), Some(10), "{stored:?}");
        assert_eq!(stored.len(), 10);
        assert_eq!(
            store.trials("s").unwrap()[a.trial_id as usize].status,
            TrialStatus::Running
        );
        assert_eq!(
            store.sweep("s").unwrap().unwrap().status,
            SweepStatus::Running
        );
        assert!(
            durable.failure().unwrap().contains("disk full"),
            "{:?}",
            durable.failure()
        );
        assert!(durable.finish(true, "{}").is_some());
        drop(store);
        let _ = std::fs::remove_file(&path);
    }
}
