//! `run(config)`: serve the sweep, optionally start local worker processes, wait for the end or
//! a shutdown signal, then write the report.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use lrsweep_proto::cli::{shutdown_signal, LogFormat};
use lrsweep_proto::v1::coordinator_server::CoordinatorServer;
use tokio::net::TcpListener;
use tokio::process::{Child, Command};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::server::TcpIncoming;
use tracing::{info, warn};

use crate::durable::{load_sweep, spec_text, Durable};
use crate::report::Report;
use crate::service::{CoordinatorService, Hub, TokenCheck, MAX_MESSAGE_BYTES};
use crate::spec::SweepSpec;
use crate::store::{Store, SweepRow};
use crate::sweep::Sweep;
use crate::CoordinatorError;

/// How long workers get to say goodbye after being told the sweep is over.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Clone, Debug)]
pub struct CoordinatorConfig {
    /// None: the defaults for a new sweep, or the stored spec when resuming.
    pub spec: Option<SweepSpec>,
    /// The SQLite database holding every sweep, trial, attempt and trace point.
    pub db: PathBuf,
    pub listen: SocketAddr,
    pub report_path: PathBuf,
    /// Worker processes to start on loopback; 0 to wait for external workers.
    pub local_workers: u32,
    /// The worker binary for local workers; defaults to `lrsweep-worker` beside this executable.
    pub worker_bin: Option<PathBuf>,
    /// Passed on to local workers.
    pub log_format: LogFormat,
    /// When set, every RPC must carry it (`authorization: Bearer TOKEN`).
    pub token: Option<String>,
    /// Serve TLS with this certificate chain and key (PEM files).
    pub tls: Option<TlsFiles>,
    /// A worker silent or away this long loses its trials to others.
    pub lease: Duration,
    /// Attempts per trial before it is marked failed.
    pub max_attempts: u32,
}

#[derive(Clone, Debug)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// Opens the database and either resumes its unfinished sweep or starts a new one.
fn open_sweep(config: &CoordinatorConfig) -> Result<(String, Sweep, Durable), CoordinatorError> {
    let mut store = Store::open(&config.db)?;
    if let Some(row) = store.resumable_sweep()? {
        if let Some(spec) = &config.spec {
            if spec_text(spec)? != row.spec_toml {
                return Err(CoordinatorError::Storage(format!(
                    "{} holds unfinished sweep {} with another spec: run without --spec to finish it, or use another --db",
                    config.db.display(),
                    row.sweep_id
                )));
            }
        }
        let sweep = load_sweep(&store, &row)?;
        store.set_sweep_status(&row.sweep_id, "running")?;
        info!(
            event = "sweep_resumed",
            sweep = %row.sweep_id,
            round = sweep.current_round(),
            done = sweep.trials().iter().filter(|t| t.is_terminal()).count(),
            trials = sweep.trials().len(),
        );
        return Ok((
            row.sweep_id.clone(),
            sweep,
            Durable::new(store, row.sweep_id)?,
        ));
    }
    let spec = config.spec.clone().unwrap_or_default();
    let created_at_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default();
    let sweep_id = format!("sweep-{created_at_ms}");
    store.create_sweep(&SweepRow {
        sweep_id: sweep_id.clone(),
        spec_toml: spec_text(&spec)?,
        status: "running".into(),
        created_at_ms,
    })?;
    Ok((
        sweep_id.clone(),
        Sweep::new(spec),
        Durable::new(store, sweep_id)?,
    ))
}

pub async fn run(config: CoordinatorConfig) -> Result<Report, CoordinatorError> {
    let (sweep_id, mut sweep, durable) = open_sweep(&config)?;
    let span = tracing::info_span!("sweep", sweep = %sweep_id);
    let _guard = span.enter();

    let listener = TcpListener::bind(config.listen)
        .await
        .map_err(|e| CoordinatorError::io(format!("binding {}", config.listen), e))?;
    let addr = listener
        .local_addr()
        .map_err(|e| CoordinatorError::io("reading bound address", e))?;
    sweep.set_max_attempts(config.max_attempts);
    let hub = Hub::new(sweep_id.clone(), sweep, durable, config.lease);
    let reaper = {
        let hub = hub.clone();
        let every = (config.lease / 4).max(Duration::from_millis(50));
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            loop {
                tick.tick().await;
                hub.expire_leases(std::time::Instant::now());
            }
        })
    };
    info!(event = "listening", addr = %addr, report = %config.report_path.display());

    let (stop_server, server_stopped) = tokio::sync::oneshot::channel::<()>();
    let tls = config.tls.as_ref().map(crate::tls::acceptor).transpose()?;
    // With an incoming stream of our own, the builder's tcp_nodelay does not apply: without it
    // Nagle holds a small write (a stop order) until the previous one is acknowledged, and the
    // peer's delayed ACK made that up to 40 ms (the p99 of prune latency at 100 workers).
    let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
    let service = CoordinatorServer::new(CoordinatorService::new(hub.clone()))
        .max_decoding_message_size(MAX_MESSAGE_BYTES);
    let router = tonic::transport::Server::builder().add_service(InterceptedService::new(
        service,
        TokenCheck::new(config.token.as_deref()),
    ));
    let stopped = async {
        let _ = server_stopped.await;
    };
    let server = match tls {
        Some(acceptor) => tokio::spawn(
            router.serve_with_incoming_shutdown(crate::tls::incoming(incoming, acceptor), stopped),
        ),
        None => tokio::spawn(router.serve_with_incoming_shutdown(incoming, stopped)),
    };

    let mut children = spawn_local_workers(&config, addr)?;

    let mut done = hub.done();
    tokio::select! {
        _ = done.wait_for(|d| *d) => {}
        () = shutdown_signal() => {
            warn!(event = "shutdown_requested");
            hub.interrupt("coordinator shutting down");
        }
    }

    // Give workers a moment to read their shutdown order and hang up.
    let deadline = tokio::time::Instant::now() + DRAIN_TIMEOUT;
    while hub.connected_workers() > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    reaper.abort();
    let _ = stop_server.send(());
    match tokio::time::timeout(DRAIN_TIMEOUT, server).await {
        Ok(Ok(Err(e))) => warn!(event = "server_error", error = %e),
        Err(_) => warn!(event = "server_stop_timed_out"),
        _ => {}
    }
    for child in &mut children {
        reap(child).await;
    }

    let report = hub.with_sweep(|sweep| Report::from_sweep(&sweep_id, sweep));
    let json = report.to_json();
    if let Some(failure) = hub.finish(report.outcome != "completed", &json) {
        report.write(&config.report_path)?;
        return Err(CoordinatorError::Storage(format!(
            "the sweep was stopped because the database failed: {failure}"
        )));
    }
    report.write(&config.report_path)?;
    info!(
        event = "recommendation",
        best_lr = report.recommendation.as_ref().map(|r| r.best_lr),
        max_stable_lr = report.recommendation.as_ref().map(|r| r.max_stable_lr),
        suggested_min_lr = report.recommendation.as_ref().map(|r| r.suggested_min_lr),
        suggested_max_lr = report.recommendation.as_ref().map(|r| r.suggested_max_lr),
        total_steps = report.total_steps,
        report = %config.report_path.display(),
    );
    Ok(report)
}

fn spawn_local_workers(
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
async fn reap(child: &mut Child) {
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
