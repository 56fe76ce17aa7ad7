//! One read-index request for every linearizable read waiting at the moment it is asked:
//! reads that arrive while a request is in flight wait for the NEXT request (the one in flight
//! may have been issued before they arrived, so its index could miss writes they must see).
//! Voters use it in front of Raft's ReadIndex, learners in front of their upstream's.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::oneshot;

/// Fetches one read index.
pub type FetchIndex<E> =
    Arc<dyn Fn() -> Pin<Box<dyn Future<Output = Result<u64, E>> + Send>> + Send + Sync>;

struct Batch<E> {
    running: bool,
    waiting: Vec<oneshot::Sender<Result<u64, E>>>,
}

/// See the module doc. Cheap to clone.
pub struct ReadIndexBatcher<E> {
    fetch: FetchIndex<E>,
    batch: Arc<Mutex<Batch<E>>>,
}

impl<E> Clone for ReadIndexBatcher<E> {
    fn clone(&self) -> Self {
        Self {
            fetch: self.fetch.clone(),
            batch: self.batch.clone(),
        }
    }
}

impl<E: Clone + Send + 'static> ReadIndexBatcher<E> {
    /// A batcher asking `fetch` for each batch's index.
    pub fn new(fetch: FetchIndex<E>) -> Self {
        Self {
            fetch,
            batch: Arc::new(Mutex::new(Batch {
                running: false,
                waiting: Vec::new(),
            })),
        }
    }

    /// A read index at least as new as any write acknowledged before this call; `None` if
    /// the batcher's task went away (the runtime is shutting down).
    pub async fn read_index(&self) -> Option<Result<u64, E>> {
        let (tx, rx) = oneshot::channel();
        let start = {
            let mut b = self.batch.lock().unwrap_or_else(PoisonError::into_inner);
            b.waiting.push(tx);
            !std::mem::replace(&mut b.running, true)
        };
        if start {
            let (batch, fetch) = (self.batch.clone(), self.fetch.clone());
            tokio::spawn(async move {
                loop {
                    let waiting = {
                        let mut b = batch.lock().unwrap_or_else(PoisonError::into_inner);
                        if b.waiting.is_empty() {
                            b.running = false;
                            return;
                        }
                        std::mem::take(&mut b.waiting)
                    };
                    let result = fetch().await;
                    for w in waiting {
                        let _ = w.send(result.clone());
                    }
                }
            });
        }
        rx.await.ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::time::Duration;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_reads_share_requests_and_late_ones_wait_for_the_next() {
        let calls = Arc::new(AtomicU64::new(0));
        let counter = calls.clone();
        let fetch: FetchIndex<String> = Arc::new(move || {
            let counter = counter.clone();
            Box::pin(async move {
                tokio::time::sleep(Duration::from_millis(50)).await;
                // The index a request returns is the number of requests made so far.
                Ok(counter.fetch_add(1, Ordering::SeqCst) + 1)
            })
        });
        let b = ReadIndexBatcher::new(fetch);
        let first: Vec<_> = (0..100)
            .map(|_| {
                let b = b.clone();
                tokio::spawn(async move { b.read_index().await })
            })
            .collect();
        let mut indexes = Vec::new();
        for t in first {
            indexes.push(t.await.ok().flatten().and_then(Result::ok).unwrap_or(0));
        }
        assert!(
            calls.load(Ordering::SeqCst) <= 3,
            "100 reads made {calls:?} requests"
        );
        // A read that starts after another's answer gets a later request's index.
        let later = b.read_index().await.and_then(Result::ok).unwrap_or(0);
        assert!(later > indexes.iter().copied().max().unwrap_or(0));
    }
}
