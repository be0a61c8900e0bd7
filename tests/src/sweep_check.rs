//! What a sweep that went through faults must still hold once it finished, read from its files
//! alone: the report it wrote and its SQLite database. Shared by the chaos runner
//! (`src/bin/chaos.rs`, `tests/chaos.rs`) and the fault tests (`tests/netfault.rs`,
//! `tests/diskfull.rs`).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;

use lrsweep_coordinator::storage::Store;
use rusqlite::{Connection, OpenFlags};
use serde_json::Value;

use crate::{wait_sweep_end, Proc};

/// Statuses a trial may end a sweep with.
const FINAL: [&str; 4] = ["completed", "pruned", "cancelled", "failed"];

/// What the checked sweep held.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Finished {
    pub trials: usize,
    pub completed: usize,
    /// Attempts recorded, reruns included.
    pub attempts: usize,
    /// Attempts recorded as lost (their worker died or was away past its lease).
    pub lost: usize,
    pub points: usize,
}

/// One attempt's row in the `attempts` table.
#[derive(Debug, Clone, PartialEq)]
pub struct AttemptRow {
    pub trial: u64,
    pub attempt: u32,
    pub worker: String,
    pub outcome: Option<String>,
    /// Points stored for it, and how many distinct steps they cover.
    pub points: u64,
    pub distinct_steps: u64,
}

/// The database of one sweep, opened read-only: its rows through SQL, its trace points through
/// the coordinator's own store (they are kept a batch to a blob).
pub struct SweepDb {
    conn: Connection,
    store: Store,
    sweep_id: String,
}

impl SweepDb {
    pub fn open(db: &Path) -> Result<SweepDb, String> {
        let conn = Connection::open_with_flags(db, OpenFlags::SQLITE_OPEN_READ_ONLY)
            .map_err(|e| format!("opening {}: {e}", db.display()))?;
        let store = Store::open_read_only(db).map_err(|e| e.to_string())?;
        let sweep_id = store
            .latest_sweep()
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("no sweep in {}", db.display()))?
            .sweep_id;
        Ok(SweepDb {
            conn,
            store,
            sweep_id,
        })
    }

    /// Every attempt of the (only) sweep, by trial then attempt, with its points counted.
    pub fn attempts(&self) -> Result<Vec<AttemptRow>, String> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT a.trial, a.attempt, a.worker, a.outcome
                 FROM attempts a ORDER BY a.trial, a.attempt",
            )
            .map_err(|e| e.to_string())?;
        let rows = stmt
            .query_map([], |r| {
                Ok((
                    r.get::<_, i64>(0)? as u64,
                    r.get::<_, u32>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, Option<String>>(3)?,
                ))
            })
            .map_err(|e| e.to_string())?;
        let mut attempts = Vec::new();
        for row in rows {
            let (trial, attempt, worker, outcome) = row.map_err(|e| e.to_string())?;
            let steps = self.steps(trial, attempt)?;
            let distinct: BTreeSet<u64> = steps.iter().copied().collect();
            attempts.push(AttemptRow {
                trial,
                attempt,
                worker,
                outcome,
                points: steps.len() as u64,
                distinct_steps: distinct.len() as u64,
            });
        }
        Ok(attempts)
    }

    /// Steps stored for one attempt, in the order the store gives them back.
    pub fn steps(&self, trial: u64, attempt: u32) -> Result<Vec<u64>, String> {
        let points = self
            .store
            .points(&self.sweep_id, trial, attempt)
            .map_err(|e| e.to_string())?;
        Ok(points.iter().map(|p| p.step).collect())
    }

    /// (status, accepted attempt, budget) of every trial, by id.
    fn trials(&self) -> Result<BTreeMap<u64, (String, u32, u64)>, String> {
        let mut stmt = self
            .conn
            .prepare("SELECT trial, status, attempt, budget FROM trials ORDER BY trial")
            .map_err(|e| e.to_string())?;
        let rows = stmt
            .query_map([], |r| {
                Ok((
                    r.get::<_, i64>(0)? as u64,
                    (r.get(1)?, r.get(2)?, r.get::<_, i64>(3)? as u64),
                ))
            })
            .map_err(|e| e.to_string())?;
        rows.collect::<Result<_, _>>().map_err(|e| e.to_string())
    }
}

