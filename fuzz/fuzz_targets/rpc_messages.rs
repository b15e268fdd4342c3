//! Every request message a wasmgrid server decodes from the network: arbitrary bytes must
//! decode or fail cleanly, and what decodes must convert to the master's own types (where
//! it would) without a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use prost::Message;
use wasmgrid_proto as pb;

fn decode<M: Message + Default>(data: &[u8]) -> Option<M> {
    M::decode(data).ok()
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, data)) = data.split_first() else { return };
    match selector % 21 {
        // The client API.
        0 => drop(decode::<pb::SubmitTasksRequest>(data)),
        1 => drop(decode::<pb::UploadModuleRequest>(data)),
        2 => drop(decode::<pb::ListModulesRequest>(data)),
        3 => drop(decode::<pb::GetTaskRequest>(data)),
        4 => drop(decode::<pb::WaitTasksRequest>(data)),
        5 => drop(decode::<pb::CancelTaskRequest>(data)),
        6 => drop(decode::<pb::ListTasksRequest>(data)),
        7 => drop(decode::<pb::ClusterStatusRequest>(data)),
        8 => drop(decode::<pb::ListMembersRequest>(data)),
        9 => drop(decode::<pb::AddMemberRequest>(data)),
        10 => drop(decode::<pb::RemoveMemberRequest>(data)),
        11 => drop(decode::<pb::DrainExecutorRequest>(data)),
        // The executor gateway.
        12 => {
            if let Some(pb::ExecutorMessage { kind: Some(pb::executor_message::Kind::Results(r)) }) = decode(data) {
                for result in r.results {
                    let _ = wasmgrid_master::convert::report("fuzz", result);
                }
            }
        }
        13 => drop(decode::<pb::FetchModuleRequest>(data)),
        // What an executor decodes from the leader.
        14 => drop(decode::<pb::MasterMessage>(data)),
        // The Raft peer service.
        15 => drop(decode::<pb::ProbeRequest>(data)),
        16 => drop(decode::<pb::MemberInfo>(data)),
        17 => drop(decode::<pb::BlobChunk>(data)),
        18 => drop(decode::<pb::FetchBlobRequest>(data)),
        19 => {
            // A payload whose bytes are a postcard-encoded openraft request, as the peer
            // service decodes it.
            if let Some(p) = decode::<pb::RaftPayload>(data) {
                use openraft::raft::{AppendEntriesRequest, InstallSnapshotRequest, VoteRequest};
                use wasmgrid_master::raft::{NodeId, TypeConfig};
                use wasmgrid_master::storage::codec::decode as postcard;
                let _ = postcard::<AppendEntriesRequest<TypeConfig>>(&p.data);
                let _ = postcard::<VoteRequest<NodeId>>(&p.data);
                let _ = postcard::<InstallSnapshotRequest<TypeConfig>>(&p.data);
            }
        }
        // An executor's status API.
        _ => drop(decode::<pb::WorkerStatusRequest>(data)),
    }
});
