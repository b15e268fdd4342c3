//! `executor list` and `executor drain NAME`.

use clap::Subcommand;

use super::cluster::{executor_json, print_executors};
use super::render::print_json;
use super::Output;
use crate::Client;

#[derive(Debug, Subcommand)]
pub enum ExecutorCommand {
    /// Every executor: state (alive, disconnected, draining, lost), slots and memory in use,
    /// running tasks, last heartbeat.
    List,
    /// Stop placing tasks on an executor; it finishes its tasks, then leaves the cluster.
    Drain { name: String },
}

pub async fn run(client: &Client, cmd: ExecutorCommand, output: Output) -> anyhow::Result<i32> {
    let executors = match cmd {
        ExecutorCommand::List => client.cluster_status().await?.executors,
        ExecutorCommand::Drain { name } => vec![client.drain_executor(&name).await?],
    };
    match output {
        Output::Json => print_json(&executors.iter().map(executor_json).collect()),
        Output::Text => print_executors(&executors),
    }
    Ok(0)
}
