//! Test harness: masters and executors started in this process on `127.0.0.1:0` with their
//! data in temp dirs, and helpers to run the real binaries as processes where a crash is the
//! point of the test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

pub mod cluster;
pub mod group;

pub use cluster::{Cluster, TestExecutor, TestMaster};
pub use wasmgrid_testkit as guests;
pub use wasmgrid_testkit::process;

/// Sets up logging once per test binary (`RUST_LOG=wasmgrid_master=debug` to see more).
pub fn init_logging() {
    use std::sync::Once;
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let filter = std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into());
        let _ = tracing_subscriber::fmt().with_env_filter(filter).with_test_writer().try_init();
    });
}
