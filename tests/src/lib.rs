//! A test cluster of real processes on loopback: one coordinator on an ephemeral port and any
//! number of workers, with their JSON logs captured for assertions.

pub mod bench_support;
pub mod chaos;
pub mod fuzz;
pub mod local;
pub mod privileged;
pub mod scripted;
pub mod sweep_check;

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// Eight trials (four decades, two replicates) of 20,000 MLP steps, seconds each: for the fault
/// tests, a trial is still running when the fault comes, and thousands of points a second reach
/// the database. No rung pruning: what runs does not depend on timing.
pub const FAULT_SPEC: &str = r#"
[search]
strategy = "coarse-to-fine"
min_lr = 1e-3
max_lr = 1.0
rounds = 1
steps = [20000]
data_fraction = [1.0]
replicates = 2
eval_every = 500

[pruning]
rule = "none"

[trainer]
model = { kind = "mlp", hidden = [16] }
batch_size = 32
seed = 4
"#;

pub type Logs = Arc<Mutex<Vec<serde_json::Value>>>;

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// Three rates, one trial each, of about 25 ms per step (full-batch gradient descent on a wide
/// MLP): a step is still under way for milliseconds when a worker is told to drop the trial.
pub const SLOW_STEPS: &str = r#"
[search]
strategy = "coarse-to-fine"
min_lr = 1e-2
max_lr = 1.0
rounds = 1
steps = [STEPS]
data_fraction = [1.0]
replicates = 1
eval_every = 20

[pruning]
rule = "none"

[trainer]
model = { kind = "mlp", hidden = [512] }
full_batch = true
seed = 1
"#;

/// A database path no other test uses.
pub fn fresh_db_path() -> PathBuf {
    std::env::temp_dir().join(format!(
        "lrsweep-test-{}-{}.db",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ))
}

/// A fresh directory under the system temp dir, removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!(
            "lrsweep-{tag}-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).expect("create temp dir");
        TempDir(dir)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A child process whose JSON stderr lines are collected as they come.
pub struct Proc {
    pub child: Child,
    pub logs: Logs,
    /// Reads stdout as it comes, so a long summary cannot fill the pipe and block the process.
    stdout: Option<thread::JoinHandle<String>>,
    /// Collects stderr into `logs`; joined on exit so no last line is missed.
    stderr: Option<thread::JoinHandle<()>>,
}

impl Proc {
    /// Starts `bin` with `--log-format json`; stdout is piped for `wait_output`.
    pub fn spawn(bin: &str, args: &[&str]) -> (Proc, mpsc::Receiver<serde_json::Value>) {
        let mut all = args.to_vec();
        all.extend(["--log-format", "json"]);
        Proc::spawn_env(bin, &all, &[])
    }

