//! The shared contract of lrsweep's coordinator and worker: the versioned gRPC service
//! (`lrsweep.v1`) and its generated code (the wire types), the domain types both sides work
//! with and the conversions between the two, and the search spec the user writes, which both
//! binaries read.
//!
//! Coordinator and worker depend on this crate and never on each other.

pub mod cli;
pub mod convert;
pub mod domain;
pub mod logging;
pub mod rng;
pub mod spec;

/// Generated messages, client and server for `lrsweep.v1`.
pub mod v1 {
    tonic::include_proto!("lrsweep.v1");
}

pub use convert::ConvertError;
