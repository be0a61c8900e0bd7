//! TLS for the gRPC server. The handshakes are done here rather than by tonic so that a failed
//! one is logged with the peer's address and its cause (`event=tls_handshake_failed`): a worker
//! that does not trust our certificate, or dials http:// to this TLS port, is otherwise
//! invisible on this side.

use std::io;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_rustls::rustls::crypto::ring;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::StreamExt;
use tonic::transport::server::TcpIncoming;
use tracing::{warn, Instrument};

use crate::server::TlsFiles;
use crate::CoordinatorError;

/// A peer that has not finished its handshake by then is dropped: a stalled or idle connection
/// must not hold a task forever.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections handshaken but not yet taken by the server.
const READY_QUEUE: usize = 64;

/// The server's TLS settings from its certificate chain and key (PEM files), offering HTTP/2.
pub fn acceptor(files: &TlsFiles) -> Result<TlsAcceptor, CoordinatorError> {
    let bad = |path: &Path, e: &dyn std::fmt::Display| {
        CoordinatorError::io(
            format!("reading {}", path.display()),
            io::Error::new(io::ErrorKind::InvalidData, e.to_string()),
        )
    };
    let read = |path: &Path| {
        std::fs::read(path)
            .map_err(|e| CoordinatorError::io(format!("reading {}", path.display()), e))
    };
    let cert_pem = read(&files.cert)?;
    let chain = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(&files.cert, &e))?;
    if chain.is_empty() {
        return Err(bad(&files.cert, &"no PEM certificate in it"));
    }
    let key = PrivateKeyDer::from_pem_slice(&read(&files.key)?).map_err(|e| bad(&files.key, &e))?;
    let mut config = ServerConfig::builder_with_provider(Arc::new(ring::default_provider()))
        .with_safe_default_protocol_versions()
        .and_then(|b| b.with_no_client_auth().with_single_cert(chain, key))
        .map_err(|e| bad(&files.key, &e))?;
    // gRPC is HTTP/2 only.
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// The TLS connections of `tcp`, each handshaken on a task of its own (a slow peer holds up no
/// other), failed handshakes logged. Accept errors pass through for tonic to judge, as they
/// would without TLS. Accepting stops when the server drops the stream.
pub fn incoming(
    mut tcp: TcpIncoming,
    acceptor: TlsAcceptor,
) -> ReceiverStream<Result<TlsStream<TcpStream>, io::Error>> {
    let (tx, rx) = mpsc::channel(READY_QUEUE);
    tokio::spawn(
        async move {
            loop {
                let next = tokio::select! {
                    next = tcp.next() => next,
                    () = tx.closed() => return,
                };
                let stream = match next {
                    None => return,
                    Some(Err(e)) => {
                        if tx.send(Err(e)).await.is_err() {
                            return;
                        }
                        continue;
                    }
                    Some(Ok(stream)) => stream,
                };
                let (acceptor, tx) = (acceptor.clone(), tx.clone());
                tokio::spawn(
                    async move {
                        let peer = stream
                            .peer_addr()
                            .map(|a| a.to_string())
                            .unwrap_or_default();
                        let error =
                            match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream))
                                .await
                            {
                                Ok(Ok(tls)) => {
                                    let _ = tx.send(Ok(tls)).await;
                                    return;
                                }
                                Ok(Err(e)) => e.to_string(),
                                Err(_) => format!("no handshake within {HANDSHAKE_TIMEOUT:?}"),
                            };
                        let hint = hint_for(&error);
                        warn!(event = "tls_handshake_failed", peer = %peer, error = %error, hint);
                    }
                    .in_current_span(),
                );
            }
        }
        .in_current_span(),
    );
    ReceiverStream::new(rx)
}

/// What a failed handshake most likely means, for the causes a misconfigured worker gives.
fn hint_for(error: &str) -> Option<&'static str> {
    if error.contains("InvalidContentType") {
        Some("the peer does not speak TLS: a worker dialling http:// instead of https://?")
    } else if error.contains("received fatal alert") {
        Some("the peer refused our certificate: its log says why")
    } else {
        None
    }
}
