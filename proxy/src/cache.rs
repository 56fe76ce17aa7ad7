//! An optional cache of stale Range answers (`--stale-cache-bytes`), bounded in bytes (moka),
//! invalidated by revision from one watch on the whole key space.
//!
//! Only reads at the `stale` level are served from it (bounded and linearizable reads always
//! go upstream). An answer is cached only while the invalidation watch runs and only if it is
//! at least as new as the last revision the watch delivered, so a write after it always
//! invalidates it: every event drops the cached answers whose key range holds the event's
//! key. Inserting and invalidating are ordered by one lock, so an answer fetched before a
//! write can never be inserted after that write's invalidation. When the watch breaks, the
//! whole cache is dropped and nothing is cached until it is back.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use mango_proto::etcdserverpb::watch_client::WatchClient;
use mango_proto::etcdserverpb::watch_request::RequestUnion;
use mango_proto::etcdserverpb::{RangeRequest, RangeResponse, WatchCreateRequest, WatchRequest};
use moka::future::Cache;
use prost::Message;
use tokio::sync::RwLock;

use crate::route::Proxy;

struct Cached {
    key: Vec<u8>,
    range_end: Vec<u8>,
    resp: RangeResponse,
}

/// Whether the range `[key, range_end)` (etcd's conventions) holds `k`.
fn covers(key: &[u8], range_end: &[u8], k: &[u8]) -> bool {
    if range_end.is_empty() {
        return k == key;
    }
    if range_end == [0] {
        return k >= key;
    }
    k >= key && k < range_end
}

/// See the module doc.
pub struct StaleCache {
    cache: Cache<Vec<u8>, Arc<Cached>>,
    /// The last revision the invalidation watch delivered (0: not running: no caching).
    watched: AtomicI64,
    /// Inserts (read) against invalidations (write).
    order: RwLock<()>,
    /// Answers served from the cache.
    pub hits: AtomicU64,
    /// Stale reads that went upstream.
    pub misses: AtomicU64,
}

