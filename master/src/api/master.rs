//! The client-facing `Master` service.

use std::pin::Pin;
use std::sync::Arc;

use futures::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};
use wasmgrid_proto as pb;
use wasmgrid_proto::master_server::Master;

use super::{cluster, members, modules, tasks};
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

    async fn run_task(&self, req: Request<pb::RunTaskRequest>) -> Result<Response<pb::Task>, Status> {
        Ok(Response::new(tasks::run(self.node.clone(), req.into_inner()).await?))
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
        // Storage reads, a long history's worth for a rare filter: off the async workers.
        let node = self.node.clone();
        let listed = tokio::task::spawn_blocking(move || tasks::list(&node, req.into_inner()))
            .await
            .map_err(|e| Status::internal(e.to_string()))?;
        Ok(Response::new(listed?))
    }

    async fn cluster_status(
        &self,
        _: Request<pb::ClusterStatusRequest>,
    ) -> Result<Response<pb::ClusterStatusResponse>, Status> {
        Ok(Response::new(cluster::status(&self.node)?))
    }

    async fn list_members(
        &self,
        _: Request<pb::ListMembersRequest>,
    ) -> Result<Response<pb::ListMembersResponse>, Status> {
        Ok(Response::new(members::list(&self.node)?))
    }

    #[tracing::instrument(skip_all, fields(member = %req.get_ref().name))]
    async fn add_member(
        &self,
        req: Request<pb::AddMemberRequest>,
    ) -> Result<Response<pb::ListMembersResponse>, Status> {
        let req = req.into_inner();
        Ok(Response::new(members::add(&self.node, req.name, req.peer_url).await?))
    }

    #[tracing::instrument(skip_all, fields(member = %req.get_ref().name))]
    async fn remove_member(
        &self,
        req: Request<pb::RemoveMemberRequest>,
    ) -> Result<Response<pb::ListMembersResponse>, Status> {
        Ok(Response::new(members::remove(&self.node, req.into_inner().name).await?))
    }

    #[tracing::instrument(skip_all, fields(executor = %req.get_ref().name))]
    async fn drain_executor(
        &self,
        req: Request<pb::DrainExecutorRequest>,
    ) -> Result<Response<pb::ExecutorInfo>, Status> {
        Ok(Response::new(cluster::drain(&self.node, req.into_inner().name).await?))
    }
}
