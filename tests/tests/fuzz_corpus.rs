//! Replays every checked-in fuzz corpus file (fuzz/corpus/<target>/) through the same entry
//! functions the libFuzzer targets call: the findings fuzzing fixed stay fixed on stable Rust,
//! without cargo-fuzz.

use std::path::Path;

use lrsweep_tests::fuzz::TARGETS;

#[test]
fn every_corpus_file_goes_through_its_target_without_a_panic() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus");
    for (name, target) in TARGETS {
        let dir = root.join(name);
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|entry| entry.expect("a corpus entry").path())
            .collect();
        files.sort();
        // A target without a corpus would replay nothing and pass for nothing.
        assert!(!files.is_empty(), "no corpus for {name}");
        for file in files {
            let data = std::fs::read(&file).expect("a corpus file");
            let replay = std::panic::catch_unwind(|| target(&data));
            assert!(replay.is_ok(), "{name}: {} panicked", file.display());
        }
    }
}
