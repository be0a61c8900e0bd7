//! Load generator: N simulated workers against a real coordinator, each a real gRPC client with
//! its own Register and Session stream, streaming synthetic loss traces for the trials it is
//! given. Prints one JSON line of totals and latencies on stdout at exit; logs go to stderr.
//!
//! ```text
//! loadgen --coordinator http://ADDR --workers N [--points-per-sec P] [--batch 32] [--token T]
//!         [--seed S] [--max-seconds 120] [--workers-per-channel 50] [--attempts-out FILE]
//!         [--log-format text|json]
//! ```
//!
//! Synthetic traces: a rate at or below `DIVERGENCE_LR` trains like `a + b/step` (with a little
//! deterministic noise); a larger one trains like that until an onset step, then grows
//! geometrically so that the coordinator prunes it as diverged. The onset comes earlier for
//! larger rates (at once at 20× the threshold, half-way through the budget just above it): the
//! largest rates diverge first, so monotone cancellation does not swallow the smaller ones'
//! divergences, and each diverging trial gives one prune-latency sample. Exit status: 0 when every simulated worker was released with a Shutdown, 1 when a
//! session failed, 2 for bad arguments, 3 when `--max-seconds` ran out.

use std::collections::{BTreeMap, HashMap};
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use lrsweep_coordinator::prune::TraceMonitor;
use lrsweep_proto::domain;
use lrsweep_proto::rng::{hash, unit};
use lrsweep_proto::spec::PruningSpec;
use lrsweep_proto::v1::coordinator_client::CoordinatorClient;
use lrsweep_proto::v1::coordinator_message::Kind as Down;
use lrsweep_proto::v1::worker_message::Kind as Up;
use lrsweep_proto::v1::{
    AssignTrial, Heartbeat, Hello, RegisterRequest, TraceBatch, TracePoint, TrialCompleted,
    WorkerMessage,
};
use serde_json::{json, Value};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Channel, Endpoint};
use tonic::Request;

/// Rates above this diverge in the synthetic traces.
const DIVERGENCE_LR: f64 = 0.5;
/// The loss every synthetic trace starts near (ln 10, an untrained 10-class classifier).
const INITIAL_LOSS: f64 = 2.3;
/// Upstream messages a worker may have queued before its sends wait (backpressure): 16 batches
/// of 32, the 512 points a real worker's trainer may get ahead of its stream (`ROOM_POINTS`).
const UPSTREAM_QUEUE: usize = 16;
/// How long a released worker waits for the coordinator to close its stream.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(15);

const USAGE: &str = "usage: loadgen --coordinator http://ADDR --workers N [--points-per-sec P] \
[--batch 32] [--token T] [--seed S] [--max-seconds 120] [--workers-per-channel 50] \
[--attempts-out FILE] [--log-format text|json]";

#[derive(Clone, Debug)]
struct Args {
    coordinator: String,
    workers: usize,
    /// Per worker; None: as fast as the stream takes them.
    points_per_sec: Option<f64>,
    batch: u64,
    token: Option<String>,
    seed: u64,
    max_seconds: f64,
    workers_per_channel: usize,
    /// Writes one JSON object per (trial, attempt) seen, as an array, to this file (kept out of
    /// the stdout line so that it stays one short line).
    attempts_out: Option<std::path::PathBuf>,
    json_logs: bool,
}

