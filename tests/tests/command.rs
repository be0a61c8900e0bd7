//! Command trainers end to end: real coordinator and worker processes on loopback running real
//! programs (Python and shell scripts written by each test), as a user's training would run.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use lrsweep_tests::{start_worker, Proc, Setup};

const COORDINATOR: &str = env!("CARGO_BIN_EXE_e2e-coordinator");
const WORKER: &str = env!("CARGO_BIN_EXE_e2e-worker");

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// Writes an executable script into the setup's directory.
fn script(setup: &Setup, name: &str, body: &str) -> PathBuf {
    let path = setup.path(name);
    std::fs::write(&path, body).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

fn worker_with(addr: &str, name: &str, extra: &[&str]) -> Proc {
    let url = format!("http://{addr}");
    let mut args = vec!["--coordinator", url.as_str(), "--name", name];
    args.extend_from_slice(extra);
    Proc::spawn(WORKER, &args).0
}

/// A grid of two rates running `program`, which gets the setup's directory as `$OUT`; `search`
/// and `trainer` are more lines for those tables.
fn write_two_rate_spec(setup: &Setup, program: &Path, search: &str, trainer: &str) {
    let spec = format!(
        "[search]\nstrategy = \"grid\"\nmin_lr = 0.1\nmax_lr = 0.11\n{search}\n\n\
         [trainer]\ncommand = [{program:?}]\nenv = {{ OUT = {dir:?} }}\n{trainer}\n",
        program = program.display().to_string(),
        dir = setup.dir.path().display().to_string(),
    );
    std::fs::write(&setup.spec, spec).unwrap();
}

/// Polls `done` until it holds; panics with `what` after `limit`.
fn wait_for(limit: Duration, what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Pids written by the test programs into `*.pid` files of `dir` whose name starts with `prefix`.
fn pids(dir: &Path, prefix: &str) -> Vec<i32> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with(prefix) && name.ends_with(".pid") {
            if let Ok(text) = std::fs::read_to_string(entry.path()) {
                out.extend(
                    text.split_whitespace()
                        .filter_map(|p| p.parse::<i32>().ok()),
                );
            }
        }
    }
    out
}

/// A process that is gone and reaped: not even a zombie left in /proc.
fn gone(pid: i32) -> bool {
    !Path::new(&format!("/proc/{pid}")).exists()
}

#[test]
fn the_standard_library_example_sweeps_with_two_workers() {
    let root = repo_root();
    let example = std::fs::read_to_string(root.join("examples/command/sweep.toml")).unwrap();
    // The example's paths are relative to the repository root, where the README runs it.
    let spec = example.replace(
        "[trainer]\n",
        &format!("[trainer]\nworkdir = {:?}\n", root.display().to_string()),
    );
    let setup = Setup::new("command-example", &spec);
    let (mut coordinator, addr) = setup.start_coordinator(COORDINATOR, &[]);
    let mut workers = [
        start_worker(WORKER, &addr, "alpha"),
        start_worker(WORKER, &addr, "beta"),
    ];
    let (status, _) = coordinator.wait_output(Duration::from_secs(300));
    assert!(status.success(), "{:#?}", coordinator.tail(30));
    for w in &mut workers {
        assert!(w.wait_output(Duration::from_secs(30)).0.success());
    }
    let report = setup.report();
    assert_eq!(report["outcome"], "completed");
    // An exhaustive grid of 200-step runs (examples/command/grid.toml) is best at 1.1..1.7 and
    // within 8% of that loss from 0.7 to 2.2; the sweep recommended 0.93 when measured.
    let best = report["best_lr"].as_f64().expect("a recommendation");
    assert!((0.4..=3.0).contains(&best), "best_lr {best}");
    let trials = report["trials"].as_array().unwrap();
    let diverged = trials
        .iter()
        .find(|t| t["lr"] == 100.0)
        .expect("rate 100 was tried");
    assert_eq!(diverged["status"], "pruned", "{diverged}");
    assert!(
        ["diverged", "nan"].contains(&diverged["prune_reason"].as_str().unwrap()),
        "{diverged}"
    );
    assert!(diverged["steps"].as_u64() < diverged["budget"].as_u64());
    for name in ["alpha", "beta"] {
        assert!(trials.iter().any(|t| t["worker"] == name), "{name} idle");
    }
    assert!(trials
        .iter()
        .filter(|t| t["status"] == "completed")
        .all(|t| t["steps"] == t["budget"]));
}

