//! A command trial: the user's own program, in any language, trains at the trial's rate and
//! reports its trace on stdout (README, "Your own training program").
//!
//! The program starts under a supervisor (`supervisor.rs`) with the trial's values in its
//! arguments, environment and trial file (`placeholders.rs`). Its stdout lines are read as they
//! come (`lines.rs`); trace points (`trace_line.rs`) go into the same batches as the built-in
//! trainer's, every other line is output, logged at debug level and kept (`tail.rs`) for the
//! message of a failed attempt. A stop order becomes SIGTERM to the program's process group
//! within milliseconds.

pub mod lines;
pub mod placeholders;
pub mod process;
pub mod supervisor;
pub mod tail;
pub mod trace_line;

use std::process::ExitStatus;
use std::time::{Duration, Instant};

use lrsweep_proto::domain::{CommandSpec, TracePoint, TrialAssignment};
use tokio::io::BufReader;
use tokio::process::{ChildStderr, ChildStdout};
use tokio::time::{sleep_until, Instant as Deadline};
use tracing::{debug, info, warn};

use crate::batcher::TraceBatcher;
use crate::stop::StopSignal;
use crate::trials::TrialEnd;
use lines::{Line, Lines};
use placeholders::{Launch, TrialFile, TrialValues};
use process::Supervised;
use tail::Tail;
use trace_line::{LinePoint, TraceLine};

/// Bytes kept of one output line.
const MAX_LINE: usize = 64 * 1024;
/// Lines kept for a failure message: of stderr, and of stdout's non-trace output.
const STDERR_LINES: usize = 20;
const STDOUT_LINES: usize = 5;
/// A supervisor that has not exited this long after the program's grace is killed itself.
const SUPERVISOR_SLACK: Duration = Duration::from_secs(2);
/// After the supervisor exited, its pipes are read for at most this long.
const DRAIN: Duration = Duration::from_secs(1);
/// Characters of the command shown in messages.
const SHOWN_CHARS: usize = 200;

/// Where a command trial's batches of points go.
pub type Publish<'a> = dyn FnMut(Vec<TracePoint>) + Send + 'a;

/// Where a trial runs: its slot (`{slot}`) and the device the slot owns, if any.
#[derive(Clone, Copy, Debug, Default)]
pub struct Placement<'a> {
    pub slot: u32,
    pub device: Option<&'a str>,
}

/// Runs one command trial to its end, handing every batch of points to `publish`. The caller
/// publishes the outcome.
pub async fn run(
    assignment: &TrialAssignment,
    spec: &CommandSpec,
    placement: Placement<'_>,
    stop: &StopSignal,
    publish: &mut Publish<'_>,
) -> TrialEnd {
    let values = TrialValues::new(assignment, spec.seed, placement.slot);
    let file = match TrialFile::create(&values) {
        Ok(file) => file,
        Err(e) => return TrialEnd::failed(format!("cannot write the trial file: {e}")),
    };
    let launch = match Launch::new(spec, &values, placement.device, file.path()) {
        Ok(launch) => launch,
        Err(e) => return TrialEnd::failed(format!("trainer.command: {e}")),
    };
    let shown = shown(&launch.argv);
    if let Some(dir) = launch.workdir.as_ref().filter(|d| !d.is_dir()) {
        return TrialEnd::failed(format!(
            "trainer.workdir {} is not a directory on this worker",
            dir.display()
        ));
    }
    if stop.is_stopped() {
        return TrialEnd::Stopped;
    }
    let grace = Duration::from_millis(spec.stop_grace_ms);
    let process = match process::spawn(&launch, grace) {
        Ok(spawned) => spawned,
        Err(e) => return TrialEnd::failed(format!("cannot start `{shown}`: {e}")),
    };
    info!(event = "program_started", pid = process.0.pid(), command = %shown);
    let mut trial = Trial {
        budget: assignment.steps,
        lr: assignment.lr,
        spec,
        grace,
        started: Instant::now(),
        last_step: 0,
        trace_alarm: Instant::now() + Duration::from_millis(spec.first_trace_timeout_ms),
        seen_trace: false,
        stop_sent: None,
        stop_ordered: false,
        failure: None,
        warned_malformed: false,
        stderr: Tail::new(STDERR_LINES),
        output: Tail::new(STDOUT_LINES),
        batcher: TraceBatcher::default(),
    };
    let status = trial.watch(process, stop, publish).await;
    if let Some(batch) = trial.batcher.take() {
        publish(batch);
    }
    drop(file);
    trial.end(&shown, status)
}

fn shown(argv: &[String]) -> String {
    let all = argv.join(" ");
    let mut shown: String = all.chars().take(SHOWN_CHARS).collect();
    if shown.len() < all.len() {
        shown.push('…');
    }
    shown
}

