//! Fixtures shared by the data tests.

use std::io::Write;
use std::path::{Path, PathBuf};

use lrsweep_proto::domain::{DatasetSpec, Subset, TrainerConfig};

use super::PreparedData;
use crate::WorkerError;

pub(super) fn config(dataset: DatasetSpec, seed: u64) -> TrainerConfig {
    TrainerConfig {
        dataset,
        seed,
        ..TrainerConfig::default()
    }
}

pub(super) fn digits(seed: u64) -> PreparedData {
    PreparedData::prepare(&config(DatasetSpec::Digits, seed)).unwrap()
}

pub(super) fn subset(fraction: f64, replicate: u32, replicates: u32) -> Subset {
    Subset {
        fraction,
        replicate,
        replicates,
    }
}

/// A directory of its own under the system temp dir, removed on drop.
pub(super) struct TempDir(PathBuf);

impl TempDir {
    pub(super) fn new(name: &str) -> TempDir {
        let path =
            std::env::temp_dir().join(format!("lrsweep-worker-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }

    pub(super) fn path(&self) -> &Path {
        &self.0
    }

    pub(super) fn write(&self, name: &str, bytes: &[u8]) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, bytes).unwrap();
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The (source, line) of a data error.
pub(super) fn data_error_at<T: std::fmt::Debug>(result: Result<T, WorkerError>) -> (String, usize) {
    match result {
        Err(WorkerError::Data {
            source_name, line, ..
        }) => (source_name, line),
        other => panic!("expected a data error, got {other:?}"),
    }
}

pub(super) fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}
