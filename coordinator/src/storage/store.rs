//! Durable storage: every sweep, trial, attempt and trace point in one embedded SQLite file, so a
//! crashed coordinator can resume and the report can be rebuilt from the file alone.
//!
//! Plain and synchronous: one thread owns the `Store` (the durable writer) and serializes writes.
//! Losses are data even when NaN or infinite; see `columns::Real` for how floats are kept
//! exactly, and `columns::Named` for how statuses are kept.

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use lrsweep_proto::domain::TracePoint;
use rusqlite::{params, Connection, ErrorCode, OpenFlags, OptionalExtension, TransactionBehavior};

use super::columns::{one_of, Real};
use super::point_blob;
use super::workers::{self, WorkerRow, WorkerState};
use crate::prune::PruneReason;
use crate::search::TrialStatus;
use crate::sweep::{AttemptOutcome, SweepStatus};
use crate::CoordinatorError;

/// Bumped on every change to `SCHEMA`; a file of another version is refused, not migrated.
pub const SCHEMA_VERSION: i64 = 4;

/// `PRAGMA application_id` of an lrsweep database ("lrsw"), so that another program's SQLite file
/// is refused even if its user_version happens to match.
const APPLICATION_ID: i64 = 0x6c72_7377;

/// How long a statement waits for a lock held by another connection (a reader, `sqlite3` CLI)
/// before failing with SQLITE_BUSY.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// WAL size, in pages, that triggers an automatic checkpoint.
const WAL_CHECKPOINT_PAGES: i64 = 10_000;

/// Page cache of the file database, in KiB.
const CACHE_KIB: i64 = 32 * 1024;

/// Child tables refer to a sweep by its integer key rather than its name, which keeps their rows
/// short and their indexes compact. Trace points are kept a batch to a row (`point_blob`); the
/// batches of an attempt never overlap, so they sort by their last step, which the UNIQUE index
/// orders them by and `insert_points` looks up.
/// Float columns have no declared type on purpose (see [`Real`]); their CHECKs keep them to a
/// REAL or the text 'NaN'.
fn schema() -> String {
    let sweep_status = one_of::<SweepStatus>("status");
    let trial_status = one_of::<TrialStatus>("status");
    let prune_reason = one_of::<PruneReason>("prune_reason");
    let outcome = one_of::<AttemptOutcome>("outcome");
    let worker_state = one_of::<WorkerState>("state");
    let point_bytes = point_blob::POINT_BYTES;
    format!(
        "
CREATE TABLE sweeps (
    id            INTEGER PRIMARY KEY,
    sweep_id      TEXT    NOT NULL UNIQUE,
    spec_toml     TEXT    NOT NULL,
    status        TEXT    NOT NULL CHECK ({sweep_status}),
    created_at_ms INTEGER NOT NULL
);
CREATE TABLE trials (
    sweep        INTEGER NOT NULL REFERENCES sweeps (id),
    trial        INTEGER NOT NULL,
    round        INTEGER NOT NULL,
    lr           NOT NULL CHECK (typeof(lr) = 'real' OR lr = 'NaN'),
    replicate    INTEGER NOT NULL,
    replicates   INTEGER NOT NULL,
    fraction     NOT NULL CHECK (typeof(fraction) = 'real' OR fraction = 'NaN'),
    budget       INTEGER NOT NULL,
    status       TEXT    NOT NULL CHECK ({trial_status}),
    prune_reason TEXT    CHECK (prune_reason IS NULL OR {prune_reason}),
    attempt      INTEGER NOT NULL,
    steps        INTEGER NOT NULL,
    steps_run    INTEGER NOT NULL,
    worker       TEXT,
    error        TEXT,
    final_loss   CHECK (typeof(final_loss) IN ('real', 'null') OR final_loss = 'NaN'),
    PRIMARY KEY (sweep, trial)
) WITHOUT ROWID;
CREATE TABLE attempts (
    sweep         INTEGER NOT NULL REFERENCES sweeps (id),
    trial         INTEGER NOT NULL,
    attempt       INTEGER NOT NULL,
    worker        TEXT    NOT NULL,
    started_at_ms INTEGER NOT NULL,
    ended_at_ms   INTEGER,
    outcome       TEXT    CHECK (outcome IS NULL OR {outcome}),
    error         TEXT,
    PRIMARY KEY (sweep, trial, attempt)
) WITHOUT ROWID;
CREATE TABLE point_batches (
    id         INTEGER PRIMARY KEY,
    sweep      INTEGER NOT NULL REFERENCES sweeps (id),
    trial      INTEGER NOT NULL,
    attempt    INTEGER NOT NULL,
    first_step INTEGER NOT NULL,
    last_step  INTEGER NOT NULL CHECK (last_step >= first_step),
    points     INTEGER NOT NULL CHECK (points > 0),
    data       BLOB    NOT NULL CHECK (length(data) = {point_bytes} * points),
    UNIQUE (sweep, trial, attempt, last_step)
);
CREATE TABLE workers (
    sweep            INTEGER NOT NULL REFERENCES sweeps (id),
    worker           TEXT    NOT NULL,
    name             TEXT    NOT NULL,
    host             TEXT    NOT NULL,
    slots            INTEGER NOT NULL,
    state            TEXT    NOT NULL CHECK ({worker_state}),
    registered_at_ms INTEGER NOT NULL,
    last_seen_ms     INTEGER NOT NULL,
    PRIMARY KEY (sweep, worker)
) WITHOUT ROWID;
CREATE TABLE sweep_meta (
    sweep INTEGER NOT NULL REFERENCES sweeps (id),
    key   TEXT    NOT NULL,
    value TEXT    NOT NULL,
    PRIMARY KEY (sweep, key)
) WITHOUT ROWID;
"
    )
}

const SWEEP_COLUMNS: &str = "sweep_id, spec_toml, status, created_at_ms";

#[derive(Clone, Debug, PartialEq)]
pub struct SweepRow {
    pub sweep_id: String,
    pub spec_toml: String,
    pub status: SweepStatus,
    pub created_at_ms: i64,
}

#[derive(Clone, Debug, PartialEq)]
pub struct TrialRow {
    pub sweep_id: String,
    pub id: u64,
    pub round: u32,
    pub lr: f64,
    pub replicate: u32,
    pub replicates: u32,
    pub fraction: f64,
    pub budget: u64,
    pub status: TrialStatus,
    pub prune_reason: Option<PruneReason>,
    pub attempt: u32,
    pub steps: u64,
    pub steps_run: u64,
    pub worker: Option<String>,
    pub error: Option<String>,
    pub final_loss: Option<f64>,
}

