//! `cluster status`.

use clap::Subcommand;
use serde_json::json;

use super::render::print_json;
use super::Output;
use crate::Client;

#[derive(Debug, Subcommand)]
pub enum ClusterCommand {
    /// Members, leader and term; executors with their slots in use.
    Status,
}

pub async fn run(client: &Client, cmd: ClusterCommand, output: Output) -> anyhow::Result<i32> {
    let ClusterCommand::Status = cmd;
    let s = client.cluster_status().await?;
    match output {
        Output::Json => {
            let members: Vec<_> = s.members.iter().map(member_json).collect();
            let executors: Vec<_> = s.executors.iter().map(executor_json).collect();
            print_json(&json!({
                "leader": (!s.leader.is_empty()).then_some(&s.leader),
                "term": s.term,
                "commit_index": s.commit_index,
                "members": members,
                "executors": executors,
                "pending_tasks": s.pending_tasks,
                "running_tasks": s.running_tasks,
                "max_batch_size": s.max_batch_size,
                "max_module_size": (s.max_module_size > 0).then_some(s.max_module_size),
                "max_input_size": (s.max_input_size > 0).then_some(s.max_input_size),
            }));
        }
        Output::Text => {
            out!(
                "leader: {}  term: {}  pending: {}  running: {}",
                or_none(&s.leader),
                s.term,
                s.pending_tasks,
                s.running_tasks
            );
            if s.leader.is_empty() {
                match s.members.iter().find(|m| m.role == "leader") {
                    Some(m) => out!("(no leader: {} leads but has not heard from a majority of the group)", m.name),
                    None => out!("(no leader known to the masters that answered: is a majority of them up?)"),
                }
            }
            out!("\nMEMBER           ROLE       REACHABLE  LOG     LAG  API               PEER");
            for m in &s.members {
                out!(
                    "{:<16} {:<10} {:<10} {:<7} {:<4} {:<17} {}",
                    m.name,
                    m.role,
                    m.reachable,
                    m.last_log_index,
                    m.lag,
                    or_none(&m.api_addr),
                    m.peer_addr
                );
            }
            out!();
            print_executors(&s.executors);
        }
    }
    Ok(0)
}

pub fn executor_json(e: &wasmgrid_proto::ExecutorInfo) -> serde_json::Value {
    json!({
        "name": e.name, "addr": e.addr, "state": e.state, "connected": e.connected,
        "slots": e.slots, "slots_in_use": e.slots_in_use, "queued": e.queued,
        "memory": e.memory_bytes, "memory_reserved": e.memory_reserved,
        "running": e.running.iter().map(u64::to_string).collect::<Vec<_>>(),
        "last_heartbeat_ms_ago": (e.last_heartbeat_ms >= 0).then_some(e.last_heartbeat_ms),
    })
}

pub fn print_executors(executors: &[wasmgrid_proto::ExecutorInfo]) {
    out!(
        "{:<24} {:<12} {:>7} {:>6}  {:>19}  {:>9}  {:<16} ADDR",
        "EXECUTOR",
        "STATE",
        "SLOTS",
        "QUEUED",
        "MEMORY RESERVED",
        "HEARTBEAT",
        "RUNNING"
    );
    for e in executors {
        let memory = format!(
            "{}/{}",
            wasmgrid_common::Size(e.memory_reserved).human(),
            wasmgrid_common::Size(e.memory_bytes).human()
        );
        let heartbeat = if e.last_heartbeat_ms >= 0 { format!("{}ms ago", e.last_heartbeat_ms) } else { "-".into() };
        let running: Vec<String> = e.running.iter().map(u64::to_string).collect();
        let mut running = running.join(",");
        if running.len() > 16 {
            running = format!("{}…", &running[..15]);
        }
        out!(
            "{:<24} {:<12} {:>3}/{:<3} {:>6}  {:>19}  {:>9}  {:<16} {}",
            e.name,
            e.state,
            e.slots_in_use,
            e.slots,
            e.queued,
            memory,
            heartbeat,
            if running.is_empty() { "-" } else { &running },
            e.addr
        );
    }
}

pub fn member_json(m: &wasmgrid_proto::Member) -> serde_json::Value {
    json!({
        "name": m.name, "id": m.id.to_string(), "api_addr": m.api_addr, "peer_addr": m.peer_addr,
        "role": m.role, "reachable": m.reachable, "last_log_index": m.last_log_index, "lag": m.lag,
    })
}

pub fn print_members(members: &[wasmgrid_proto::Member]) {
    out!("MEMBER           ROLE       REACHABLE  LOG      LAG    API                    PEER");
    for m in members {
        out!(
            "{:<16} {:<10} {:<10} {:<8} {:<6} {:<22} {}",
            m.name,
            m.role,
            m.reachable,
            m.last_log_index,
            m.lag,
            or_none(&m.api_addr),
            m.peer_addr
        );
    }
}

fn or_none(s: &str) -> &str {
    if s.is_empty() {
        "-"
    } else {
        s
    }
}