fn parse_args(raw: impl IntoIterator<Item = String>) -> Result<Args, String> {
    let mut args = Args {
        coordinator: String::new(),
        workers: 0,
        points_per_sec: None,
        batch: 32,
        token: std::env::var("LRSWEEP_TOKEN")
            .ok()
            .filter(|t| !t.is_empty()),
        seed: 0,
        max_seconds: 120.0,
        workers_per_channel: 50,
        attempts_out: None,
        json_logs: false,
    };
    let mut it = raw.into_iter();
    while let Some(arg) = it.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_string(), Some(v.to_string())),
            _ => (arg.clone(), None),
        };
        if flag == "-h" || flag == "--help" {
            return Err(USAGE.to_string());
        }
        let value = match inline {
            Some(v) => v,
            None => it
                .next()
                .ok_or_else(|| format!("{flag} needs a value\n{USAGE}"))?,
        };
        let bad = |what: &str| format!("{flag}: `{value}` is not {what}");
        match flag.as_str() {
            "--coordinator" => args.coordinator = value.clone(),
            "--attempts-out" => args.attempts_out = Some(value.clone().into()),
            "--workers" => {
                args.workers = value
                    .parse()
                    .ok()
                    .filter(|n| *n > 0)
                    .ok_or_else(|| bad("a positive count"))?
            }
            "--points-per-sec" => {
                args.points_per_sec = Some(
                    value
                        .parse::<f64>()
                        .ok()
                        .filter(|p| p.is_finite() && *p > 0.0)
                        .ok_or_else(|| bad("a positive rate"))?,
                )
            }
            "--batch" => {
                args.batch = value
                    .parse()
                    .ok()
                    .filter(|n| *n > 0)
                    .ok_or_else(|| bad("a positive count"))?
            }
            "--token" => args.token = Some(value.clone()).filter(|t| !t.is_empty()),
            "--seed" => args.seed = value.parse().map_err(|_| bad("an integer"))?,
            "--max-seconds" => {
                args.max_seconds = value
                    .parse::<f64>()
                    .ok()
                    .filter(|s| s.is_finite() && *s > 0.0)
                    .ok_or_else(|| bad("a positive number of seconds"))?
            }
            "--workers-per-channel" => {
                args.workers_per_channel = value
                    .parse()
                    .ok()
                    .filter(|n| *n > 0)
                    .ok_or_else(|| bad("a positive count"))?
            }
            "--log-format" => {
                args.json_logs = match value.as_str() {
                    "json" => true,
                    "text" => false,
                    _ => return Err(bad("text or json")),
                }
            }
            _ => return Err(format!("unknown argument {flag}\n{USAGE}")),
        }
    }
    if args.coordinator.is_empty() || args.workers == 0 {
        return Err(format!("--coordinator and --workers are required\n{USAGE}"));
    }
    Ok(args)
}

// ---------------------------------------------------------------------------------------------
// Logging. The tests crate has no `tracing` dependency, so this writes the same shape of line by
// hand: with `--log-format json` one object per line carrying an `event` field (what the test
// harness's `Proc` collects), else `LEVEL event k=v ...`. RUST_LOG=warn (or error/off) silences
// the info lines.

#[derive(Clone, Copy, PartialEq, PartialOrd)]
enum Level {
    Info,
    Warn,
}

struct Logger {
    json: bool,
    min: Option<Level>,
}

static LOGGER: std::sync::OnceLock<Logger> = std::sync::OnceLock::new();

fn init_logs(json: bool) {
    let directive = std::env::var("RUST_LOG").unwrap_or_default();
    // The last bare directive (no `target=`) is the global level.
    let global = directive
        .split(',')
        .map(str::trim)
        .rfind(|d| !d.is_empty() && !d.contains('='))
        .unwrap_or("info")
        .to_ascii_lowercase();
    let min = match global.as_str() {
        "off" | "error" => None,
        "warn" => Some(Level::Warn),
        _ => Some(Level::Info),
    };
    let _ = LOGGER.set(Logger { json, min });
}

fn log(level: Level, event: &str, fields: Value) {
    let Some(logger) = LOGGER.get() else { return };
    if logger.min.is_none_or(|min| level < min) {
        return;
    }
    let level_name = match level {
        Level::Info => "INFO",
        Level::Warn => "WARN",
    };
    let line = if logger.json {
        let mut object = serde_json::Map::new();
        object.insert("timestamp_ms".into(), json!(now_ms()));
        object.insert("level".into(), json!(level_name));
        object.insert("target".into(), json!("loadgen"));
        object.insert("event".into(), json!(event));
        if let Value::Object(extra) = fields {
            object.extend(extra);
        }
        Value::Object(object).to_string()
    } else {
        let mut line = format!("{level_name} loadgen: event={event}");
        if let Value::Object(extra) = fields {
            for (k, v) in extra {
                match v {
                    Value::String(s) => line.push_str(&format!(" {k}={s}")),
                    other => line.push_str(&format!(" {k}={other}")),
                }
            }
        }
        line
    };
    eprintln!("{line}");
}

/// Wall-clock ms since the epoch, to the microsecond.
fn unix_ms() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64() * 1e3)
        .unwrap_or_default()
}