/// One batch of trace points of one attempt: (sweep_id, trial, attempt, points).
pub type PointBatch<'a> = (&'a str, u64, u32, &'a [TracePoint]);

/// What one event of a running sweep changed, in the order `Store::commit` writes it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Changes {
    /// (trial, attempt, worker) of attempts dispatched.
    pub started: Vec<(u64, u32, String)>,
    pub trials: Vec<TrialRow>,
    /// (trial, attempt, points) accepted from workers.
    pub points: Vec<(u64, u32, Vec<TracePoint>)>,
    /// (trial, attempt, outcome, error) of attempts that ended.
    pub ended: Vec<(u64, u32, AttemptOutcome, Option<String>)>,
    /// Workers that registered, connected, hung up, left or were last heard from.
    pub workers: Vec<WorkerRow>,
}

impl Changes {
    pub fn is_empty(&self) -> bool {
        self.started.is_empty()
            && self.trials.is_empty()
            && self.points.is_empty()
            && self.ended.is_empty()
            && self.workers.is_empty()
    }
}

pub struct Store {
    conn: Connection,
}

impl Store {
    /// Opens the database at `path`, creating it with the current schema if the file is new.
    /// A file of another schema version, or not an lrsweep database, is refused untouched.
    pub fn open(path: &Path) -> Result<Store, CoordinatorError> {
        let name = path.display().to_string();
        // SQLite's "unable to open database file" does not say which file.
        let conn = Connection::open(path)
            .map_err(|e| CoordinatorError::Storage(format!("{name}: cannot open: {e}")))?;
        Store::init(conn, &name, true)
    }

    /// Moves checkpoints off this connection onto a second one to the same file, so that a
    /// commit here never waits for one (a checkpoint copies tens of MB and fsyncs: 60-80 ms
    /// stalls at 1,000 workers). None for an in-memory store, which has no WAL.
    pub fn checkpointer(&mut self) -> Result<Option<Checkpointer>, CoordinatorError> {
        let Some(path) = self.conn.path().filter(|p| !p.is_empty()) else {
            return Ok(None);
        };
        let other = Store::open(Path::new(path))?;
        self.conn.pragma_update(None, "wal_autocheckpoint", 0)?;
        Ok(Some(Checkpointer { conn: other.conn }))
    }

