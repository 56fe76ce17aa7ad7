//! `lease-keepalive`: each client grants a lease, then renews it over a LeaseKeepAlive stream,
//! one request in flight at a time; a request is one keep-alive round trip. The leases are
//! revoked at the end.

use std::sync::Arc;
use std::time::Duration;

use mango_proto::etcdserverpb::lease_client::LeaseClient;
use mango_proto::etcdserverpb::{
    LeaseGrantRequest, LeaseKeepAliveRequest, LeaseKeepAliveResponse, LeaseRevokeRequest,
};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;
use tonic::{Status, Streaming};

use super::Run;
use crate::connect::Pool;
use crate::progress::Progress;
use crate::runner::{self, Plan, Worker};
use crate::stats::Stats;

/// Time allowed for each grant and revoke outside the measured run.
const SETUP_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug)]
pub struct Config {
    ttl: i64,
}

impl Config {
    pub fn new(ttl: i64) -> Result<Self, String> {
        if ttl < 1 {
            return Err(format!("--ttl must be at least 1 second, got {ttl}"));
        }
        Ok(Config { ttl })
    }

    pub async fn run(
        &self,
        pool: &Pool,
        clients: usize,
        plan: Plan,
        progress: Arc<Progress>,
    ) -> Run {
        // Grants happen before the clock starts; a failed grant is counted and retried by
        // the worker's first request.
        let mut stats = Stats::new();
        let mut workers = Vec::with_capacity(clients);
        for i in 0..clients {
            let mut w = LeaseWorker {
                client: LeaseClient::new(pool.channel(i)),
                ttl: self.ttl,
                lease: None,
                stream: None,
            };
            match tokio::time::timeout(SETUP_TIMEOUT, w.grant()).await {
                Ok(Ok(_)) => {}
                Ok(Err(status)) => stats.error(status.code()),
                Err(_) => stats.error(tonic::Code::DeadlineExceeded),
            }
            workers.push(w);
        }
        let out = runner::run(plan, workers, progress).await;
        stats.merge(&out.stats);
        for mut w in out.workers {
            w.stream = None;
            if let Some(id) = w.lease {
                let revoke = w.client.lease_revoke(LeaseRevokeRequest { id });
                let _ = tokio::time::timeout(SETUP_TIMEOUT, revoke).await;
            }
        }
        Run {
            stats,
            elapsed: out.elapsed,
        }
    }
}

struct KeepAlive {
    tx: mpsc::Sender<LeaseKeepAliveRequest>,
    rx: Streaming<LeaseKeepAliveResponse>,
}

pub struct LeaseWorker {
    client: LeaseClient<Channel>,
    ttl: i64,
    lease: Option<i64>,
    /// The open stream; `None` after an error or an abandoned (timed-out) request.
    stream: Option<KeepAlive>,
}

impl LeaseWorker {
    async fn grant(&mut self) -> Result<i64, Status> {
        let response = self
            .client
            .lease_grant(LeaseGrantRequest {
                ttl: self.ttl,
                id: 0,
            })
            .await?
            .into_inner();
        if !response.error.is_empty() {
            return Err(Status::unknown(response.error));
        }
        self.lease = Some(response.id);
        Ok(response.id)
    }

    /// Sends one keep-alive and waits for its answer, (re)opening the stream if needed.
    async fn round_trip(&mut self, id: i64) -> Result<LeaseKeepAliveResponse, Status> {
        let request = LeaseKeepAliveRequest { id };
        // Take the stream out: if this future is dropped by a timeout, the stream (whose
        // answer may still come) goes with it rather than desynchronising the next request.
        let mut stream = match self.stream.take() {
            Some(s) => {
                if s.tx.send(request).await.is_err() {
                    return Err(Status::unavailable("keep-alive stream closed"));
                }
                s
            }
            None => {
                // etcd sends response headers only with the first answer, so the first
                // request must be queued before the call is awaited.
                let (tx, rx) = mpsc::channel(4);
                let _ = tx.try_send(request);
                let rx = self
                    .client
                    .lease_keep_alive(ReceiverStream::new(rx))
                    .await?
                    .into_inner();
                KeepAlive { tx, rx }
            }
        };
        match stream.rx.message().await? {
            Some(response) => {
                self.stream = Some(stream);
                Ok(response)
            }
            None => Err(Status::unavailable("keep-alive stream ended")),
        }
    }
}

impl Worker for LeaseWorker {
    async fn call(&mut self, _op: u64) -> Result<(), Status> {
        let id = match self.lease {
            Some(id) => id,
            None => self.grant().await?,
        };
        let response = self.round_trip(id).await?;
        if response.ttl <= 0 {
            // The lease is gone (expired or revoked): grant a new one next time.
            self.lease = None;
            return Err(Status::not_found("etcdserver: requested lease not found"));
        }
        Ok(())
    }
}
