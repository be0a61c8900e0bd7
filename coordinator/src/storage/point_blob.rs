//! A batch of one attempt's trace points as one BLOB: one row per point made SQLite's B-tree
//! inserts the coordinator's ceiling (about 1.1 µs a point, 74% of its samples when saturated);
//! a row per batch costs about what a row per point did, for 32 points or more.
//!
//! Each point is `POINT_BYTES` little-endian bytes: step (u64), training loss, rate (f64 bits,
//! so NaN, ±inf and −0.0 come back bit for bit), a flag for the validation loss and its bits
//! (zero when absent).

use lrsweep_proto::domain::TracePoint;

use crate::CoordinatorError;

pub const POINT_BYTES: usize = 33;

/// The points of a batch that rise strictly past `after` (the attempt's last stored step, if
/// any) and past each other, encoded: a point at or below one already kept is a resend.
pub struct Encoded {
    pub first_step: u64,
    pub last_step: u64,
    pub count: usize,
    pub data: Vec<u8>,
}

/// None when no point of `points` is new.
pub fn encode_rising(points: &[TracePoint], after: Option<u64>) -> Option<Encoded> {
    let mut data = Vec::with_capacity(points.len() * POINT_BYTES);
    let mut first_step = None;
    let mut last = after;
    for p in points {
        if last.is_some_and(|l| p.step <= l) {
            continue;
        }
        first_step.get_or_insert(p.step);
        last = Some(p.step);
        data.extend_from_slice(&p.step.to_le_bytes());
        data.extend_from_slice(&p.train_loss.to_bits().to_le_bytes());
        data.extend_from_slice(&p.lr.to_bits().to_le_bytes());
        data.push(u8::from(p.val_loss.is_some()));
        data.extend_from_slice(&p.val_loss.unwrap_or(0.0).to_bits().to_le_bytes());
    }
    Some(Encoded {
        first_step: first_step?,
        last_step: last?,
        count: data.len() / POINT_BYTES,
        data,
    })
}

/// Appends the points of one stored batch to `out`. A blob whose length or flags do not fit the
/// layout is an error naming the batch, never a guess.
pub fn decode_into(data: &[u8], out: &mut Vec<TracePoint>) -> Result<(), CoordinatorError> {
    let bad = |what: &str| {
        CoordinatorError::Storage(format!(
            "a stored batch of {} bytes is corrupt: {what}",
            data.len()
        ))
    };
    if !data.len().is_multiple_of(POINT_BYTES) {
        return Err(bad("not a whole number of points"));
    }
    out.reserve(data.len() / POINT_BYTES);
    for point in data.chunks_exact(POINT_BYTES) {
        let word = |at: usize| {
            let mut bytes = [0u8; 8];
            bytes.copy_from_slice(&point[at..at + 8]);
            u64::from_le_bytes(bytes)
        };
        let val_loss = match point[24] {
            0 => None,
            1 => Some(f64::from_bits(word(25))),
            _ => return Err(bad("a validation flag that is neither 0 nor 1")),
        };
        out.push(TracePoint {
            step: word(0),
            train_loss: f64::from_bits(word(8)),
            lr: f64::from_bits(word(16)),
            val_loss,
        });
    }
    Ok(())
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// A point at rate 0.1; the store's tests build theirs with it too.
    pub(in crate::storage) fn point(
        step: u64,
        train_loss: f64,
        val_loss: Option<f64>,
    ) -> TracePoint {
        TracePoint {
            step,
            train_loss,
            lr: 0.1,
            val_loss,
        }
    }

    fn bits(p: &TracePoint) -> (u64, u64, u64, Option<u64>) {
        (
            p.step,
            p.train_loss.to_bits(),
            p.lr.to_bits(),
            p.val_loss.map(f64::to_bits),
        )
    }

    fn decode(data: &[u8]) -> Result<Vec<TracePoint>, CoordinatorError> {
        let mut out = Vec::new();
        decode_into(data, &mut out).map(|()| out)
    }

    #[test]
    fn every_value_comes_back_bit_for_bit() {
        let sent = [
            point(1, f64::NAN, Some(f64::NAN)),
            point(2, f64::INFINITY, Some(f64::NEG_INFINITY)),
            point(3, -0.0, None),
            point(4, f64::MIN_POSITIVE, Some(-0.0)),
            TracePoint {
                lr: f64::from_bits(0x7ff8_0000_0000_0abc),
                ..point(u64::MAX, 1.0, Some(f64::MAX))
            },
        ];
        let encoded = encode_rising(&sent, None).unwrap();
        assert_eq!((encoded.first_step, encoded.last_step), (1, u64::MAX));
        assert_eq!(encoded.count, 5);
        assert_eq!(encoded.data.len(), 5 * POINT_BYTES);
        let back = decode(&encoded.data).unwrap();
        assert_eq!(
            back.iter().map(bits).collect::<Vec<_>>(),
            sent.iter().map(bits).collect::<Vec<_>>()
        );
    }

    #[test]
    fn points_at_or_below_the_last_kept_are_skipped() {
        let steps = |ps: &[u64], after| {
            let batch: Vec<_> = ps.iter().map(|&s| point(s, 1.0, None)).collect();
            encode_rising(&batch, after).map(|e| {
                let back = decode(&e.data).unwrap();
                assert_eq!((e.first_step, e.last_step, e.count), {
                    let s: Vec<u64> = back.iter().map(|p| p.step).collect();
                    (s[0], s[s.len() - 1], s.len())
                });
                back.iter().map(|p| p.step).collect::<Vec<_>>()
            })
        };
        assert_eq!(steps(&[6, 7, 8, 9], Some(7)), Some(vec![8, 9]));
        assert_eq!(steps(&[3, 5, 4, 5, 6], None), Some(vec![3, 5, 6]));
        assert_eq!(steps(&[1, 2], Some(2)), None);
        assert_eq!(steps(&[], None), None);
    }

    #[test]
    fn a_corrupt_blob_is_an_error() {
        let good = encode_rising(&[point(1, 1.0, Some(2.0))], None)
            .unwrap()
            .data;
        assert!(decode(&good[..POINT_BYTES - 1]).is_err());
        let mut flag = good.clone();
        flag[24] = 7;
        let message = decode(&flag).unwrap_err().to_string();
        assert!(message.contains("validation flag"), "{message}");
        assert!(decode(&[]).unwrap().is_empty());
    }
}
