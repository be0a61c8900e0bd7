//! Overhead of command trials through the worker's real trial path (`trials::run`: supervisor,
//! line reader, parser, batcher, the trial's log and outbox), on a current-thread runtime (one
//! core for the worker's side):
//!
//! - spawn → first trace point, and stop order → trial over (the program and its supervisor
//!   exited and reaped), p50 and p99 over `--trials` trials of a trivial program (`sh`, and
//!   `python3` when it is installed);
//! - trace lines per second parsed and forwarded from one program that writes `--lines` lines
//!   as fast as it can (this binary itself, `generate N`).
//!
//! `bench/run-command-bench.sh` builds and runs it; BENCHMARKS.md has the results.

use std::io::Write as _;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use lrsweep_proto::domain::{CommandSpec, Subset, TrialAssignment};
use lrsweep_proto::v1::worker_message::Kind as Up;
use lrsweep_proto::v1::WorkerMessage;
use lrsweep_worker::data_cache::DataCache;
use lrsweep_worker::outbox::Outbox;
use lrsweep_worker::slots::Slots;
use lrsweep_worker::trials::{TrialEnd, Trials};
use tokio_stream::StreamExt;

fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        // The worker starts every program under `<its own binary> supervise`.
        Some("supervise") => return lrsweep_worker::cli::main(),
        Some("generate") => generate(args.get(2).and_then(|n| n.parse().ok()).unwrap_or(0)),
        _ => bench(&args[1..]),
    }
    std::process::ExitCode::SUCCESS
}

fn generate(lines: u64) {
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::with_capacity(1 << 16, stdout.lock());
    for step in 1..=lines {
        let _ = writeln!(
            out,
            "{{\"step\": {step}, \"loss\": {:.6}}}",
            1.0 / step as f64
        );
    }
}

