//! Upload validation against arbitrary bytes and, from the seed corpus (the example tasks),
//! mutated valid components and command modules: it must answer, never panic or hang.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = wasmgrid_master::validate::validate(data, u32::MAX);
});
