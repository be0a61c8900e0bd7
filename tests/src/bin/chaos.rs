//! The chaos run (`tests/chaos/run.sh`): a sweep with workers while random workers and the
//! coordinator are SIGKILLed and restarted; exits 0 once the sweep ended and checked out.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use clap::Parser;
use lrsweep_tests::chaos::{run, ChaosConfig};

/// Coarse-to-fine over six decades with two replicates, then a finer last round: about forty
/// trials of a few thousand MLP steps (most of a second each in a release build), enough to
/// outlast forty kills. No rung pruning: what runs does not depend on timing.
const SPEC: &str = r#"
[search]
strategy = "coarse-to-fine"
min_lr = 1e-5
max_lr = 10.0
rounds = 3
candidates_per_round = 5
final_below = 4
final_above = 2
steps = [2000, 3000, 4000]
data_fraction = [0.5, 1.0]
replicates = 2
eval_every = 100

[pruning]
rule = "none"

[trainer]
model = { kind = "mlp", hidden = [32] }
batch_size = 32
seed = 1
"#;

#[derive(Parser)]
#[command(about = "A sweep while random workers and the coordinator are SIGKILLed and restarted")]
struct Args {
    /// Seed of the kill order and targets; the time when absent (printed either way).
    #[arg(long, env = "LRSWEEP_CHAOS_SEED")]
    seed: Option<u64>,
    #[arg(long, default_value_t = 3)]
    workers: usize,
    #[arg(long, default_value_t = 20)]
    worker_kills: u32,
    #[arg(long, default_value_t = 20)]
    coordinator_kills: u32,
    #[arg(long, default_value_t = 4000)]
    lease_ms: u64,
    /// Search spec (TOML); a built-in one of about forty trials when absent.
    #[arg(long)]
    spec: Option<PathBuf>,
    /// Where the database, report and spec go.
    #[arg(long, default_value = "target/chaos")]
    dir: PathBuf,
    /// Binaries to run; beside this one when absent.
    #[arg(long, env = "LRSWEEP_COORDINATOR_BIN")]
    coordinator_bin: Option<PathBuf>,
    #[arg(long, env = "LRSWEEP_WORKER_BIN")]
    worker_bin: Option<PathBuf>,
}

fn beside_me(name: &str) -> Result<String, String> {
    let me = std::env::current_exe().map_err(|e| format!("locating this executable: {e}"))?;
    Ok(me.with_file_name(name).display().to_string())
}

fn main() -> ExitCode {
    let args = Args::parse();
    match chaos(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("chaos: FAILED: {e}");
            ExitCode::FAILURE
        }
    }
}

fn chaos(args: Args) -> Result<(), String> {
    let seed = args.seed.unwrap_or_else(|| {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64)
    });
    println!("chaos: seed {seed} (rerun with --seed {seed})");
    let spec = match &args.spec {
        Some(path) => {
            std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?
        }
        None => SPEC.to_string(),
    };
    // A fresh directory: the coordinator would resume a sweep left in an old database.
    let _ = std::fs::remove_dir_all(&args.dir);
    let config = ChaosConfig {
        coordinator_bin: match args.coordinator_bin {
            Some(p) => p.display().to_string(),
            None => beside_me("lrsweep-coordinator")?,
        },
        worker_bin: match args.worker_bin {
            Some(p) => p.display().to_string(),
            None => beside_me("lrsweep-worker")?,
        },
        dir: args.dir,
        spec,
        seed,
        workers: args.workers,
        worker_kills: args.worker_kills,
        coordinator_kills: args.coordinator_kills,
        lease_ms: args.lease_ms,
    };
    let summary = run(&config)?;
    println!("chaos: OK: {summary}");
    Ok(())
}