struct Trial<'a> {
    budget: u64,
    lr: f64,
    spec: &'a CommandSpec,
    grace: Duration,
    started: Instant,
    last_step: u64,
    /// When to look at the trace timeout next: the time the timer is set for need not move with
    /// every line, it is checked against the last line when it fires.
    trace_alarm: Instant,
    seen_trace: bool,
    /// When the program was told to stop (a stop order or a failure).
    stop_sent: Option<Instant>,
    /// The coordinator (or a signal) ordered the stop: the trial ends as stopped.
    stop_ordered: bool,
    failure: Option<String>,
    warned_malformed: bool,
    stderr: Tail,
    output: Tail,
    batcher: TraceBatcher,
}

impl Trial<'_> {
    /// Reads the program's output until it has exited and its pipes are drained; returns its
    /// exit status (None if it could not be waited for).
    async fn watch(
        &mut self,
        (mut process, stdout, stderr): (Supervised, ChildStdout, ChildStderr),
        stop: &StopSignal,
        publish: &mut Publish<'_>,
    ) -> Option<ExitStatus> {
        let mut stdout = Lines::new(BufReader::with_capacity(64 * 1024, stdout), MAX_LINE);
        let mut stderr = Lines::new(BufReader::new(stderr), MAX_LINE);
        let (mut stdout_open, mut stderr_open) = (true, true);
        let mut exit: Option<(Instant, Option<ExitStatus>)> = None;
        let stopped = stop.stopped();
        tokio::pin!(stopped);
        let timer = sleep_until(Deadline::now());
        tokio::pin!(timer);
        let mut timer_at = None;
        let pid = process.pid();
        loop {
            if exit.is_some() && !stdout_open && !stderr_open {
                break;
            }
            let wake = self.next_wake(exit.map(|(at, _)| at));
            if timer_at != Some(wake) {
                timer.as_mut().reset(Deadline::from_std(wake));
                timer_at = Some(wake);
            }
            tokio::select! {
                biased;
                () = &mut stopped, if !self.stop_ordered => {
                    self.stop_ordered = true;
                    info!(event = "program_stopping", pid, reason = "stop order");
                    self.send_stop(&process);
                }
                line = stdout.next_line(), if stdout_open => match line {
                    Ok(Some(line)) => self.on_stdout(line, &process, publish),
                    _ => stdout_open = false,
                },
                line = stderr.next_line(), if stderr_open => match line {
                    Ok(Some(line)) => {
                        debug!(event = "program_output", stream = "stderr", line = %line.text);
                        self.stderr.push(&line.text);
                    }
                    _ => stderr_open = false,
                },
                status = process.wait(), if exit.is_none() => {
                    let status = status.ok();
                    info!(event = "program_exited", pid, status = %describe(status));
                    exit = Some((Instant::now(), status));
                }
                () = &mut timer => {
                    timer_at = None;
                    let now = Instant::now();
                    if let Some((at, _)) = exit {
                        if now >= at + DRAIN {
                            // A descendant that escaped the supervisor holds the pipes open.
                            (stdout_open, stderr_open) = (false, false);
                        }
                    }
                    self.on_timer(now, &process, publish);
                }
            }
        }
        exit.and_then(|(_, status)| status)
    }

    /// The earliest moment something is due: the pending batch, the trace timeout, the
    /// supervisor's last chance, the end of draining.
    fn next_wake(&self, exited_at: Option<Instant>) -> Instant {
        let mut wake = self.started + Duration::from_secs(86_400 * 365);
        if let Some(batch) = self.batcher.deadline() {
            wake = wake.min(batch);
        }
        match (self.stop_sent, exited_at) {
            (_, Some(at)) => wake = wake.min(at + DRAIN),
            (None, None) => wake = wake.min(self.trace_alarm),
            (Some(sent), None) => wake = wake.min(sent + self.grace + SUPERVISOR_SLACK),
        }
        wake
    }

    fn on_timer(&mut self, now: Instant, process: &Supervised, publish: &mut Publish<'_>) {
        if self.batcher.deadline().is_some_and(|d| now >= d) {
            if let Some(batch) = self.batcher.take() {
                publish(batch);
            }
        }
        match self.stop_sent {
            None if now >= self.trace_alarm => {
                let (timeout, field) = if self.seen_trace {
                    (self.spec.trace_timeout_ms, "trace_timeout_ms")
                } else {
                    (self.spec.first_trace_timeout_ms, "first_trace_timeout_ms")
                };
                self.fail(
                    format!("wrote no trace line for {timeout} ms (trainer.{field})"),
                    process,
                );
            }
            Some(sent) if now >= sent + self.grace + SUPERVISOR_SLACK => {
                warn!(event = "supervisor_killed", pid = process.pid());
                process.kill();
            }
            _ => {}
        }
    }

    fn on_stdout(&mut self, line: Line, process: &Supervised, publish: &mut Publish<'_>) {
        let parsed = if line.truncated {
            TraceLine::Output
        } else {
            trace_line::parse(&line.text)
        };
        match parsed {
            TraceLine::Point(point) => self.on_point(point, process, publish),
            TraceLine::Output => {
                debug!(event = "program_output", stream = "stdout", line = %line.text);
                self.output.push(&line.text);
            }
            TraceLine::Malformed(why) => {
                if !self.warned_malformed {
                    self.warned_malformed = true;
                    warn!(event = "trace_line_ignored", reason = %why, line = %line.text);
                }
                self.output
                    .push(&format!("{} (not a trace point: {why})", line.text));
            }
        }
    }

    fn on_point(&mut self, p: LinePoint, process: &Supervised, publish: &mut Publish<'_>) {
        // After a stop or a failure the trace no longer matters; step 0 is the loss before
        // training, which the trace (counting updates from 1) has no place for.
        if self.stop_sent.is_some() || p.step == 0 {
            return;
        }
        if p.step <= self.last_step {
            let why = format!(
                "reported step {} after step {}: steps must increase",
                p.step, self.last_step
            );
            return self.fail(why, process);
        }
        if p.step > self.budget {
            let why = format!(
                "reported step {} beyond the trial's budget of {} steps",
                p.step, self.budget
            );
            return self.fail(why, process);
        }
        if !self.seen_trace {
            self.seen_trace = true;
            self.trace_alarm = Instant::now() + Duration::from_millis(self.spec.trace_timeout_ms);
        }
        self.last_step = p.step;
        let point = TracePoint {
            step: p.step,
            train_loss: p.loss,
            lr: p.lr.unwrap_or(self.lr),
            val_loss: p.val_loss,
        };
        if let Some(batch) = self.batcher.push(point) {
            publish(batch);
        }
    }

    fn fail(&mut self, why: String, process: &Supervised) {
        if self.failure.is_none() {
            info!(event = "program_stopping", pid = process.pid(), reason = %why);
            self.failure = Some(why);
        }
        self.send_stop(process);
    }

    fn send_stop(&mut self, process: &Supervised) {
        if self.stop_sent.is_none() {
            self.stop_sent = Some(Instant::now());
            process.stop();
        }
    }

    /// How the trial ended, from what happened and how the program exited.
    fn end(&self, shown: &str, status: Option<ExitStatus>) -> TrialEnd {
        if self.stop_ordered {
            return TrialEnd::Stopped;
        }
        let progress = if self.last_step == 0 {
            "before its first trace line".to_string()
        } else {
            format!("after step {} of {}", self.last_step, self.budget)
        };
        let tails = format!(
            "{}{}",
            self.stderr.render("stderr"),
            self.output.render("stdout (not trace lines)")
        );
        if let Some(why) = &self.failure {
            return TrialEnd::failed(format!(
                "`{shown}` {why}; stopped {progress} ({}){tails}",
                describe(status)
            ));
        }
        match status {
            Some(s) if s.success() && self.last_step == self.budget => {
                TrialEnd::Completed(self.budget)
            }
            Some(s) if s.success() => TrialEnd::failed(format!(
                "`{shown}` exited with status 0 {progress}: a trial completes when the program \
                 reports step {} and exits 0{tails}",
                self.budget
            )),
            other => TrialEnd::failed(format!("`{shown}` {} {progress}{tails}", describe(other))),
        }
    }
}

/// "exited with status 1", "was killed by signal 9 (SIGKILL)".
fn describe(status: Option<ExitStatus>) -> String {
    use std::os::unix::process::ExitStatusExt;
    match status {
        None => "could not be waited for".to_string(),
        Some(s) => match (s.code(), s.signal()) {
            (Some(code), _) => format!("exited with status {code}"),
            (None, Some(signal)) => {
                format!("was killed by signal {signal} ({})", signal_name(signal))
            }
            (None, None) => format!("ended with {s}"),
        },
    }
}

fn signal_name(signal: i32) -> &'static str {
    match signal {
        libc::SIGKILL => "SIGKILL",
        libc::SIGTERM => "SIGTERM",
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGABRT => "SIGABRT",
        libc::SIGINT => "SIGINT",
        libc::SIGBUS => "SIGBUS",
        libc::SIGFPE => "SIGFPE",
        libc::SIGILL => "SIGILL",
        libc::SIGHUP => "SIGHUP",
        libc::SIGPIPE => "SIGPIPE",
        _ => "signal",
    }
}
