//! The chaos run, short: three workers while random workers and the coordinator are SIGKILLed
//! and restarted, three times each, in an order drawn from a fixed seed. The sweep must end
//! completed with every trial once and final, each completed trial's accepted attempt holding
//! one stored point per step, and the report rebuilt from the database equal to the one
//! written. The full run (twenty kills each) is `tests/chaos/run.sh`; both use `chaos::run`.

use lrsweep_tests::chaos::{run, ChaosConfig};
use lrsweep_tests::TempDir;

const COORDINATOR: &str = env!("CARGO_BIN_EXE_e2e-coordinator");
const WORKER: &str = env!("CARGO_BIN_EXE_e2e-worker");

/// Coarse-to-fine over four decades with two replicates: sixteen trials of a couple of thousand steps,
/// enough to outlast six kills. No rung pruning: what runs does not depend on timing.
const SPEC: &str = r#"
[search]
strategy = "coarse-to-fine"
min_lr = 1e-3
max_lr = 10.0
rounds = 2
candidates_per_round = 3
final_below = 2
final_above = 1
steps = [1500, 2000]
data_fraction = [0.5, 1.0]
replicates = 2
eval_every = 50

[pruning]
rule = "none"

[trainer]
model = { kind = "mlp", hidden = [16] }
batch_size = 32
seed = 2
"#;

#[test]
fn a_sweep_survives_workers_and_the_coordinator_killed_and_restarted() {
    let dir = TempDir::new("chaos");
    let seed = 13;
    let summary = run(&ChaosConfig {
        coordinator_bin: COORDINATOR.into(),
        worker_bin: WORKER.into(),
        dir: dir.path().to_path_buf(),
        spec: SPEC.into(),
        seed,
        workers: 3,
        worker_kills: 3,
        coordinator_kills: 3,
        lease_ms: 3000,
    })
    .unwrap_or_else(|e| panic!("chaos run with seed {seed}: {e}"));
    eprintln!("chaos: {summary}");
    assert_eq!((summary.worker_kills, summary.coordinator_kills), (3, 3));
    assert!(summary.finished.completed > 0, "{summary}");
}
