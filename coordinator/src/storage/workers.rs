//! The workers of a sweep as stored: who registered, whether its stream is open, when it was
//! last heard from. Written by the hub through the same queue as the sweep's changes, read by
//! `status`. How busy a worker is follows from the attempts table, so it is not kept here.

use rusqlite::{params, Connection};

use super::store::sweep_key;
use crate::CoordinatorError;

/// Where a worker stands with the coordinator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WorkerState {
    /// Registered; its stream is not open yet.
    Registered,
    /// Its stream is open.
    Connected,
    /// Its stream broke; it keeps its trials while its lease runs.
    Disconnected,
    /// Silent or away past its lease: its trials went to others.
    Lost,
    /// Said goodbye.
    Left,
}

impl WorkerState {
    pub const ALL: [WorkerState; 5] = [
        WorkerState::Registered,
        WorkerState::Connected,
        WorkerState::Disconnected,
        WorkerState::Lost,
        WorkerState::Left,
    ];

    pub const fn as_str(&self) -> &'static str {
        match self {
            WorkerState::Registered => "registered",
            WorkerState::Connected => "connected",
            WorkerState::Disconnected => "disconnected",
            WorkerState::Lost => "lost",
            WorkerState::Left => "left",
        }
    }

    pub fn parse(s: &str) -> Option<WorkerState> {
        Self::ALL.into_iter().find(|o| o.as_str() == s)
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct WorkerRow {
    /// The coordinator's id for it (`w3`), as in the attempts table.
    pub worker: String,
    pub name: String,
    pub host: String,
    pub slots: u32,
    pub state: WorkerState,
    pub registered_at_ms: i64,
    pub last_seen_ms: i64,
}

pub(super) fn upsert_workers(
    tx: &Connection,
    sweep_id: &str,
    workers: &[WorkerRow],
) -> Result<(), CoordinatorError> {
    if workers.is_empty() {
        return Ok(());
    }
    let sweep = sweep_key(tx, sweep_id)?;
    let mut upsert = tx.prepare_cached(
        "INSERT INTO workers (sweep, worker, name, host, slots, state, registered_at_ms,
             last_seen_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
         ON CONFLICT (sweep, worker) DO UPDATE SET
             name = excluded.name, host = excluded.host, slots = excluded.slots,
             state = excluded.state, registered_at_ms = excluded.registered_at_ms,
             last_seen_ms = excluded.last_seen_ms",
    )?;
    for w in workers {
        upsert.execute(params![
            sweep,
            w.worker,
            w.name,
            w.host,
            w.slots,
            w.state,
            w.registered_at_ms,
            w.last_seen_ms,
        ])?;
    }
    Ok(())
}

/// The sweep's workers with how many trials each runs now (open attempts of running trials).
pub(super) fn workers(
    conn: &Connection,
    sweep_id: &str,
) -> Result<Vec<(WorkerRow, u32)>, CoordinatorError> {
    let mut stmt = conn.prepare_cached(
        "SELECT w.worker, w.name, w.host, w.slots, w.state, w.registered_at_ms,
                w.last_seen_ms,
                (SELECT count(*) FROM attempts a JOIN trials t
                   ON t.sweep = a.sweep AND t.trial = a.trial AND t.attempt = a.attempt
                 WHERE a.sweep = w.sweep AND a.worker = w.worker AND t.status = 'running')
         FROM workers w WHERE w.sweep = (SELECT id FROM sweeps WHERE sweep_id = ?1)
         ORDER BY w.registered_at_ms, w.worker",
    )?;
    let rows = stmt.query_map([sweep_id], |r| {
        Ok((
            WorkerRow {
                worker: r.get(0)?,
                name: r.get(1)?,
                host: r.get(2)?,
                slots: r.get(3)?,
                state: r.get(4)?,
                registered_at_ms: r.get(5)?,
                last_seen_ms: r.get(6)?,
            },
            r.get(7)?,
        ))
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// A coordinator that starts on a stored sweep knows none of the workers recorded before: the
/// ones still marked connected were cut off with the previous coordinator.
pub(super) fn disconnect_all(conn: &Connection, sweep_id: &str) -> Result<(), CoordinatorError> {
    conn.prepare_cached(
        "UPDATE workers SET state = 'disconnected'
         WHERE sweep = (SELECT id FROM sweeps WHERE sweep_id = ?1)
           AND state IN ('registered', 'connected')",
    )?
    .execute([sweep_id])?;
    Ok(())
}