    /// Starts `bin` with exactly `args` and the variables `env` added to this process's
    /// environment (tests of the `LRSWEEP_*` variables give the log format there).
    pub fn spawn_env(
        bin: &str,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> (Proc, mpsc::Receiver<serde_json::Value>) {
        let mut child = Command::new(bin)
            .args(args)
            .envs(env.iter().copied())
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("start {bin}: {e}"));
        let stderr = child.stderr.take().expect("stderr piped");
        let mut stdout_pipe = child.stdout.take().expect("stdout piped");
        let stdout = thread::spawn(move || {
            let mut out = String::new();
            let _ = stdout_pipe.read_to_string(&mut out);
            out
        });
        let logs: Logs = Arc::default();
        let (tx, rx) = mpsc::channel();
        let sink = logs.clone();
        let stderr = thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                match serde_json::from_str::<serde_json::Value>(&line) {
                    Ok(v) => {
                        let _ = tx.send(v.clone());
                        sink.lock().unwrap().push(v);
                    }
                    // Not JSON: a message printed outside tracing (an error on exit).
                    Err(_) => sink
                        .lock()
                        .unwrap()
                        .push(serde_json::json!({ "raw": line })),
                }
            }
        });
        (
            Proc {
                child,
                logs,
                stdout: Some(stdout),
                stderr: Some(stderr),
            },
            rx,
        )
    }

    /// Waits for exit (killing the process after `timeout`) and returns status and stdout.
    pub fn wait_output(&mut self, timeout: Duration) -> (ExitStatus, String) {
        let deadline = Instant::now() + timeout;
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                break status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!(
                    "process {} did not exit within {timeout:?}; last logs: {:#?}",
                    self.child.id(),
                    self.tail(20)
                );
            }
            thread::sleep(Duration::from_millis(20));
        };
        if let Some(reader) = self.stderr.take() {
            let _ = reader.join();
        }
        let out = self
            .stdout
            .take()
            .and_then(|reader| reader.join().ok())
            .unwrap_or_default();
        (status, out)
    }

    pub fn tail(&self, n: usize) -> Vec<serde_json::Value> {
        let logs = self.logs.lock().unwrap();
        logs[logs.len().saturating_sub(n)..].to_vec()
    }

    /// Log lines whose `event` field equals `event`.
    /// The first log line of `event` that `matches`, waiting up to `timeout` for it; panics
    /// with the last lines if none comes.
    pub fn wait_for_event(
        &self,
        event: &str,
        timeout: Duration,
        matches: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(line) = self.events(event).into_iter().find(&matches) {
                return line;
            }
            assert!(
                Instant::now() < deadline,
                "no matching {event} within {timeout:?}: {:#?}",
                self.tail(20)
            );
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// Asserts that the process exited with `code` (README's exit-code table) and that nothing
    /// panicked on the way (a panic in a task need not change the code).
    pub fn assert_exit(&self, status: ExitStatus, code: i32) {
        let panicked: Vec<_> = self
            .logs
            .lock()
            .unwrap()
            .iter()
            .filter(|v| v.to_string().contains("panicked"))
            .cloned()
            .collect();
        assert!(panicked.is_empty(), "a panic: {panicked:#?}");
        assert_eq!(status.code(), Some(code), "{status}: {:#?}", self.tail(10));
    }

    pub fn events(&self, event: &str) -> Vec<serde_json::Value> {
        self.logs
            .lock()
            .unwrap()
            .iter()
            .filter(|v| v["event"] == event)
            .cloned()
            .collect()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Starts the coordinator on `127.0.0.1:0` and returns it with the address it bound.
/// Starts the coordinator on `127.0.0.1:0` and returns it with the address it bound. Without
/// `--db` among `args` it gets a database of its own under the temp dir.
pub fn start_coordinator(bin: &str, args: &[&str]) -> (Proc, String) {
    start_coordinator_on(bin, "127.0.0.1:0", args)
}

/// Starts the coordinator listening on `listen`; returns it, once it listens, with its address.
pub fn start_coordinator_on(bin: &str, listen: &str, args: &[&str]) -> (Proc, String) {
    start_coordinator_under(&[], bin, listen, args)
}

/// `start_coordinator_on` run through `wrapper` (`ip netns exec NS`, which execs it: the
/// process is the coordinator's own).
pub fn start_coordinator_under(
    wrapper: &[&str],
    bin: &str,
    listen: &str,
    args: &[&str],
) -> (Proc, String) {
    let db = fresh_db_path();
    let (program, mut all) = wrapped(wrapper, bin);
    all.extend(["--listen", listen]);
    if !args.contains(&"--db") {
        all.extend(["--db", db.to_str().expect("utf-8 temp dir")]);
    }
    all.extend_from_slice(args);
    let (mut proc, rx) = Proc::spawn(program, &all);
    let deadline = Instant::now() + Duration::from_secs(30);
    while let Ok(v) = rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
        if v["event"] == "listening" {
            let addr = v["addr"].as_str().expect("addr field").to_string();
            return (proc, addr);
        }
    }
    let status = proc.child.try_wait().unwrap();
    panic!(
        "coordinator never logged `listening` (exit: {status:?}): {:#?}",
        proc.tail(20)
    );
}

/// Waits until the coordinator's database at `db` holds at least `at_least` trace points: the
/// event "the worker's trace reached the coordinator and was stored", which no log line marks
/// per batch. Reads the latest sweep through a read-only store, as a second process may (WAL).
pub fn wait_for_stored_points(db: &str, at_least: u64, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    let count = || -> Result<u64, String> {
        let store = lrsweep_coordinator::storage::Store::open_read_only(std::path::Path::new(db))
            .map_err(|e| e.to_string())?;
        let sweep = store
            .latest_sweep()
            .map_err(|e| e.to_string())?
            .ok_or("no sweep yet")?;
        store
            .point_count(&sweep.sweep_id)
            .map_err(|e| e.to_string())
    };
    loop {
        let last = count();
        if matches!(last, Ok(n) if n >= at_least) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{db}: fewer than {at_least} points stored within {timeout:?} (last: {last:?})"
        );
        thread::sleep(Duration::from_millis(10));
    }
}

