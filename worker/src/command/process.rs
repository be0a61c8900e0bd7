//! The worker's side of a command trial's process: starts the supervisor (this same binary,
//! `lrsweep-worker supervise`, see `supervisor.rs`) with the program, holds its lifeline, and
//! signals it.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use tokio::process::{Child, ChildStderr, ChildStdout, Command};

use super::placeholders::Launch;
use super::supervisor::LIFELINE_FD;

pub struct Supervised {
    child: Child,
    pid: i32,
    /// Reaped: its pid may belong to someone else now, so it is signalled no more.
    exited: bool,
    /// The write end of the lifeline: the supervisor stops the program when it closes, which
    /// happens at the latest when this process dies.
    _lifeline: OwnedFd,
}

/// Starts `launch` under a supervisor that gives it `grace` between SIGTERM and SIGKILL; returns
/// it with the program's stdout and stderr.
pub fn spawn(
    launch: &Launch,
    grace: Duration,
) -> io::Result<(Supervised, ChildStdout, ChildStderr)> {
    let mut fds = [0; 2];
    // SAFETY: pipe2 writes two descriptors into `fds`, which we then own.
    let (read, write) = unsafe {
        if libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) != 0 {
            return Err(io::Error::last_os_error());
        }
        (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1]))
    };
    // The running binary itself, even if its file was replaced since it started.
    let mut cmd = Command::new("/proc/self/exe");
    cmd.arg0("lrsweep-worker")
        .arg("supervise")
        .arg("--grace-ms")
        .arg(grace.as_millis().to_string())
        .arg("--")
        .args(&launch.argv);
    // The worker's own settings (its token above all) are not the program's business.
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("LRSWEEP_") {
            cmd.env_remove(key);
        }
    }
    cmd.envs(launch.env.iter().map(|(k, v)| (k, v)));
    if let Some(dir) = &launch.workdir {
        cmd.current_dir(dir);
    }
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(false);
    let read_fd = read.as_raw_fd();
    // SAFETY: setsid, fcntl and dup2 are async-signal-safe.
    unsafe {
        cmd.pre_exec(move || {
            // A session of its own: a Ctrl-C on the worker's terminal reaches the worker, which
            // stops its trials in order, not the programs directly.
            if libc::setsid() < 0 {
                return Err(io::Error::last_os_error());
            }
            let ok = if read_fd == LIFELINE_FD {
                libc::fcntl(read_fd, libc::F_SETFD, 0)
            } else {
                libc::dup2(read_fd, LIFELINE_FD)
            };
            if ok < 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn()?;
    drop(read);
    let pid = child
        .id()
        .and_then(|p| i32::try_from(p).ok())
        .ok_or_else(|| io::Error::other("the supervisor exited at once"))?;
    let (Some(stdout), Some(stderr)) = (child.stdout.take(), child.stderr.take()) else {
        return Err(io::Error::other("the supervisor's output is not piped"));
    };
    let supervised = Supervised {
        child,
        pid,
        exited: false,
        _lifeline: write,
    };
    Ok((supervised, stdout, stderr))
}

impl Supervised {
    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// Asks the supervisor to stop the program (SIGTERM to its group, SIGKILL after the grace).
    pub fn stop(&self) {
        self.signal(libc::SIGTERM);
    }

    /// Last resort when the supervisor does not exit: SIGKILL it (the program, whose parent it
    /// is, gets SIGKILL with it).
    pub fn kill(&self) {
        self.signal(libc::SIGKILL);
    }

    fn signal(&self, signal: i32) {
        if !self.exited {
            // SAFETY: kill has no memory effects; the pid is our child, not yet reaped.
            unsafe { libc::kill(self.pid, signal) };
        }
    }

    /// Waits for the supervisor's exit. Cancel-safe.
    pub async fn wait(&mut self) -> io::Result<ExitStatus> {
        let status = self.child.wait().await?;
        self.exited = true;
        Ok(status)
    }
}