fn now_ms() -> u64 {
    unix_ms() as u64
}

// ---------------------------------------------------------------------------------------------
// Synthetic traces.

/// Uniform in [−1, 1): a pure function of (seed, trial, attempt, step), so runs are
/// reproducible.
fn noise(seed: u64, trial: u64, attempt: u32, step: u64) -> f64 {
    let h = hash(seed ^ hash(trial ^ hash(u64::from(attempt) ^ hash(step))));
    unit(h) * 2.0 - 1.0
}

/// (train loss, validation loss) of `a` at `step`.
fn synthetic_loss(seed: u64, a: &AssignTrial, step: u64) -> (f64, f64) {
    let eps = noise(seed, a.trial_id, a.attempt, step);
    // a + b/step, the floor lowest near lr = 0.1 (a decade off costs 0.2).
    let floor = 0.1 + 0.2 * (a.lr.log10() + 1.0).powi(2);
    let stable = |step: u64| floor + (INITIAL_LOSS - 0.1) / step as f64;
    if a.lr > DIVERGENCE_LR {
        // ln of how far above the threshold, 0..3 (3 = 20×).
        let excess = (a.lr / DIVERGENCE_LR).ln().min(3.0);
        let onset = 1 + ((a.steps / 2) as f64 * (1.0 - excess / 3.0)) as u64;
        // Grows geometrically from the onset, faster for larger rates: ×1.1 per step just above
        // the threshold, ×1.7 at 20× it. Finite for any budget a test uses (1.7^1000 ≈ 1e230).
        let growth = 1.1 + 0.2 * excess;
        let loss = stable(step.min(onset)) * growth.powf(step.saturating_sub(onset) as f64);
        (loss * (1.0 + 0.02 * eps), loss)
    } else {
        let loss = stable(step);
        (loss * (1.0 + 0.05 * eps), loss)
    }
}

// ---------------------------------------------------------------------------------------------
// Bookkeeping.

/// What a simulated worker did with one (trial, attempt).
#[derive(Clone, Debug, Default)]
struct AttemptRecord {
    worker: usize,
    trial: u64,
    attempt: u32,
    lr: f64,
    budget: u64,
    /// Points sent (handed to the stream).
    sent: u64,
    /// Points sent before this attempt's StopTrial arrived (all of them without a stop).
    sent_before_stop: u64,
    /// TrialCompleted was sent.
    completed: bool,
    /// The StopTrial's reason and kind, if one came.
    stop_reason: Option<String>,
    stop_kind: Option<i32>,
    /// Seconds from the start to the stop order, and its prune latency when it has one.
    stopped_at_s: Option<f64>,
    /// The same moment by the wall clock (ms since the epoch), to set beside the coordinator's
    /// log of when it decided the stop.
    stopped_unix_ms: Option<f64>,
    prune_latency_ms: Option<f64>,
}

impl AttemptRecord {
    fn to_json(&self) -> Value {
        json!({
            "worker": self.worker,
            "trial": self.trial,
            "attempt": self.attempt,
            "lr": self.lr,
            "budget": self.budget,
            "sent": self.sent,
            "sent_before_stop": self.sent_before_stop,
            "completed": self.completed,
            "stop_reason": self.stop_reason,
            "stop_kind": self.stop_kind,
            "stopped_at_s": self.stopped_at_s,
            "stopped_unix_ms": self.stopped_unix_ms,
            "prune_latency_ms": self.prune_latency_ms,
        })
    }
}

#[derive(Default)]
struct Totals {
    points_sent: AtomicU64,
    batches_sent: AtomicU64,
    trials_completed: AtomicU64,
    stops: AtomicU64,
    assignments: AtomicU64,
    heartbeats: AtomicU64,
    sessions_open: AtomicUsize,
    released: AtomicUsize,
}

#[derive(Default)]
struct Collected {
    prune_latency_ms: Vec<f64>,
    dispatch_latency_ms: Vec<f64>,
    stop_reasons: BTreeMap<String, u64>,
    errors: Vec<String>,
    /// Stops for an attempt this worker never had, and assignments while busy.
    protocol_surprises: u64,
}

