//! Search efficiency (BENCHMARKS.md, "Search efficiency"): how many training steps each search
//! strategy spends, and how good the rate it recommends is, against an exhaustive fine grid.
//!
//! For each problem and each trainer seed (the seed draws the validation split, the replicate
//! subsets, the initialisation and the minibatch order):
//!
//! 1. Ground truth: every rate of the grid 1e-7..10 at ratio 1.25 (84 rates) trained for the
//!    full budget on the whole training split (replicate 0 of 1), no pruning at all; its loss is
//!    the validation loss after the last step (a non-finite loss counts as +inf; a run whose
//!    training loss turns non-finite is not trained further, as its end is NaN anyway). L* is
//!    the best of them, and the grid's steps are 84 × the full budget.
//! 2. Every strategy runs through the product's own `Sweep` with the real trainer in this
//!    process (`run_in_process`, 2 simulated workers): total steps from the report, the
//!    recommended `best_lr`, and its quality = the validation loss of a fresh full-budget run at
//!    `best_lr` (the same measurement as the ground truth) / L*. A hit is a quality ≤ 1.02.
//! 3. With `--coordinator-bin` and `--worker-bin`, the same spec also runs as real processes (the
//!    coordinator with `--local-workers 2`), for the wall time with 2 workers.
//!
//! Prints a table per problem (every seed and the median) and a summary; writes everything,
//! including the ground-truth curves and the one-trial spec files the Optuna peer
//! (bench/optuna_peer.py) trains with, to `--out`. Run by bench/run-search-bench.sh.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Instant;

use lrsweep_coordinator::report::Report;
use lrsweep_coordinator::search::build_strategy;
use lrsweep_proto::spec::SweepSpec;
use lrsweep_tests::bench_support::{full_loss, median};
use lrsweep_tests::local::run_in_process;
use lrsweep_worker::one_trial::OneTrial;
use lrsweep_worker::trainer::PreparedData;
use serde_json::{json, Value};

/// A recommended rate within this factor of the grid's best loss is a hit.
const HIT: f64 = 1.02;
/// The budget for the default strategy: this share of the grid's steps.
const STEP_TARGET_PCT: f64 = 8.0;
const MIN_LR: f64 = 1e-7;
const MAX_LR: f64 = 10.0;
const RESOLUTION: f64 = 1.25;

/// A benchmark problem: its `[trainer]` table (without the seed) and its search budgets.
struct Problem {
    name: &'static str,
    about: &'static str,
    trainer: &'static str,
    /// Full budget: the grid's, random search's and the quality runs' steps.
    full_steps: u64,
    eval_every: u64,
    /// `[search]` budget lines of the coarse-to-fine run.
    c2f_budget: &'static str,
    /// `[search]` budget lines of the range test's refinement.
    refine_budget: &'static str,
}

/// Coarse-to-fine's defaults (examples/coarse-to-fine.toml), spelled out.
const DIGITS_C2F_BUDGET: &str = "rounds = 3\ncandidates_per_round = 5\nsteps = [50, 300, 1000]\n\
                                 data_fraction = [1.0]\nreplicates = 1\neval_every = 25\n";
/// examples/range-then-refine.toml.
const DIGITS_REFINE_BUDGET: &str =
    "rounds = 3\ncandidates_per_round = 5\nsteps = [100, 500, 1000]\n\
                                    data_fraction = [1.0]\nreplicates = 2\neval_every = 25\n";

