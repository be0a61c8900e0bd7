//! Fuzz entry points: each takes arbitrary bytes and drives one input path of the product through
//! its public functions, panicking only where the product broke a promise (a crash, or a valid
//! result that does not round-trip). The libFuzzer targets (fuzz/) and the corpus replay in
//! `cargo test` (tests/tests/fuzz_corpus.rs) both call these, so a corpus file means the same
//! thing to both.

use std::path::Path;

use lrsweep_coordinator::service::{check_register, decode};
use lrsweep_proto::domain::{DatasetSpec, Task, TrainerConfig, TrialAssignment};
use lrsweep_proto::spec::SweepSpec;
use lrsweep_proto::v1::{
    self, coordinator_message, CoordinatorMessage, RegisterRequest, WorkerMessage,
};
use lrsweep_worker::command::trace_line;
use lrsweep_worker::error::WorkerError;
use lrsweep_worker::trainer::PreparedData;
use prost::Message;

/// An entry point: arbitrary bytes in, a panic only for a broken promise.
pub type Target = fn(&[u8]);

/// The targets by name: fuzz/fuzz_targets/<name>.rs and the corpus folder fuzz/corpus/<name>/.
pub const TARGETS: [(&str, Target); 8] = [
    ("spec", spec),
    ("register", register),
    ("worker_message", worker_message),
    ("coordinator_message", coordinator_message),
    ("csv", csv),
    ("libsvm", libsvm),
    ("idx", idx),
    ("trace_line", trace_line),
];

/// TOML text → `SweepSpec`; a spec that parses must print as TOML that parses back to itself
/// (a resumed sweep compares the two).
pub fn spec(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(spec) = SweepSpec::from_toml_str(text) {
        let printed = spec.to_toml();
        let again = SweepSpec::from_toml_str(&printed)
            .unwrap_or_else(|e| panic!("a valid spec printed as\n{printed}\ndoes not parse: {e}"));
        assert_eq!(again, spec, "printed as\n{printed}");
    }
}

/// Bytes → `RegisterRequest` → the coordinator's check.
pub fn register(data: &[u8]) {
    if let Ok(request) = RegisterRequest::decode(data) {
        let _ = check_register(&request);
    }
}

/// Bytes → `WorkerMessage` → the coordinator's decode and validation.
pub fn worker_message(data: &[u8]) {
    if let Ok(message) = WorkerMessage::decode(data) {
        let _ = decode(message);
    }
}

/// Bytes → `CoordinatorMessage` → the worker's conversion of an assignment; one it accepts must
/// survive the trip back to the wire unchanged.
pub fn coordinator_message(data: &[u8]) {
    if let Ok(CoordinatorMessage {
        kind: Some(coordinator_message::Kind::Assign(wire)),
    }) = CoordinatorMessage::decode(data)
    {
        if let Ok(assignment) = TrialAssignment::try_from(wire) {
            let back = TrialAssignment::try_from(v1::AssignTrial::from(&assignment))
                .expect("an accepted assignment converts back");
            assert_eq!(back, assignment);
        }
    }
}

/// A command trial's stdout line → trace point or output.
pub fn trace_line(data: &[u8]) {
    if let Ok(line) = std::str::from_utf8(data) {
        if let trace_line::TraceLine::Point(p) = trace_line::parse(line) {
            // Whole steps up to 9e15 only: beyond 2^53 an f64 step is no longer exact.
            assert!(p.step <= 9_000_000_000_000_000, "{p:?}");
        }
    }
}

/// The task a data target reads its file as: the first byte's low bit, the rest is the file.
fn task_and_file(data: &[u8]) -> Option<(Task, &[u8])> {
    let (&first, file) = data.split_first()?;
    let task = if first & 1 == 0 {
        Task::Classification
    } else {
        Task::Regression
    };
    Some((task, file))
}

/// Prepares `dataset` (split, standardised) with its files' stored bytes from `read`.
fn prepare(dataset: DatasetSpec, read: impl Fn(&Path) -> Result<Vec<u8>, WorkerError>) {
    let config = TrainerConfig {
        dataset,
        ..TrainerConfig::default()
    };
    if let Ok(data) = PreparedData::prepare_with(&config, read) {
        assert!(data.train_len() >= 1 && data.validation_len() >= 1);
    }
}

/// A CSV file (gzip or plain) → the prepared dataset.
pub fn csv(data: &[u8]) {
    if let Some((task, file)) = task_and_file(data) {
        let dataset = DatasetSpec::Csv {
            path: "fuzz.csv".into(),
            label: "label".into(),
            task,
        };
        prepare(dataset, |_| Ok(file.to_vec()));
    }
}

/// A LIBSVM file (gzip or plain) → the prepared dataset.
pub fn libsvm(data: &[u8]) {
    if let Some((task, file)) = task_and_file(data) {
        let dataset = DatasetSpec::Libsvm {
            path: "fuzz.svm".into(),
            task,
        };
        prepare(dataset, |_| Ok(file.to_vec()));
    }
}

/// An IDX image file and its label file → the prepared dataset. The first two bytes (big-endian)
/// say where the images end and the labels begin.
pub fn idx(data: &[u8]) {
    let Some((cut, files)) = data.split_first_chunk::<2>() else {
        return;
    };
    let cut = usize::from(u16::from_be_bytes(*cut)).min(files.len());
    let (images, labels) = files.split_at(cut);
    let dataset = DatasetSpec::Idx {
        images: "images.idx".into(),
        labels: "labels.idx".into(),
    };
    prepare(dataset, |path| {
        Ok(if path == Path::new("images.idx") {
            images.to_vec()
        } else {
            labels.to_vec()
        })
    });
}
