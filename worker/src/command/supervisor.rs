//! `lrsweep-worker supervise`: the small process between a worker and a command trial's program.
//!
//! It exists so that a worker's death, however it dies, ends the program and everything the
//! program started. The worker holds the write end of a pipe (the lifeline) whose read end is
//! fd 3 here; when the worker's process ends, even by SIGKILL, the kernel closes the write end and
//! fd 3 reads end-of-file. (`PR_SET_PDEATHSIG` would fire when the worker's *thread* that forked
//! ends, which is not the worker's death.)
//!
//! The program runs in a process group of its own, with this process as its subreaper, so that
//! descendants whose parent dies are reparented here and reaped here (no zombies, nothing
//! escapes to init). On SIGTERM, SIGINT or SIGHUP (the worker's stop order) or end-of-file on the
//! lifeline: SIGTERM to the program's group and to every adopted descendant, then SIGKILL once the
//! grace has passed. When the program exits by itself, whatever it left behind is stopped the
//! same way. This process exits once it has no descendant left, with the program's exit code, or
//! by the program's signal.

use std::io;
use std::os::unix::process::CommandExt;
use std::process::Command;
use std::time::{Duration, Instant};

/// The lifeline's read end in the supervisor.
pub const LIFELINE_FD: i32 = 3;
/// Exit code when the program cannot be started (the shell's "command not found").
pub const CANNOT_START: u8 = 127;

/// Signals that mean "stop", and SIGCHLD; all read through a signalfd.
const SIGNALS: [i32; 4] = [libc::SIGTERM, libc::SIGINT, libc::SIGHUP, libc::SIGCHLD];

/// Runs `command` to the end; returns only if it could not be started (the code to exit with).
pub fn main(grace: Duration, command: &[String]) -> u8 {
    match supervise(grace, command) {
        Ok(never) => match never {},
        Err(Setup::Start(e)) => {
            eprintln!(
                "lrsweep: cannot start `{}`: {e}",
                command.first().map_or("", String::as_str)
            );
            CANNOT_START
        }
        Err(Setup::Os(what, e)) => {
            eprintln!("lrsweep: supervisor: {what}: {e}");
            CANNOT_START
        }
    }
}