const PROBLEMS: [Problem; 3] = [
    Problem {
        name: "digits-softmax",
        about: "softmax regression on the bundled digits, SGD batch 32, 1,000 steps",
        trainer: "dataset = { kind = \"digits\" }\n\
                  model = { kind = \"softmax\", intercept = true }\n\
                  optimizer = { kind = \"sgd\", momentum = 0.0 }\n\
                  batch_size = 32\n\
                  validation_fraction = 0.2\n",
        full_steps: 1000,
        eval_every: 25,
        c2f_budget: DIGITS_C2F_BUDGET,
        refine_budget: DIGITS_REFINE_BUDGET,
    },
    Problem {
        name: "digits-mlp",
        about: "MLP 64-64 ReLU on the bundled digits, SGD batch 32, 1,000 steps",
        trainer: "dataset = { kind = \"digits\" }\n\
                  model = { kind = \"mlp\", hidden = [64, 64], activation = \"relu\" }\n\
                  optimizer = { kind = \"sgd\", momentum = 0.0 }\n\
                  batch_size = 32\n\
                  validation_fraction = 0.2\n",
        full_steps: 1000,
        eval_every: 25,
        c2f_budget: DIGITS_C2F_BUDGET,
        refine_budget: DIGITS_REFINE_BUDGET,
    },
    Problem {
        name: "least-squares",
        about: "full-batch GD on synthetic least squares (n 500, d 20, condition 100, noise 0.1; \
                diverges above 2/λ_max), 300 steps",
        trainer: "dataset = { kind = \"synthetic-least-squares\", n = 500, d = 20, \
                  condition_number = 100.0, noise = 0.1 }\n\
                  model = { kind = \"linear\", intercept = false }\n\
                  optimizer = { kind = \"sgd\" }\n\
                  full_batch = true\n\
                  standardize = false\n",
        full_steps: 300,
        eval_every: 20,
        // examples/least-squares.toml: the whole training split in every trial (a subset has a
        // different Hessian), one replicate (full batch is deterministic).
        c2f_budget: "rounds = 3\ncandidates_per_round = 5\nsteps = [20, 60, 300]\n\
                     data_fraction = [1.0]\nreplicates = 1\neval_every = 20\n",
        refine_budget: "rounds = 3\ncandidates_per_round = 5\nsteps = [100, 200, 300]\n\
                        data_fraction = [1.0]\nreplicates = 1\neval_every = 20\n",
    },
];

/// The strategies compared, in table order.
const STRATEGIES: [(&str, &str); 6] = [
    ("c2f", "coarse-to-fine (dominated pruning)"),
    ("c2f-noprune", "coarse-to-fine, rule none"),
    ("grid", "grid 1.25, full budget, default pruning"),
    ("random", "random log-uniform, c2f's rate count"),
    ("range", "range test (100 steps × 2 shards)"),
    ("range-refine", "range test + coarse-to-fine refine"),
];

struct Args {
    seeds: Vec<u64>,
    problems: Vec<String>,
    strategies: Vec<String>,
    out: Option<PathBuf>,
    spec_dir: PathBuf,
    threads: usize,
    coordinator_bin: Option<PathBuf>,
    worker_bin: Option<PathBuf>,
}

fn parse_args() -> Args {
    let mut args = Args {
        seeds: (0..5).collect(),
        problems: PROBLEMS.iter().map(|p| p.name.to_string()).collect(),
        strategies: STRATEGIES.iter().map(|s| s.0.to_string()).collect(),
        out: None,
        spec_dir: std::env::temp_dir().join("lrsweep-bench-search"),
        threads: 2,
        coordinator_bin: None,
        worker_bin: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = |name: &str| -> String {
            it.next()
                .unwrap_or_else(|| usage(&format!("{name} needs a value")))
        };
        match flag.as_str() {
            "--seeds" => {
                let v = value("--seeds");
                args.seeds = v
                    .split(',')
                    .map(|s| s.trim().parse().ok())
                    .collect::<Option<Vec<u64>>>()
                    .filter(|s| !s.is_empty())
                    .unwrap_or_else(|| usage("--seeds needs a comma-separated list of numbers"));
            }
            "--problems" => {
                let v = value("--problems");
                args.problems = v.split(',').map(|s| s.trim().to_string()).collect();
                for p in &args.problems {
                    if !PROBLEMS.iter().any(|q| q.name == p) {
                        usage(&format!("unknown problem {p}"));
                    }
                }
            }
            "--strategies" => {
                let v = value("--strategies");
                args.strategies = v.split(',').map(|s| s.trim().to_string()).collect();
                for s in &args.strategies {
                    if !STRATEGIES.iter().any(|q| q.0 == s) {
                        usage(&format!("unknown strategy {s}"));
                    }
                }
            }
            "--out" => args.out = Some(value("--out").into()),
            "--spec-dir" => args.spec_dir = value("--spec-dir").into(),
            "--threads" => {
                args.threads = value("--threads")
                    .parse()
                    .ok()
                    .filter(|&t| t >= 1)
                    .unwrap_or_else(|| usage("--threads needs a whole number ≥ 1"))
            }
            "--coordinator-bin" => args.coordinator_bin = Some(value("--coordinator-bin").into()),
            "--worker-bin" => args.worker_bin = Some(value("--worker-bin").into()),
            "-h" | "--help" => usage(""),
            other => usage(&format!("unknown argument {other}")),
        }
    }
    if args.coordinator_bin.is_some() != args.worker_bin.is_some() {
        usage("--coordinator-bin and --worker-bin go together");
    }
    args
}

