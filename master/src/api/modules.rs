//! Module upload and listing.

use std::sync::Arc;

use futures::stream::FuturesUnordered;
use futures::StreamExt;
use tonic::Streaming;
use wasmgrid_common::digest::Hasher;
use wasmgrid_common::{Digest, Size};
use wasmgrid_proto as pb;
use wasmgrid_proto::upload_module_request::Part;

use crate::convert;
use crate::error::ApiError;
use crate::node::Node;
use crate::state::{Command, ModuleMeta};
use crate::validate::validate;

/// Receives a streamed module, validates it and stores it; the same bytes twice are stored
/// once and answer with the same record.
pub async fn upload(node: &Arc<Node>, mut stream: Streaming<pb::UploadModuleRequest>) -> Result<pb::Module, ApiError> {
    node.ensure_leader()?;
    let max = node.config.max_module_size;
    let too_big = |size: u64| {
        ApiError::InvalidArgument(format!(
            "module is {}, larger than the limit max-module-size = {}",
            Size(size),
            Size(max)
        ))
    };
    let mut bytes = Vec::new();
    let mut hasher = Hasher::default();
    loop {
        let msg = tokio::select! {
            msg = stream.message() => msg.map_err(|s| ApiError::InvalidArgument(s.message().to_string()))?,
            _ = node.shutdown.cancelled() => {
                return Err(ApiError::Unavailable("this master is shutting down; upload again".into()))
            }
        };
        let Some(msg) = msg else { break };
        match msg.part {
            Some(Part::Header(h)) => {
                if h.size > max {
                    return Err(too_big(h.size));
                }
                bytes.reserve(usize::try_from(h.size).unwrap_or(0));
            }
            Some(Part::Chunk(chunk)) => {
                let size = (bytes.len() + chunk.len()) as u64;
                if size > max {
                    return Err(too_big(size));
                }
                hasher.update(&chunk);
                bytes.extend_from_slice(&chunk);
            }
            None => {}
        }
    }
    let digest = hasher.finish();
    if let Some(existing) = node.replica.read().module(&digest) {
        return Ok(convert::module(existing));
    }
    let size = bytes.len() as u64;
    let bytes = Arc::new(bytes);
    let replica = node.replica.clone();
    let stored = bytes.clone();
    let max_functions = node.config.max_module_functions;
    let kind = tokio::task::spawn_blocking(move || {
        let kind = validate(&stored, max_functions).map_err(|e| ApiError::InvalidArgument(e.to_string()))?;
        replica.blobs.put(&digest, &stored).map_err(|e| ApiError::Internal(format!("cannot store module: {e}")))?;
        Ok::<_, ApiError>(kind)
    })
    .await
    .map_err(|_| ApiError::InvalidArgument("invalid module: the validator could not read it".into()))??;
    replicate(node, digest, bytes).await?;
    let meta = ModuleMeta { digest, size, kind, created_at_ms: crate::clock::now_ms() };
    node.propose(Command::PutModule(meta)).await?;
    tracing::info!(module = %digest, size, kind = kind.as_str(), "module stored");
    let stored = node.replica.read().module(&digest).map(convert::module);
    stored.ok_or_else(|| ApiError::Internal("module vanished after it was stored".into()))
}

/// Copies a new module's bytes to the other voters before the module is committed: a
/// majority (this master included) must hold them durably, so no acknowledged module is lost
/// with a master. Pushes still running when the majority is reached finish in the background;
/// a master that missed one fetches the blob later (`background::blobs`).
async fn replicate(node: &Arc<Node>, digest: Digest, bytes: Arc<Vec<u8>>) -> Result<(), ApiError> {
    let targets: Vec<(String, String)> = {
        let m = node.metrics();
        let membership = m.membership_config.membership();
        membership
            .voter_ids()
            .filter(|id| *id != node.id)
            .filter_map(|id| membership.get_node(&id).map(|n| (n.name.clone(), n.peer_addr.clone())))
            .collect()
    };
    // Voters are `targets` plus this master; a majority of them needs half the targets.
    let needed = targets.len().div_ceil(2);
    if needed == 0 {
        return Ok(());
    }
    let timeout = node.config.write_timeout;
    let mut pushes: FuturesUnordered<_> = targets
        .into_iter()
        .map(|(name, addr)| {
            let node = node.clone();
            let bytes = bytes.clone();
            async move {
                let result = tokio::time::timeout(timeout, node.peers.put_blob(&addr, digest, bytes)).await;
                (name, result.unwrap_or_else(|_| Err("timed out".into())))
            }
        })
        .collect();
    let mut copies = 0;
    let mut failures = Vec::new();
    while let Some((name, result)) = pushes.next().await {
        match result {
            Ok(()) => copies += 1,
            Err(e) => failures.push(format!("{name}: {e}")),
        }
        if copies >= needed {
            tokio::spawn(async move { while pushes.next().await.is_some() {} });
            return Ok(());
        }
    }
    Err(ApiError::Unavailable(format!(
        "the module could not be stored on a majority of the masters ({})",
        failures.join("; ")
    )))
}

pub fn list(node: &Node) -> Result<pb::ListModulesResponse, ApiError> {
    node.ensure_leader()?;
    let modules = node.replica.read().modules().map(convert::module).collect();
    Ok(pb::ListModulesResponse { modules })
}
