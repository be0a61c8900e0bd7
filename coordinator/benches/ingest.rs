//! Trace-point ingestion into a file-backed WAL database: one transaction per 32-point batch
//! (what `append_points` does per worker message) against 100 batches coalesced per transaction
//! (`append_point_batches`, what the coordinator can do with messages arriving within a few ms).
//!
//! Run with `cargo bench -p lrsweep-coordinator --bench ingest`.

use std::path::{Path, PathBuf};
use std::time::Instant;

use lrsweep_coordinator::storage::store::{PointBatch, Store, SweepRow};
use lrsweep_proto::domain::TracePoint;

const POINTS: usize = 1_000_000;
const BATCH: usize = 32;
const COALESCE: usize = 100;
/// Trials streaming at once; their batches interleave as they would from many workers.
const TRIALS: u64 = 64;
const SWEEP: &str = "bench";

/// Batches of (trial, points): round-robin over the trials, each trial's steps consecutive.
fn workload() -> Vec<(u64, Vec<TracePoint>)> {
    (0..POINTS / BATCH)
        .map(|i| {
            let trial = i as u64 % TRIALS;
            let first = (i as u64 / TRIALS) * BATCH as u64 + 1;
            let points = (first..first + BATCH as u64)
                .map(|step| TracePoint {
                    step,
                    train_loss: 2.0 / (step as f64).sqrt() + (trial as f64) * 1e-3,
                    lr: 1e-3 * (trial + 1) as f64,
                    val_loss: (step % 50 == 0).then(|| 2.1 / (step as f64).sqrt()),
                })
                .collect();
            (trial, points)
        })
        .collect()
}

fn fresh_store(path: &Path) -> Store {
    remove_db(path);
    let mut store = Store::open(path).expect("open the bench database");
    store
        .create_sweep(&SweepRow {
            sweep_id: SWEEP.into(),
            spec_toml: String::new(),
            status: lrsweep_coordinator::sweep::SweepStatus::Running,
            created_at_ms: 0,
        })
        .expect("create the sweep");
    store
}

fn remove_db(path: &Path) {
    for suffix in ["", "-wal", "-shm"] {
        let mut p = path.as_os_str().to_owned();
        p.push(suffix);
        let _ = std::fs::remove_file(p);
    }
}

/// Runs `ingest` on a fresh database and returns points per second, checking every point landed.
fn measure(label: &str, path: &Path, ingest: impl FnOnce(&mut Store) -> usize) -> f64 {
    let mut store = fresh_store(path);
    let start = Instant::now();
    let added = ingest(&mut store);
    let secs = start.elapsed().as_secs_f64();
    assert_eq!(added, POINTS);
    assert_eq!(store.point_count(SWEEP).unwrap(), POINTS as u64);
    let rate = added as f64 / secs;
    println!("{label:<44} {added:>9} points {secs:>7.3} s {rate:>12.0} points/s");
    drop(store);
    remove_db(path);
    rate
}

fn main() {
    let batches = workload();
    let path: PathBuf =
        std::env::temp_dir().join(format!("lrsweep-ingest-{}.db", std::process::id()));
    println!(
        "{POINTS} points in {} batches of {BATCH}, {TRIALS} trials, WAL + synchronous=NORMAL, {}",
        batches.len(),
        path.display()
    );

    let per_batch = measure("(a) append_points, 1 txn per batch", &path, |store| {
        batches
            .iter()
            .map(|(trial, points)| store.append_points(SWEEP, *trial, 1, points).unwrap())
            .sum()
    });
    let coalesced = measure(
        &format!("(b) append_point_batches, {COALESCE} batches per txn"),
        &path,
        |store| {
            batches
                .chunks(COALESCE)
                .map(|chunk| {
                    let group: Vec<PointBatch<'_>> = chunk
                        .iter()
                        .map(|(trial, points)| (SWEEP, *trial, 1, points.as_slice()))
                        .collect();
                    store.append_point_batches(&group).unwrap()
                })
                .sum()
        },
    );
    println!("coalesced / per-batch: {:.2}x", coalesced / per_batch);
}
