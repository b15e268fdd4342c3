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
    match cmd {
        ExecutorCommand::List => {
            let executors = client.cluster_status().await?.executors;
            match output {
                Output::Json => print_json(&executors.iter().map(executor_json).collect()),
                Output::Text => print_executors(&executors),
            }
        }
        // One executor, one record, as `task get` and `task cancel` print one task.
        ExecutorCommand::Drain { name } => {
            let drained = client.drain_executor(&name).await?;
            match output {
                Output::Json => print_json(&executor_json(&drained)),
                Output::Text => print_executors(std::slice::from_ref(&drained)),
            }
        }
    }
    Ok(0)
}
