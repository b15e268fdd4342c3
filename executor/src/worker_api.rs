//! The small gRPC API an executor serves on `--worker-addr`: its status.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use tonic::{Request, Response, Status};
use wasmgrid_proto as pb;
use wasmgrid_proto::worker_server::Worker;

use crate::agent::Agent;

pub struct WorkerService {
    agent: Arc<Agent>,
}

impl WorkerService {
    pub fn new(agent: Arc<Agent>) -> Self {
        Self { agent }
    }
}

#[tonic::async_trait]
impl Worker for WorkerService {
    async fn status(&self, _: Request<pb::WorkerStatusRequest>) -> Result<Response<pb::WorkerStatus>, Status> {
        let a = &self.agent;
        let (running, waiting) = a.runs.ids();
        Ok(Response::new(pb::WorkerStatus {
            name: a.name.clone(),
            slots: a.slots(),
            busy: u32::try_from(a.busy()).unwrap_or(u32::MAX),
            running,
            waiting,
            master: a.status.master.lock().map(|m| m.clone()).unwrap_or_default(),
            connected: a.status.connected.load(Ordering::Relaxed),
            cached_modules: a.modules.len() as u64,
            version: wasmgrid_common::VERSION.to_string(),
        }))
    }
}
