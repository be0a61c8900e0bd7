//! Trainer speed: MLP training steps per second on the bundled digits data, with the worker's
//! real trainer (`Trainer::step`: minibatch gather, forward, softmax cross-entropy, backward, SGD
//! update). Hidden layers [64, 64] with ReLU, batch 32, SGD at rate 0.05, features standardised
//! with training-split statistics; `--warmup` untimed steps, then `--steps` timed ones, on one
//! thread (ndarray's matrixmultiply is single-threaded unless its `threading` feature is on,
//! and nothing in this workspace turns it on).
//!
//! Prints one JSON object: `rust_steps_per_s` (the median over `--reps` runs) and the details.
//!
//! Run by bench/run-trainer-bench.sh next to bench/numpy_mlp.py; see BENCHMARKS.md.

use std::hint::black_box;
use std::sync::Arc;
use std::time::Instant;

use lrsweep_proto::domain::{
    Activation, ModelSpec, OptimizerSpec, Subset, TrainerConfig, TrialAssignment,
};
use lrsweep_tests::bench_support::median;
use lrsweep_worker::trainer::{PreparedData, Trainer};

const HIDDEN: [u32; 2] = [64, 64];
const BATCH: u32 = 32;
const LR: f64 = 0.05;

struct Args {
    steps: u64,
    warmup: u64,
    reps: usize,
}

fn parse_args() -> Args {
    let mut args = Args {
        steps: 2000,
        warmup: 200,
        reps: 1,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = |name: &str| -> u64 {
            it.next()
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| usage(&format!("{name} needs a whole number")))
        };
        match flag.as_str() {
            "--steps" => args.steps = value("--steps"),
            "--warmup" => args.warmup = value("--warmup"),
            "--reps" => args.reps = value("--reps").max(1) as usize,
            "-h" | "--help" => usage(""),
            other => usage(&format!("unknown argument {other}")),
        }
    }
    args
}

fn usage(why: &str) -> ! {
    if !why.is_empty() {
        eprintln!("bench-trainer: {why}");
    }
    eprintln!("usage: bench-trainer [--steps N] [--warmup N] [--reps N]");
    std::process::exit(2)
}

fn config() -> TrainerConfig {
    TrainerConfig {
        model: ModelSpec::Mlp {
            hidden: HIDDEN.to_vec(),
            activation: Activation::Relu,
        },
        optimizer: OptimizerSpec::Sgd {
            momentum: 0.0,
            nesterov: false,
            weight_decay: 0.0,
        },
        batch_size: BATCH,
        full_batch: false,
        standardize: true,
        seed: 0,
        ..TrainerConfig::default()
    }
}

fn assignment(steps: u64) -> TrialAssignment {
    TrialAssignment {
        round: 0,
        trial_id: 0,
        attempt: 1,
        lr: LR,
        steps,
        eval_every: steps.max(1),
        subset: Subset {
            fraction: 1.0,
            replicate: 0,
            replicates: 1,
        },
        trainer: config().into(),
    }
}

/// One timed run: steps per second, and the mean training loss of the last 100 timed steps (a
/// sanity check that it learns).
fn run(data: &Arc<PreparedData>, args: &Args) -> (f64, f64) {
    let a = assignment(args.warmup + args.steps);
    let mut trainer = Trainer::new(&a, data.clone()).expect("a valid trial");
    for _ in 0..args.warmup {
        black_box(trainer.step());
    }
    let tail = args.steps.min(100);
    let mut tail_loss = 0.0;
    let started = Instant::now();
    for k in 0..args.steps {
        let point = black_box(trainer.step());
        if k >= args.steps - tail {
            tail_loss += point.train_loss;
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    (args.steps as f64 / seconds, tail_loss / tail.max(1) as f64)
}

fn main() {
    let args = parse_args();
    let data = Arc::new(PreparedData::prepare(&config()).expect("bundled digits"));
    let mut rates = Vec::with_capacity(args.reps);
    let mut loss = f64::NAN;
    for _ in 0..args.reps {
        let (rate, tail_loss) = run(&data, &args);
        rates.push(rate);
        loss = tail_loss;
    }
    let out = serde_json::json!({
        "rust_steps_per_s": median(&mut rates.clone()),
        "reps_steps_per_s": rates,
        "steps": args.steps,
        "warmup": args.warmup,
        "batch_size": BATCH,
        "hidden": HIDDEN,
        "lr": LR,
        "train_rows": data.train_len(),
        "features": data.features(),
        "threads": 1,
        "final_train_loss": loss,
    });
    println!("{out}");
}
