//! The values a command trial hands its program — in its arguments (`{lr}`), its environment
//! (`LRSWEEP_LR`) and a JSON file (`LRSWEEP_TRIAL_FILE`) — and the launch they make.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use lrsweep_proto::domain::{expand, CommandSpec, Placeholder, TrialAssignment};

/// One trial's values.
#[derive(Clone, Debug, PartialEq)]
pub struct TrialValues {
    pub lr: f64,
    pub steps: u64,
    pub seed: u64,
    pub trial: u64,
    pub attempt: u32,
    pub round: u32,
    pub replicate: u32,
    pub replicates: u32,
    pub data_fraction: f64,
    pub eval_every: u64,
    pub slot: u32,
}

/// A number as text that parses back to the same f64 in any language: the shortest form that
/// round-trips, with an exponent for very small and very large values (`0.001`, `1e-7`, `1.0`).
pub fn number(x: f64) -> String {
    format!("{x:?}")
}

impl TrialValues {
    pub fn new(assignment: &TrialAssignment, seed: u64, slot: u32) -> TrialValues {
        TrialValues {
            lr: assignment.lr,
            steps: assignment.steps,
            seed,
            trial: assignment.trial_id,
            attempt: assignment.attempt,
            round: assignment.round,
            replicate: assignment.subset.replicate,
            replicates: assignment.subset.replicates,
            data_fraction: assignment.subset.fraction,
            eval_every: assignment.eval_every,
            slot,
        }
    }

    pub fn get(&self, p: Placeholder) -> String {
        match p {
            Placeholder::Lr => number(self.lr),
            Placeholder::Steps => self.steps.to_string(),
            Placeholder::Seed => self.seed.to_string(),
            Placeholder::Trial => self.trial.to_string(),
            Placeholder::Attempt => self.attempt.to_string(),
            Placeholder::Round => self.round.to_string(),
            Placeholder::Replicate => self.replicate.to_string(),
            Placeholder::Replicates => self.replicates.to_string(),
            Placeholder::DataFraction => number(self.data_fraction),
            Placeholder::EvalEvery => self.eval_every.to_string(),
            Placeholder::Slot => self.slot.to_string(),
        }
    }

    /// The trial file's content: every value under its placeholder's name, numbers as numbers.
    pub fn json(&self) -> String {
        let mut map = serde_json::Map::new();
        for p in Placeholder::ALL {
            // Every value is a number written as JSON writes numbers.
            let text = self.get(p);
            let value = serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text));
            map.insert(p.name().to_string(), value);
        }
        serde_json::Value::Object(map).to_string()
    }
}

/// What to start: the program and arguments, its extra environment (applied in order, later
/// entries win) and where.
#[derive(Clone, Debug, PartialEq)]
pub struct Launch {
    pub argv: Vec<String>,
    pub env: Vec<(String, String)>,
    pub workdir: Option<PathBuf>,
}

impl Launch {
    /// The launch of `spec` for a trial with `values` on a slot owning `device`; the trial file
    /// is at `trial_file`. Python's stdout is unbuffered (a pipe would hold the trace back) and
    /// the slot's device is the only one visible, unless the spec's `env` says otherwise.
    pub fn new(
        spec: &CommandSpec,
        values: &TrialValues,
        device: Option<&str>,
        trial_file: &Path,
    ) -> Result<Launch, String> {
        let value = |p| values.get(p);
        let argv = spec
            .command
            .iter()
            .map(|arg| expand(arg, &value))
            .collect::<Result<Vec<_>, _>>()?;
        let mut env = vec![("PYTHONUNBUFFERED".to_string(), "1".to_string())];
        if let Some(device) = device {
            env.push(("CUDA_VISIBLE_DEVICES".into(), device.into()));
        }
        env.extend(Placeholder::ALL.map(|p| (p.env_var(), values.get(p))));
        env.push((
            "LRSWEEP_TRIAL_FILE".into(),
            trial_file.to_string_lossy().into_owned(),
        ));
        for (key, template) in &spec.env {
            env.push((key.clone(), expand(template, &value)?));
        }
        Ok(Launch {
            argv,
            env,
            workdir: spec.workdir.clone(),
        })
    }
}

/// The trial file on disk, removed when the trial is over.
pub struct TrialFile(PathBuf);

static FILES: AtomicU64 = AtomicU64::new(0);

impl TrialFile {
    /// Writes `values` to a file no other trial of this process uses.
    pub fn create(values: &TrialValues) -> std::io::Result<TrialFile> {
        let path = std::env::temp_dir().join(format!(
            "lrsweep-trial-{}-{}-{}-{}.json",
            std::process::id(),
            values.trial,
            values.attempt,
            FILES.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::write(&path, values.json())?;
        Ok(TrialFile(path))
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TrialFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values() -> TrialValues {
        TrialValues {
            lr: 1e-7,
            steps: 300,
            seed: 4,
            trial: 12,
            attempt: 2,
            round: 1,
            replicate: 1,
            replicates: 3,
            data_fraction: 0.5,
            eval_every: 25,
            slot: 3,
        }
    }

    #[test]
    fn rates_are_written_to_parse_back_exactly() {
        for x in [
            1e-7,
            0.1,
            1.0,
            3.0e-4,
            0.1 + 0.2,
            123456.789,
            1e20,
            2.5e-300,
            10.0,
        ] {
            let text = number(x);
            assert_eq!(text.parse::<f64>().unwrap(), x, "{text}");
        }
        assert_eq!(number(1e-7), "1e-7");
        assert_eq!(number(0.001), "0.001");
        assert_eq!(number(1.0), "1.0");
    }

    #[test]
    fn arguments_env_and_file_carry_every_value() {
        let mut spec = CommandSpec::new(vec![
            "python3".into(),
            "--lr={lr}".into(),
            "{trial}/{attempt}/{round}/{replicate}/{replicates}/{data_fraction}/{eval_every}/{slot}/{seed}/{steps}".into(),
        ]);
        spec.env.insert("RUN".into(), "run-{trial}".into());
        spec.env.insert("PYTHONUNBUFFERED".into(), "0".into());
        let v = values();
        let launch = Launch::new(&spec, &v, Some("7"), Path::new("/tmp/t.json")).unwrap();
        assert_eq!(launch.argv[1], "--lr=1e-7");
        assert_eq!(launch.argv[2], "12/2/1/1/3/0.5/25/3/4/300");
        let env = |k: &str| {
            launch
                .env
                .iter()
                .rev()
                .find(|(key, _)| key == k)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(env("LRSWEEP_LR"), Some("1e-7"));
        assert_eq!(env("LRSWEEP_SLOT"), Some("3"));
        assert_eq!(env("LRSWEEP_DATA_FRACTION"), Some("0.5"));
        assert_eq!(env("LRSWEEP_TRIAL_FILE"), Some("/tmp/t.json"));
        assert_eq!(env("CUDA_VISIBLE_DEVICES"), Some("7"));
        assert_eq!(env("RUN"), Some("run-12"));
        // The spec's own environment has the last word.
        assert_eq!(env("PYTHONUNBUFFERED"), Some("0"));

        let json: serde_json::Value = serde_json::from_str(&v.json()).unwrap();
        assert_eq!(json["lr"], 1e-7);
        assert_eq!(json["data_fraction"], 0.5);
        assert_eq!(json["slot"], 3);
        assert_eq!(json["steps"], 300);
        assert_eq!(json.as_object().unwrap().len(), Placeholder::ALL.len());
    }
}