enum Setup {
    Start(io::Error),
    Os(&'static str, io::Error),
}

enum Never {}

fn os(what: &'static str, ret: i32) -> Result<i32, Setup> {
    if ret < 0 {
        Err(Setup::Os(what, io::Error::last_os_error()))
    } else {
        Ok(ret)
    }
}

fn supervise(grace: Duration, command: &[String]) -> Result<Never, Setup> {
    let Some((program, args)) = command.split_first() else {
        return Err(Setup::Start(io::Error::other("no program given")));
    };
    // SAFETY: plain system calls on this single-threaded process's own descriptors and mask.
    let signal_fd = unsafe {
        // The program must not inherit the lifeline, or its own children would keep it open.
        libc::fcntl(LIFELINE_FD, libc::F_SETFD, libc::FD_CLOEXEC);
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for s in SIGNALS {
            libc::sigaddset(&mut set, s);
        }
        // Blocked here and read from the signalfd; the program starts with them unblocked.
        os(
            "sigprocmask",
            libc::sigprocmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()),
        )?;
        let fd = os(
            "signalfd",
            libc::signalfd(-1, &set, libc::SFD_CLOEXEC | libc::SFD_NONBLOCK),
        )?;
        os(
            "PR_SET_CHILD_SUBREAPER",
            libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0),
        )?;
        fd
    };
    let mut cmd = Command::new(program);
    cmd.args(args).process_group(0);
    // SAFETY: prctl, signal and sigprocmask are async-signal-safe.
    unsafe {
        cmd.pre_exec(|| {
            // If this process is SIGKILLed (it is the one forking, single-threaded), the program
            // at least goes with it.
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) != 0 {
                return Err(io::Error::last_os_error());
            }
            // The program must feel the stop signals: not blocked (the mask is inherited across
            // exec) nor ignored (a worker started under nohup ignores SIGHUP).
            let mut none: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut none);
            libc::sigprocmask(libc::SIG_SETMASK, &none, std::ptr::null_mut());
            for s in [libc::SIGTERM, libc::SIGINT, libc::SIGHUP] {
                libc::signal(s, libc::SIG_DFL);
            }
            Ok(())
        });
    }
    let child = cmd.spawn().map_err(Setup::Start)?;
    let mut state = State {
        trainer: child.id() as i32,
        status: None,
        kill_at: None,
        grace,
    };
    let mut lifeline_open = true;
    loop {
        if state.reap() {
            exit_like(state.status.unwrap_or(0));
        }
        let now = Instant::now();
        if state.status.is_some() {
            // The program is gone but left something behind: stop that too.
            state.stop();
        }
        if state.kill_at.is_some_and(|at| now >= at) {
            state.signal_all(libc::SIGKILL);
        }
        let timeout_ms = match state.kill_at {
            // After SIGKILL, look again soon: adopted descendants may still arrive.
            Some(at) if now >= at => 20,
            Some(at) => (at - now)
                .as_millis()
                .saturating_add(1)
                .min(i32::MAX as u128) as i32,
            None => -1,
        };
        let mut fds = [
            libc::pollfd {
                fd: signal_fd,
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: if lifeline_open { LIFELINE_FD } else { -1 },
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        // SAFETY: `fds` is a valid array of two pollfd.
        if unsafe { libc::poll(fds.as_mut_ptr(), 2, timeout_ms) } < 0 {
            continue; // EINTR: look again
        }
        if fds[0].revents != 0
            && read_signals(signal_fd)
                .into_iter()
                .any(|s| s != libc::SIGCHLD)
        {
            state.stop();
        }
        if fds[1].revents != 0 {
            let mut byte = 0u8;
            // SAFETY: reads at most one byte into `byte`.
            let n = unsafe { libc::read(LIFELINE_FD, (&mut byte as *mut u8).cast(), 1) };
            if n <= 0 {
                // The worker is gone.
                lifeline_open = false;
                // SAFETY: our own descriptor, not used again.
                unsafe { libc::close(LIFELINE_FD) };
                state.stop();
            }
        }
    }
}

struct State {
    /// The program's pid, which is also its process group's id.
    trainer: i32,
    /// Its wait status, once reaped.
    status: Option<i32>,
    /// When the stop escalates to SIGKILL; None until a stop began.
    kill_at: Option<Instant>,
    grace: Duration,
}

impl State {
    /// Reaps every exited descendant; true once none is left.
    fn reap(&mut self) -> bool {
        loop {
            let mut status = 0;
            // SAFETY: waitpid on our own children with a valid status pointer.
            let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
            if pid > 0 {
                if pid == self.trainer {
                    self.status = Some(status);
                }
                continue;
            }
            if pid == 0 {
                return false;
            }
            if io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
                continue;
            }
            return true; // ECHILD
        }
    }

    fn stop(&mut self) {
        if self.kill_at.is_none() {
            self.signal_all(libc::SIGTERM);
            self.kill_at = Some(Instant::now() + self.grace);
        }
    }

    /// `signal` to the program's group and to every descendant reparented here.
    fn signal_all(&self, signal: i32) {
        // SAFETY: kill has no memory effects.
        unsafe { libc::kill(-self.trainer, signal) };
        for pid in adopted() {
            // SAFETY: as above.
            unsafe { libc::kill(pid, signal) };
        }
    }
}

/// This process's children (the program, and descendants whose parent died).
fn adopted() -> Vec<i32> {
    let pid = std::process::id();
    std::fs::read_to_string(format!("/proc/self/task/{pid}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}

/// Signal numbers waiting on the signalfd.
fn read_signals(fd: i32) -> Vec<i32> {
    let mut signals = Vec::new();
    loop {
        // SAFETY: an all-zero signalfd_siginfo is valid; read fills at most its size.
        let mut info: libc::signalfd_siginfo = unsafe { std::mem::zeroed() };
        let size = std::mem::size_of::<libc::signalfd_siginfo>();
        let n = unsafe { libc::read(fd, (&mut info as *mut libc::signalfd_siginfo).cast(), size) };
        if n != size as isize {
            return signals;
        }
        signals.push(info.ssi_signo as i32);
    }
}

/// Ends this process the way the program ended: its exit code, or its signal.
fn exit_like(status: i32) -> ! {
    if libc::WIFSIGNALED(status) {
        let signal = libc::WTERMSIG(status);
        // SAFETY: resetting this process's own limits, disposition and mask, then signalling
        // itself; no core file is wanted for a signal the program received.
        unsafe {
            let no_core = libc::rlimit {
                rlim_cur: 0,
                rlim_max: 0,
            };
            libc::setrlimit(libc::RLIMIT_CORE, &no_core);
            libc::signal(signal, libc::SIG_DFL);
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            libc::sigaddset(&mut set, signal);
            libc::sigprocmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut());
            libc::kill(libc::getpid(), signal);
        }
        std::process::exit(128 + signal);
    }
    std::process::exit(libc::WEXITSTATUS(status));
}