struct Shared {
    args: Args,
    totals: Totals,
    collected: Mutex<Collected>,
    /// One list per worker, each touched by its worker only (and read at the end).
    attempts: Vec<Mutex<Vec<AttemptRecord>>>,
    started: Instant,
    /// How long after the start the last of the N sessions opened.
    all_sessions_open: Mutex<Option<Duration>>,
}

impl Shared {
    fn collect(&self, f: impl FnOnce(&mut Collected)) {
        f(&mut self.collected.lock().unwrap_or_else(|p| p.into_inner()));
    }
}

/// The trial a worker is streaming.
struct Running {
    assignment: AssignTrial,
    /// Index of its record in the worker's list.
    record: usize,
    next_step: u64,
    /// The coordinator's own divergence test with the default pruning settings (the benchmark
    /// specs keep them), so the latency starts at the very point the coordinator prunes on.
    monitor: TraceMonitor,
    /// When the point that shows divergence was sent.
    crossed_at: Option<Instant>,
}

fn with_token<T>(message: T, token: Option<&str>) -> Result<Request<T>, String> {
    let mut request = Request::new(message);
    if let Some(token) = token {
        let value = format!("Bearer {token}")
            .parse()
            .map_err(|_| "the token is not a valid header value".to_string())?;
        request.metadata_mut().insert("authorization", value);
    }
    Ok(request)
}

fn up(kind: Up) -> WorkerMessage {
    WorkerMessage { kind: Some(kind) }
}

/// Waits until `at`, then for room on the stream.
async fn paced_reserve(
    tx: &mpsc::Sender<WorkerMessage>,
    at: tokio::time::Instant,
) -> Result<mpsc::Permit<'_, WorkerMessage>, mpsc::error::SendError<()>> {
    tokio::time::sleep_until(at).await;
    tx.reserve().await
}

