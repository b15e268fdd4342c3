//! Small pieces every wasmgrid role shares: how addresses, sizes and durations are written on
//! the command line and in config files, how content digests look, and how logging is set up.
//!
//! Keeping these in one crate means a `64MiB` or an `http://ip0:10240` means the same thing to
//! the master, the executor and the client.

pub mod addr;
pub mod config;
pub mod digest;
pub mod duration;
pub mod error_chain;
pub mod guest;
pub mod logging;
pub mod size;

pub use addr::{parse_addr_list, Addr, AddrList};
pub use digest::Digest;
pub use duration::Dur;
pub use size::Size;

/// The version every binary reports with `-V`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
