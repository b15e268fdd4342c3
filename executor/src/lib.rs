//! The wasmgrid executor.
pub mod sandbox;
