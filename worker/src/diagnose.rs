//! Why a connection to the coordinator failed, in words an operator can act on: the whole chain
//! of causes (a certificate problem sits three levels below "transport error") and, for the
//! mistakes we know, what to do about them.

use std::error::Error;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tonic::transport::Uri;

/// Causes we recognise by the words rustls gives them in the chain, and what to do.
const HINTS: &[(&[&str], &str)] = &[
    (
        &["CaUsedAsEndEntity"],
        "the coordinator's certificate is a CA certificate (as `openssl req -x509` makes by \
         default): make a CA and a server certificate signed by it, give the coordinator the \
         server certificate and the workers the CA with --ca (see README, Certificates)",
    ),
    (
        &["UnknownIssuer"],
        "the coordinator's certificate is not signed by the CA given with --ca",
    ),
    (
        &["NotValidForName", "not valid for name"],
        "the coordinator's certificate does not name the host in --coordinator: add it to the \
         certificate's subjectAltName",
    ),
];

const USE_HTTPS: &str = "the coordinator speaks TLS: use https:// and --ca";

/// `error` and each of its sources, outermost first, joined by ": ". A source whose text its
/// wrapper already shows is left out.
fn chain(error: &dyn Error) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(e) = cause {
        let part = e.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        cause = e.source();
    }
    text
}

/// A hint for a failure whose cause chain reads `chain`, if we know one.
fn hint_for(chain: &str) -> Option<&'static str> {
    HINTS
        .iter()
        .find(|(causes, _)| causes.iter().any(|cause| chain.contains(cause)))
        .map(|&(_, hint)| hint)
}

/// The cause chain of a failed connection to `coordinator`, and what to do about it if we know.
/// A plain `http://` coordinator that fails us is asked whether it in fact speaks TLS.
pub(crate) async fn explain(
    error: &dyn Error,
    coordinator: &str,
) -> (String, Option<&'static str>) {
    let text = chain(error);
    let hint = match hint_for(&text) {
        Some(hint) => Some(hint),
        None if coordinator.starts_with("http://") && speaks_tls(coordinator).await => {
            Some(USE_HTTPS)
        }
        None => None,
    };
    (text, hint)
}

/// Whether the server at `url` answers plain bytes the way a TLS server does: with an alert
/// record (content type 21, protocol version 3.x). A gRPC client sees only "connection closed".
async fn speaks_tls(url: &str) -> bool {
    let Some(authority) = url.parse::<Uri>().ok().and_then(|u| u.authority().cloned()) else {
        return false;
    };
    let address = (
        authority.host().trim_matches(['[', ']']),
        authority.port_u16().unwrap_or(80),
    );
    let probe = async {
        let mut stream = TcpStream::connect(address).await?;
        // The preface an HTTP/2 client opens with: an h2 server answers with frames.
        stream
            .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
            .await?;
        let mut head = [0u8; 2];
        stream.read_exact(&mut head).await?;
        Ok::<_, std::io::Error>(head == [0x15, 0x03])
    };
    matches!(
        tokio::time::timeout(Duration::from_secs(2), probe).await,
        Ok(Ok(true))
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("{text}")]
    struct Layer {
        text: &'static str,
        source: Option<Box<Layer>>,
    }

    fn layers(texts: &[&'static str]) -> Layer {
        texts
            .iter()
            .rev()
            .fold(None, |source, &text| {
                Some(Layer {
                    text,
                    source: source.map(Box::new),
                })
            })
            .expect("at least one layer")
    }

    #[test]
    fn the_chain_names_every_cause_once() {
        let error = layers(&[
            "cannot connect to coordinator: transport error",
            "transport error",
            "invalid peer certificate: Other(OtherError(CaUsedAsEndEntity))",
        ]);
        let text = chain(&error);
        assert_eq!(
            text,
            "cannot connect to coordinator: transport error: invalid peer certificate: \
             Other(OtherError(CaUsedAsEndEntity))"
        );
        assert!(hint_for(&text).is_some_and(|h| h.contains("CA certificate")));
        let wrong_name = "invalid peer certificate: certificate not valid for name \"a\"";
        assert!(hint_for(wrong_name).is_some_and(|h| h.contains("subjectAltName")));
        assert_eq!(hint_for("connection refused"), None);
    }

    #[tokio::test]
    async fn a_tls_server_is_told_from_a_plain_one() {
        use tokio::net::TcpListener;
        // Answers the way rustls does to a client that does not speak TLS: a fatal alert.
        async fn server(answer: &'static [u8]) -> String {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let url = format!("http://{}", listener.local_addr().unwrap());
            tokio::spawn(async move {
                while let Ok((mut stream, _)) = listener.accept().await {
                    let mut preface = [0u8; 24];
                    let _ = stream.read_exact(&mut preface).await;
                    let _ = stream.write_all(answer).await;
                }
            });
            url
        }
        let tls = server(&[0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x32]).await;
        assert!(speaks_tls(&tls).await);
        // An HTTP/2 server's first frame: SETTINGS.
        let h2 = server(&[0x00, 0x00, 0x00, 0x04, 0x00, 0x00, 0x00, 0x00, 0x00]).await;
        assert!(!speaks_tls(&h2).await);
        let error = layers(&["coordinator answered: operation was canceled"]);
        assert_eq!(explain(&error, &tls).await.1, Some(USE_HTTPS));
    }
}
