//! `--local-workers N`: worker processes on loopback, started beside the coordinator and reaped
//! when it ends.

use std::net::SocketAddr;
use std::process::Stdio;

use lrsweep_proto::logging::LogFormat;
use tokio::process::{Child, Command};
use tracing::{info, warn};

use crate::server::{CoordinatorConfig, DRAIN_TIMEOUT};
use crate::CoordinatorError;

pub fn spawn_local_workers(
    config: &CoordinatorConfig,
    addr: SocketAddr,
) -> Result<Vec<Child>, CoordinatorError> {
    if config.local_workers == 0 {
        return Ok(Vec::new());
    }
    let bin = match &config.worker_bin {
        Some(bin) => bin.clone(),
        None => std::env::current_exe()
            .map_err(|e| CoordinatorError::io("locating this executable", e))?
            .with_file_name(format!("lrsweep-worker{}", std::env::consts::EXE_SUFFIX)),
    };
    if !bin.is_file() {
        return Err(CoordinatorError::io(
            format!(
                "local workers need the worker binary at {} (build it with `cargo build --release -p lrsweep-worker`, or pass --worker-bin)",
                bin.display()
            ),
            std::io::ErrorKind::NotFound.into(),
        ));
    }
    let format = match config.log_format {
        LogFormat::Text => "text",
        LogFormat::Json => "json",
    };
    (0..config.local_workers)
        .map(|i| {
            let mut command = Command::new(&bin);
            match &config.tls {
                // The certificate must name the listen address for local workers to accept it.
                Some(tls) => command
                    .arg("--coordinator")
                    .arg(format!("https://{addr}"))
                    .arg("--ca")
                    .arg(&tls.cert),
                None => command.arg("--coordinator").arg(format!("http://{addr}")),
            };
            let child = command
                .arg("--name")
                .arg(format!("local-{i}"))
                .arg("--log-format")
                .arg(format)
                // Through the environment, so the token does not show in `ps`.
                .envs(config.token.as_ref().map(|t| ("LRSWEEP_TOKEN", t.as_str())))
                .stdin(Stdio::null())
                .kill_on_drop(true)
                .spawn()
                .map_err(|e| CoordinatorError::io(format!("starting {}", bin.display()), e))?;
            info!(event = "local_worker_started", name = %format!("local-{i}"), pid = child.id());
            Ok(child)
        })
        .collect()
}

/// Local workers exit by themselves on the shutdown order; one that doesn't is killed.
pub async fn reap(child: &mut Child) {
    match tokio::time::timeout(DRAIN_TIMEOUT, child.wait()).await {
        Ok(Ok(status)) if !status.success() => {
            warn!(event = "local_worker_exited", pid = child.id(), status = %status)
        }
        Ok(_) => {}
        Err(_) => {
            warn!(event = "local_worker_killed", pid = child.id());
            let _ = child.kill().await;
        }
    }
}