fn usage(why: &str) -> ! {
    if !why.is_empty() {
        eprintln!("bench-search: {why}");
    }
    eprintln!(
        "usage: bench-search [--seeds 0,1,2,3,4] [--problems digits-softmax,digits-mlp,least-squares]\n\
         \x20                   [--strategies c2f,c2f-noprune,grid,random,range,range-refine]\n\
         \x20                   [--out FILE.json] [--spec-dir DIR] [--threads N]\n\
         \x20                   [--coordinator-bin PATH --worker-bin PATH]"
    );
    std::process::exit(2)
}

impl Problem {
    fn trainer_table(&self, seed: u64) -> String {
        format!("[trainer]\n{}seed = {seed}\n", self.trainer)
    }

    /// The spec file `lrsweep-worker train` reads for the full-budget runs (the Optuna peer).
    fn one_trial_spec(&self, seed: u64) -> String {
        format!(
            "# bench-search: {} (seed {seed}); one full-budget trial per rate\n\
             [search]\nsteps = [{}]\neval_every = {}\n\n{}",
            self.name,
            self.full_steps,
            self.eval_every,
            self.trainer_table(seed)
        )
    }

    /// The sweep spec of `strategy` for `seed`; `random_trials` sizes the random search.
    fn sweep_spec(&self, strategy: &str, seed: u64, random_trials: u32) -> String {
        let range = format!("min_lr = {MIN_LR:e}\nmax_lr = {MAX_LR:.1}\n");
        let full = format!(
            "steps = [{}]\ndata_fraction = [1.0]\nreplicates = 1\neval_every = {}\n",
            self.full_steps, self.eval_every
        );
        let (search, pruning) = match strategy {
            "c2f" => (
                format!(
                    "strategy = \"coarse-to-fine\"\n{range}resolution = {RESOLUTION}\n{}",
                    self.c2f_budget
                ),
                String::new(),
            ),
            "c2f-noprune" => (
                format!(
                    "strategy = \"coarse-to-fine\"\n{range}resolution = {RESOLUTION}\n{}",
                    self.c2f_budget
                ),
                "rule = \"none\"\n".to_string(),
            ),
            "grid" => (
                format!("strategy = \"grid\"\n{range}resolution = {RESOLUTION}\n{full}"),
                String::new(),
            ),
            "random" => (
                format!(
                    "strategy = \"random\"\n{range}random_trials = {random_trials}\nseed = {seed}\n{full}"
                ),
                String::new(),
            ),
            "range" => (
                format!(
                    "strategy = \"range-test\"\n{range}range_steps = 100\nramp = \"exponential\"\n\
                     shards = 2\nrefine = false\n"
                ),
                String::new(),
            ),
            "range-refine" => (
                format!(
                    "strategy = \"range-test\"\n{range}range_steps = 100\nramp = \"exponential\"\n\
                     shards = 2\nrefine = true\n{}",
                    self.refine_budget
                ),
                String::new(),
            ),
            other => unreachable!("unknown strategy {other}"),
        };
        format!(
            "# bench-search: {} (seed {seed}), strategy {strategy}\n[search]\n{search}\n[pruning]\n{pruning}\n{}",
            self.name,
            self.trainer_table(seed)
        )
    }
}

