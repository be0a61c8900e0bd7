//! A sweep under fire: real coordinator and worker processes on loopback while random workers
//! and the coordinator are SIGKILLed and restarted, in a seeded order, until the sweep ends.
//! Then the sweep is checked from its files (`sweep_check`). Driven by `src/bin/chaos.rs`
//! (`tests/chaos/run.sh`, the full run) and `tests/chaos.rs` (a short one in `cargo test`).

use std::fmt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use lrsweep_proto::rng::SplitMix64;

use crate::sweep_check::{check_finished, Finished};
use crate::{free_addr, start_coordinator_on, start_retrying_worker, Proc};

/// Coordinator log events that mean the sweep moved on: a kill waits for a few of them, so every
/// incarnation does some work and the sweep ends however many kills there are.
const PROGRESS: [&str; 3] = ["trial_dispatched", "trial_completed", "trial_pruned"];

/// How long the sweep may go without progress, or take to end after the last kill.
const STALL_LIMIT: Duration = Duration::from_secs(120);

pub struct ChaosConfig {
    pub coordinator_bin: String,
    pub worker_bin: String,
    /// Where the spec, database and report go.
    pub dir: PathBuf,
    /// The search spec's TOML: it must plan enough trials to outlast the kills.
    pub spec: String,
    pub seed: u64,
    pub workers: usize,
    pub worker_kills: u32,
    pub coordinator_kills: u32,
    /// `--lease-ms`: how soon a killed worker's trial runs elsewhere.
    pub lease_ms: u64,
}

/// What a run did and what the sweep held at the end.
#[derive(Debug)]
pub struct ChaosSummary {
    pub seed: u64,
    pub worker_kills: u32,
    pub coordinator_kills: u32,
    /// Processes started again after a kill.
    pub restarts: u32,
    pub finished: Finished,
    pub duration: Duration,
}

impl fmt::Display for ChaosSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = &self.finished;
        write!(
            f,
            "seed {}: {} worker kills, {} coordinator kills, {} restarts; {} trials ({} completed), \
             {} attempts ({} lost), {} points; {:.1} s",
            self.seed,
            self.worker_kills,
            self.coordinator_kills,
            self.restarts,
            s.trials,
            s.completed,
            s.attempts,
            s.lost,
            s.points,
            self.duration.as_secs_f64()
        )
    }
}

#[derive(Clone, Copy, Debug)]
enum Target {
    Worker,
    Coordinator,
}

/// The processes of the run and the files they share.
struct Cluster<'a> {
    config: &'a ChaosConfig,
    addr: String,
    args: Vec<String>,
    coordinator: Proc,
    workers: Vec<Proc>,
}

impl Cluster<'_> {
    fn start_coordinator(&self) -> Proc {
        let args: Vec<&str> = self.args.iter().map(String::as_str).collect();
        start_coordinator_on(&self.config.coordinator_bin, &self.addr, &args).0
    }

    fn start_worker(&self, index: usize) -> Proc {
        let name = format!("chaos-{index}");
        start_retrying_worker(&[], &self.config.worker_bin, &self.addr, &name)
    }

    fn progress(&self) -> usize {
        PROGRESS
            .iter()
            .map(|e| self.coordinator.events(e).len())
            .sum()
    }

    /// Waits until the coordinator logged `more` progress events; false if it exited first
    /// (the sweep ended).
    fn wait_for_progress(&mut self, more: usize) -> Result<bool, String> {
        let target = self.progress() + more;
        let deadline = Instant::now() + STALL_LIMIT;
        while self.progress() < target {
            if self
                .coordinator
                .child
                .try_wait()
                .map_err(|e| e.to_string())?
                .is_some()
            {
                return Ok(false);
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "no progress within {STALL_LIMIT:?}: {:#?}",
                    self.coordinator.tail(20)
                ));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok(true)
    }
}

fn kill(proc: &mut Proc) {
    // Already gone is fine: it is gone either way.
    let _ = proc.child.kill();
    let _ = proc.child.wait();
}

/// Runs the sweep under `config`'s kills; checks it once it ended.
pub fn run(config: &ChaosConfig) -> Result<ChaosSummary, String> {
    let started = Instant::now();
    std::fs::create_dir_all(&config.dir).map_err(|e| format!("{}: {e}", config.dir.display()))?;
    let path = |name: &str| config.dir.join(name);
    std::fs::write(path("spec.toml"), &config.spec).map_err(|e| e.to_string())?;
    let (db, report) = (path("sweep.db"), path("report.json"));
    let args = [
        "--spec".into(),
        path("spec.toml").display().to_string(),
        "--db".into(),
        db.display().to_string(),
        "--report".into(),
        report.display().to_string(),
        "--lease-ms".into(),
        config.lease_ms.to_string(),
    ];

    let mut rng = SplitMix64::new(config.seed);
    let mut plan: Vec<Target> = std::iter::repeat_n(Target::Worker, config.worker_kills as usize)
        .chain(std::iter::repeat_n(
            Target::Coordinator,
            config.coordinator_kills as usize,
        ))
        .collect();
    // Fisher-Yates, from the seed.
    for i in (1..plan.len()).rev() {
        plan.swap(i, (rng.next_u64() % (i as u64 + 1)) as usize);
    }

    let addr = free_addr();
    let mut cluster = Cluster {
        config,
        coordinator: start_coordinator_on(
            &config.coordinator_bin,
            &addr,
            &args.iter().map(String::as_str).collect::<Vec<_>>(),
        )
        .0,
        addr,
        args: args.to_vec(),
        workers: Vec::new(),
    };
    cluster.workers = (0..config.workers)
        .map(|i| cluster.start_worker(i))
        .collect();

    let (mut worker_kills, mut coordinator_kills, mut restarts) = (0, 0, 0);
    for (done, target) in plan.iter().enumerate() {
        let gap = 1 + (rng.next_u64() % 3) as usize;
        if !cluster.wait_for_progress(gap)? {
            return Err(format!(
                "the sweep ended after {done} of {} kills: give it more trials",
                plan.len()
            ));
        }
        match target {
            Target::Worker => {
                let index = (rng.next_u64() % config.workers as u64) as usize;
                kill(&mut cluster.workers[index]);
                worker_kills += 1;
                cluster.workers[index] = cluster.start_worker(index);
            }
            Target::Coordinator => {
                kill(&mut cluster.coordinator);
                coordinator_kills += 1;
                cluster.coordinator = cluster.start_coordinator();
            }
        }
        restarts += 1;
    }

    let status = {
        let deadline = Instant::now() + STALL_LIMIT;
        loop {
            if let Some(status) = cluster
                .coordinator
                .child
                .try_wait()
                .map_err(|e| e.to_string())?
            {
                break status;
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "the sweep did not end within {STALL_LIMIT:?} of the last kill: {:#?}",
                    cluster.coordinator.tail(20)
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    if !status.success() {
        return Err(format!(
            "the last coordinator exited with {status}: {:#?}",
            cluster.coordinator.tail(20)
        ));
    }
    for (i, worker) in cluster.workers.iter_mut().enumerate() {
        let (status, _) = worker.wait_output(Duration::from_secs(30));
        if !status.success() {
            return Err(format!(
                "worker {i} exited with {status}: {:#?}",
                worker.tail(20)
            ));
        }
    }
    let finished = check_finished(&config.coordinator_bin, &db, &report)?;
    Ok(ChaosSummary {
        seed: config.seed,
        worker_kills,
        coordinator_kills,
        restarts,
        finished,
        duration: started.elapsed(),
    })
}
