//! Command line → `WorkerConfig` → `run`.

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use lrsweep_proto::cli::{block_on, init_logging, LogFormat};

use crate::session::{run, WorkerConfig};

#[derive(Debug, Parser)]
#[command(
    name = "lrsweep-worker",
    version,
    about = "Trains the trials an lrsweep coordinator assigns and streams their loss traces back"
)]
pub struct Args {
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Coordinator URL.
    #[arg(
        long,
        env = "LRSWEEP_COORDINATOR",
        default_value = "http://127.0.0.1:50051"
    )]
    pub coordinator: String,
    /// Name shown in the coordinator's logs and report (default: HOST-PID).
    #[arg(long, env = "LRSWEEP_WORKER_NAME")]
    pub name: Option<String>,
    /// Trials to train at once (one core each).
    #[arg(long, env = "LRSWEEP_SLOTS", default_value_t = 1)]
    pub slots: u32,
    /// Longest wait between reconnect attempts, in milliseconds.
    #[arg(long, default_value_t = 5_000)]
    pub max_backoff_ms: u64,
    /// Shared secret the coordinator expects. Never logged.
    #[arg(long, env = "LRSWEEP_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// CA certificate (PEM) for an https:// coordinator.
    #[arg(long, env = "LRSWEEP_CA")]
    pub ca: Option<std::path::PathBuf>,
    /// Exit 0 after this long without a coordinator, e.g. `90s`, `10m`, `1h` (a bare number is
    /// seconds). Default: retry forever.
    #[arg(long, env = "LRSWEEP_GIVE_UP_AFTER", value_parser = crate::duration::parse)]
    pub give_up_after: Option<Duration>,
    /// `text` or `json` (one JSON object per stderr line).
    #[arg(long, env = "LRSWEEP_LOG_FORMAT", default_value = "text")]
    pub log_format: LogFormat,
}

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Train one trial at --lr on the spec's [trainer] table, without a coordinator, printing
    /// one JSON line per evaluated step and a final `done` line (worker/src/one_trial.rs).
    Train(crate::one_trial::TrainArgs),
}

impl Args {
    pub fn into_config(self) -> WorkerConfig {
        let host = hostname();
        WorkerConfig {
            coordinator: self.coordinator,
            name: self
                .name
                .unwrap_or_else(|| format!("{host}-{}", std::process::id())),
            host,
            slots: self.slots.max(1),
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(self.max_backoff_ms.max(100)),
            token: self.token.filter(|t| !t.is_empty()),
            ca: self.ca,
            give_up_after: self.give_up_after,
        }
    }
}

fn hostname() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "worker".to_string())
}

/// The whole binary: exit 0 when the coordinator ends the sweep or on Ctrl-C/SIGTERM.
pub fn main() -> ExitCode {
    let mut args = Args::parse();
    if let Some(Command::Train(train)) = args.command.take() {
        return crate::one_trial::main(train);
    }
    init_logging(args.log_format);
    let config = args.into_config();
    match block_on(run(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(code) => code,
    }
}
