//! The lrsweep wire contract: the versioned gRPC service (`lrsweep.v1`), its generated code, the
//! domain types both sides work with, and the conversions between the two.
//!
//! Coordinator and worker depend on this crate and never on each other.

pub mod cli;
pub mod convert;
pub mod domain;
pub mod rng;

/// Generated messages, client and server for `lrsweep.v1`.
pub mod v1 {
    tonic::include_proto!("lrsweep.v1");
}

pub use convert::ConvertError;