fn flag(args: &[String], name: &str, default: u64) -> u64 {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn assignment(id: u64, steps: u64, command: Vec<String>) -> TrialAssignment {
    let mut spec = CommandSpec::new(command);
    spec.stop_grace_ms = 5_000;
    TrialAssignment {
        trial_id: id,
        attempt: 1,
        round: 0,
        lr: 0.1,
        steps,
        eval_every: steps,
        subset: Subset {
            fraction: 1.0,
            replicate: 0,
            replicates: 1,
        },
        trainer: spec.into(),
    }
}

/// The worker's pieces a trial runs in, with the outbox open onto a stream this bench drains.
struct Worker {
    trials: Trials,
    cache: Arc<DataCache>,
    outbox: Arc<Outbox>,
    slots: Slots,
    points: Arc<Mutex<u64>>,
    first_point: Arc<Mutex<Option<Instant>>>,
}

impl Worker {
    fn new() -> Worker {
        let outbox = Arc::new(Outbox::default());
        // No coordinator to greet: an empty first message, which the count below skips.
        let mut upstream = outbox.open(WorkerMessage::default());
        let points = Arc::new(Mutex::new(0u64));
        let first_point = Arc::new(Mutex::new(None));
        let (count, first) = (points.clone(), first_point.clone());
        tokio::spawn(async move {
            while let Some(message) = upstream.next().await {
                if let Some(Up::Trace(batch)) = message.kind {
                    first.lock().unwrap().get_or_insert_with(Instant::now);
                    *count.lock().unwrap() += batch.points.len() as u64;
                }
            }
        });
        Worker {
            trials: Trials::default(),
            cache: Arc::default(),
            outbox,
            slots: Slots::new(1, Vec::new()),
            points,
            first_point,
        }
    }

    /// Runs `a`; `stop_after_first` orders the stop once its first point is out. Returns
    /// (spawn → first point, stop order → trial over, how it ended).
    async fn run(
        &self,
        a: TrialAssignment,
        stop_after_first: bool,
    ) -> (Duration, Duration, TrialEnd) {
        *self.first_point.lock().unwrap() = None;
        let state = self.trials.add(&a);
        let slot = self.slots.acquire().await.expect("a slot");
        let (id, attempt) = (a.trial_id, a.attempt);
        let start = Instant::now();
        let run = lrsweep_worker::trials::run(
            a,
            state,
            &self.trials,
            self.cache.clone(),
            self.outbox.clone(),
            &slot,
        );
        tokio::pin!(run);
        let mut stop_at = None;
        let end = loop {
            tokio::select! {
                end = &mut run => break end,
                () = tokio::time::sleep(Duration::from_micros(200)), if stop_at.is_none() => {
                    if stop_after_first && self.first_point.lock().unwrap().is_some() {
                        stop_at = Some(Instant::now());
                        self.trials.stop(id, attempt);
                    }
                }
            }
        };
        let done = Instant::now();
        let first = self
            .first_point
            .lock()
            .unwrap()
            .map_or(Duration::ZERO, |t| t - start);
        (first, stop_at.map_or(Duration::ZERO, |s| done - s), end)
    }
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1e3
}

fn bench(args: &[String]) {
    let trials = flag(args, "--trials", 200);
    let lines = flag(args, "--lines", 2_000_000);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(async {
        let worker = Worker::new();
        let line = r#"{"step": 1, "loss": 1.0}"#;
        let programs: Vec<(&str, Vec<String>)> = vec![
            (
                "sh",
                vec![
                    "/bin/sh".into(),
                    "-c".into(),
                    format!("echo '{line}'; exec sleep 60"),
                ],
            ),
            (
                "python3",
                vec![
                    "python3".into(),
                    "-c".into(),
                    format!("import time; print('{line}', flush=True); time.sleep(60)"),
                ],
            ),
        ];
        println!("| program | trials | spawn → first point p50 | p99 | stop → exit p50 | p99 |");
        println!("|---|---|---|---|---|---|");
        for (name, command) in programs {
            let mut first = Vec::new();
            let mut stop = Vec::new();
            for k in 0..trials {
                let (f, s, end) = worker.run(assignment(k, 10, command.clone()), true).await;
                if !matches!(end, TrialEnd::Stopped) {
                    eprintln!("{name}: skipped (not installed?)");
                    break;
                }
                first.push(f);
                stop.push(s);
            }
            if first.is_empty() {
                continue;
            }
            first.sort();
            stop.sort();
            println!(
                "| `{name}` | {} | {:.1} ms | {:.1} ms | {:.1} ms | {:.1} ms |",
                first.len(),
                percentile(&first, 0.5),
                percentile(&first, 0.99),
                percentile(&stop, 0.5),
                percentile(&stop, 0.99),
            );
        }

        let me = std::env::current_exe().expect("own path");
        let generator = vec![
            me.display().to_string(),
            "generate".to_string(),
            lines.to_string(),
        ];
        *worker.points.lock().unwrap() = 0;
        let cpu = cpu_seconds();
        let start = Instant::now();
        let (_, _, end) = worker
            .run(assignment(trials, lines, generator), false)
            .await;
        let wall = start.elapsed().as_secs_f64();
        let cpu = cpu_seconds() - cpu;
        assert!(
            matches!(end, TrialEnd::Completed(_)),
            "the generator's trial completes"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
        let forwarded = *worker.points.lock().unwrap();
        assert_eq!(forwarded, lines, "every line forwarded");
        println!();
        println!("| trace lines | wall | lines/s (wall) | worker CPU | lines per CPU-second |");
        println!("|---|---|---|---|---|");
        println!(
            "| {lines} | {wall:.2} s | {:.0} | {cpu:.2} s | {:.0} |",
            lines as f64 / wall,
            lines as f64 / cpu
        );
    });
}

/// CPU time this process has used (user + system), in seconds.
fn cpu_seconds() -> f64 {
    // SAFETY: getrusage fills the zeroed struct.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut usage);
        usage
    };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 * 1e-6;
    secs(usage.ru_utime) + secs(usage.ru_stime)
}