    /// Opens an existing database for reading only (`status`): it never writes, not even the
    /// schema of an empty file, and reads alongside a running coordinator through the WAL.
    pub fn open_read_only(path: &Path) -> Result<Store, CoordinatorError> {
        let name = path.display().to_string();
        if !path.is_file() {
            return Err(CoordinatorError::Storage(format!("no database at {name}")));
        }
        let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY)
            .map_err(|e| CoordinatorError::Storage(format!("{name}: cannot open: {e}")))?;
        conn.busy_timeout(BUSY_TIMEOUT)?;
        if check_identity(&conn, &name)? {
            return Err(CoordinatorError::Storage(format!(
                "{name}: not an lrsweep database (empty)"
            )));
        }
        Ok(Store { conn })
    }

    pub fn open_in_memory() -> Result<Store, CoordinatorError> {
        Store::init(Connection::open_in_memory()?, ":memory:", false)
    }

    fn init(conn: Connection, name: &str, wal: bool) -> Result<Store, CoordinatorError> {
        conn.busy_timeout(BUSY_TIMEOUT)?;
        // Checked before anything writes, so a foreign or newer file is left as it was.
        let fresh = check_identity(&conn, name)?;
        if wal {
            // WAL lets the report be read while the sweep writes; NORMAL skips the fsync per
            // commit (a power cut may lose the last commits, never corrupt the file).
            let mode: String =
                conn.pragma_update_and_check(None, "journal_mode", "wal", |r| r.get(0))?;
            if !mode.eq_ignore_ascii_case("wal") {
                return Err(CoordinatorError::Storage(format!(
                    "{name}: cannot switch to WAL journal mode (got `{mode}`)"
                )));
            }
            conn.pragma_update(None, "synchronous", "NORMAL")?;
            // Checkpoints (each with fsyncs) every ~40 MB of WAL instead of the default ~4 MB:
            // measured ~30% faster point ingestion, at the cost of a larger -wal file.
            conn.pragma_update(None, "wal_autocheckpoint", WAL_CHECKPOINT_PAGES)?;
            // Hundreds of trials grow their traces at once, each at its own leaf of the points
            // index: with SQLite's default 2 MiB cache those pages were read back from the OS
            // on most inserts (9% of the coordinator's time at 1,000 workers).
            conn.pragma_update(None, "cache_size", -CACHE_KIB)?;
        }
        conn.pragma_update(None, "foreign_keys", true)?;
        let mut store = Store { conn };
        if fresh {
            store.create_schema()?;
        }
        Ok(store)
    }

    fn create_schema(&mut self) -> Result<(), CoordinatorError> {
        // IMMEDIATE takes the write lock before re-reading the version, so two processes
        // creating the same new file do not both run the DDL.
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let version: i64 = tx.pragma_query_one(None, "user_version")?;
        if version == 0 {
            tx.execute_batch(&schema())?;
            tx.pragma_update(None, "application_id", APPLICATION_ID)?;
            tx.pragma_update(None, "user_version", SCHEMA_VERSION)?;
        }
        tx.commit()?;
        Ok(())
    }

    pub fn create_sweep(&mut self, sweep: &SweepRow) -> Result<(), CoordinatorError> {
        self.conn
            .prepare_cached(
                "INSERT INTO sweeps (sweep_id, spec_toml, status, created_at_ms)
                 VALUES (?1, ?2, ?3, ?4)",
            )?
            .execute(params![
                sweep.sweep_id,
                sweep.spec_toml,
                sweep.status,
                sweep.created_at_ms
            ])?;
        Ok(())
    }

    pub fn set_sweep_status(
        &mut self,
        sweep_id: &str,
        status: SweepStatus,
    ) -> Result<(), CoordinatorError> {
        let changed = self
            .conn
            .prepare_cached("UPDATE sweeps SET status = ?2 WHERE sweep_id = ?1")?
            .execute(params![sweep_id, status])?;
        if changed == 0 {
            return Err(unknown_sweep(sweep_id));
        }
        Ok(())
    }

    /// The most recent sweep, if it did not complete (it crashed or was stopped): the one a
    /// coordinator started on this database resumes. An older unfinished sweep behind a newer
    /// one is not picked up.
    pub fn resumable_sweep(&self) -> Result<Option<SweepRow>, CoordinatorError> {
        Ok(self
            .latest_sweep()?
            .filter(|s| s.status != SweepStatus::Completed))
    }

    pub fn latest_sweep(&self) -> Result<Option<SweepRow>, CoordinatorError> {
        self.one_sweep(
            &format!(
                "SELECT {SWEEP_COLUMNS} FROM sweeps ORDER BY created_at_ms DESC, id DESC LIMIT 1"
            ),
            [],
        )
    }

    pub fn sweep(&self, sweep_id: &str) -> Result<Option<SweepRow>, CoordinatorError> {
        self.one_sweep(
            &format!("SELECT {SWEEP_COLUMNS} FROM sweeps WHERE sweep_id = ?1"),
            [sweep_id],
        )
    }

    fn one_sweep(
        &self,
        sql: &str,
        params: impl rusqlite::Params,
    ) -> Result<Option<SweepRow>, CoordinatorError> {
        let row = self
            .conn
            .prepare_cached(sql)?
            .query_row(params, |r| {
                Ok(SweepRow {
                    sweep_id: r.get(0)?,
                    spec_toml: r.get(1)?,
                    status: r.get(2)?,
                    created_at_ms: r.get(3)?,
                })
            })
            .optional()?;
        Ok(row)
    }

    /// Insert or update trials (one transaction for the slice).
    #[cfg(test)]
    pub fn save_trials(&mut self, trials: &[TrialRow]) -> Result<(), CoordinatorError> {
        self.write(trials, &[]).map(drop)
    }

    /// Upserts `trials` and appends `batches` of points in one transaction; returns how many
    /// points were new. All or nothing.
    pub fn write(
        &mut self,
        trials: &[TrialRow],
        batches: &[PointBatch<'_>],
    ) -> Result<usize, CoordinatorError> {
        let tx = self.conn.transaction()?;
        upsert_trials(&tx, trials)?;
        let added = insert_points(&tx, batches)?;
        tx.commit()?;
        Ok(added)
    }

    /// Writes many events' changes of one sweep in one transaction, each event's in order:
    /// attempts started, trial rows, points, attempts ended. All or nothing.
    pub fn commit(&mut self, sweep_id: &str, changes: &[Changes]) -> Result<(), CoordinatorError> {
        let tx = self.conn.transaction()?;
        for c in changes {
            for (trial, attempt, worker) in &c.started {
                start_attempt(&tx, sweep_id, *trial, *attempt, worker)?;
            }
            upsert_trials(&tx, &c.trials)?;
            let batches: Vec<PointBatch<'_>> = c
                .points
                .iter()
                .map(|(trial, attempt, points)| (sweep_id, *trial, *attempt, points.as_slice()))
                .collect();
            insert_points(&tx, &batches)?;
            for (trial, attempt, outcome, error) in &c.ended {
                end_attempt(&tx, sweep_id, *trial, *attempt, *outcome, error.as_deref())?;
            }
            workers::upsert_workers(&tx, sweep_id, &c.workers)?;
        }
        tx.commit()?;
        Ok(())
    }

    /// The sweep's trials ordered by id.
    pub fn trials(&self, sweep_id: &str) -> Result<Vec<TrialRow>, CoordinatorError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT trial, round, lr, replicate, replicates, fraction, budget, status,
                    prune_reason, attempt, steps, steps_run, worker, error, final_loss
             FROM trials WHERE sweep = (SELECT id FROM sweeps WHERE sweep_id = ?1)
             ORDER BY trial",
        )?;
        let rows = stmt.query_map([sweep_id], |r| {
            Ok(TrialRow {
                sweep_id: sweep_id.to_owned(),
                id: r.get::<_, i64>(0)? as u64,
                round: r.get(1)?,
                lr: r.get::<_, Real>(2)?.0,
                replicate: r.get(3)?,
                replicates: r.get(4)?,
                fraction: r.get::<_, Real>(5)?.0,
                budget: r.get::<_, i64>(6)? as u64,
                status: r.get(7)?,
                prune_reason: r.get(8)?,
                attempt: r.get(9)?,
                steps: r.get::<_, i64>(10)? as u64,
                steps_run: r.get::<_, i64>(11)? as u64,
                worker: r.get(12)?,
                error: r.get(13)?,
                final_loss: r.get::<_, Option<Real>>(14)?.map(|x| x.0),
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Appends a batch of points of one attempt in one transaction; returns how many were new.
    /// A point at or below the attempt's last stored step is a resend and is ignored, as the
    /// sweep ignores it (`Sweep::on_trace`), so a resent batch is harmless.
    pub fn append_points(
        &mut self,
        sweep_id: &str,
        trial: u64,
        attempt: u32,
        points: &[TracePoint],
    ) -> Result<usize, CoordinatorError> {
        self.append_point_batches(&[(sweep_id, trial, attempt, points)])
    }

    /// Appends many batches in one transaction (one commit instead of one per batch); returns
    /// how many points were new. All or nothing: an error leaves none of the batches written.
    pub fn append_point_batches(
        &mut self,
        batches: &[PointBatch<'_>],
    ) -> Result<usize, CoordinatorError> {
        self.write(&[], batches)
    }

    /// Points of one attempt in step order.
    pub fn points(
        &self,
        sweep_id: &str,
        trial: u64,
        attempt: u32,
    ) -> Result<Vec<TracePoint>, CoordinatorError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT data FROM point_batches
             WHERE sweep = (SELECT id FROM sweeps WHERE sweep_id = ?1)
               AND trial = ?2 AND attempt = ?3
             ORDER BY last_step",
        )?;
        let mut rows = stmt.query(params![sweep_id, to_i64(trial)?, attempt])?;
        let mut points = Vec::new();
        while let Some(row) = rows.next()? {
            let data = row.get_ref(0)?.as_blob().map_err(rusqlite::Error::from)?;
            point_blob::decode_into(data, &mut points)?;
        }
        Ok(points)
    }

    pub fn point_count(&self, sweep_id: &str) -> Result<u64, CoordinatorError> {
        let n: i64 = self
            .conn
            .prepare_cached(
                "SELECT coalesce(sum(points), 0) FROM point_batches
                 WHERE sweep = (SELECT id FROM sweeps WHERE sweep_id = ?1)",
            )?
            .query_row([sweep_id], |r| r.get(0))?;
        Ok(n as u64)
    }

    /// The sweep's workers, each with how many trials it runs now.
    pub fn workers(&self, sweep_id: &str) -> Result<Vec<(WorkerRow, u32)>, CoordinatorError> {
        workers::workers(&self.conn, sweep_id)
    }

    /// Marks the workers a previous coordinator left connected as disconnected.
    pub fn disconnect_workers(&mut self, sweep_id: &str) -> Result<(), CoordinatorError> {
        workers::disconnect_all(&self.conn, sweep_id)
    }

    /// When the sweep's first attempt started and its last one ended (ms since the epoch).
    pub fn attempt_span(
        &self,
        sweep_id: &str,
    ) -> Result<(Option<i64>, Option<i64>), CoordinatorError> {
        Ok(self
            .conn
            .prepare_cached(
                "SELECT min(started_at_ms), max(ended_at_ms) FROM attempts
                 WHERE sweep = (SELECT id FROM sweeps WHERE sweep_id = ?1)",
            )?
            .query_row([sweep_id], |r| Ok((r.get(0)?, r.get(1)?)))?)
    }

    /// Stores an opaque value (e.g. JSON of the strategy report) under `key` for the sweep,
    /// replacing any earlier one.
    pub fn put_meta(
        &mut self,
        sweep_id: &str,
        key: &str,
        value: &str,
    ) -> Result<(), CoordinatorError> {
        let sweep = sweep_key(&self.conn, sweep_id)?;
        self.conn
            .prepare_cached(
                "INSERT INTO sweep_meta (sweep, key, value) VALUES (?1, ?2, ?3)
                 ON CONFLICT (sweep, key) DO UPDATE SET value = excluded.value",
            )?
            .execute(params![sweep, key, value])?;
        Ok(())
    }

    pub fn meta(&self, sweep_id: &str, key: &str) -> Result<Option<String>, CoordinatorError> {
        let value = self
            .conn
            .prepare_cached(
                "SELECT value FROM sweep_meta
                 WHERE sweep = (SELECT id FROM sweeps WHERE sweep_id = ?1) AND key = ?2",
            )?
            .query_row([sweep_id, key], |r| r.get(0))
            .optional()?;
        Ok(value)
    }
}

/// A second connection to a store's file that copies its WAL into the database.
pub struct Checkpointer {
    conn: Connection,
}

impl Checkpointer {
    /// Checkpoints what is committed, without waiting for or blocking the writer (PASSIVE).
    pub fn run(&self) -> Result<(), CoordinatorError> {
        self.conn
            .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))?;
        Ok(())
    }
}

