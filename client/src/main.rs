//! `master-client`: the command line of wasmgrid.

use clap::Parser;
use wasmgrid_client::cli::{self, Cli};

/// mimalloc: the hot paths allocate many small buffers (messages, records), and glibc's
/// allocator showed up at 10-15% of the CPU profile.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() {
    let cli = Cli::parse();
    std::process::exit(cli::run(cli).await);
}
