//! The wasmgrid master.
pub mod state;