/// Reads the file's application id and schema version before anything is written. Returns
/// whether the database is new (empty) and needs the schema.
fn check_identity(conn: &Connection, name: &str) -> Result<bool, CoordinatorError> {
    let not_sqlite = |e: rusqlite::Error| match e.sqlite_error_code() {
        Some(ErrorCode::NotADatabase) => {
            CoordinatorError::Storage(format!("{name}: not an lrsweep database (not SQLite)"))
        }
        _ => e.into(),
    };
    let version: i64 = conn
        .pragma_query_one(None, "user_version")
        .map_err(not_sqlite)?;
    let app: i64 = conn.pragma_query_one(None, "application_id")?;
    let tables: i64 = conn.query_row("SELECT count(*) FROM sqlite_schema", [], |r| r.get(0))?;
    match (app, version) {
        (0, 0) if tables == 0 => Ok(true),
        (APPLICATION_ID, SCHEMA_VERSION) => Ok(false),
        (APPLICATION_ID, other) => Err(CoordinatorError::Storage(format!(
            "{name}: database schema version {other}, but this build reads version \
             {SCHEMA_VERSION}; use a matching lrsweep or a new --db file"
        ))),
        _ => Err(CoordinatorError::Storage(format!(
            "{name}: not an lrsweep database (SQLite file of another program: application_id \
             {app:#x}, user_version {version})"
        ))),
    }
}

pub(super) fn sweep_key(conn: &Connection, sweep_id: &str) -> Result<i64, CoordinatorError> {
    conn.prepare_cached("SELECT id FROM sweeps WHERE sweep_id = ?1")?
        .query_row([sweep_id], |r| r.get(0))
        .optional()?
        .ok_or_else(|| unknown_sweep(sweep_id))
}

/// Records that `attempt` of `trial` started on `worker`. Starting an attempt number again (a
/// resumed coordinator re-dispatching it) replaces the earlier record.
fn start_attempt(
    conn: &Connection,
    sweep_id: &str,
    trial: u64,
    attempt: u32,
    worker: &str,
) -> Result<(), CoordinatorError> {
    let sweep = sweep_key(conn, sweep_id)?;
    conn.prepare_cached(
        "INSERT INTO attempts (sweep, trial, attempt, worker, started_at_ms)
             VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT (sweep, trial, attempt) DO UPDATE SET
                 worker = excluded.worker, started_at_ms = excluded.started_at_ms,
                 ended_at_ms = NULL, outcome = NULL, error = NULL",
    )?
    .execute(params![sweep, to_i64(trial)?, attempt, worker, now_ms()])?;
    Ok(())
}

/// Records how `attempt` of `trial` ended; it must have been started.
fn end_attempt(
    conn: &Connection,
    sweep_id: &str,
    trial: u64,
    attempt: u32,
    outcome: AttemptOutcome,
    error: Option<&str>,
) -> Result<(), CoordinatorError> {
    let changed = conn
        .prepare_cached(
            "UPDATE attempts SET ended_at_ms = ?4, outcome = ?5, error = ?6
             WHERE sweep = (SELECT id FROM sweeps WHERE sweep_id = ?1)
               AND trial = ?2 AND attempt = ?3",
        )?
        .execute(params![
            sweep_id,
            to_i64(trial)?,
            attempt,
            now_ms(),
            outcome,
            error
        ])?;
    if changed == 0 {
        return Err(CoordinatorError::Storage(format!(
            "no attempt {attempt} of trial {trial} in sweep `{sweep_id}` was started"
        )));
    }
    Ok(())
}

