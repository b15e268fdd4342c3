//! `master`: parse flags and config, set up logging, serve until Ctrl-C or SIGTERM.

use clap::Parser;
use tokio_util::sync::CancellationToken;
use wasmgrid_master::{Cli, Listeners};

/// mimalloc: the hot paths allocate many small buffers (messages, records), and glibc's
/// allocator showed up at 10-15% of the CPU profile.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() {
    if let Err(e) = run().await {
        eprintln!("master: {}", wasmgrid_common::error_chain::describe(e.as_ref()));
        std::process::exit(1);
    }
}

async fn run() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if cli.print_sample_config {
        print!("{}", wasmgrid_master::config::SAMPLE_CONFIG);
        return Ok(());
    }
    let options = wasmgrid_common::config::load(&cli.options, cli.config.as_deref())?;
    let config = options.resolve()?;
    wasmgrid_common::logging::init(&config.log_level, config.log_file.as_deref(), config.log_format)?;
    let listeners = Listeners::bind(&config).await?;
    let shutdown = CancellationToken::new();
    let running = wasmgrid_master::start(config, listeners, shutdown.clone()).await?;
    let failed = tokio::select! {
        () = wait_for_signal() => None,
        why = running.raft_failed() => Some(why),
    };
    match &failed {
        None => {
            tracing::info!("shutting down");
            running.step_down().await;
        }
        Some(why) => tracing::error!(error = %why, "raft stopped on an error; this master cannot go on and exits"),
    }
    shutdown.cancel();
    running.join().await;
    match failed {
        None => Ok(()),
        Some(why) => Err(anyhow::anyhow!(
            "raft stopped: {why}; nothing acknowledged is lost: start this master again once the cause is fixed"
        )),
    }
}

async fn wait_for_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => {
                let _ = ctrl_c.await;
                return;
            }
        };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
