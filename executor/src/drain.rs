//! Leaving gracefully (SIGTERM, or `master-client executor drain`), and giving work up when
//! the masters have been out of reach for longer than this executor's lease.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;
use wasmgrid_proto as pb;
use wasmgrid_proto::executor_message::Kind as Out;

use crate::agent::Agent;

/// How long acknowledgements and the farewell may take once the runs are done.
const SETTLE: Duration = Duration::from_secs(10);
/// How long an idle executor with no master in reach waits for one before leaving: long
/// enough for a leader election.
const NO_MASTER_GRACE: Duration = Duration::from_secs(5);

impl Agent {
    /// Drains: the leader places nothing new here, runs still waiting for a slot are given
    /// back at once as `executor_lost` to run elsewhere, running tasks get `grace` to finish
    /// (the rest are given back too), their results are
    /// acknowledged, then the executor leaves the cluster. Returns once the leader has
    /// forgotten it, or once no master could be told within a bounded time.
    pub async fn drain(self: &Arc<Self>, grace: Duration) {
        if self.draining.swap(true, Ordering::SeqCst) {
            self.left.cancelled().await;
            return;
        }
        tracing::info!(running = self.runs.running_count(), grace = ?grace, "draining");
        self.send_now(Out::Draining(pb::Draining {})).await;
        // Runs queued here that have not started run elsewhere sooner than after the grace.
        let waiting = self.runs.abandon_waiting("the executor is draining; it runs elsewhere");
        if waiting > 0 {
            tracing::info!(waiting, "gave back the runs still waiting for a slot");
        }
        let deadline = Instant::now() + grace;
        while self.runs.running_count() > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let given_back = self.runs.abandon_all("the executor drained before the run finished; it runs elsewhere");
        if given_back > 0 {
            tracing::warn!(given_back, "runs still going at the end of the grace period were given back");
        }
        let settle = Instant::now() + SETTLE;
        while (self.runs.running_count() > 0 || self.runs.outbox_len() > 0) && Instant::now() < settle {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let leaving = Instant::now();
        loop {
            if self.send_now(Out::Leaving(pb::Leaving {})).await
                && tokio::time::timeout(Duration::from_secs(2), self.left.cancelled()).await.is_ok()
            {
                tracing::info!("drained; the leader has forgotten this executor");
                return;
            }
            // Nothing left to hand over and no master to say goodbye to: the lease tells the
            // masters soon enough, and a stopping process should not wait for them.
            let idle = self.runs.running_count() == 0 && self.runs.outbox_len() == 0;
            if idle && !self.status.connected.load(Ordering::Relaxed) && leaving.elapsed() > NO_MASTER_GRACE {
                tracing::warn!("no master to tell that this executor leaves; leaving anyway");
                self.left.cancel();
                return;
            }
            if Instant::now() > settle + SETTLE {
                tracing::warn!("could not tell the masters this executor leaves; leaving anyway");
                self.left.cancel();
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Gives up the running work once no leader has been heard from for longer than the lease:
    /// by then the masters have declared this executor lost and moved its tasks. It registers
    /// again when it reconnects.
    pub async fn watch_lease(self: Arc<Self>, shutdown: CancellationToken) {
        let mut tick = tokio::time::interval(Duration::from_millis(250));
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            let silent = self.last_contact.lock().map(|t| t.elapsed()).unwrap_or_default();
            let connected = self.status.connected.load(Ordering::Relaxed);
            if !connected && silent > self.keepalive_ttl && self.runs.running_count() > 0 {
                let n = self.runs.abandon_all("the executor lost contact with the masters for longer than its lease");
                tracing::warn!(stopped = n, silent = ?silent, "no master for longer than the lease; stopped the running tasks");
            }
        }
    }
}