fn upsert_trials(tx: &Connection, trials: &[TrialRow]) -> Result<(), CoordinatorError> {
    let mut keys = SweepKeys::default();
    let mut upsert = tx.prepare_cached(
        "INSERT INTO trials (sweep, trial, round, lr, replicate, replicates, fraction,
             budget, status, prune_reason, attempt, steps, steps_run, worker, error,
             final_loss)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)
         ON CONFLICT (sweep, trial) DO UPDATE SET
             round = excluded.round, lr = excluded.lr, replicate = excluded.replicate,
             replicates = excluded.replicates, fraction = excluded.fraction,
             budget = excluded.budget, status = excluded.status,
             prune_reason = excluded.prune_reason, attempt = excluded.attempt,
             steps = excluded.steps, steps_run = excluded.steps_run,
             worker = excluded.worker, error = excluded.error,
             final_loss = excluded.final_loss",
    )?;
    for t in trials {
        upsert.execute(params![
            keys.get(tx, &t.sweep_id)?,
            to_i64(t.id)?,
            t.round,
            Real(t.lr),
            t.replicate,
            t.replicates,
            Real(t.fraction),
            to_i64(t.budget)?,
            t.status,
            t.prune_reason,
            t.attempt,
            to_i64(t.steps)?,
            to_i64(t.steps_run)?,
            t.worker,
            t.error,
            t.final_loss.map(Real),
        ])?;
    }
    Ok(())
}