/// One simulated worker: register, open the session, stream what it is given until Shutdown.
async fn simulated_worker(
    index: usize,
    channel: Channel,
    shared: Arc<Shared>,
) -> Result<(), String> {
    let args = &shared.args;
    let token = args.token.as_deref();
    let mut client = CoordinatorClient::new(channel);
    let registered = client
        .register(with_token(
            RegisterRequest {
                name: format!("sim-{index}"),
                host: "loadgen".into(),
                slots: 1,
                instance: format!("loadgen-{}-{}-{index}", std::process::id(), args.seed),
                running: Vec::new(),
            },
            token,
        )?)
        .await
        .map_err(|s| format!("register: {:?}: {}", s.code(), s.message()))?
        .into_inner();
    let (tx, rx) = mpsc::channel::<WorkerMessage>(UPSTREAM_QUEUE);
    tx.send(up(Up::Hello(Hello {
        worker_id: registered.worker_id.clone(),
    })))
    .await
    .map_err(|_| "hello: stream closed".to_string())?;
    let mut inbound = client
        .session(with_token(ReceiverStream::new(rx), token)?)
        .await
        .map_err(|s| format!("session: {:?}: {}", s.code(), s.message()))?
        .into_inner();
    if shared.totals.sessions_open.fetch_add(1, Ordering::Relaxed) + 1 == args.workers {
        let after = shared.started.elapsed();
        *shared
            .all_sessions_open
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some(after);
        log(
            Level::Info,
            "all_sessions_open",
            json!({ "workers": args.workers, "after_s": after.as_secs_f64() }),
        );
    }

    let heartbeat_every =
        Duration::from_millis(u64::from(registered.heartbeat_interval_ms).clamp(100, 60_000));
    // Each at its own point of the interval, as the worker does.
    let mut heartbeat = tokio::time::interval_at(
        tokio::time::Instant::now()
            + heartbeat_every.mul_f64(unit(hash(!args.seed ^ index as u64))),
        heartbeat_every,
    );
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let batch_interval = args
        .points_per_sec
        .map(|p| Duration::from_secs_f64(args.batch as f64 / p));
    // Real workers are not in step: paced, each sends at its own phase of the batch interval
    // (a fixed fraction from its index), else N workers assigned at once would all send in the
    // same millisecond, every interval, for the whole run.
    let phase = batch_interval
        .map(|every| every.mul_f64(unit(hash(args.seed ^ index as u64))))
        .unwrap_or_default();
    let records = &shared.attempts[index];
    let mut current: Option<Running> = None;
    let mut next_send = tokio::time::Instant::now();
    // Since when this worker has had nothing to do (its trial completed or stopped).
    let mut idle_since: Option<Instant> = None;
    // Attempts this worker finished itself, by (trial, attempt): their record and crossing time,
    // for a StopTrial that arrives after the TrialCompleted went out.
    let mut finished: HashMap<(u64, u32), (usize, Option<Instant>)> = HashMap::new();

    let released = loop {
        tokio::select! {
            biased;
            message = inbound.message() => {
                let message = match message {
                    Ok(Some(m)) => m,
                    Ok(None) => break Err("the coordinator closed the session without a shutdown".to_string()),
                    Err(s) => break Err(format!("session broke: {:?}: {}", s.code(), s.message())),
                };
                match message.kind {
                    Some(Down::Assign(a)) => {
                        shared.totals.assignments.fetch_add(1, Ordering::Relaxed);
                        if let Some(since) = idle_since.take() {
                            let ms = since.elapsed().as_secs_f64() * 1e3;
                            shared.collect(|c| c.dispatch_latency_ms.push(ms));
                        }
                        if let Some(old) = &current {
                            log(Level::Warn, "assigned_while_busy", json!({
                                "worker": index, "trial": a.trial_id, "busy_with": old.assignment.trial_id,
                            }));
                            shared.collect(|c| c.protocol_surprises += 1);
                        }
                        let record = {
                            let mut list = records.lock().unwrap_or_else(|p| p.into_inner());
                            list.push(AttemptRecord {
                                worker: index,
                                trial: a.trial_id,
                                attempt: a.attempt,
                                lr: a.lr,
                                budget: a.steps,
                                ..AttemptRecord::default()
                            });
                            list.len() - 1
                        };
                        current = Some(Running {
                            assignment: a,
                            record,
                            next_step: 1,
                            monitor: TraceMonitor::new(&PruningSpec::default()),
                            crossed_at: None,
                        });
                        next_send = tokio::time::Instant::now() + phase;
                    }
                    Some(Down::Stop(stop)) => {
                        let (received, received_unix_ms) = (Instant::now(), unix_ms());
                        shared.totals.stops.fetch_add(1, Ordering::Relaxed);
                        let key = (stop.trial_id, stop.attempt);
                        let mine = match &current {
                            Some(r) if (r.assignment.trial_id, r.assignment.attempt) == key => {
                                let r = current.take().expect("matched above");
                                idle_since = Some(received);
                                Some((r.record, r.crossed_at))
                            }
                            _ => finished.get(&key).copied(),
                        };
                        let divergence = stop.reason == "diverged" || stop.reason == "nan";
                        let latency_ms = match mine {
                            Some((_, Some(crossed))) if divergence => {
                                Some(received.duration_since(crossed).as_secs_f64() * 1e3)
                            }
                            _ => None,
                        };
                        shared.collect(|c| {
                            *c.stop_reasons.entry(stop.reason.clone()).or_default() += 1;
                            c.prune_latency_ms.extend(latency_ms);
                            if mine.is_none() {
                                c.protocol_surprises += 1;
                            }
                        });
                        if let Some((record, _)) = mine {
                            let mut list = records.lock().unwrap_or_else(|p| p.into_inner());
                            let r = &mut list[record];
                            r.sent_before_stop = r.sent;
                            r.stop_reason = Some(stop.reason.clone());
                            r.stop_kind = Some(stop.kind);
                            r.stopped_at_s = Some(received.duration_since(shared.started).as_secs_f64());
                            r.stopped_unix_ms = Some(received_unix_ms);
                            r.prune_latency_ms = latency_ms;
                        } else {
                            log(Level::Warn, "stop_for_unknown_attempt", json!({
                                "worker": index, "trial": stop.trial_id, "attempt": stop.attempt,
                            }));
                        }
                    }
                    Some(Down::Shutdown(s)) => {
                        log(Level::Info, "released", json!({ "worker": index, "reason": s.reason }));
                        break Ok(());
                    }
                    None => {}
                }
            }
            _ = heartbeat.tick() => {
                let running_trials = current.iter().map(|r| r.assignment.trial_id).collect();
                if tx.send(up(Up::Heartbeat(Heartbeat { running_trials }))).await.is_err() {
                    break Err("the upstream closed".to_string());
                }
                shared.totals.heartbeats.fetch_add(1, Ordering::Relaxed);
            }
            permit = paced_reserve(&tx, next_send), if current.is_some() => {
                let Ok(permit) = permit else {
                    break Err("the upstream closed".to_string());
                };
                let r = current.as_mut().expect("guarded by the branch condition");
                let a = &r.assignment;
                let last = (r.next_step + args.batch - 1).min(a.steps);
                let eval_every = a.eval_every.max(1);
                let mut points = Vec::with_capacity((last + 1 - r.next_step) as usize);
                for step in r.next_step..=last {
                    let (train_loss, val) = synthetic_loss(args.seed, a, step);
                    let point = domain::TracePoint {
                        step,
                        train_loss,
                        lr: a.lr,
                        val_loss: (step % eval_every == 0 || step == a.steps).then_some(val),
                    };
                    if r.crossed_at.is_none()
                        && r.monitor.observe(&point).is_some_and(|v| v.is_divergence())
                    {
                        r.crossed_at = Some(Instant::now());
                    }
                    points.push(TracePoint::from(point));
                }
                let n = points.len() as u64;
                permit.send(up(Up::Trace(TraceBatch {
                    trial_id: a.trial_id,
                    attempt: a.attempt,
                    points,
                })));
                shared.totals.points_sent.fetch_add(n, Ordering::Relaxed);
                shared.totals.batches_sent.fetch_add(1, Ordering::Relaxed);
                records.lock().unwrap_or_else(|p| p.into_inner())[r.record].sent += n;
                r.next_step = last + 1;
                if let Some(every) = batch_interval {
                    next_send += every;
                }
                if last == a.steps {
                    let done = up(Up::Completed(TrialCompleted {
                        trial_id: a.trial_id,
                        attempt: a.attempt,
                        steps: a.steps,
                    }));
                    let key = (a.trial_id, a.attempt);
                    let r = current.take().expect("still running");
                    if tx.send(done).await.is_err() {
                        break Err("the upstream closed".to_string());
                    }
                    idle_since = Some(Instant::now());
                    shared.totals.trials_completed.fetch_add(1, Ordering::Relaxed);
                    records.lock().unwrap_or_else(|p| p.into_inner())[r.record].completed = true;
                    finished.insert(key, (r.record, r.crossed_at));
                }
            }
        }
    };
    // Either way, end the upstream and let the coordinator close its side: every message sent
    // is then known to have been read by it.
    drop(tx);
    match released {
        Ok(()) => {
            shared.totals.released.fetch_add(1, Ordering::Relaxed);
            let drained = tokio::time::timeout(DRAIN_TIMEOUT, async {
                loop {
                    match inbound.message().await {
                        Ok(Some(_)) => continue,
                        Ok(None) => return Ok(()),
                        Err(s) => return Err(s),
                    }
                }
            })
            .await;
            match drained {
                Ok(Ok(())) => Ok(()),
                Ok(Err(s)) => Err(format!(
                    "after shutdown, the session ended with {:?}: {}",
                    s.code(),
                    s.message()
                )),
                Err(_) => Err("the coordinator did not close the session after shutdown".into()),
            }
        }
        Err(e) => Err(e),
    }
}