impl StaleCache {
    /// A cache of at most `max_bytes` of answers.
    pub fn new(max_bytes: u64) -> Self {
        let cache = Cache::builder()
            .max_capacity(max_bytes)
            .weigher(|k: &Vec<u8>, v: &Arc<Cached>| {
                let bytes = k.len() + v.resp.encoded_len() + v.key.len() + v.range_end.len();
                u32::try_from(bytes).unwrap_or(u32::MAX)
            })
            .support_invalidation_closures()
            .build();
        Self {
            cache,
            watched: AtomicI64::new(0),
            order: RwLock::new(()),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }

    /// The cached answer to `req`, if any.
    pub async fn get(&self, req: &RangeRequest) -> Option<RangeResponse> {
        let found = self.cache.get(&req.encode_to_vec()).await;
        match found {
            Some(c) => {
                self.hits.fetch_add(1, Ordering::Relaxed);
                Some(c.resp.clone())
            }
            None => {
                self.misses.fetch_add(1, Ordering::Relaxed);
                None
            }
        }
    }

    /// Caches `resp` as the answer to `req` if the invalidation watch covers it.
    pub async fn insert(&self, req: &RangeRequest, resp: &RangeResponse) {
        let _order = self.order.read().await;
        let watched = self.watched.load(Ordering::Acquire);
        let revision = resp.header.as_ref().map_or(0, |h| h.revision);
        if watched == 0 || revision < watched {
            return;
        }
        let cached = Cached {
            key: req.key.clone(),
            range_end: req.range_end.clone(),
            resp: resp.clone(),
        };
        self.cache
            .insert(req.encode_to_vec(), Arc::new(cached))
            .await;
    }

    /// The watch delivered `keys` changed at `revision`.
    async fn changed(&self, revision: i64, keys: Vec<Vec<u8>>) {
        let _order = self.order.write().await;
        self.watched.fetch_max(revision, Ordering::AcqRel);
        for k in keys {
            let _ = self
                .cache
                .invalidate_entries_if(move |_, c| covers(&c.key, &c.range_end, &k));
        }
    }

    /// The watch stopped: forget everything, cache nothing until it is back.
    async fn reset(&self) {
        let _order = self.order.write().await;
        self.watched.store(0, Ordering::Release);
        self.cache.invalidate_all();
    }

    /// Keeps one watch on every key open through the read pool, invalidating as events
    /// arrive; re-opens it after any failure. Runs until the task is aborted.
    pub async fn run_invalidation(self: Arc<Self>, proxy: Proxy) {
        loop {
            if let Err(e) = self.watch_once(&proxy).await {
                tracing::debug!(error = %e, "stale-cache invalidation watch ended");
            }
            self.reset().await;
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }

    async fn watch_once(&self, proxy: &Proxy) -> Result<(), tonic::Status> {
        let upstream = proxy.pick_reads(&mut Vec::new())?;
        let mut client = WatchClient::new(upstream.channel()).max_decoding_message_size(usize::MAX);
        let create = WatchRequest {
            request_union: Some(RequestUnion::CreateRequest(WatchCreateRequest {
                key: vec![0],
                range_end: vec![0],
                ..Default::default()
            })),
        };
        let (tx, rx) = tokio::sync::mpsc::channel(1);
        tx.send(create)
            .await
            .map_err(|_| tonic::Status::internal("watch request channel"))?;
        let mut stream = client
            .watch(tokio_stream::wrappers::ReceiverStream::new(rx))
            .await?
            .into_inner();
        while let Some(resp) = stream.message().await? {
            let revision = resp.header.as_ref().map_or(0, |h| h.revision);
            if resp.canceled {
                return Err(tonic::Status::unavailable("invalidation watch cancelled"));
            }
            if resp.created {
                // Caching starts at the revision the watch starts from.
                self.changed(revision, Vec::new()).await;
                continue;
            }
            let keys = resp
                .events
                .iter()
                .filter_map(|e| e.kv.as_ref().map(|kv| kv.key.clone()))
                .collect();
            let last = resp
                .events
                .iter()
                .filter_map(|e| e.kv.as_ref().map(|kv| kv.mod_revision))
                .max()
                .unwrap_or(revision);
            self.changed(last.max(revision), keys).await;
        }
        drop(tx);
        Err(tonic::Status::unavailable("invalidation watch ended"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mango_proto::etcdserverpb::ResponseHeader;

    fn resp(revision: i64) -> RangeResponse {
        RangeResponse {
            header: Some(ResponseHeader {
                revision,
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn range(key: &str, end: &str) -> RangeRequest {
        RangeRequest {
            key: key.as_bytes().to_vec(),
            range_end: end.as_bytes().to_vec(),
            serializable: true,
            ..Default::default()
        }
    }

    #[test]
    fn ranges_cover_keys_as_etcd_means_them() {
        assert!(covers(b"a", b"", b"a"));
        assert!(!covers(b"a", b"", b"ab"));
        assert!(covers(b"a", b"b", b"ab"));
        assert!(!covers(b"a", b"b", b"b"));
        assert!(covers(b"a", &[0], b"zzz"));
    }

    #[tokio::test]
    async fn nothing_is_cached_without_the_watch_and_events_invalidate() {
        let c = StaleCache::new(1 << 20);
        let r = range("k", "");
        c.insert(&r, &resp(5)).await;
        assert!(c.get(&r).await.is_none(), "cached without a watch");
        c.changed(5, Vec::new()).await;
        c.insert(&r, &resp(4)).await;
        assert!(
            c.get(&r).await.is_none(),
            "an answer older than the watch was cached"
        );
        c.insert(&r, &resp(5)).await;
        assert!(c.get(&r).await.is_some());
        let other = range("a", "c");
        c.insert(&other, &resp(5)).await;
        // A write to "k" drops the answer about "k", not the one about [a, c).
        c.changed(6, vec![b"k".to_vec()]).await;
        assert!(c.get(&r).await.is_none());
        assert!(c.get(&other).await.is_some());
        c.changed(7, vec![b"b".to_vec()]).await;
        assert!(c.get(&other).await.is_none());
        c.insert(&r, &resp(7)).await;
        c.reset().await;
        assert!(c.get(&r).await.is_none(), "a reset keeps answers");
    }
}
