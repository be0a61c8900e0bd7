//! The process plumbing both binaries share: the one shutdown signal and running a binary's
//! async body.

use std::fmt::Display;
use std::future::Future;
use std::process::ExitCode;

/// Resolves on Ctrl-C or SIGTERM: the start of the one shutdown path of either binary. The
/// handlers are installed when this is called (inside a runtime), not when first polled, so a
/// signal that arrives before the future is awaited is not lost.
pub fn shutdown_signal() -> impl Future<Output = ()> + Send + 'static {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate()).ok();
        let mut int = signal(SignalKind::interrupt()).ok();
        async move {
            let wait = |s: Option<tokio::signal::unix::Signal>| async move {
                match s {
                    Some(mut s) => {
                        s.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                () = wait(term.take()) => {}
                () = wait(int.take()) => {}
            }
        }
    }
    #[cfg(not(unix))]
    async {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Runs a binary's async body on a new runtime. A failure is printed as `error: …` on stderr
/// and becomes exit code 1.
pub fn block_on<T, E: Display>(body: impl Future<Output = Result<T, E>>) -> Result<T, ExitCode> {
    let runtime = tokio::runtime::Runtime::new().map_err(|e| {
        eprintln!("error: cannot start the async runtime: {e}");
        ExitCode::FAILURE
    })?;
    runtime.block_on(body).map_err(|e| {
        eprintln!("error: {e}");
        ExitCode::FAILURE
    })
}