#[test]
fn a_pruned_program_ignoring_sigterm_is_killed_with_its_grandchild() {
    const GRACE_MS: u64 = 800;
    let setup = Setup::new("command-stubborn", "");
    // It ignores SIGTERM, and so does the child it starts; it reports NaN at step 2, which the
    // coordinator prunes at once.
    let program = script(
        &setup,
        "stubborn.sh",
        r#"#!/bin/sh
trap '' TERM
sh -c 'trap "" TERM; while true; do sleep 0.05; done' &
echo "$$ $!" > "$OUT/stubborn-$LRSWEEP_TRIAL.pid"
echo '{"step": 1, "loss": 1.0}'
echo '{"step": 2, "loss": NaN}'
while true; do sleep 0.05; done
"#,
    );
    write_two_rate_spec(
        &setup,
        &program,
        "steps = [100]",
        &format!("stop_grace_ms = {GRACE_MS}"),
    );
    let (mut coordinator, addr) = setup.start_coordinator(COORDINATOR, &[]);
    let (mut worker, events) = Proc::spawn(
        WORKER,
        &["--coordinator", &format!("http://{addr}"), "--name", "w"],
    );
    // The first rate's NaN prunes it and cancels the larger rate before it starts.
    let stop = loop {
        let event = events
            .recv_timeout(Duration::from_secs(60))
            .expect("the worker gets a stop order");
        if event["event"] == "stop_received" {
            break event;
        }
    };
    let at = Instant::now();
    let prefix = format!("stubborn-{}", stop["trial"]);
    wait_for(Duration::from_secs(5), "the pid file", || {
        pids(setup.dir.path(), &prefix).len() == 2
    });
    let pids = pids(setup.dir.path(), &prefix);
    wait_for(
        Duration::from_millis(GRACE_MS + 1_000),
        "the program and its grandchild to be gone and reaped",
        || pids.iter().all(|&p| gone(p)),
    );
    // SIGTERM was ignored: only SIGKILL, after the grace, ended them.
    assert!(
        at.elapsed() >= Duration::from_millis(GRACE_MS / 2),
        "gone after {:?}",
        at.elapsed()
    );
    coordinator.wait_output(Duration::from_secs(60));
    assert!(worker.wait_output(Duration::from_secs(30)).0.success());
    let report = setup.report();
    let trials = report["trials"].as_array().unwrap();
    assert_eq!(trials[0]["status"], "pruned", "{trials:#?}");
    assert_eq!(trials[0]["prune_reason"], "nan", "{trials:#?}");
    assert!(trials[0]["steps"].as_u64().unwrap() <= 2, "{trials:#?}");
}

#[test]
fn a_worker_killed_mid_trial_leaves_no_program_and_the_trial_reruns() {
    let setup = Setup::new("command-kill-worker", "");
    let program = script(
        &setup,
        "slow.sh",
        r#"#!/bin/sh
sh -c 'while true; do sleep 0.05; done' &
echo "$$ $!" > "$OUT/slow-$LRSWEEP_TRIAL-$LRSWEEP_ATTEMPT.pid"
step=1
while [ $step -le $LRSWEEP_STEPS ]; do
  echo "{\"step\": $step, \"loss\": 1.0, \"val_loss\": 1.0}"
  step=$((step + 1))
  sleep 0.05
done
kill $!
"#,
    );
    write_two_rate_spec(
        &setup,
        &program,
        "steps = [30]\neval_every = 10\n\n[pruning]\nrule = \"none\"",
        "",
    );
    let (mut coordinator, addr) = setup.start_coordinator(COORDINATOR, &["--lease-ms", "500"]);
    let mut doomed = start_worker(WORKER, &addr, "doomed");
    wait_for(Duration::from_secs(30), "a running program", || {
        pids(setup.dir.path(), "slow-").len() >= 2
    });
    let running = pids(setup.dir.path(), "slow-");
    doomed.child.kill().unwrap();
    doomed.child.wait().unwrap();
    // Nothing of it survives the worker: the program and its child are gone within a second.
    wait_for(
        Duration::from_secs(1),
        "the orphaned programs to be gone",
        || running.iter().all(|&p| gone(p)),
    );
    let mut survivor = start_worker(WORKER, &addr, "survivor");
    let (status, _) = coordinator.wait_output(Duration::from_secs(120));
    assert!(status.success(), "{:#?}", coordinator.tail(20));
    assert!(survivor.wait_output(Duration::from_secs(30)).0.success());
    let report = setup.report();
    let trials = report["trials"].as_array().unwrap();
    let rerun: Vec<_> = trials
        .iter()
        .filter(|t| t["attempts"].as_u64().unwrap() >= 2)
        .collect();
    assert!(!rerun.is_empty(), "no trial was rerun: {trials:#?}");
    for t in trials {
        assert_eq!(t["status"], "completed", "{t}");
        assert_eq!(t["steps"], 30, "{t}");
    }
    for t in rerun {
        assert_eq!(t["worker"], "survivor", "{t}");
    }
}

