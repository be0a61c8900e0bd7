//! The workers the sweep hands trials to: their slots, what each runs, and which have room. The
//! least-loaded worker with a free slot is found without a scan, so a dispatch costs the same
//! with 10 workers as with 10,000.

use std::collections::{BTreeMap, BTreeSet};

use lrsweep_proto::domain::TrialId;

use super::WorkerId;

#[derive(Debug)]
struct Slots {
    slots: usize,
    /// False while its stream is down: it keeps its trials but gets no new ones.
    available: bool,
    running: BTreeSet<TrialId>,
}

impl Slots {
    fn has_room(&self) -> bool {
        self.available && self.running.len() < self.slots
    }
}

#[derive(Debug, Default)]
pub(super) struct WorkerPool {
    workers: BTreeMap<WorkerId, Slots>,
    /// (trials running, worker) of every available worker with a free slot: its first entry is
    /// the least-loaded one, ties to the smallest id.
    free: BTreeSet<(usize, WorkerId)>,
}

impl WorkerPool {
    pub(super) fn add(&mut self, id: WorkerId, slots: u32) {
        self.remove(&id);
        let w = Slots {
            slots: slots.max(1) as usize,
            available: true,
            running: BTreeSet::new(),
        };
        self.free.insert((0, id.clone()));
        self.workers.insert(id, w);
    }

    /// Takes the worker out; returns the trials it was running.
    pub(super) fn remove(&mut self, id: &str) -> Option<BTreeSet<TrialId>> {
        let w = self.workers.remove(id)?;
        self.free.remove(&(w.running.len(), id.to_string()));
        Some(w.running)
    }

    pub(super) fn set_available(&mut self, id: &str, available: bool) {
        self.update(id, |w| w.available = available);
    }

    /// The trials the worker runs, in id order.
    pub(super) fn running(&self, id: &str) -> impl Iterator<Item = TrialId> + '_ {
        self.workers
            .get(id)
            .into_iter()
            .flat_map(|w| w.running.iter().copied())
    }

    /// The available worker with a free slot that runs the fewest trials (the smallest id among
    /// equals).
    pub(super) fn least_loaded_free(&self) -> Option<WorkerId> {
        self.free.first().map(|(_, id)| id.clone())
    }

    pub(super) fn start(&mut self, id: &str, trial: TrialId) {
        self.update(id, |w| {
            w.running.insert(trial);
        });
    }

    pub(super) fn finish(&mut self, id: &str, trial: TrialId) {
        self.update(id, |w| {
            w.running.remove(&trial);
        });
    }

    /// Changes a worker and keeps `free` in step with it.
    fn update(&mut self, id: &str, change: impl FnOnce(&mut Slots)) {
        let Some(w) = self.workers.get_mut(id) else {
            return;
        };
        if w.has_room() {
            self.free.remove(&(w.running.len(), id.to_string()));
        }
        change(w);
        if w.has_room() {
            self.free.insert((w.running.len(), id.to_string()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The definition `free` stands in for: a scan of every worker.
    fn scanned(pool: &WorkerPool) -> Option<WorkerId> {
        pool.workers
            .iter()
            .filter(|(_, w)| w.has_room())
            .min_by_key(|(_, w)| w.running.len())
            .map(|(id, _)| id.clone())
    }

    #[test]
    fn least_loaded_free_matches_a_scan_through_every_change() {
        let mut pool = WorkerPool::default();
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = |n: u64| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state % n
        };
        for step in 0..5_000u64 {
            let id = format!("w{}", next(12));
            let trial = next(40);
            match next(6) {
                0 => pool.add(id, 1 + next(3) as u32),
                1 => {
                    pool.remove(&id);
                }
                2 => pool.set_available(&id, next(2) == 0),
                3 | 4 => pool.start(&id, trial),
                _ => pool.finish(&id, trial),
            }
            assert_eq!(
                pool.least_loaded_free(),
                scanned(&pool),
                "after step {step}"
            );
        }
    }

    #[test]
    fn a_full_or_unavailable_worker_is_not_free() {
        let mut pool = WorkerPool::default();
        pool.add("a".into(), 1);
        pool.add("b".into(), 2);
        assert_eq!(pool.least_loaded_free().as_deref(), Some("a"));
        pool.start("a", 0);
        assert_eq!(pool.least_loaded_free().as_deref(), Some("b"));
        pool.start("b", 1);
        assert_eq!(pool.least_loaded_free().as_deref(), Some("b"));
        pool.set_available("b", false);
        assert_eq!(pool.least_loaded_free(), None);
        pool.finish("a", 0);
        assert_eq!(pool.least_loaded_free().as_deref(), Some("a"));
        assert_eq!(pool.remove("b").map(|r| r.len()), Some(1));
        assert_eq!(pool.running("b").count(), 0);
    }
}
