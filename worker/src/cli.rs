//! Command line → `WorkerConfig` → `run`.

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use lrsweep_proto::cli::block_on;
use lrsweep_proto::logging::{init_logging, LogFormat};

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
    /// Trials to train at once (default 1, or one per device of --devices).
    #[arg(long, env = "LRSWEEP_SLOTS")]
    pub slots: Option<u32>,
    /// Comma-separated devices, one per slot: a command trial on slot k gets
    /// CUDA_VISIBLE_DEVICES set to the k-th (e.g. `--slots 4 --devices 0,1,2,3`).
    #[arg(long, env = "LRSWEEP_DEVICES", value_delimiter = ',')]
    pub devices: Vec<String>,
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
    /// one JSON line per evaluated step and a final `done` line.
    Train(crate::one_trial::TrainArgs),
    /// Runs a command trial's program and stops it, its process group and its descendants
    /// when told to or when the worker dies. Started by the worker itself, not by people.
    #[command(hide = true)]
    Supervise {
        /// Between SIGTERM and SIGKILL.
        #[arg(long)]
        grace_ms: u64,
        /// The program and its arguments.
        #[arg(last = true, required = true)]
        command: Vec<String>,
    },
}

impl Args {
    pub fn into_config(self) -> Result<WorkerConfig, String> {
        let devices: Vec<String> = self
            .devices
            .into_iter()
            .map(|d| d.trim().to_string())
            .filter(|d| !d.is_empty())
            .collect();
        let slots = match (self.slots, devices.len()) {
            (Some(0), _) => return Err("--slots must be at least 1".into()),
            (Some(slots), 0) => slots,
            (None, 0) => 1,
            (None, n) => n as u32,
            (Some(slots), n) if slots as usize == n => slots,
            (Some(slots), n) => {
                return Err(format!(
                    "--slots {slots} with {n} --devices: give one device per slot"
                ))
            }
        };
        let host = hostname();
        Ok(WorkerConfig {
            coordinator: self.coordinator,
            name: self
                .name
                .unwrap_or_else(|| format!("{host}-{}", std::process::id())),
            host,
            slots,
            devices,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(self.max_backoff_ms.max(100)),
            token: self.token.filter(|t| !t.is_empty()),
            ca: self.ca,
            give_up_after: self.give_up_after,
        })
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
    match args.command.take() {
        Some(Command::Train(train)) => return crate::one_trial::main(train),
        Some(Command::Supervise { grace_ms, command }) => {
            let code = crate::command::supervisor::main(Duration::from_millis(grace_ms), &command);
            return ExitCode::from(code);
        }
        None => {}
    }
    init_logging(args.log_format);
    let config = match args.into_config() {
        Ok(config) => config,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    match block_on(run(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(code) => code,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(args: &[&str]) -> Result<WorkerConfig, String> {
        let mut all = vec!["lrsweep-worker"];
        all.extend_from_slice(args);
        Args::try_parse_from(all).unwrap().into_config()
    }

    #[test]
    fn devices_give_one_slot_each() {
        let c = config(&["--devices", "0,1,2,3"]).unwrap();
        assert_eq!((c.slots, c.devices.len()), (4, 4));
        let c = config(&["--slots", "2", "--devices", "5,7"]).unwrap();
        assert_eq!(c.devices, ["5", "7"]);
        assert_eq!(config(&[]).unwrap().slots, 1);
        assert!(config(&["--slots", "3", "--devices", "0,1"]).is_err());
        assert!(config(&["--slots", "0"]).is_err());
    }
}
