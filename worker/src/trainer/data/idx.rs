//! MNIST's IDX files of unsigned bytes: an image file and its label file.

use lrsweep_proto::domain::Task;

use super::targets::targets_of;
use super::{data_error, Table};
use crate::WorkerError;

/// IDX magic numbers: unsigned bytes (0x08) in 3 dimensions (images) or 1 (labels).
const IDX_IMAGES_MAGIC: u32 = 0x0000_0803;
const IDX_LABELS_MAGIC: u32 = 0x0000_0801;

/// The dimension sizes and data of an IDX file of unsigned bytes whose magic number must be
/// `magic` (0x0000_08NN: unsigned bytes in NN dimensions, sizes as big-endian u32).
fn idx_body<'a>(
    bytes: &'a [u8],
    magic: u32,
    source_name: &str,
) -> Result<(Vec<usize>, &'a [u8]), WorkerError> {
    let err = |reason: String| data_error(source_name, 0, reason);
    let word = |i: usize| {
        bytes
            .get(4 * i..4 * i + 4)
            .map(|w| u32::from_be_bytes([w[0], w[1], w[2], w[3]]))
    };
    let found = word(0).ok_or_else(|| err("too short for an IDX header".into()))?;
    if found != magic {
        return Err(err(format!(
            "IDX magic number {found:#010x}, expected {magic:#010x}"
        )));
    }
    let dims = (magic & 0xff) as usize;
    let sizes = (1..=dims)
        .map(|i| word(i).map(|s| s as usize))
        .collect::<Option<Vec<usize>>>()
        .ok_or_else(|| err("IDX header cut short".into()))?;
    let data = &bytes[4 * (dims + 1)..];
    let expected = sizes.iter().try_fold(1usize, |n, &s| n.checked_mul(s));
    if expected != Some(data.len()) {
        return Err(err(format!(
            "{} data bytes, but the header's sizes {sizes:?} need {}",
            data.len(),
            sizes.iter().map(|&s| s as u128).product::<u128>()
        )));
    }
    Ok((sizes, data))
}

/// Parses an IDX image file (n × rows × cols unsigned bytes, used as they are) and its label
/// file (n unsigned bytes, class ids).
pub(super) fn parse_idx(
    images: &[u8],
    images_name: &str,
    labels: &[u8],
    labels_name: &str,
) -> Result<Table, WorkerError> {
    let (sizes, pixels) = idx_body(images, IDX_IMAGES_MAGIC, images_name)?;
    let (label_sizes, label_bytes) = idx_body(labels, IDX_LABELS_MAGIC, labels_name)?;
    if sizes[0] == 0 {
        return Err(data_error(images_name, 0, "no images"));
    }
    if label_sizes[0] != sizes[0] {
        return Err(data_error(
            labels_name,
            0,
            format!(
                "{} labels for {} images in {images_name}",
                label_sizes[0], sizes[0]
            ),
        ));
    }
    let mut y: Vec<f64> = label_bytes.iter().map(|&l| f64::from(l)).collect();
    let targets = targets_of(&mut y, Task::Classification, labels_name, |i| i + 1)?;
    Ok(Table {
        features: sizes[1] * sizes[2],
        x: pixels.iter().map(|&p| f64::from(p)).collect(),
        y,
        targets,
    })
}

#[cfg(test)]
mod tests {
    use lrsweep_proto::domain::DatasetSpec;

    use super::*;
    use crate::trainer::data::targets::Targets;
    use crate::trainer::data::test_support::{config, data_error_at, gzip, TempDir};
    use crate::trainer::PreparedData;

    /// An IDX file of unsigned bytes with the given magic, sizes and data.
    fn idx(magic: u32, sizes: &[u32], data: &[u8]) -> Vec<u8> {
        let mut out = magic.to_be_bytes().to_vec();
        for s in sizes {
            out.extend(s.to_be_bytes());
        }
        out.extend(data);
        out
    }

    #[test]
    fn idx_parses_and_checks_its_headers() {
        let images = idx(
            IDX_IMAGES_MAGIC,
            &[2, 2, 3],
            &[0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 255],
        );
        let labels = idx(IDX_LABELS_MAGIC, &[2], &[3, 7]);
        let t = parse_idx(&images, "img", &labels, "lbl").unwrap();
        assert_eq!(
            (t.features, t.len(), t.targets),
            (6, 2, Targets::Classes(8))
        );
        assert_eq!(t.x[11], 255.0);
        assert_eq!(t.y, vec![3.0, 7.0]);

        let error =
            |images: &[u8], labels: &[u8]| data_error_at(parse_idx(images, "img", labels, "lbl"));
        assert_eq!(
            error(&labels, &labels),
            ("img".into(), 0),
            "labels as images"
        );
        assert_eq!(
            error(&images, &images),
            ("lbl".into(), 0),
            "images as labels"
        );
        let short = idx(IDX_IMAGES_MAGIC, &[2, 2, 3], &[0; 11]);
        assert_eq!(error(&short, &labels), ("img".into(), 0), "truncated data");
        let long = idx(IDX_LABELS_MAGIC, &[2], &[1, 2, 3]);
        assert_eq!(error(&images, &long), ("lbl".into(), 0), "trailing data");
        let three = idx(IDX_LABELS_MAGIC, &[3], &[1, 2, 3]);
        assert_eq!(error(&images, &three), ("lbl".into(), 0), "count mismatch");
        assert_eq!(
            error(&images[..10], &labels),
            ("img".into(), 0),
            "cut header"
        );
        assert_eq!(error(&[0, 0], &labels), ("img".into(), 0), "no header");
        let huge = idx(IDX_IMAGES_MAGIC, &[u32::MAX, u32::MAX, u32::MAX], &[]);
        assert_eq!(error(&huge, &labels), ("img".into(), 0), "absurd sizes");
        let empty = idx(IDX_IMAGES_MAGIC, &[0, 2, 3], &[]);
        let no_labels = idx(IDX_LABELS_MAGIC, &[0], &[]);
        assert_eq!(error(&empty, &no_labels), ("img".into(), 0), "no images");
    }

    #[test]
    fn idx_gzip_round_trip_through_files() {
        let dir = TempDir::new("idx");
        // 10 images of 2×2 pixels, image i all i; labels i mod 3.
        let pixels: Vec<u8> = (0..10u8).flat_map(|i| [i; 4]).collect();
        let labels: Vec<u8> = (0..10u8).map(|i| i % 3).collect();
        let images = dir.write(
            "images.gz",
            &gzip(&idx(IDX_IMAGES_MAGIC, &[10, 2, 2], &pixels)),
        );
        // Plain and compressed files are told apart by content, not by name.
        let labels = dir.write("labels.idx", &idx(IDX_LABELS_MAGIC, &[10], &labels));
        let mut c = config(DatasetSpec::Idx { images, labels }, 1);
        c.standardize = false;
        let data = PreparedData::prepare(&c).unwrap();
        assert_eq!((data.features(), data.targets()), (4, Targets::Classes(3)));
        assert_eq!((data.train_len(), data.validation_len()), (8, 2));
        for (row, &y) in data.train_x().rows().into_iter().zip(data.train_y()) {
            assert!(row.iter().all(|&p| p == row[0]));
            assert_eq!(row[0] as u32 % 3, y as u32, "labels stay with their images");
        }
    }
}
