//! The wasmgrid executor: joins the masters, takes tasks, and runs each in a fresh wasmtime
//! store under a fuel budget, a memory cap and a wall-clock timeout.
//!
//! - [`sandbox`]: the engine, the limits and the one trait per kind of task;
//! - [`modules`]: fetch-once, compile-once module cache;
//! - [`agent`]: the stream to the leader (assignments in, results out);
//! - [`server`]: starting it all on a bound listener; [`config`]: its options.

pub mod agent;
pub mod config;
mod drain;
pub mod masters;
pub mod modules;
pub mod runs;
pub mod sandbox;
pub mod server;
pub mod worker_api;

pub use config::{Cli, ExecutorConfig, ExecutorOptions};
pub use server::{bind, start, Running};
