//! `master-client`: the command line of wasmgrid.

use clap::Parser;
use wasmgrid_client::cli::{self, Cli};

#[tokio::main]
async fn main() {
    let cli = Cli::parse();
    std::process::exit(cli::run(cli).await);
}
