//! `run(config)`: serve the sweep, optionally start local worker processes, wait for the end or
//! a shutdown signal, then write the report.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use lrsweep_proto::cli::shutdown_signal;
use lrsweep_proto::logging::LogFormat;
use lrsweep_proto::spec::SweepSpec;
use lrsweep_proto::v1::coordinator_server::CoordinatorServer;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::server::TcpIncoming;
use tracing::{info, warn, Instrument};

use crate::auth::TokenCheck;
use crate::hub::Hub;
use crate::local_workers::{reap, spawn_local_workers};
use crate::metrics::Metrics;
use crate::report::Report;
use crate::service::{CoordinatorService, MAX_MESSAGE_BYTES};
use crate::storage::{load_sweep, Durable, Store, SweepRow};
use crate::sweep::{Sweep, SweepStatus};
use crate::CoordinatorError;

/// How long workers get to say goodbye after being told the sweep is over.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

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
    /// Serve Prometheus metrics at `/metrics` on this address; None: no metrics at all.
    pub metrics_listen: Option<SocketAddr>,
}

#[derive(Clone, Debug)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// Opens the database and either resumes its unfinished sweep or starts a new one.
fn open_sweep(config: &CoordinatorConfig) -> Result<(String, Sweep, Store), CoordinatorError> {
    let mut store = Store::open(&config.db)?;
    if let Some(row) = store.resumable_sweep()? {
        if let Some(spec) = &config.spec {
            if spec.to_toml() != row.spec_toml {
                return Err(CoordinatorError::Storage(format!(
                    "{} holds unfinished sweep {} with another spec: run without --spec to finish it, or use another --db",
                    config.db.display(),
                    row.sweep_id
                )));
            }
        }
        let sweep = load_sweep(&store, &row)?;
        store.set_sweep_status(&row.sweep_id, SweepStatus::Running)?;
        store.disconnect_workers(&row.sweep_id)?;
        info!(
            event = "sweep_resumed",
            sweep = %row.sweep_id,
            round = sweep.current_round(),
            done = sweep.trials().iter().filter(|t| t.is_terminal()).count(),
            trials = sweep.trials().len(),
        );
        return Ok((row.sweep_id, sweep, store));
    }
    let spec = config.spec.clone().unwrap_or_default();
    let created_at_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default();
    let sweep_id = format!("sweep-{created_at_ms}");
    store.create_sweep(&SweepRow {
        sweep_id: sweep_id.clone(),
        spec_toml: spec.to_toml(),
        status: SweepStatus::Running,
        created_at_ms,
    })?;
    Ok((sweep_id, Sweep::new(spec), store))
}

/// Serves the sweep until it ends or a shutdown signal arrives; writes the report.
pub async fn run(config: CoordinatorConfig) -> Result<Report, CoordinatorError> {
    // Opening, checking and replaying the database waits on SQLite: off the runtime's threads.
    let opening = config.clone();
    let (sweep_id, sweep, store) = tokio::task::spawn_blocking(move || open_sweep(&opening))
        .await
        .map_err(|e| CoordinatorError::Storage(format!("opening the database: {e}")))??;
    let span = tracing::info_span!("sweep", sweep = %sweep_id);
    // The writer and checkpoint threads it starts carry the sweep's span.
    let durable = {
        let (span, id) = (span.clone(), sweep_id.clone());
        tokio::task::spawn_blocking(move || span.in_scope(|| Durable::new(store, id)))
            .await
            .map_err(|e| CoordinatorError::Storage(format!("starting the store writer: {e}")))??
    };
    serve(config, sweep_id, sweep, durable)
        .instrument(span)
        .await
}