/// A loopback address with a port that was free a moment ago: for a process that must listen
/// on an address known before it starts (a coordinator restarted in place, a worker started
/// first).
pub fn free_addr() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().to_string()
}

/// Files of one test: spec, database and report paths under a temp dir removed on drop.
pub struct Setup {
    pub dir: TempDir,
    pub spec: String,
    pub db: String,
    pub report: PathBuf,
}

impl Setup {
    pub fn new(tag: &str, spec_text: &str) -> Setup {
        let dir = TempDir::new(tag);
        let spec = dir.path().join("spec.toml");
        std::fs::write(&spec, spec_text).unwrap();
        let db = dir.path().join("sweep.db");
        let report = dir.path().join("report.json");
        Setup {
            spec: spec.to_str().unwrap().to_string(),
            db: db.to_str().unwrap().to_string(),
            report,
            dir,
        }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The coordinator on this setup's spec, database and report, plus `extra` flags.
    pub fn start_coordinator(&self, bin: &str, extra: &[&str]) -> (Proc, String) {
        let mut args = vec![
            "--spec",
            &self.spec,
            "--db",
            &self.db,
            "--report",
            self.report.to_str().expect("utf-8 temp dir"),
        ];
        args.extend_from_slice(extra);
        start_coordinator(bin, &args)
    }

    pub fn report(&self) -> serde_json::Value {
        read_json(&self.report)
    }
}

pub fn read_json(path: &Path) -> serde_json::Value {
    let text =
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}\n{text}", path.display()))
}

/// The program to start and its first arguments for `bin` run through `wrapper` (`bin` itself
/// when `wrapper` is empty).
fn wrapped<'a>(wrapper: &[&'a str], bin: &'a str) -> (&'a str, Vec<&'a str>) {
    match wrapper.split_first() {
        Some((program, rest)) => (program, [rest, &[bin]].concat()),
        None => (bin, Vec::new()),
    }
}

/// A worker of the coordinator at `addr` that retries every 300 ms at most once it is gone, run
/// through `wrapper` (empty: as is): for tests that take the coordinator or the network away.
pub fn start_retrying_worker(wrapper: &[&str], bin: &str, addr: &str, name: &str) -> Proc {
    let url = format!("http://{addr}");
    let (program, mut args) = wrapped(wrapper, bin);
    args.extend([
        "--coordinator",
        &url,
        "--name",
        name,
        "--max-backoff-ms",
        "300",
    ]);
    Proc::spawn(program, &args).0
}

pub fn start_worker(bin: &str, addr: &str, name: &str) -> Proc {
    Proc::spawn(
        bin,
        &["--coordinator", &format!("http://{addr}"), "--name", name],
    )
    .0
}

/// Waits for the coordinator and then `workers` to exit 0, as they do once the sweep ended.
pub fn wait_sweep_end(coordinator: &mut Proc, workers: &mut [Proc]) {
    let (status, _) = coordinator.wait_output(Duration::from_secs(120));
    assert!(status.success(), "{:#?}", coordinator.tail(20));
    for w in workers {
        let (status, _) = w.wait_output(Duration::from_secs(30));
        assert!(status.success(), "{:#?}", w.tail(20));
    }
}

/// SIGTERM, as `kill` or a service manager sends it.
pub fn sigterm(proc: &Proc) {
    let status = Command::new("kill")
        .args(["-TERM", &proc.child.id().to_string()])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -TERM failed");
}