/// `full_loss` at every rate, on `threads` threads.
fn full_losses(
    trial: &OneTrial,
    data: &Arc<PreparedData>,
    lrs: &[f64],
    threads: usize,
) -> Vec<f64> {
    let mut losses = vec![f64::NAN; lrs.len()];
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                scope.spawn(move || {
                    (t..lrs.len())
                        .step_by(threads)
                        .map(|i| (i, full_loss(trial, data, lrs[i])))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        for handle in handles {
            for (i, loss) in handle.join().expect("a ground-truth thread panicked") {
                losses[i] = loss;
            }
        }
    });
    losses
}

fn finite(v: f64) -> Value {
    if v.is_finite() {
        json!(v)
    } else {
        Value::Null
    }
}

/// The coordinator with 2 local worker processes on `spec_path`: (wall seconds, report).
fn process_run(
    coordinator: &Path,
    worker: &Path,
    spec_path: &Path,
) -> Result<(f64, Value), String> {
    let base = spec_path.with_extension("");
    let db = base.with_extension("db");
    let report = base.with_extension("report.json");
    let cleanup = || {
        for suffix in ["", "-wal", "-shm", "-journal"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", db.display()));
        }
    };
    cleanup();
    let _ = std::fs::remove_file(&report);
    let started = Instant::now();
    let status = Command::new(coordinator)
        .arg("--spec")
        .arg(spec_path)
        .arg("--db")
        .arg(&db)
        .arg("--report")
        .arg(&report)
        .args([
            "--listen",
            "127.0.0.1:0",
            "--local-workers",
            "2",
            "--log-format",
            "json",
        ])
        .arg("--worker-bin")
        .arg(worker)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map_err(|e| format!("starting {}: {e}", coordinator.display()))?;
    let wall = started.elapsed().as_secs_f64();
    cleanup();
    if !status.success() {
        return Err(format!("coordinator exited with {status}"));
    }
    let text = std::fs::read_to_string(&report).map_err(|e| format!("reading report: {e}"))?;
    let _ = std::fs::remove_file(&report);
    let value = serde_json::from_str(&text).map_err(|e| format!("parsing report: {e}"))?;
    Ok((wall, value))
}

/// Distinct (round, rate) pairs of a report: the candidates it trained.
fn candidates(report: &Report) -> u32 {
    let mut seen: Vec<(u32, u64)> = report
        .trials
        .iter()
        .map(|t| (t.round, t.lr.to_bits()))
        .collect();
    seen.sort_unstable();
    seen.dedup();
    seen.len() as u32
}

struct Measured {
    strategy: &'static str,
    seed: u64,
    steps: u64,
    pct: f64,
    quality: f64,
    wall: f64,
    proc_wall: Option<f64>,
}

fn machine() -> Value {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|s| s.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    json!({ "cpu": cpu, "cores": cores, "os": std::env::consts::OS })
}

