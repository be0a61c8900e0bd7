//! Command line → `CoordinatorConfig` → `run`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Parser;
use lrsweep_proto::cli::block_on;
use lrsweep_proto::logging::{init_logging, LogFormat};

use crate::server::{run, CoordinatorConfig, TlsFiles};
use crate::sweep::SweepStatus;
use crate::view::{self, source::StoredSweep};
use lrsweep_proto::spec::SweepSpec;

#[derive(Debug, Parser)]
#[command(
    name = "lrsweep-coordinator",
    version,
    about = "Finds a good learning rate: plans a coarse-to-fine search and runs it on workers"
)]
pub struct Args {
    #[command(subcommand)]
    pub command: Option<Sub>,
    /// SQLite database with every sweep, trial, attempt and trace point. An unfinished sweep in
    /// it is resumed.
    #[arg(long, env = "LRSWEEP_DB", default_value = "lrsweep.db", global = true)]
    pub db: PathBuf,
    /// Search spec (TOML). Without it the built-in defaults run: digits, MLP, 1e-7..10.
    #[arg(long, env = "LRSWEEP_SPEC")]
    pub spec: Option<PathBuf>,
    /// Address to serve workers on.
    #[arg(long, env = "LRSWEEP_LISTEN", default_value = "127.0.0.1:50051")]
    pub listen: SocketAddr,
    /// Where to write the JSON report.
    #[arg(
        long,
        env = "LRSWEEP_REPORT",
        default_value = "lrsweep-report.json",
        global = true
    )]
    pub report: PathBuf,
    /// Start this many worker processes on loopback.
    #[arg(long, default_value_t = 0)]
    pub local_workers: u32,
    /// Worker binary for --local-workers (default: lrsweep-worker beside this binary).
    #[arg(long, env = "LRSWEEP_WORKER_BIN")]
    pub worker_bin: Option<PathBuf>,
    /// Shared secret every worker must present. Never logged.
    #[arg(long, env = "LRSWEEP_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// TLS certificate chain (PEM); needs --tls-key.
    #[arg(long, env = "LRSWEEP_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// TLS private key (PEM); needs --tls-cert.
    #[arg(long, env = "LRSWEEP_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// A worker silent or disconnected this long (ms) loses its trials to other workers.
    #[arg(long, env = "LRSWEEP_LEASE_MS", default_value_t = 10_000)]
    pub lease_ms: u64,
    /// Attempts per trial (failures and lost workers) before it is marked failed.
    #[arg(long, default_value_t = crate::sweep::DEFAULT_MAX_ATTEMPTS)]
    pub max_attempts: u32,
    /// Serve Prometheus metrics at http://ADDR/metrics (off by default).
    #[arg(long, env = "LRSWEEP_METRICS_LISTEN")]
    pub metrics_listen: Option<SocketAddr>,
    /// `text` or `json` (one JSON object per stderr line).
    #[arg(long, env = "LRSWEEP_LOG_FORMAT", default_value = "text")]
    pub log_format: LogFormat,
}

#[derive(Debug, clap::Subcommand)]
pub enum Sub {
    /// Rebuild the report of the latest sweep (or --sweep ID) from the database alone.
    Report {
        #[arg(long)]
        sweep: Option<String>,
        /// Also write the report as one self-contained HTML page, plots inline.
        #[arg(long)]
        html: Option<PathBuf>,
    },
    /// Draw the latest sweep (or --sweep ID) from the database alone: sweep, traces and, for a
    /// range test, range-test plots, each as SVG and PNG.
    Plot {
        #[arg(long)]
        sweep: Option<String>,
        /// Directory the plots are written to (created if missing).
        #[arg(long)]
        out: PathBuf,
    },
    /// Where the latest sweep (or --sweep ID) stands: round, trials, workers, best rate,
    /// elapsed time and ETA. Reads the database only (read-only), also while the sweep runs.
    Status {
        #[arg(long)]
        sweep: Option<String>,
        /// On a terminal, redraw every second until the sweep is over; otherwise print once.
        #[arg(long)]
        watch: bool,
    },
    /// Ask a coordinator's gRPC health service; exit 0 when it answers SERVING (for Docker's
    /// HEALTHCHECK and exec probes), 1 otherwise.
    Health {
        /// Coordinator URL (default: http://127.0.0.1 at the port of --listen).
        #[arg(long)]
        addr: Option<String>,
        /// "" for the whole server, or lrsweep.v1.Coordinator.
        #[arg(long, default_value = "")]
        service: String,
        /// CA certificate (PEM) for an https:// address.
        #[arg(long)]
        ca: Option<PathBuf>,
    },
}

