//! Developer tools: `componentize` turns a core wasm module into a component, `demo` runs
//! every example task on a local master and executor, `bench` measures it all.

pub mod bench;
pub mod local;
