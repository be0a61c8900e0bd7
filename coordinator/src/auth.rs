//! Who may talk to the coordinator: the shared-secret token every RPC must carry.

use std::sync::Arc;

use tonic::{Request, Status};
use tracing::warn;

/// Shared-secret check run before every RPC. The token is never logged.
#[derive(Clone)]
pub struct TokenCheck {
    expected: Option<Arc<[u8]>>,
}

impl TokenCheck {
    pub fn new(token: Option<&str>) -> TokenCheck {
        TokenCheck {
            expected: token.map(|t| Arc::from(t.as_bytes())),
        }
    }
}

impl tonic::service::Interceptor for TokenCheck {
    fn call(&mut self, request: Request<()>) -> Result<Request<()>, Status> {
        let Some(expected) = &self.expected else {
            return Ok(request);
        };
        let presented = request
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        match presented {
            Some(token) if constant_time_eq(token.as_bytes(), expected) => Ok(request),
            _ => {
                warn!(
                    event = "unauthenticated",
                    remote = ?request.remote_addr(),
                    token_presented = presented.is_some(),
                );
                Err(Status::unauthenticated("missing or wrong token"))
            }
        }
    }
}

/// Compares without an early exit, so response time does not reveal how much of a guess matched.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::service::Interceptor;

    fn request(auth: Option<&str>) -> Request<()> {
        let mut r = Request::new(());
        if let Some(a) = auth {
            r.metadata_mut().insert("authorization", a.parse().unwrap());
        }
        r
    }

    #[test]
    fn token_check_accepts_only_the_exact_bearer_token() {
        let mut check = TokenCheck::new(Some("s3cret"));
        assert!(check.call(request(Some("Bearer s3cret"))).is_ok());
        for bad in [
            None,
            Some("Bearer s3cre"),
            Some("Bearer s3cret!"),
            Some("s3cret"),
        ] {
            let err = check.call(request(bad)).unwrap_err();
            assert_eq!(err.code(), tonic::Code::Unauthenticated, "{bad:?}");
        }
        assert!(TokenCheck::new(None).call(request(None)).is_ok());
    }

    #[test]
    fn constant_time_eq_compares_whole_slices() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
        assert!(constant_time_eq(b"", b""));
    }
}