/// Nearest-rank percentile of `values` (sorted here); None when empty.
fn percentile(values: &mut [f64], q: f64) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let rank = ((q * values.len() as f64).ceil() as usize).clamp(1, values.len());
    Some((values[rank - 1] * 1000.0).round() / 1000.0)
}

fn latency_json(values: &mut [f64]) -> Value {
    json!({
        "p50": percentile(values, 0.50),
        "p99": percentile(values, 0.99),
        "max": percentile(values, 1.0),
        "n": values.len(),
    })
}

fn summary(
    shared: &Shared,
    elapsed: Duration,
    connected_in: Option<Duration>,
    timed_out: bool,
) -> Value {
    let t = &shared.totals;
    let points = t.points_sent.load(Ordering::Relaxed);
    let elapsed_s = elapsed.as_secs_f64();
    let mut c = shared.collected.lock().unwrap_or_else(|p| p.into_inner());
    let attempts: Vec<AttemptRecord> = shared
        .attempts
        .iter()
        .flat_map(|m| m.lock().unwrap_or_else(|p| p.into_inner()).clone())
        .collect();
    let sum =
        |f: &dyn Fn(&AttemptRecord) -> Option<u64>| attempts.iter().filter_map(f).sum::<u64>();
    let mut line = json!({
        "workers": shared.args.workers,
        "points_sent": points,
        "trials_completed": t.trials_completed.load(Ordering::Relaxed),
        "stops": t.stops.load(Ordering::Relaxed),
        "elapsed_s": (elapsed_s * 1000.0).round() / 1000.0,
        "points_per_s": if elapsed_s > 0.0 { (points as f64 / elapsed_s).round() } else { 0.0 },
        "prune_latency_ms": latency_json(&mut c.prune_latency_ms),
        "dispatch_latency_ms": latency_json(&mut c.dispatch_latency_ms),
        "points_per_sec_per_worker": shared.args.points_per_sec,
        "batch": shared.args.batch,
        "batches_sent": t.batches_sent.load(Ordering::Relaxed),
        "assignments": t.assignments.load(Ordering::Relaxed),
        "heartbeats": t.heartbeats.load(Ordering::Relaxed),
        "stop_reasons": c.stop_reasons,
        // Points of attempts this worker completed without a stop order for them.
        "points_sent_completed": sum(&|r| (r.completed && r.stop_reason.is_none()).then_some(r.sent)),
        // Points of stopped attempts sent before their stop order arrived.
        "points_sent_before_stop": sum(&|r| r.stop_reason.is_some().then_some(r.sent_before_stop)),
        "sessions_opened": t.sessions_open.load(Ordering::Relaxed),
        "connect_s": connected_in.map(|d| (d.as_secs_f64() * 1000.0).round() / 1000.0),
        "released": t.released.load(Ordering::Relaxed),
        "protocol_surprises": c.protocol_surprises,
        "errors": c.errors.len(),
        "first_errors": c.errors.iter().take(5).collect::<Vec<_>>(),
        "timed_out": timed_out,
    });
    if let Some(path) = &shared.args.attempts_out {
        let all: Vec<Value> = attempts.iter().map(AttemptRecord::to_json).collect();
        if let Err(e) = std::fs::write(path, Value::Array(all).to_string()) {
            log(
                Level::Warn,
                "attempts_not_written",
                json!({ "path": path.display().to_string(), "error": e.to_string() }),
            );
            c.errors.push(format!("writing {}: {e}", path.display()));
            line["errors"] = json!(c.errors.len());
        }
    }
    line
}