fn insert_points(tx: &Connection, batches: &[PointBatch<'_>]) -> Result<usize, CoordinatorError> {
    let mut added = 0;
    let mut keys = SweepKeys::default();
    let mut stored = tx.prepare_cached(
        "SELECT max(last_step) FROM point_batches WHERE sweep = ?1 AND trial = ?2 AND attempt = ?3",
    )?;
    let mut insert = tx.prepare_cached(
        "INSERT INTO point_batches (sweep, trial, attempt, first_step, last_step, points, data)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?;
    for &(sweep_id, trial, attempt, points) in batches {
        let sweep = keys.get(tx, sweep_id)?;
        let trial = to_i64(trial)?;
        let last: Option<i64> = stored.query_row(params![sweep, trial, attempt], |r| r.get(0))?;
        let after = last
            .map(|l| u64::try_from(l).map_err(|_| corrupt(format!("a stored last step of {l}"))))
            .transpose()?;
        let Some(new) = point_blob::encode_rising(points, after) else {
            continue;
        };
        insert.execute(params![
            sweep,
            trial,
            attempt,
            to_i64(new.first_step)?,
            to_i64(new.last_step)?,
            to_i64(new.count as u64)?,
            new.data
        ])?;
        added += new.count;
    }
    Ok(added)
}

/// Remembers the last sweep key looked up, since consecutive rows almost always share a sweep.
#[derive(Default)]
struct SweepKeys {
    last: Option<(String, i64)>,
}

impl SweepKeys {
    fn get(&mut self, conn: &Connection, sweep_id: &str) -> Result<i64, CoordinatorError> {
        match &self.last {
            Some((id, key)) if id == sweep_id => Ok(*key),
            _ => {
                let key = sweep_key(conn, sweep_id)?;
                self.last = Some((sweep_id.to_owned(), key));
                Ok(key)
            }
        }
    }
}

fn corrupt(what: String) -> CoordinatorError {
    CoordinatorError::Storage(format!("the database is corrupt: {what}"))
}

fn unknown_sweep(sweep_id: &str) -> CoordinatorError {
    CoordinatorError::Storage(format!("unknown sweep `{sweep_id}`"))
}

/// SQLite integers are signed; a count past i64::MAX would not sort or compare right.
fn to_i64(n: u64) -> Result<i64, CoordinatorError> {
    i64::try_from(n).map_err(|_| CoordinatorError::Storage(format!("{n} does not fit in SQLite")))
}

/// Wall-clock ms since the epoch, as every time in the store is kept.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::point_blob::tests::point;
    use std::path::PathBuf;
    use std::sync::atomic::{AtomicU32, Ordering};

    /// A database path under the temp dir, unique per test, removed with its WAL files on drop.
    struct TempDb(PathBuf);

    impl TempDb {
        fn new(tag: &str) -> TempDb {
            static NEXT: AtomicU32 = AtomicU32::new(0);
            let n = NEXT.fetch_add(1, Ordering::Relaxed);
            let nanos = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap()
                .subsec_nanos();
            TempDb(std::env::temp_dir().join(format!(
                "lrsweep-store-{tag}-{}-{n}-{nanos}.db",
                std::process::id()
            )))
        }
    }

    impl Drop for TempDb {
        fn drop(&mut self) {
            for suffix in ["", "-wal", "-shm"] {
                let mut p = self.0.clone().into_os_string();
                p.push(suffix);
                let _ = std::fs::remove_file(p);
            }
        }
    }

    fn sweep_row(id: &str, status: &str, created_at_ms: i64) -> SweepRow {
        let status = SweepStatus::parse(status).unwrap();
        SweepRow {
            sweep_id: id.into(),
            spec_toml: "[search]\nmin_lr = 1e-4\n".into(),
            status,
            created_at_ms,
        }
    }

    fn store_with(sweeps: &[&str]) -> Store {
        let mut store = Store::open_in_memory().unwrap();
        for (i, id) in sweeps.iter().enumerate() {
            store
                .create_sweep(&sweep_row(id, "running", i as i64))
                .unwrap();
        }
        store
    }

    fn trial_row(sweep: &str, id: u64) -> TrialRow {
        TrialRow {
            sweep_id: sweep.into(),
            id,
            round: 1,
            lr: 0.03 * (id + 1) as f64,
            replicate: (id % 2) as u32,
            replicates: 2,
            fraction: 0.25,
            budget: 1000,
            status: TrialStatus::Running,
            prune_reason: None,
            attempt: 1,
            steps: 10,
            steps_run: 10,
            worker: Some("w1".into()),
            error: None,
            final_loss: Some(1.5),
        }
    }

    fn points(range: std::ops::RangeInclusive<u64>) -> Vec<TracePoint> {
        range
            .map(|s| point(s, 1.0 / s as f64, (s % 4 == 0).then_some(2.0 / s as f64)))
            .collect()
    }

    /// Equal as data: NaN matches NaN, everything else (±inf, ±0) matches bit for bit.
    fn same(a: f64, b: f64) -> bool {
        (a.is_nan() && b.is_nan()) || a.to_bits() == b.to_bits()
    }

    fn same_points(a: &[TracePoint], b: &[TracePoint]) -> bool {
        a.len() == b.len()
            && a.iter().zip(b).all(|(x, y)| {
                x.step == y.step
                    && same(x.train_loss, y.train_loss)
                    && same(x.lr, y.lr)
                    && match (x.val_loss, y.val_loss) {
                        (Some(u), Some(v)) => same(u, v),
                        (None, None) => true,
                        _ => false,
                    }
            })
    }

    fn storage_message(r: Result<Store, CoordinatorError>) -> String {
        match r {
            Err(CoordinatorError::Storage(m)) => m,
            Err(other) => panic!("expected a storage error, got {other:?}"),
            Ok(_) => panic!("expected a storage error, the file was opened"),
        }
    }

    #[test]
    fn a_new_file_gets_the_schema_and_reopens() {
        let db = TempDb::new("new");
        {
            let mut store = Store::open(&db.0).unwrap();
            let version: i64 = store.conn.pragma_query_one(None, "user_version").unwrap();
            assert_eq!(version, SCHEMA_VERSION);
            let tables: Vec<String> = store
                .conn
                .prepare("SELECT name FROM sqlite_schema WHERE type = 'table' ORDER BY name")
                .unwrap()
                .query_map([], |r| r.get(0))
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap();
            assert_eq!(
                tables,
                [
                    "attempts",
                    "point_batches",
                    "sweep_meta",
                    "sweeps",
                    "trials",
                    "workers"
                ]
            );
            store.create_sweep(&sweep_row("s1", "running", 5)).unwrap();
            store.append_points("s1", 0, 1, &points(1..=3)).unwrap();
        }
        let store = Store::open(&db.0).unwrap();
        assert_eq!(
            store.sweep("s1").unwrap(),
            Some(sweep_row("s1", "running", 5))
        );
        assert_eq!(store.point_count("s1").unwrap(), 3);
    }

    #[test]
    fn another_schema_version_is_refused_naming_both() {
        let db = TempDb::new("version");
        drop(Store::open(&db.0).unwrap());
        Connection::open(&db.0)
            .unwrap()
            .pragma_update(None, "user_version", 99)
            .unwrap();
        let message = storage_message(Store::open(&db.0));
        assert!(
            message.contains("version 99")
                && message.contains(&format!("version {SCHEMA_VERSION}")),
            "{message}"
        );
        // Refused untouched: the version is still the foreign one.
        let version: i64 = Connection::open(&db.0)
            .unwrap()
            .pragma_query_one(None, "user_version")
            .unwrap();
        assert_eq!(version, 99);
    }

    #[test]
    fn a_file_that_is_not_an_lrsweep_database_is_refused() {
        let text = TempDb::new("text");
        std::fs::write(&text.0, "step,loss\n".repeat(200)).unwrap();
        let message = storage_message(Store::open(&text.0));
        assert!(message.contains("not SQLite"), "{message}");
        assert_eq!(
            std::fs::read(&text.0).unwrap(),
            "step,loss\n".repeat(200).as_bytes()
        );

        let foreign = TempDb::new("foreign");
        Connection::open(&foreign.0)
            .unwrap()
            .execute_batch("CREATE TABLE notes (body TEXT)")
            .unwrap();
        let message = storage_message(Store::open(&foreign.0));
        assert!(message.contains("another program"), "{message}");

        let missing = TempDb::new("missing").0.join("sweep.db");
        let message = storage_message(Store::open(&missing));
        assert!(
            message.contains(&missing.display().to_string()),
            "{message}"
        );
    }

    #[test]
    fn files_use_wal_with_normal_sync() {
        let db = TempDb::new("wal");
        let store = Store::open(&db.0).unwrap();
        let mode: String = store.conn.pragma_query_one(None, "journal_mode").unwrap();
        assert_eq!(mode, "wal");
        let sync: i64 = store.conn.pragma_query_one(None, "synchronous").unwrap();
        assert_eq!(sync, 1, "NORMAL");
        let checkpoint: i64 = store
            .conn
            .pragma_query_one(None, "wal_autocheckpoint")
            .unwrap();
        assert_eq!(checkpoint, WAL_CHECKPOINT_PAGES);
        let fk: bool = store.conn.pragma_query_one(None, "foreign_keys").unwrap();
        assert!(fk);
    }

    #[test]
    fn checkpoints_move_to_a_second_connection() {
        assert!(Store::open_in_memory()
            .unwrap()
            .checkpointer()
            .unwrap()
            .is_none());
        let db = TempDb::new("checkpointer");
        let mut store = Store::open(&db.0).unwrap();
        store.create_sweep(&sweep_row("s1", "running", 1)).unwrap();
        let checkpointer = store.checkpointer().unwrap().expect("a file has a WAL");
        let auto: i64 = store
            .conn
            .pragma_query_one(None, "wal_autocheckpoint")
            .unwrap();
        assert_eq!(auto, 0);
        store.append_points("s1", 0, 1, &points(1..=100)).unwrap();
        // The points sit in the WAL until a checkpoint copies them into the database file:
        // the store's own connection no longer does, the checkpointer must.
        let file_len = || std::fs::metadata(&db.0).unwrap().len();
        let before = file_len();
        checkpointer.run().unwrap();
        assert!(
            file_len() > before,
            "the checkpoint left the database file at {before} bytes"
        );
        store.append_points("s1", 0, 1, &points(101..=200)).unwrap();
        assert_eq!(store.point_count("s1").unwrap(), 200);
    }

    #[test]
    fn trials_upsert_and_read_back_equal() {
        let mut store = store_with(&["s1", "s2"]);
        let mut trials: Vec<TrialRow> = (0..4).rev().map(|i| trial_row("s1", i)).collect();
        trials[0].final_loss = None;
        trials[1].worker = None;
        store.save_trials(&trials).unwrap();
        store.save_trials(&[trial_row("s2", 0)]).unwrap();
        trials.sort_by_key(|t| t.id);
        assert_eq!(store.trials("s1").unwrap(), trials);

        trials[2].status = TrialStatus::Pruned;
        trials[2].prune_reason = Some(PruneReason::Diverged);
        trials[2].attempt = 2;
        trials[2].steps = 0;
        trials[2].steps_run = 42;
        trials[2].error = Some("worker lost".into());
        trials[2].final_loss = Some(f64::INFINITY);
        store.save_trials(&trials[2..3]).unwrap();
        assert_eq!(store.trials("s1").unwrap(), trials);
        assert_eq!(store.trials("s2").unwrap(), [trial_row("s2", 0)]);

        trials[1].final_loss = Some(f64::NAN);
        store.save_trials(&trials[1..2]).unwrap();
        assert!(store.trials("s1").unwrap()[1].final_loss.unwrap().is_nan());

        let unknown = store.save_trials(&[trial_row("s1", 9), trial_row("nope", 0)]);
        assert!(matches!(unknown, Err(CoordinatorError::Storage(_))));
        assert_eq!(
            store.trials("s1").unwrap().len(),
            4,
            "the failed slice wrote nothing"
        );
    }

    #[test]
    fn sweep_status_changes_and_the_latest_unfinished_one_resumes() {
        let mut store = Store::open_in_memory().unwrap();
        assert_eq!(store.latest_sweep().unwrap(), None);
        assert_eq!(store.resumable_sweep().unwrap(), None);
        store
            .create_sweep(&sweep_row("old", "completed", 1))
            .unwrap();
        store.create_sweep(&sweep_row("mid", "running", 2)).unwrap();
        store.create_sweep(&sweep_row("new", "running", 3)).unwrap();
        assert_eq!(store.resumable_sweep().unwrap().unwrap().sweep_id, "new");
        assert_eq!(store.latest_sweep().unwrap().unwrap().sweep_id, "new");

        // Stopped by a signal: still resumable.
        store
            .set_sweep_status("new", SweepStatus::Interrupted)
            .unwrap();
        assert_eq!(
            store.sweep("new").unwrap().unwrap().status,
            SweepStatus::Interrupted
        );
        assert_eq!(store.resumable_sweep().unwrap().unwrap().sweep_id, "new");
        // Once the latest completed, nothing resumes, not even the older unfinished one.
        store
            .set_sweep_status("new", SweepStatus::Completed)
            .unwrap();
        assert_eq!(store.resumable_sweep().unwrap(), None);
        assert_eq!(
            store.sweep("mid").unwrap().unwrap().status,
            SweepStatus::Running
        );
        store
            .set_sweep_status("mid", SweepStatus::Completed)
            .unwrap();
        assert_eq!(store.latest_sweep().unwrap().unwrap().sweep_id, "new");

        assert!(matches!(
            store.set_sweep_status("nope", SweepStatus::Completed),
            Err(CoordinatorError::Storage(_))
        ));
        // The CHECK constraints refuse a status or reason no enum names.
        for sql in [
            "UPDATE sweeps SET status = 'paused' WHERE sweep_id = 'mid'",
            "UPDATE trials SET status = 'sleeping'",
            "UPDATE trials SET prune_reason = 'bored'",
            "UPDATE attempts SET outcome = 'vanished'",
        ] {
            let refused = store.conn.execute(sql, []);
            assert!(
                matches!(&refused, Err(e) if e.to_string().contains("CHECK")) || refused == Ok(0),
                "{sql}: {refused:?}"
            );
        }
        assert!(store
            .conn
            .execute(
                "UPDATE sweeps SET status = 'paused' WHERE sweep_id = 'mid'",
                []
            )
            .is_err());
        assert!(store.create_sweep(&sweep_row("mid", "running", 4)).is_err());
    }

    #[test]
    fn points_round_trip_non_finite_values() {
        let mut store = store_with(&["s1"]);
        let sent = [
            point(1, f64::NAN, Some(f64::NAN)),
            point(2, f64::INFINITY, Some(f64::INFINITY)),
            point(3, f64::NEG_INFINITY, Some(f64::NEG_INFINITY)),
            point(4, -0.0, None),
            point(5, 2.5, Some(0.0)),
            point(6, f64::MIN_POSITIVE, Some(f64::MAX)),
            TracePoint {
                lr: f64::NAN,
                ..point(7, 1.0, None)
            },
        ];
        assert_eq!(store.append_points("s1", 3, 1, &sent).unwrap(), sent.len());
        let back = store.points("s1", 3, 1).unwrap();
        assert!(same_points(&back, &sent), "{back:?}");
        assert!(back[0].train_loss.is_nan() && back[1].train_loss == f64::INFINITY);
        assert!(back[2].val_loss == Some(f64::NEG_INFINITY) && back[3].val_loss.is_none());
    }

    #[test]
    fn duplicate_points_are_ignored() {
        let mut store = store_with(&["s1"]);
        assert_eq!(
            store.append_points("s1", 0, 1, &points(1..=10)).unwrap(),
            10
        );
        // A worker resends 6..=12 after a reconnect, with a changed loss that must not win.
        let mut resent = points(6..=12);
        resent[0].train_loss = 99.0;
        assert_eq!(store.append_points("s1", 0, 1, &resent).unwrap(), 2);
        assert_eq!(store.point_count("s1").unwrap(), 12);
        assert!(same_points(
            &store.points("s1", 0, 1).unwrap(),
            &points(1..=12)
        ));
    }

    #[test]
    fn a_corrupt_stored_step_is_an_error_not_a_guess() {
        let mut store = store_with(&["s1"]);
        store.append_points("s1", 0, 1, &points(1..=3)).unwrap();
        store
            .conn
            .execute_batch("UPDATE point_batches SET first_step = -5, last_step = -5")
            .unwrap();
        let message = store
            .append_points("s1", 0, 1, &points(4..=5))
            .unwrap_err()
            .to_string();
        assert!(
            message.contains("corrupt") && message.contains("-5"),
            "{message}"
        );
        assert_eq!(store.point_count("s1").unwrap(), 3, "nothing written");
    }

    /// Attempt `attempt` of trial 4 of sweep s1 started on `worker`, as the coordinator writes it.
    fn started(attempt: u32, worker: &str) -> Changes {
        Changes {
            started: vec![(4, attempt, worker.into())],
            ..Changes::default()
        }
    }

    /// Attempt `attempt` of trial 4 ended.
    fn ended(attempt: u32, outcome: &str, error: Option<&str>) -> Changes {
        Changes {
            ended: vec![(
                4,
                attempt,
                AttemptOutcome::parse(outcome).unwrap(),
                error.map(str::to_string),
            )],
            ..Changes::default()
        }
    }

    #[test]
    fn attempts_and_their_points_are_kept_apart() {
        let mut store = store_with(&["s1", "s2"]);
        store.commit("s1", &[started(1, "w1")]).unwrap();
        store.append_points("s1", 4, 1, &points(1..=5)).unwrap();
        store
            .commit("s1", &[ended(1, "lost", Some("stream reset"))])
            .unwrap();
        store.commit("s1", &[started(2, "w2")]).unwrap();
        store.append_points("s1", 4, 2, &points(1..=3)).unwrap();
        // Late points of the superseded attempt still land under attempt 1.
        store.append_points("s1", 4, 1, &points(6..=7)).unwrap();
        store.append_points("s2", 4, 1, &points(1..=2)).unwrap();

        assert!(same_points(
            &store.points("s1", 4, 1).unwrap(),
            &points(1..=7)
        ));
        assert!(same_points(
            &store.points("s1", 4, 2).unwrap(),
            &points(1..=3)
        ));
        assert_eq!(store.point_count("s1").unwrap(), 10);
        assert_eq!(store.point_count("s2").unwrap(), 2);

        // (attempt, worker, outcome, error, ended)
        type AttemptRecord = (u32, String, Option<String>, Option<String>, bool);
        let attempts: Vec<AttemptRecord> = store
            .conn
            .prepare(
                "SELECT attempt, worker, outcome, error, ended_at_ms IS NOT NULL
                 FROM attempts ORDER BY attempt",
            )
            .unwrap()
            .query_map([], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
            })
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(
            attempts,
            [
                (
                    1,
                    "w1".into(),
                    Some("lost".into()),
                    Some("stream reset".into()),
                    true
                ),
                (2, "w2".into(), None, None, false),
            ]
        );
        assert!(matches!(
            store.commit("s1", &[ended(3, "completed", None)]),
            Err(CoordinatorError::Storage(_))
        ));
        assert!(matches!(
            store.append_points("nope", 4, 1, &points(1..=2)),
            Err(CoordinatorError::Storage(_))
        ));
    }

    #[test]
    fn coalesced_batches_equal_one_by_one() {
        let traces: Vec<(u64, u32, Vec<TracePoint>)> = (0..6)
            .flat_map(|trial| (1..=2).map(move |attempt| (trial, attempt, points(1..=40))))
            .collect();
        // Interleaved 8-point batches as they arrive from several workers, plus one resend.
        let mut batches: Vec<PointBatch<'_>> = Vec::new();
        for chunk in 0..5 {
            for (trial, attempt, trace) in &traces {
                batches.push(("s1", *trial, *attempt, &trace[chunk * 8..(chunk + 1) * 8]));
            }
        }
        batches.push(("s1", 0, 1, &traces[0].2[..8]));

        let mut one_by_one = store_with(&["s1"]);
        let mut added = 0;
        for &(sweep, trial, attempt, batch) in &batches {
            added += one_by_one
                .append_points(sweep, trial, attempt, batch)
                .unwrap();
        }
        let mut coalesced = store_with(&["s1"]);
        assert_eq!(coalesced.append_point_batches(&batches).unwrap(), added);
        assert_eq!(added, 6 * 2 * 40);
        assert_eq!(coalesced.point_count("s1").unwrap(), added as u64);
        for (trial, attempt, trace) in &traces {
            let a = one_by_one.points("s1", *trial, *attempt).unwrap();
            let b = coalesced.points("s1", *trial, *attempt).unwrap();
            assert!(same_points(&a, trace) && same_points(&b, trace));
        }

        // All or nothing: a batch for an unknown sweep rolls back the batches before it.
        let mut store = store_with(&["s1"]);
        let bad = [batches[0], ("nope", 0, 1, batches[1].3)];
        assert!(store.append_point_batches(&bad).is_err());
        assert_eq!(store.point_count("s1").unwrap(), 0);
    }

    fn worker(id: &str, state: WorkerState, last_seen_ms: i64) -> WorkerRow {
        WorkerRow {
            worker: id.into(),
            name: format!("{id}-name"),
            host: "host".into(),
            slots: 2,
            state,
            registered_at_ms: 10,
            last_seen_ms,
        }
    }

    #[test]
    fn workers_are_upserted_with_how_many_trials_each_runs() {
        let mut store = store_with(&["s1"]);
        let workers = |store: &Store| -> Vec<(String, WorkerState, i64, u32)> {
            store
                .workers("s1")
                .unwrap()
                .into_iter()
                .map(|(w, busy)| (w.worker, w.state, w.last_seen_ms, busy))
                .collect()
        };
        let mut running = trial_row("s1", 4);
        running.status = TrialStatus::Running;
        running.attempt = 1;
        store.save_trials(&[running]).unwrap();
        store
            .commit(
                "s1",
                &[Changes {
                    workers: vec![
                        worker("w1", WorkerState::Registered, 10),
                        worker("w2", WorkerState::Connected, 10),
                    ],
                    ..started(1, "w1")
                }],
            )
            .unwrap();
        store
            .commit(
                "s1",
                &[Changes {
                    workers: vec![worker("w1", WorkerState::Connected, 20)],
                    ..Changes::default()
                }],
            )
            .unwrap();
        assert_eq!(
            workers(&store),
            [
                ("w1".into(), WorkerState::Connected, 20, 1),
                ("w2".into(), WorkerState::Connected, 10, 0)
            ]
        );
        // A new coordinator on the sweep knows none of them.
        store.disconnect_workers("s1").unwrap();
        assert!(workers(&store)
            .iter()
            .all(|w| w.1 == WorkerState::Disconnected));
    }

    #[test]
    fn a_read_only_store_reads_and_never_writes() {
        let db = TempDb::new("read-only");
        let message = storage_message(Store::open_read_only(&db.0));
        assert!(message.contains("no database"), "{message}");
        drop(Store::open(&db.0).unwrap());
        let mut writer = Store::open(&db.0).unwrap();
        writer.create_sweep(&sweep_row("s1", "running", 1)).unwrap();
        let mut reader = Store::open_read_only(&db.0).unwrap();
        assert_eq!(reader.latest_sweep().unwrap().unwrap().sweep_id, "s1");
        assert!(reader.create_sweep(&sweep_row("s2", "running", 2)).is_err());
        // It sees what the writer commits after it opened.
        writer.create_sweep(&sweep_row("s3", "running", 3)).unwrap();
        assert_eq!(reader.latest_sweep().unwrap().unwrap().sweep_id, "s3");
    }

    #[test]
    fn meta_values_are_per_sweep_and_replaced() {
        let mut store = store_with(&["s1", "s2"]);
        assert_eq!(store.meta("s1", "report").unwrap(), None);
        store
            .put_meta("s1", "report", r#"{"best_lr":0.1}"#)
            .unwrap();
        store.put_meta("s2", "report", "{}").unwrap();
        store
            .put_meta("s1", "report", r#"{"best_lr":0.2}"#)
            .unwrap();
        assert_eq!(
            store.meta("s1", "report").unwrap().as_deref(),
            Some(r#"{"best_lr":0.2}"#)
        );
        assert_eq!(store.meta("s2", "report").unwrap().as_deref(), Some("{}"));
        assert!(store.put_meta("nope", "report", "{}").is_err());
    }
}
