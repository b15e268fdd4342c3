//! Raft entries and state-machine commands as they arrive from the log or a peer: decoding
//! arbitrary bytes must fail cleanly, and whatever decodes must apply to the state machine
//! without a panic (twice, as a replayed log would).
#![no_main]

use libfuzzer_sys::fuzz_target;
use wasmgrid_master::raft::Entry;
use wasmgrid_master::state::{Batch, Effects, StateMachine};
use wasmgrid_master::storage::codec::decode;

fuzz_target!(|data: &[u8]| {
    let _ = decode::<Entry>(data);
    if let Ok(batch) = decode::<Batch>(data) {
        let mut sm = StateMachine::new();
        let mut fx = Effects::default();
        sm.apply(batch.clone(), &mut fx);
        sm.apply(batch, &mut fx);
    }
});