/// Checks a sweep that ended: the report says completed and holds every trial id 0..n once,
/// each in a final status; the database agrees; each completed trial's accepted attempt has
/// exactly one stored point per step of its budget; and `coordinator report --db` rebuilds the
/// very report that was written.
pub fn check_finished(coordinator_bin: &str, db: &Path, report: &Path) -> Result<Finished, String> {
    let written = read_json(report)?;
    if written["outcome"] != "completed" {
        return Err(format!("outcome {} (not completed)", written["outcome"]));
    }
    let trials = written["trials"]
        .as_array()
        .ok_or_else(|| format!("no trials in the report: {written}"))?;
    let ids: Vec<u64> = trials.iter().filter_map(|t| t["id"].as_u64()).collect();
    if ids != (0..trials.len() as u64).collect::<Vec<_>>() {
        return Err(format!("trial ids are not 0..n, each once: {ids:?}"));
    }
    for t in trials {
        if !FINAL.contains(&t["status"].as_str().unwrap_or("")) {
            return Err(format!("trial not final: {t}"));
        }
    }

    let store = SweepDb::open(db)?;
    let stored = store.trials()?;
    let attempts = store.attempts()?;
    if stored.len() != trials.len() {
        return Err(format!(
            "{} trials in the database, {} in the report",
            stored.len(),
            trials.len()
        ));
    }
    let mut finished = Finished {
        trials: trials.len(),
        attempts: attempts.len(),
        lost: attempts
            .iter()
            .filter(|a| a.outcome.as_deref() == Some("lost"))
            .count(),
        points: attempts.iter().map(|a| a.points as usize).sum(),
        ..Finished::default()
    };
    for t in trials {
        let id = t["id"].as_u64().unwrap_or_default();
        let (status, attempt, budget) = &stored[&id];
        if t["status"] != status.as_str() {
            return Err(format!("trial {id}: {status} in the database: {t}"));
        }
        if status != "completed" {
            continue;
        }
        finished.completed += 1;
        let steps = store.steps(id, *attempt)?;
        if steps != (1..=*budget).collect::<Vec<_>>() {
            return Err(format!(
                "trial {id}: attempt {attempt} stored {} points over steps {:?}..{:?}, \
                 not one per step 1..={budget}",
                steps.len(),
                steps.first(),
                steps.last()
            ));
        }
        let accepted = attempts
            .iter()
            .find(|a| a.trial == id && a.attempt == *attempt)
            .ok_or_else(|| format!("trial {id}: no row for its attempt {attempt}"))?;
        if accepted.outcome.as_deref() != Some("completed") {
            return Err(format!("trial {id}: accepted attempt {accepted:?}"));
        }
    }
    if let Some(open) = attempts.iter().find(|a| a.outcome.is_none()) {
        return Err(format!("an attempt never ended: {open:?}"));
    }

    let rebuilt_path = report.with_extension("rebuilt.json");
    let output = Command::new(coordinator_bin)
        .args(["report", "--db"])
        .arg(db)
        .arg("--report")
        .arg(&rebuilt_path)
        .output()
        .map_err(|e| format!("running {coordinator_bin} report: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "report --db failed: {}",
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    let rebuilt = read_json(&rebuilt_path)?;
    if rebuilt != written {
        return Err(format!(
            "the report rebuilt from the database differs from the one written:\n{rebuilt}\n{written}"
        ));
    }
    Ok(finished)
}

/// For a fault that must cost nothing: once the coordinator and `workers` exited 0, the sweep
/// checks out (`check_finished`), no lease expired, and no trial ran twice.
pub fn finish_without_reruns(
    coordinator_bin: &str,
    coordinator: &mut Proc,
    workers: &mut [Proc],
    db: &Path,
    report: &Path,
) -> Finished {
    wait_sweep_end(coordinator, workers);
    let finished = check_finished(coordinator_bin, db, report).unwrap_or_else(|e| panic!("{e}"));
    let expired = coordinator.events("lease_expired");
    assert!(expired.is_empty(), "{expired:#?}");
    assert_eq!(
        finished.attempts, finished.trials,
        "a trial ran twice: {finished:?}"
    );
    finished
}

fn read_json(path: &Path) -> Result<Value, String> {
    let text =
        std::fs::read_to_string(path).map_err(|e| format!("reading {}: {e}", path.display()))?;
    serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
}
