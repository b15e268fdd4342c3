//! Turns many concurrent commands into few Raft entries: whatever queued up while the
//! previous entries were being committed goes into the next one (group commit), and up to
//! `MAX_IN_FLIGHT` entries are in the pipeline at once.

use std::sync::Arc;

use openraft::error::ClientWriteError;
use tokio::sync::{mpsc, oneshot, Semaphore};

use crate::raft::{Member, Raft};
use crate::state::{Batch, Command, Report, Response};

/// Entries proposed and not yet answered.
const MAX_IN_FLIGHT: usize = 4;
/// Commands in one entry at most.
const MAX_COMMANDS: usize = 8192;
/// Bytes of inputs and outputs in one entry, roughly; a single larger command still goes.
const MAX_BYTES: usize = 16 * 1024 * 1024;

#[derive(Debug, Clone, thiserror::Error)]
pub enum ProposeError {
    #[error("this master is not the leader")]
    NotLeader(Option<Member>),
    #[error("raft: {0}")]
    Failed(String),
}

struct Proposal {
    command: Command,
    reply: Option<oneshot::Sender<Result<Response, ProposeError>>>,
}

#[derive(Clone)]
pub struct Proposer {
    tx: mpsc::UnboundedSender<Proposal>,
}

impl Proposer {
    /// Starts the batching loop; it ends when every `Proposer` clone is dropped.
    pub fn start(raft: Raft) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(run(raft, rx));
        Self { tx }
    }

    /// Proposes `command` and waits until it is committed and applied.
    pub async fn propose(&self, command: Command) -> Result<Response, ProposeError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Proposal { command, reply: Some(reply) })
            .map_err(|_| ProposeError::Failed("the master is shutting down".into()))?;
        rx.await.map_err(|_| ProposeError::Failed("the master is shutting down".into()))?
    }

    /// Proposes `command` without waiting for the outcome.
    pub fn propose_detached(&self, command: Command) {
        let _ = self.tx.send(Proposal { command, reply: None });
    }
}

fn weight(c: &Command) -> usize {
    match c {
        Command::Submit { tasks, .. } => tasks.iter().map(|t| t.input.len() + 64).sum(),
        Command::Finish(reports) => reports.iter().map(report_weight).sum(),
        Command::Ran { task, report, .. } => task.input.len() + report_weight(report),
        _ => 64,
    }
}

fn report_weight(r: &Report) -> usize {
    r.output.output.len() + r.output.stderr.len() + 64
}

/// `first` and whatever else is queued, up to `MAX_COMMANDS` commands and `MAX_BYTES`. The
/// first command that would pass the bytes is kept in `carry` for the next entry: an entry
/// is larger than `MAX_BYTES` only when one command alone is, so it stays within what the
/// masters send each other.
fn next_batch(
    first: Proposal,
    rx: &mut mpsc::UnboundedReceiver<Proposal>,
    carry: &mut Option<Proposal>,
) -> Vec<Proposal> {
    let mut bytes = weight(&first.command);
    let mut batch = vec![first];
    while batch.len() < MAX_COMMANDS {
        let Ok(p) = rx.try_recv() else { break };
        let w = weight(&p.command);
        if bytes + w > MAX_BYTES {
            *carry = Some(p);
            break;
        }
        bytes += w;
        batch.push(p);
    }
    batch
}

async fn run(raft: Raft, mut rx: mpsc::UnboundedReceiver<Proposal>) {
    let in_flight = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    let mut carry = None;
    loop {
        let Ok(permit) = in_flight.clone().acquire_owned().await else {
            return;
        };
        let first = match carry.take() {
            Some(p) => p,
            None => match rx.recv().await {
                Some(p) => p,
                None => return,
            },
        };
        let batch = next_batch(first, &mut rx, &mut carry);
        let (commands, replies): (Vec<Command>, Vec<_>) = batch.into_iter().map(|p| (p.command, p.reply)).unzip();
        let entry = Batch { at_ms: crate::clock::now_ms(), commands };
        match raft.client_write_ff(entry).await {
            Ok(pending) => {
                tokio::spawn(async move {
                    let outcome = match pending.await {
                        Ok(Ok(resp)) => Ok(resp.data),
                        Ok(Err(ClientWriteError::ForwardToLeader(f))) => Err(ProposeError::NotLeader(f.leader_node)),
                        Ok(Err(e)) => Err(ProposeError::Failed(e.to_string())),
                        Err(_) => Err(ProposeError::Failed("raft stopped before answering".into())),
                    };
                    answer(replies, outcome);
                    drop(permit);
                });
            }
            Err(fatal) => answer(replies, Err(ProposeError::Failed(fatal.to_string()))),
        }
    }
}

fn answer(
    replies: Vec<Option<oneshot::Sender<Result<Response, ProposeError>>>>,
    outcome: Result<Vec<Response>, ProposeError>,
) {
    match outcome {
        Ok(responses) => {
            for (reply, response) in replies.into_iter().zip(responses) {
                if let Some(reply) = reply {
                    let _ = reply.send(Ok(response));
                }
            }
        }
        Err(e) => {
            for reply in replies.into_iter().flatten() {
                let _ = reply.send(Err(e.clone()));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::NewTask;

    fn submit(bytes: usize) -> Proposal {
        let task = NewTask { spec: crate::state::tests::spec(1, 0), input: vec![0; bytes] };
        Proposal { command: Command::Submit { request_id: None, tasks: vec![task], max_pending: None }, reply: None }
    }

    #[test]
    fn a_command_that_would_pass_the_bytes_of_an_entry_goes_in_the_next() {
        const MIB: usize = 1 << 20;
        let (tx, mut rx) = mpsc::unbounded_channel();
        for p in [submit(10 * MIB), submit(40 * MIB), submit(MIB)] {
            tx.send(p).unwrap();
        }
        let mut carry = None;
        let sizes = |batch: Vec<Proposal>| batch.iter().map(|p| weight(&p.command) / MIB).collect::<Vec<_>>();
        let first = rx.try_recv().unwrap();
        assert_eq!(sizes(next_batch(first, &mut rx, &mut carry)), vec![10]);
        // Larger than an entry's bytes alone, it goes alone.
        let first = carry.take().unwrap();
        assert_eq!(sizes(next_batch(first, &mut rx, &mut carry)), vec![40]);
        let first = carry.take().unwrap();
        assert_eq!(sizes(next_batch(first, &mut rx, &mut carry)), vec![1]);
        assert!(carry.is_none());
    }
}