#[test]
fn each_failure_fails_its_attempt_with_a_message_and_the_worker_stays_up() {
    let setup = Setup::new("command-failures", "");
    let dir = setup.dir.path().display().to_string();
    // Trial k runs prog-k: the grid's five rates are trials 0..4.
    script(
        &setup,
        "prog-0",
        "#!/bin/sh\necho '{\"step\": 1, \"loss\": 2.0}'\n\
         echo 'Traceback (most recent call last):' >&2\n\
         echo 'RuntimeError: CUDA out of memory. Tried to allocate 2.00 GiB' >&2\nexit 3\n",
    );
    script(
        &setup,
        "prog-1",
        "#!/bin/sh\necho '{\"step\": 1, \"loss\": 2.0}'\necho '{\"step\": 2, \"loss\": 1.5}'\n",
    );
    script(
        &setup,
        "prog-2",
        "#!/bin/sh\nprintf 'garbage \\001\\377\\n{\"step\": \"one\", \"loss\": 1}\\n'\n\
         head -c 200000 /dev/zero | tr '\\0' x\n",
    );
    script(&setup, "prog-3", "#!/bin/sh\nsleep 30\n");
    // prog-4 does not exist.
    std::fs::write(
        &setup.spec,
        format!(
            r#"
[search]
strategy = "grid"
min_lr = 1.0
max_lr = 16.0
resolution = 2.0
steps = [10]

[trainer]
command = ["{dir}/prog-{{trial}}"]
first_trace_timeout_ms = 1000
stop_grace_ms = 200
"#
        ),
    )
    .unwrap();
    let (mut coordinator, addr) = setup.start_coordinator(COORDINATOR, &["--max-attempts", "1"]);
    let mut worker = start_worker(WORKER, &addr, "steady");
    let (status, _) = coordinator.wait_output(Duration::from_secs(120));
    assert!(!status.success(), "nothing to recommend");
    let (status, _) = worker.wait_output(Duration::from_secs(30));
    assert!(
        status.success(),
        "the worker stays up: {:#?}",
        worker.tail(10)
    );
    assert_eq!(worker.events("trial_failed").len(), 5);

    let report = setup.report();
    let trials = report["trials"].as_array().unwrap();
    assert_eq!(trials.len(), 5);
    let expected: [&[&str]; 5] = [
        &[
            "exited with status 3",
            "after step 1 of 10",
            "CUDA out of memory",
        ],
        &["exited with status 0 after step 2 of 10", "reports step 10"],
        &[
            "exited with status 0 before its first trace line",
            "garbage",
            "xxxx",
        ],
        &["wrote no trace line for 1000 ms", "first_trace_timeout_ms"],
        &[
            "exited with status 127",
            "cannot start",
            "prog-4",
            "No such file",
        ],
    ];
    let logged = coordinator.events("trial_failed");
    for (id, wanted) in expected.iter().enumerate() {
        let t = trials.iter().find(|t| t["id"] == id).unwrap();
        assert_eq!(t["status"], "failed", "{t}");
        let error = t["error"].as_str().unwrap();
        for text in *wanted {
            assert!(error.contains(text), "trial {id}: {text:?} not in {error}");
        }
        // The coordinator's log carries the same message.
        assert!(
            logged
                .iter()
                .any(|e| e["trial"] == id && e["error"].as_str() == Some(error)),
            "trial {id} not logged: {logged:#?}"
        );
    }
}

