//! The wasmgrid master: the client API, scheduling, and the replicated state.
//!
//! Every change is a command in a Raft entry ([`state::Command`]), applied by a pure state
//! machine ([`state::StateMachine`]) that also places pending tasks on executors. A single
//! master is a one-member Raft group; three or five replicate everything.
//!
//! - [`server`] starts a master on bound listeners; [`config`] reads its options;
//! - [`api`] holds the gRPC services; [`proposer`] batches commands into entries;
//! - [`raft`] and [`storage`] keep the log, the state, snapshots and module blobs on disk;
//! - [`sessions`] and [`background`] talk to executors and watch their leases.

pub mod api;
pub mod background;
pub mod catch_up;
pub mod clock;
pub mod config;
pub mod convert;
pub mod error;
pub mod node;
pub mod peers;
pub mod proposer;
pub mod raft;
pub mod removal;
pub mod replica;
pub mod server;
pub mod sessions;
pub mod state;
pub mod storage;
pub mod trials;
pub mod unsynced;
pub mod validate;
pub mod waiters;

pub use config::{Cli, MasterConfig, MasterOptions};
pub use server::{start, Listeners, Running};
