//! `member list|add NAME URL|remove NAME`: the master group at run time.

use clap::Subcommand;
use serde_json::json;

use super::cluster::{member_json, print_members};
use super::render::print_json;
use super::Output;
use crate::Client;

#[derive(Debug, Subcommand)]
pub enum MemberCommand {
    /// The masters of the group, their roles and how far each has replicated.
    List,
    /// Add a running master (started with --name NAME and --initial-cluster listing the
    /// group and itself): it catches up as a learner, then votes.
    Add {
        name: String,
        /// Its peer URL (--advertise-peer-urls), e.g. http://ip3:8291.
        url: String,
    },
    /// Remove a master from the group (refused if the rest would lose their quorum).
    Remove { name: String },
}

pub async fn run(client: &Client, cmd: MemberCommand, output: Output) -> anyhow::Result<i32> {
    let reply = match cmd {
        MemberCommand::List => client.list_members().await?,
        MemberCommand::Add { name, url } => client.add_member(&name, &url).await?,
        MemberCommand::Remove { name } => client.remove_member(&name).await?,
    };
    match output {
        Output::Json => print_json(&json!({
            "leader": (!reply.leader.is_empty()).then_some(&reply.leader),
            "members": reply.members.iter().map(member_json).collect::<Vec<_>>(),
        })),
        Output::Text => print_members(&reply.members),
    }
    Ok(0)
}
