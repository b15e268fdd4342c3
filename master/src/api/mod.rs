//! The master's gRPC services: the client API (`Master`), the executors' gateway and the
//! Raft peer service. Handlers are thin; the work lives in the modules they call.

pub mod cluster;
pub mod gateway;
pub mod master;
pub mod members;
pub mod modules;
pub mod peer;
pub mod tasks;
