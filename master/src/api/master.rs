//! The client-facing `Master` service.

use std::pin::Pin;
use std::sync::Arc;

use futures::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};
use wasmgrid_proto as pb;
use wasmgrid_proto::master_server::Master;

use super::{cluster, modules, tasks};
use crate::node::Node;

pub struct MasterService {
    node: Arc<Node>,
}

impl MasterService {
    pub fn new(node: Arc<Node>) -> Self {
        Self { node }
    }
}

type TaskStream = Pin<Box<dyn Stream<Item = Result<pb::Task, Status>> + Send>>;

#[tonic::async_trait]
impl Master for MasterService {
    #[tracing::instrument(skip_all)]
    async fn upload_module(
        &self,
        req: Request<Streaming<pb::UploadModuleRequest>>,
    ) -> Result<Response<pb::Module>, Status> {
        Ok(Response::new(modules::upload(&self.node, req.into_inner()).await?))
    }

    async fn list_modules(
        &self,
        _: Request<pb::ListModulesRequest>,
    ) -> Result<Response<pb::ListModulesResponse>, Status> {
        Ok(Response::new(modules::list(&self.node)?))
    }

    #[tracing::instrument(skip_all, fields(tasks = req.get_ref().tasks.len()))]
    async fn submit_tasks(
        &self,
        req: Request<pb::SubmitTasksRequest>,
    ) -> Result<Response<pb::SubmitTasksResponse>, Status> {
        Ok(Response::new(tasks::submit(&self.node, req.into_inner()).await?))
    }

    async fn get_task(&self, req: Request<pb::GetTaskRequest>) -> Result<Response<pb::Task>, Status> {
        Ok(Response::new(tasks::get(&self.node, req.into_inner().id)?))
    }

    type WaitTasksStream = TaskStream;

    async fn wait_tasks(&self, req: Request<pb::WaitTasksRequest>) -> Result<Response<Self::WaitTasksStream>, Status> {
        let rx = tasks::wait(self.node.clone(), req.into_inner().ids)?;
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    #[tracing::instrument(skip_all, fields(task_id = req.get_ref().id))]
    async fn cancel_task(&self, req: Request<pb::CancelTaskRequest>) -> Result<Response<pb::Task>, Status> {
        Ok(Response::new(tasks::cancel(&self.node, req.into_inner().id).await?))
    }

    async fn list_tasks(&self, req: Request<pb::ListTasksRequest>) -> Result<Response<pb::ListTasksResponse>, Status> {
        Ok(Response::new(tasks::list(&self.node, req.into_inner())?))
    }

    async fn cluster_status(
        &self,
        _: Request<pb::ClusterStatusRequest>,
    ) -> Result<Response<pb::ClusterStatusResponse>, Status> {
        Ok(Response::new(cluster::status(&self.node)?))
    }
}
