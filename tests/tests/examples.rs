//! Every spec in examples/ parses, and each one's trainer runs a few steps through the worker's
//! one-trial command (`train`): the README points users at these files, so none may rot. The
//! PyTorch example is parsed only (no PyTorch here); the shell and standard-library Python
//! command examples run.

use std::path::{Path, PathBuf};
use std::process::Command;

use lrsweep_proto::spec::SweepSpec;

const WORKER: &str = env!("CARGO_BIN_EXE_e2e-worker");

fn specs(dir: &Path, found: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            specs(&path, found);
        } else if path.extension().is_some_and(|e| e == "toml") {
            found.push(path);
        }
    }
}

#[test]
fn every_example_spec_parses_and_its_trainer_runs() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut found = Vec::new();
    specs(&root.join("examples"), &mut found);
    found.sort();
    assert!(found.len() >= 14, "examples went missing: {found:?}");
    for path in found {
        let spec = SweepSpec::load(&path).unwrap_or_else(|e| panic!("{e}"));
        if path.components().any(|c| c.as_os_str() == "pytorch") {
            continue;
        }
        // Command paths in the examples are relative to the repository root.
        let lr = spec.search.min_lr.to_string();
        let out = Command::new(WORKER)
            .current_dir(&root)
            .args(["train", "--spec", path.to_str().unwrap(), "--lr", &lr])
            .args(["--steps", "5", "--eval-every", "5"])
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{}: {stdout}{stderr}", path.display());
        let last: serde_json::Value = stdout
            .lines()
            .last()
            .and_then(|l| serde_json::from_str(l).ok())
            .unwrap_or_else(|| panic!("{}: no done line in {stdout}", path.display()));
        assert_eq!(last["done"], true, "{}: {last}", path.display());
        assert_eq!(last["steps"], 5, "{}: {last}", path.display());
    }
}
