//! A typed client for wasmgrid masters, and the `master-client` command line built on it.
//!
//! The client knows every master address and follows the leader: a follower's refusal names
//! the leader, an unreachable master is skipped, and calls are retried until a deadline.
//! Retries are safe: uploads are content-addressed and submits carry a request id the
//! masters deduplicate.

pub mod bench;
pub mod cli;
pub mod client;
pub mod error;

pub use client::{Client, TaskSpec};
pub use error::ClientError;
pub use wasmgrid_proto as proto;