impl Args {
    pub fn into_config(self) -> Result<CoordinatorConfig, crate::CoordinatorError> {
        let spec = match &self.spec {
            Some(path) => Some(SweepSpec::load(path)?),
            None => None,
        };
        Ok(CoordinatorConfig {
            spec,
            db: self.db,
            listen: self.listen,
            report_path: self.report,
            local_workers: self.local_workers,
            worker_bin: self.worker_bin,
            log_format: self.log_format,
            lease: std::time::Duration::from_millis(self.lease_ms.max(100)),
            max_attempts: self.max_attempts.max(1),
            metrics_listen: self.metrics_listen,
            token: self.token.filter(|t| !t.is_empty()),
            tls: self
                .tls_cert
                .zip(self.tls_key)
                .map(|(cert, key)| TlsFiles { cert, key }),
        })
    }
}

/// The whole binary: exit 0 with a report, 2 for a bad spec or flags, 1 for anything else.
pub fn main() -> ExitCode {
    let args = Args::parse();
    init_logging(args.log_format);
    let offline = match &args.command {
        Some(Sub::Report { sweep, html }) => Some(rebuild_report(
            &args.db,
            sweep.as_deref(),
            &args.report,
            html.as_deref(),
        )),
        Some(Sub::Plot { sweep, out }) => Some(plot(&args.db, sweep.as_deref(), out)),
        Some(Sub::Status { sweep, watch }) => {
            Some(crate::status::watch(&args.db, sweep.as_deref(), *watch).map(|()| String::new()))
        }
        Some(Sub::Health { .. }) | None => None,
    };
    if let Some(result) = offline {
        return match result {
            Ok(stdout) => {
                print!("{stdout}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        };
    }
    if let Some(Sub::Health { addr, service, ca }) = &args.command {
        let addr = addr
            .clone()
            .unwrap_or_else(|| format!("http://127.0.0.1:{}", args.listen.port()));
        let timeout = std::time::Duration::from_secs(5);
        return match block_on(crate::health::check(&addr, service, ca.as_deref(), timeout)) {
            Ok(()) => {
                println!("SERVING");
                ExitCode::SUCCESS
            }
            Err(code) => code,
        };
    }
    let config = match args.into_config() {
        Ok(config) => config,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    match block_on(run(config)) {
        Ok(report)
            if report.recommendation.is_none() && report.outcome == SweepStatus::Completed =>
        {
            print!("{}", report.summary());
            let why = report
                .failures()
                .unwrap_or_else(|| "no trial trained without diverging or failing".to_string());
            eprintln!("error: no learning rate can be recommended: {why} (see the report)");
            ExitCode::FAILURE
        }
        Ok(report) => {
            print!("{}", report.summary());
            ExitCode::SUCCESS
        }
        Err(code) => code,
    }
}

/// `report`: the report of a stored sweep, written to `out` (and as HTML to `html`); returns
/// the summary.
fn rebuild_report(
    db: &Path,
    sweep_id: Option<&str>,
    out: &Path,
    html: Option<&Path>,
) -> Result<String, crate::CoordinatorError> {
    let sweep = StoredSweep::open(db, sweep_id)?;
    sweep.report.write(out)?;
    if let Some(html) = html {
        view::write_html(&sweep, html)?;
    }
    Ok(sweep.report.summary())
}

/// `plot`: a stored sweep's plots, written into `dir`; returns the files written, a line each.
fn plot(db: &Path, sweep_id: Option<&str>, dir: &Path) -> Result<String, crate::CoordinatorError> {
    let sweep = StoredSweep::open(db, sweep_id)?;
    let files = view::write_plots(&sweep, dir)?;
    Ok(files.iter().map(|f| format!("{}\n", f.display())).collect())
}
