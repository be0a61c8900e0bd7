//! `/metrics` over HTTP on a port of its own, beside the gRPC server: a scrape never queues
//! behind workers' streams, and the gRPC port keeps its token check.

use std::future::Future;

use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use tokio::net::TcpListener;

use super::Metrics;

/// What Prometheus asks for and parses: the OpenMetrics text format.
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Serves `/metrics` on `listener` until `stop` completes, sampling the runtime's lag meanwhile.
pub async fn serve(
    listener: TcpListener,
    metrics: Metrics,
    stop: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let sampling = super::runtime_lag::sample(metrics.clone());
    let app = Router::new()
        .route("/metrics", get(scrape))
        .with_state(metrics);
    let server = axum::serve(listener, app).with_graceful_shutdown(stop);
    tokio::select! {
        served = server => served,
        never = sampling => match never {},
    }
}

async fn scrape(State(metrics): State<Metrics>) -> impl IntoResponse {
    ([(CONTENT_TYPE, OPENMETRICS)], metrics.encode())
}
