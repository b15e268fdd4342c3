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
    match selector % 12 {
        0 => drop(decode::<pb::SubmitTasksRequest>(data)),
        1 => drop(decode::<pb::UploadModuleRequest>(data)),
        2 => {
            if let Some(pb::ExecutorMessage { kind: Some(pb::executor_message::Kind::Results(r)) }) = decode(data) {
                for result in r.results {
                    let _ = wasmgrid_master::convert::report("fuzz", result);
                }
            }
        }
        3 => drop(decode::<pb::MasterMessage>(data)),
        4 => drop(decode::<pb::WaitTasksRequest>(data)),
        5 => drop(decode::<pb::ListTasksRequest>(data)),
        6 => drop(decode::<pb::BlobChunk>(data)),
        7 => drop(decode::<pb::MemberInfo>(data)),
        8 => drop(decode::<pb::AddMemberRequest>(data)),
        9 => drop(decode::<pb::FetchModuleRequest>(data)),
        10 => drop(decode::<pb::CancelTaskRequest>(data)),
        _ => {
            // Raft traffic: a payload whose bytes are a postcard-encoded openraft message.
            if let Some(p) = decode::<pb::RaftPayload>(data) {
                let _ = wasmgrid_master::storage::codec::decode::<Vec<wasmgrid_master::raft::Entry>>(&p.data);
            }
        }
    }
});
