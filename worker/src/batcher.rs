//! How a trial's points are grouped for the coordinator: up to 32 points per batch, never held
//! longer than 5 ms, and at once when a point carries what the coordinator acts on immediately
//! (a validation loss for the rung rules, a non-finite loss for divergence).

use std::time::{Duration, Instant};

use lrsweep_proto::domain::TracePoint;

/// Points are sent in batches of at most this many...
pub const BATCH_POINTS: usize = 32;
/// ...or after this long, so the coordinator sees a divergence within milliseconds.
pub const BATCH_AGE: Duration = Duration::from_millis(5);

#[derive(Debug)]
pub struct TraceBatcher {
    points: Vec<TracePoint>,
    oldest: Instant,
    /// None: batches close by count and urgency only (deterministic, for in-process runs).
    max_age: Option<Duration>,
}

impl Default for TraceBatcher {
    fn default() -> Self {
        TraceBatcher::with_max_age(Some(BATCH_AGE))
    }
}

impl TraceBatcher {
    pub fn with_max_age(max_age: Option<Duration>) -> TraceBatcher {
        TraceBatcher {
            points: Vec::with_capacity(BATCH_POINTS),
            oldest: Instant::now(),
            max_age,
        }
    }

    /// Adds a point; returns the batch if it must go out now.
    pub fn push(&mut self, point: TracePoint) -> Option<Vec<TracePoint>> {
        if self.points.is_empty() {
            self.oldest = Instant::now();
        }
        self.points.push(point);
        let urgent = !point.train_loss.is_finite() || point.val_loss.is_some();
        let aged = self.max_age.is_some_and(|age| self.oldest.elapsed() >= age);
        if urgent || aged || self.points.len() >= BATCH_POINTS {
            self.take()
        } else {
            None
        }
    }

    /// When the pending points must go out at the latest: for a producer that may fall silent
    /// after a point (a program between two slow steps).
    pub fn deadline(&self) -> Option<Instant> {
        match self.max_age {
            Some(age) if !self.points.is_empty() => Some(self.oldest + age),
            _ => None,
        }
    }

    /// The pending points, if any.
    pub fn take(&mut self) -> Option<Vec<TracePoint>> {
        if self.points.is_empty() {
            None
        } else {
            Some(std::mem::replace(
                &mut self.points,
                Vec::with_capacity(BATCH_POINTS),
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(step: u64, loss: f64, val_loss: Option<f64>) -> TracePoint {
        TracePoint {
            step,
            train_loss: loss,
            lr: 0.1,
            val_loss,
        }
    }

    #[test]
    fn batches_close_when_full_or_urgent() {
        let mut b = TraceBatcher::with_max_age(None);
        for step in 1..BATCH_POINTS as u64 {
            assert!(b.push(point(step, 1.0, None)).is_none());
        }
        assert_eq!(b.deadline(), None);
        let full = b.push(point(32, 1.0, None)).unwrap();
        assert_eq!(full.len(), BATCH_POINTS);
        assert!(b.take().is_none());
        assert!(b.push(point(33, 1.0, None)).is_none());
        assert_eq!(b.push(point(34, f64::NAN, None)).unwrap().len(), 2);
        assert_eq!(b.push(point(35, 1.0, Some(0.5))).unwrap().len(), 1);
        assert!(b.push(point(36, 1.0, None)).is_none());
        assert_eq!(b.take().unwrap()[0].step, 36);
    }

    #[test]
    fn a_pending_batch_has_a_deadline_and_closes_when_aged() {
        let mut b = TraceBatcher::with_max_age(Some(Duration::from_millis(1)));
        assert_eq!(b.deadline(), None);
        assert!(b.push(point(1, 1.0, None)).is_none());
        let deadline = b.deadline().unwrap();
        std::thread::sleep(deadline.saturating_duration_since(Instant::now()));
        assert_eq!(b.push(point(2, 1.0, None)).unwrap().len(), 2);
    }
}
