//! The standard gRPC health service (`grpc.health.v1`) on the coordinator's port, and the client
//! behind `lrsweep-coordinator health`.
//!
//! Probes (Kubernetes' `grpc:` probes, Docker's HEALTHCHECK, load balancers) cannot send the
//! worker token, so the health service is served outside the token check; it tells only whether
//! the coordinator serves. SERVING for "" (the server) and `lrsweep.v1.Coordinator` while the
//! sweep runs, NOT_SERVING from the moment it stops dispatching, so a readiness probe takes the
//! coordinator out of its Service before the port closes.

use std::path::Path;
use std::time::Duration;

use tonic::transport::{Certificate, ClientTlsConfig, Endpoint};
use tonic_health::pb::health_check_response::ServingStatus as Answer;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::health_server::{Health, HealthServer};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::server::HealthReporter;
use tonic_health::ServingStatus;

use crate::CoordinatorError;

/// The name probes ask about besides "" (the whole server): `lrsweep.v1.Coordinator`.
pub const COORDINATOR_SERVICE: &str = lrsweep_proto::v1::coordinator_server::SERVICE_NAME;

/// The health service to add to the server, and the handle that flips it at shutdown.
pub async fn serving() -> (HealthReporter, HealthServer<impl Health>) {
    let (reporter, service) = tonic_health::server::health_reporter();
    reporter
        .set_service_status(COORDINATOR_SERVICE, ServingStatus::Serving)
        .await;
    (reporter, service)
}

/// From now on every probe hears NOT_SERVING, for the server and the coordinator service.
pub async fn not_serving(reporter: &HealthReporter) {
    for service in ["", COORDINATOR_SERVICE] {
        reporter
            .set_service_status(service, ServingStatus::NotServing)
            .await;
    }
}

/// Asks the coordinator at `addr` (`http://` or `https://` URL) how `service` is; `ca` is the
/// certificate to trust for https. Any answer but SERVING, or none within `timeout`, is an error.
pub async fn check(
    addr: &str,
    service: &str,
    ca: Option<&Path>,
    timeout: Duration,
) -> Result<(), CoordinatorError> {
    let failed = |reason: String| CoordinatorError::Health {
        addr: addr.to_string(),
        reason,
    };
    let mut endpoint = Endpoint::from_shared(addr.to_string())
        .map_err(|e| failed(e.to_string()))?
        .connect_timeout(timeout)
        .timeout(timeout);
    if let Some(ca) = ca {
        let pem = std::fs::read(ca)
            .map_err(|e| CoordinatorError::io(format!("reading {}", ca.display()), e))?;
        endpoint = endpoint
            .tls_config(ClientTlsConfig::new().ca_certificate(Certificate::from_pem(pem)))?;
    }
    let channel = endpoint
        .connect()
        .await
        .map_err(|e| failed(with_causes(&e)))?;
    let status = HealthClient::new(channel)
        .check(HealthCheckRequest {
            service: service.to_string(),
        })
        .await
        .map_err(|e| failed(format!("{}: {}", e.code(), e.message())))?
        .into_inner()
        .status();
    match status {
        Answer::Serving => Ok(()),
        other => Err(failed(other.as_str_name().to_string())),
    }
}

/// "transport error" alone does not say that the connection was refused.
fn with_causes(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(e) = cause {
        text = format!("{text}: {e}");
        cause = e.source();
    }
    text
}