#[test]
fn placeholders_and_environment_reach_the_program() {
    let setup = Setup::new("command-echo", "");
    let program = script(
        &setup,
        "echo.py",
        r#"#!/usr/bin/env python3
import json, os, sys
env = {k: v for k, v in os.environ.items()
       if k.startswith("LRSWEEP_") or k in ("CUDA_VISIBLE_DEVICES", "PYTHONUNBUFFERED", "RUN_TAG")}
with open(os.environ["LRSWEEP_TRIAL_FILE"]) as f:
    trial_file = json.load(f)
out = os.path.join(os.environ["OUT"], "echo-%s.json" % os.environ["LRSWEEP_TRIAL"])
with open(out, "w") as f:
    json.dump({"argv": sys.argv[1:], "env": env, "file": trial_file, "cwd": os.getcwd()}, f)
steps = int(sys.argv[2])
for step in range(1, steps + 1):
    print(json.dumps({"step": step, "loss": 1.0 / step, "val_loss": 1.0 / step, "lr": 0.5}))
"#,
    );
    let names = [
        "lr",
        "steps",
        "seed",
        "trial",
        "attempt",
        "round",
        "replicate",
        "replicates",
        "data_fraction",
        "eval_every",
        "slot",
    ];
    let args: Vec<String> = names.iter().map(|n| format!("{{{n}}}")).collect();
    std::fs::write(
        &setup.spec,
        format!(
            r#"
[search]
strategy = "grid"
min_lr = 3e-7
max_lr = 3.3e-7
steps = [20]
replicates = 2
eval_every = 7

[pruning]
rule = "none"

[trainer]
command = [{program:?}, {args}]
workdir = {dir:?}
env = {{ OUT = {dir:?}, RUN_TAG = "t{{trial}}-a{{attempt}}" }}
seed = 11
"#,
            program = program.display().to_string(),
            args = args
                .iter()
                .map(|a| format!("{a:?}"))
                .collect::<Vec<_>>()
                .join(", "),
            dir = setup.dir.path().display().to_string(),
        ),
    )
    .unwrap();
    let (mut coordinator, addr) = setup.start_coordinator(COORDINATOR, &[]);
    let mut worker = worker_with(&addr, "w", &["--slots", "2", "--devices", "gpu-a,gpu-b"]);
    let (status, _) = coordinator.wait_output(Duration::from_secs(120));
    assert!(status.success(), "{:#?}", coordinator.tail(20));
    assert!(worker.wait_output(Duration::from_secs(30)).0.success());

    let report = setup.report();
    let trials = report["trials"].as_array().unwrap();
    assert_eq!(trials.len(), 4);
    for t in trials {
        assert_eq!(t["status"], "completed", "{t}");
        let id = t["id"].as_u64().unwrap();
        let echo = lrsweep_tests::read_json(&setup.path(&format!("echo-{id}.json")));
        let argv: Vec<&str> = echo["argv"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        let value = |name: &str| argv[names.iter().position(|n| *n == name).unwrap()];
        // The rate parses back to exactly the rate the coordinator planned.
        assert_eq!(
            value("lr").parse::<f64>().unwrap(),
            t["lr"].as_f64().unwrap()
        );
        assert_eq!(value("steps"), "20");
        assert_eq!(value("seed"), "11");
        assert_eq!(value("trial"), id.to_string());
        assert_eq!((value("attempt"), value("round")), ("1", "0"));
        assert_eq!(value("replicate"), t["subset"]["replicate"].to_string());
        assert_eq!(value("replicates"), "2");
        assert_eq!(value("data_fraction").parse::<f64>().unwrap(), 1.0);
        assert_eq!(value("eval_every"), "7");
        let slot = value("slot");
        assert!(slot == "0" || slot == "1", "{slot}");
        // The same values in the environment and the trial file.
        for (k, name) in names.iter().enumerate() {
            let var = format!("LRSWEEP_{}", name.to_uppercase());
            assert_eq!(echo["env"][&var], argv[k], "{var}");
            let in_file = &echo["file"][*name];
            assert_eq!(
                in_file.as_f64().unwrap(),
                argv[k].parse::<f64>().unwrap(),
                "{name}"
            );
        }
        let device = if slot == "0" { "gpu-a" } else { "gpu-b" };
        assert_eq!(echo["env"]["CUDA_VISIBLE_DEVICES"], device);
        assert_eq!(echo["env"]["PYTHONUNBUFFERED"], "1");
        assert_eq!(echo["env"]["RUN_TAG"], format!("t{id}-a1"));
        assert_eq!(echo["cwd"], setup.dir.path().display().to_string());
    }
    // Both slots trained at once.
    let started: Vec<_> = worker.events("trial_started");
    assert!(started.iter().any(|e| e["slot"] == 1), "{started:#?}");
}

#[test]
fn one_trial_by_hand_runs_the_example() {
    let root = repo_root();
    let setup = Setup::new("command-one-trial", "");
    let example = std::fs::read_to_string(root.join("examples/command/sweep.toml")).unwrap();
    std::fs::write(
        &setup.spec,
        example.replace(
            "[trainer]\n",
            &format!("[trainer]\nworkdir = {:?}\n", root.display().to_string()),
        ),
    )
    .unwrap();
    let out = std::process::Command::new(WORKER)
        .args([
            "train",
            "--spec",
            &setup.spec,
            "--lr",
            "0.5",
            "--steps",
            "40",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<serde_json::Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    // eval_every = 20 in the example: steps 20 and 40, then `done`.
    assert_eq!(lines.len(), 3, "{lines:#?}");
    assert_eq!(lines[1]["step"], 40);
    assert!(lines[1]["val_loss"].as_f64().unwrap() < lines[0]["val_loss"].as_f64().unwrap());
    assert_eq!(lines[2]["done"], true);
    assert_eq!(lines[2]["steps"], 40);
    assert_eq!(lines[2]["stopped"], false);
}