async fn serve(
    config: CoordinatorConfig,
    sweep_id: String,
    mut sweep: Sweep,
    durable: Durable,
) -> Result<Report, CoordinatorError> {
    let listener = TcpListener::bind(config.listen)
        .await
        .map_err(|e| CoordinatorError::io(format!("binding {}", config.listen), e))?;
    let addr = listener
        .local_addr()
        .map_err(|e| CoordinatorError::io("reading bound address", e))?;
    let metrics_listener = match config.metrics_listen {
        Some(at) => Some(
            TcpListener::bind(at)
                .await
                .map_err(|e| CoordinatorError::io(format!("binding {at} for metrics"), e))?,
        ),
        None => None,
    };
    sweep.set_max_attempts(config.max_attempts);
    let metrics = metrics_listener.as_ref().map(|_| Metrics::new());
    let (hub, hub_task) = Hub::start(
        sweep_id.clone(),
        sweep,
        durable,
        config.lease,
        metrics.clone(),
    );
    // One signal stops both servers.
    let (stop_servers, servers_stopped) = watch::channel(false);
    let stopped = move || {
        let mut stopped = servers_stopped.clone();
        async move {
            let _ = stopped.wait_for(|s| *s).await;
        }
    };
    let metrics_server = match (metrics_listener, metrics) {
        (Some(listener), Some(metrics)) => {
            let at = listener
                .local_addr()
                .map_err(|e| CoordinatorError::io("reading the metrics address", e))?;
            info!(event = "metrics_listening", addr = %at);
            Some(tokio::spawn(
                crate::metrics::serve(listener, metrics, stopped()).in_current_span(),
            ))
        }
        _ => None,
    };
    info!(event = "listening", addr = %addr, report = %config.report_path.display());

    let tls = config.tls.as_ref().map(crate::tls::acceptor).transpose()?;
    // With an incoming stream of our own, the builder's tcp_nodelay does not apply: without it
    // Nagle holds a small write (a stop order) until the previous one is acknowledged, and the
    // peer's delayed ACK made that up to 40 ms (the p99 of prune latency at 100 workers).
    let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
    let service = CoordinatorServer::new(CoordinatorService::new(hub.clone(), sweep_id.clone()))
        .max_decoding_message_size(MAX_MESSAGE_BYTES);
    // Health is outside the token check: probes cannot send the token.
    let (health, health_service) = crate::health::serving().await;
    let router = tonic::transport::Server::builder()
        .add_service(health_service)
        .add_service(InterceptedService::new(
            service,
            TokenCheck::new(config.token.as_deref()),
        ));
    let server = match tls {
        Some(acceptor) => tokio::spawn(
            router
                .serve_with_incoming_shutdown(crate::tls::incoming(incoming, acceptor), stopped())
                .in_current_span(),
        ),
        None => tokio::spawn(
            router
                .serve_with_incoming_shutdown(incoming, stopped())
                .in_current_span(),
        ),
    };

    let mut children = spawn_local_workers(&config, addr)?;

    let mut done = hub.done();
    tokio::select! {
        _ = done.wait_for(|d| *d) => {}
        () = shutdown_signal() => {
            warn!(event = "shutdown_requested");
            hub.interrupt("coordinator shutting down").await;
        }
    }

    crate::health::not_serving(&health).await;
    // Give workers a moment to read their shutdown order and hang up.
    let deadline = tokio::time::Instant::now() + DRAIN_TIMEOUT;
    while hub.connected_workers().await > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop_servers.send_replace(true);
    match tokio::time::timeout(DRAIN_TIMEOUT, server).await {
        Ok(Ok(Err(e))) => warn!(event = "server_error", error = %e),
        Err(_) => warn!(event = "server_stop_timed_out"),
        _ => {}
    }
    if let Some(metrics_server) = metrics_server {
        match tokio::time::timeout(DRAIN_TIMEOUT, metrics_server).await {
            Ok(Ok(Err(e))) => warn!(event = "metrics_server_error", error = %e),
            Err(_) => warn!(event = "metrics_server_stop_timed_out"),
            _ => {}
        }
    }
    for child in &mut children {
        reap(child).await;
    }

    hub.close().await;
    let (sweep, mut durable) = hub_task
        .await
        .map_err(|e| CoordinatorError::Storage(format!("the hub stopped: {e}")))?;
    let report = Report::from_sweep(&sweep_id, &sweep);
    let json = report.to_json();
    let interrupted = report.outcome != SweepStatus::Completed;
    // Joining the store's writer and the last writes wait on SQLite: off the runtime's threads.
    let span = tracing::Span::current();
    let failure = tokio::task::spawn_blocking(move || {
        let _entered = span.enter();
        durable.finish(interrupted, &json)
    })
    .await
    .map_err(|e| CoordinatorError::Storage(format!("the store writer stopped: {e}")))?;
    report.write(&config.report_path)?;
    if let Some(failure) = failure {
        return Err(CoordinatorError::Storage(format!(
            "the sweep was stopped because the database failed: {failure}"
        )));
    }
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