async fn run(args: Args) -> ExitCode {
    let started = Instant::now();
    let deadline = started + Duration::from_secs_f64(args.max_seconds);
    let n = args.workers;
    let channels_needed = n.div_ceil(args.workers_per_channel);
    let endpoint = match Endpoint::from_shared(args.coordinator.clone()) {
        Ok(e) => e
            .tcp_nodelay(true)
            .connect_timeout(Duration::from_secs(10))
            .http2_keep_alive_interval(Duration::from_secs(30)),
        Err(e) => {
            eprintln!("error: --coordinator {}: {e}", args.coordinator);
            return ExitCode::from(2);
        }
    };
    let mut channels = Vec::with_capacity(channels_needed);
    for _ in 0..channels_needed {
        match endpoint.connect().await {
            Ok(c) => channels.push(c),
            Err(e) => {
                eprintln!("error: cannot connect to {}: {e}", args.coordinator);
                return ExitCode::FAILURE;
            }
        }
    }
    log(
        Level::Info,
        "starting",
        json!({
            "workers": n,
            "channels": channels.len(),
            "coordinator": args.coordinator,
            "points_per_sec": args.points_per_sec,
            "batch": args.batch,
        }),
    );
    let shared = Arc::new(Shared {
        attempts: (0..n).map(|_| Mutex::new(Vec::new())).collect(),
        args: args.clone(),
        totals: Totals::default(),
        collected: Mutex::new(Collected::default()),
        started,
        all_sessions_open: Mutex::new(None),
    });
    // All at once: every worker's register and session go out together.
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..n {
        let channel = channels[i / args.workers_per_channel].clone();
        let shared = shared.clone();
        tasks.spawn(async move {
            let result = simulated_worker(i, channel, shared.clone()).await;
            if let Err(e) = &result {
                log(
                    Level::Warn,
                    "worker_failed",
                    json!({ "worker": i, "error": e }),
                );
                shared.collect(|c| c.errors.push(format!("sim-{i}: {e}")));
            }
        });
    }
    let mut timed_out = false;
    let mut progress = tokio::time::interval(Duration::from_secs(5));
    progress.tick().await;
    loop {
        tokio::select! {
            joined = tasks.join_next() => match joined {
                None => break,
                Some(Err(e)) => shared.collect(|c| c.errors.push(format!("worker task: {e}"))),
                Some(Ok(())) => {}
            },
            _ = progress.tick() => log(Level::Info, "progress", json!({
                "points_sent": shared.totals.points_sent.load(Ordering::Relaxed),
                "sessions_open": shared.totals.sessions_open.load(Ordering::Relaxed),
                "released": shared.totals.released.load(Ordering::Relaxed),
                "trials_completed": shared.totals.trials_completed.load(Ordering::Relaxed),
                "stops": shared.totals.stops.load(Ordering::Relaxed),
                "elapsed_s": started.elapsed().as_secs_f64(),
            })),
            () = tokio::time::sleep_until(deadline.into()) => {
                timed_out = true;
                log(Level::Warn, "timed_out", json!({ "max_seconds": args.max_seconds,
                    "unfinished_workers": tasks.len() }));
                tasks.abort_all();
                break;
            }
        }
    }
    let connected_in = *shared
        .all_sessions_open
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    let line = summary(&shared, started.elapsed(), connected_in, timed_out);
    println!("{line}");
    let errors = line["errors"].as_u64().unwrap_or(0);
    if timed_out {
        ExitCode::from(3)
    } else if errors > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

fn main() -> ExitCode {
    let args = match parse_args(std::env::args().skip(1)) {
        Ok(args) => args,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    init_logs(args.json_logs);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let code = runtime.block_on(run(args));
    // Aborted tasks may still hold streams; do not wait on them.
    runtime.shutdown_timeout(Duration::from_secs(1));
    code
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assignment(lr: f64) -> AssignTrial {
        AssignTrial {
            trial_id: 3,
            attempt: 1,
            lr,
            steps: 200,
            eval_every: 25,
            subset: None,
            trainer_json: String::new(),
            round: 0,
        }
    }

    #[test]
    fn stable_rates_decrease_and_large_rates_blow_up() {
        let stable = assignment(0.1);
        let first = synthetic_loss(7, &stable, 1).0;
        let last = synthetic_loss(7, &stable, 200).0;
        assert!(first > 2.0 && last < 0.2, "{first} {last}");
        // Larger rates diverge sooner: at once at 20× the threshold, later just above it.
        let crossing = |lr: f64| {
            let wild = assignment(lr);
            (1..=200u64)
                .find(|&s| synthetic_loss(7, &wild, s).0 > 4.0 * synthetic_loss(7, &wild, 1).0)
                .unwrap()
        };
        assert!(crossing(10.0) < 10, "{}", crossing(10.0));
        assert!(
            crossing(1.0) > crossing(2.0),
            "{} {}",
            crossing(1.0),
            crossing(2.0)
        );
        assert!(crossing(0.51) < 200, "{}", crossing(0.51));
        assert!(synthetic_loss(7, &assignment(10.0), 200).0.is_finite());
    }

    #[test]
    fn arguments_parse() {
        let a = parse_args(
            "--coordinator http://x:1 --workers 5 --points-per-sec=100 --attempts-out /tmp/a.json"
                .split(' ')
                .map(String::from),
        )
        .unwrap();
        assert_eq!((a.workers, a.batch, a.points_per_sec), (5, 32, Some(100.0)));
        assert_eq!(a.attempts_out, Some("/tmp/a.json".into()));
        assert!(parse_args(["--workers".to_string(), "0".to_string()]).is_err());
        assert!(parse_args(["--bogus".to_string()]).is_err());
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        let mut v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&mut v, 0.5), Some(50.0));
        assert_eq!(percentile(&mut v, 0.99), Some(99.0));
        assert_eq!(percentile(&mut [], 0.5), None);
    }
}