fn main() {
    let args = parse_args();
    std::fs::create_dir_all(&args.spec_dir)
        .unwrap_or_else(|e| panic!("creating {}: {e}", args.spec_dir.display()));
    // Absolute, so the spec paths in the results work from any directory.
    let spec_dir = std::fs::canonicalize(&args.spec_dir).unwrap_or_else(|_| args.spec_dir.clone());
    let procs = args
        .coordinator_bin
        .as_deref()
        .zip(args.worker_bin.as_deref());
    let started = Instant::now();
    let mut problems_out = Vec::new();
    let mut summary: Vec<String> = Vec::new();

    for problem in PROBLEMS
        .iter()
        .filter(|p| args.problems.iter().any(|n| n == p.name))
    {
        eprintln!("== {}: {}", problem.name, problem.about);
        let mut seeds_out = Vec::new();
        let mut by_strategy: HashMap<&str, Vec<Measured>> = HashMap::new();
        let mut grid_steps = 0;
        let mut grid_rates = 0;

        for &seed in &args.seeds {
            // Ground truth: the exhaustive grid, full budget, whole training split, no pruning.
            let one_spec = problem.one_trial_spec(seed);
            let one_path = spec_dir.join(format!("{}-seed{seed}.toml", problem.name));
            std::fs::write(&one_path, &one_spec)
                .unwrap_or_else(|e| panic!("writing {}: {e}", one_path.display()));
            let trial = OneTrial::from_spec_text(&one_spec, None, None, None)
                .expect("the one-trial spec is valid");
            let data = Arc::new(
                PreparedData::prepare(trial.trainer.built_in().expect("a built-in trainer"))
                    .expect("data prepares"),
            );
            let grid_spec = SweepSpec::from_toml_str(&problem.sweep_spec("grid", seed, 1))
                .expect("the grid spec is valid");
            let lrs = build_strategy(&grid_spec).first_round().lrs;
            grid_rates = lrs.len();
            grid_steps = lrs.len() as u64 * problem.full_steps;
            let t0 = Instant::now();
            let losses = full_losses(&trial, &data, &lrs, args.threads);
            let gt_seconds = t0.elapsed().as_secs_f64();
            let (best_i, &best_loss) = losses
                .iter()
                .enumerate()
                .min_by(|a, b| a.1.total_cmp(b.1))
                .expect("the grid has rates");
            let best_lr = lrs[best_i];
            // How many grid rates a search could land on and still hit: a narrow band makes the
            // 2% target a matter of luck as much as of search.
            let within = losses.iter().filter(|&&l| l <= HIT * best_loss).count();
            let lambda = problem.name.eq("least-squares").then(|| data.lambda_max());
            eprintln!(
                "   seed {seed}: grid {} rates x {} steps in {gt_seconds:.1}s; L* = {best_loss:.5} at lr {best_lr:.4e}, {within} rates within 2%{}",
                lrs.len(),
                problem.full_steps,
                lambda.map_or(String::new(), |l| format!(
                    " (divergence threshold 2/λ_max = {:.4})",
                    2.0 / l
                ))
            );

            let mut cache: HashMap<u64, f64> = lrs
                .iter()
                .zip(&losses)
                .map(|(l, v)| (l.to_bits(), *v))
                .collect();
            let mut quality_of = |lr: f64| -> f64 {
                let loss = *cache
                    .entry(lr.to_bits())
                    .or_insert_with(|| full_loss(&trial, &data, lr));
                loss / best_loss
            };

            let mut runs = Vec::new();
            let mut c2f_candidates = 16;
            let chosen = STRATEGIES
                .iter()
                .map(|s| s.0)
                .filter(|s| args.strategies.iter().any(|c| c == s));
            for strategy in chosen {
                let text = problem.sweep_spec(strategy, seed, c2f_candidates);
                let spec_path =
                    spec_dir.join(format!("{}-seed{seed}-{strategy}.toml", problem.name));
                std::fs::write(&spec_path, &text)
                    .unwrap_or_else(|e| panic!("writing {}: {e}", spec_path.display()));
                let spec = SweepSpec::from_toml_str(&text)
                    .unwrap_or_else(|e| panic!("{strategy} spec: {e}\n{text}"));
                let t0 = Instant::now();
                let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    run_in_process(&spec, 2)
                }));
                let wall = t0.elapsed().as_secs_f64();
                let report = match outcome {
                    Ok((_, report)) => report,
                    Err(_) => {
                        eprintln!("   seed {seed} {strategy}: the in-process sweep panicked");
                        runs.push(json!({ "strategy": strategy, "error": "panicked" }));
                        continue;
                    }
                };
                if strategy == "c2f" {
                    c2f_candidates = candidates(&report).max(1);
                }
                let pct = 100.0 * report.total_steps as f64 / grid_steps as f64;
                let rec = report.recommendation.as_ref();
                let quality = rec.map_or(f64::INFINITY, |r| quality_of(r.best_lr));
                let extra_quality = |lr: Option<f64>, q: &mut dyn FnMut(f64) -> f64| {
                    lr.map_or(Value::Null, |lr| finite(q(lr)))
                };
                let steep_quality = extra_quality(rec.and_then(|r| r.steep_lr), &mut quality_of);
                let valley_quality = extra_quality(rec.and_then(|r| r.valley_lr), &mut quality_of);
                let proc = procs.map(|(c, w)| process_run(c, w, &spec_path));
                let proc_json = match &proc {
                    None => Value::Null,
                    Some(Ok((wall, rep))) => {
                        let lr = rep["best_lr"].as_f64();
                        json!({
                            "wall_s": wall,
                            "total_steps": rep["total_steps"],
                            "best_lr": rep["best_lr"],
                            "quality": lr.map_or(Value::Null, |lr| finite(quality_of(lr))),
                        })
                    }
                    Some(Err(e)) => {
                        eprintln!("   seed {seed} {strategy}: process run failed: {e}");
                        json!({ "error": e })
                    }
                };
                let proc_wall = proc.as_ref().and_then(|r| r.as_ref().ok()).map(|r| r.0);
                eprintln!(
                    "   seed {seed} {strategy:<12} steps {:>6} ({pct:5.2}%)  best_lr {:<10}  quality {quality:.4}{}  {wall:.2}s{}",
                    report.total_steps,
                    rec.map_or("none".into(), |r| format!("{:.3e}", r.best_lr)),
                    if quality <= HIT { " hit" } else { "    " },
                    proc_wall.map_or(String::new(), |w| format!("  procs {w:.2}s")),
                );
                runs.push(json!({
                    "strategy": strategy,
                    "spec": text,
                    "total_steps": report.total_steps,
                    "steps_pct": pct,
                    "best_lr": rec.map(|r| r.best_lr),
                    "best_score": rec.map(|r| r.best_score),
                    "max_stable_lr": rec.map(|r| r.max_stable_lr),
                    "steep_lr": rec.and_then(|r| r.steep_lr),
                    "valley_lr": rec.and_then(|r| r.valley_lr),
                    "quality": finite(quality),
                    "hit": quality <= HIT,
                    "steep_quality": steep_quality,
                    "valley_quality": valley_quality,
                    "rounds": report.rounds,
                    "trials": report.trials.len(),
                    // What each trial did: [round, lr, status, steps, final loss].
                    "trial_log": report
                        .trials
                        .iter()
                        .map(|t| json!([t.round, t.lr, t.status, t.steps, t.final_loss]))
                        .collect::<Vec<_>>(),
                    "candidates": candidates(&report),
                    "in_process_s": wall,
                    "processes": proc_json,
                }));
                by_strategy.entry(strategy).or_default().push(Measured {
                    strategy,
                    seed,
                    steps: report.total_steps,
                    pct,
                    quality,
                    wall,
                    proc_wall,
                });
            }
            seeds_out.push(json!({
                "seed": seed,
                "one_trial_spec": one_path,
                "ground_truth": {
                    "best_lr": best_lr,
                    "best_loss": best_loss,
                    "within_2pct": within,
                    "lrs": lrs,
                    "losses": losses.iter().map(|&l| finite(l)).collect::<Vec<_>>(),
                    "seconds": gt_seconds,
                    "lambda_max": lambda,
                    "threshold": lambda.map(|l| 2.0 / l),
                },
                "runs": runs,
            }));
        }

        // Table: every seed and the median, per strategy.
        println!();
        println!(
            "## {} — {}; grid {} rates × {} steps = {} steps",
            problem.name, problem.about, grid_rates, problem.full_steps, grid_steps
        );
        println!(
            "{:<13} {:>5} {:>8} {:>8} {:>9} {:>4} {:>9} {:>9}",
            "strategy", "seed", "steps", "% grid", "quality", "hit", "in-proc s", "procs s"
        );
        let mut strategy_summary = Vec::new();
        for (strategy, about) in STRATEGIES {
            let Some(rows) = by_strategy.get(strategy) else {
                continue;
            };
            for m in rows {
                println!(
                    "{:<13} {:>5} {:>8} {:>8.2} {:>9.4} {:>4} {:>9.2} {:>9}",
                    m.strategy,
                    m.seed,
                    m.steps,
                    m.pct,
                    m.quality,
                    if m.quality <= HIT { "yes" } else { "no" },
                    m.wall,
                    m.proc_wall.map_or("-".into(), |w| format!("{w:.2}")),
                );
            }
            let hits = rows.iter().filter(|m| m.quality <= HIT).count();
            let med_pct = median(&mut rows.iter().map(|m| m.pct).collect::<Vec<_>>());
            let max_pct = rows.iter().map(|m| m.pct).fold(0.0, f64::max);
            let med_steps = median(&mut rows.iter().map(|m| m.steps as f64).collect::<Vec<_>>());
            let med_q = median(&mut rows.iter().map(|m| m.quality).collect::<Vec<_>>());
            let med_wall = median(&mut rows.iter().map(|m| m.wall).collect::<Vec<_>>());
            let proc_walls: Vec<f64> = rows.iter().filter_map(|m| m.proc_wall).collect();
            let med_proc = (!proc_walls.is_empty()).then(|| median(&mut proc_walls.clone()));
            println!(
                "{:<13} {:>5} {:>8.0} {:>8.2} {:>9.4} {:>4} {:>9.2} {:>9}",
                strategy,
                "med",
                med_steps,
                med_pct,
                med_q,
                format!("{hits}/{}", rows.len()),
                med_wall,
                med_proc.map_or("-".into(), |w| format!("{w:.2}")),
            );
            if strategy == "c2f" {
                let ok_hits = hits * 5 >= rows.len() * 4;
                summary.push(format!(
                    "{}: coarse-to-fine hits {hits}/{} (target ≥ 4 of 5: {}), median {med_pct:.2}% of the grid's steps, max {max_pct:.2}% (target ≤ {STEP_TARGET_PCT}%: {})",
                    problem.name,
                    rows.len(),
                    if ok_hits { "met" } else { "MISSED" },
                    if max_pct <= STEP_TARGET_PCT { "met" } else if med_pct <= STEP_TARGET_PCT { "met by the median, not every seed" } else { "MISSED" },
                ));
            }
            strategy_summary.push(json!({
                "strategy": strategy,
                "about": about,
                "hits": hits,
                "seeds": rows.len(),
                "median_steps": med_steps,
                "median_steps_pct": med_pct,
                "max_steps_pct": max_pct,
                "median_quality": finite(med_q),
                "median_in_process_s": med_wall,
                "median_processes_s": med_proc,
            }));
        }
        problems_out.push(json!({
            "name": problem.name,
            "about": problem.about,
            "full_steps": problem.full_steps,
            "eval_every": problem.eval_every,
            "grid_rates": grid_rates,
            "grid_steps": grid_steps,
            "seeds": seeds_out,
            "summary": strategy_summary,
        }));
    }

    println!();
    for line in &summary {
        println!("{line}");
    }
    let total = started.elapsed().as_secs_f64();
    println!("bench-search finished in {total:.0}s");
    let out = json!({
        "benchmark": "search-efficiency",
        "hit_factor": HIT,
        "step_target_pct": STEP_TARGET_PCT,
        "grid": { "min_lr": MIN_LR, "max_lr": MAX_LR, "ratio": RESOLUTION },
        "machine": machine(),
        "command": std::env::args().collect::<Vec<_>>().join(" "),
        "seconds": total,
        "problems": problems_out,
    });
    if let Some(path) = &args.out {
        std::fs::write(
            path,
            serde_json::to_string_pretty(&out).expect("json") + "\n",
        )
        .unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
        eprintln!("results written to {}", path.display());
    }
}
