//! The stack's layers against a fake call (no network): shedding, the timeout, retries, the
//! stream limit.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use tokio::sync::Semaphore;
use tonic::transport::Channel;
use tonic::{Code, Request, Response, Status};

use super::errors::{REQUEST_TIMED_OUT, TOO_MANY_REQUESTS};
use crate::route::{Proxy, Route};

/// A proxy over `learners` fake learners (never dialled: the calls below ignore the channel).
fn proxy(learners: usize, timeout: Duration, max: usize, max_streams: usize) -> Proxy {
    let urls: Vec<String> = (0..learners)
        .map(|i| format!("http://127.0.0.1:{}", 1 + i))
        .collect();
    Proxy::new(&[], &urls, None, timeout, max, max_streams, 3).unwrap_or_else(|e| panic!("{e}"))
}

/// A call that waits for a permit of `gate`, then answers its request plus one.
fn gated(
    gate: Arc<Semaphore>,
) -> impl Fn(Channel, Request<u32>) -> super::BoxFuture<'static, Result<Response<u32>, Status>>
+ Clone
+ Send
+ 'static {
    move |_ch, r| {
        let gate = gate.clone();
        Box::pin(async move {
            let _ = gate.acquire().await;
            Ok(Response::new(r.into_inner() + 1))
        })
    }
}

async fn until(mut cond: impl FnMut() -> bool) {
    for _ in 0..500 {
        if cond() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    panic!("condition never held");
}

#[tokio::test]
async fn beyond_the_limit_requests_are_shed_at_once_not_queued() {
    let p = proxy(1, Duration::from_secs(5), 1, 8);
    let gate = Arc::new(Semaphore::new(0));
    let first = tokio::spawn({
        let (p, call) = (p.clone(), gated(gate.clone()));
        async move { p.unary(Route::Reads, Request::new(1), call).await }
    });
    until(|| p.counters().to_reads.load(Ordering::Relaxed) == 1).await;
    let started = tokio::time::Instant::now();
    let Err(refused) = p
        .unary(Route::Reads, Request::new(2), gated(gate.clone()))
        .await
    else {
        panic!("over the limit");
    };
    assert!(started.elapsed() < Duration::from_millis(500), "not queued");
    assert_eq!(refused.code(), Code::ResourceExhausted);
    assert_eq!(refused.message(), TOO_MANY_REQUESTS);
    assert_eq!(p.counters().shed.load(Ordering::Relaxed), 1);
    // Shed requests are not in the latency histograms.
    assert_eq!(p.counters().reads_latency.count.load(Ordering::Relaxed), 0);
    gate.add_permits(10);
    let answer = first.await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(answer.map(Response::into_inner).ok(), Some(2));
    let third = p.unary(Route::Reads, Request::new(3), gated(gate)).await;
    assert_eq!(third.map(Response::into_inner).ok(), Some(4));
    assert_eq!(p.counters().reads_latency.count.load(Ordering::Relaxed), 2);
}

#[tokio::test]
async fn a_request_out_of_time_gets_etcds_timeout() {
    let p = proxy(1, Duration::from_millis(100), 4, 4);
    let started = tokio::time::Instant::now();
    let never = gated(Arc::new(Semaphore::new(0)));
    let Err(late) = p.unary(Route::Reads, Request::new(1), never).await else {
        panic!("the call never answers");
    };
    assert!(started.elapsed() < Duration::from_secs(1));
    assert_eq!(late.code(), Code::Unavailable);
    assert_eq!(late.message(), REQUEST_TIMED_OUT);
    assert_eq!(p.counters().reads_latency.count.load(Ordering::Relaxed), 1);
    // The permit came back with the timeout.
    assert_eq!(p.limit().available_permits(), 4);
}

#[tokio::test]
async fn reads_are_retried_on_unavailable_and_answered() {
    let p = proxy(2, Duration::from_secs(5), 4, 4);
    let calls = Arc::new(AtomicU32::new(0));
    let flaky = {
        let calls = calls.clone();
        move |_ch: Channel, r: Request<u32>| {
            let n = calls.fetch_add(1, Ordering::Relaxed);
            async move {
                if n < 2 {
                    Err(Status::unavailable("etcdserver: leader changed"))
                } else {
                    Ok(Response::new(r.into_inner()))
                }
            }
        }
    };
    let answer = p.unary(Route::Reads, Request::new(7), flaky.clone()).await;
    assert_eq!(answer.map(Response::into_inner).ok(), Some(7));
    assert_eq!(calls.load(Ordering::Relaxed), 3);
    assert_eq!(p.counters().retries.load(Ordering::Relaxed), 2);
    // Not an Unavailable: answered as is, once.
    let refuse = |_ch: Channel, _r: Request<u32>| async {
        Err::<Response<u32>, _>(Status::invalid_argument("etcdserver: key is not provided"))
    };
    let Err(bad) = p.unary(Route::Reads, Request::new(7), refuse).await else {
        panic!("refused");
    };
    assert_eq!(bad.code(), Code::InvalidArgument);
    assert_eq!(p.counters().retries.load(Ordering::Relaxed), 2);
}

#[tokio::test]
async fn blocking_calls_count_against_the_stream_limit_not_the_unary_one() {
    let p = proxy(1, Duration::from_secs(5), 1, 1);
    let gate = Arc::new(Semaphore::new(0));
    let held = tokio::spawn({
        let (p, call) = (p.clone(), gated(gate.clone()));
        async move { p.unary_blocking(Route::Reads, Request::new(1), call).await }
    });
    until(|| p.streams_open() == 1).await;
    let Err(refused) = p
        .unary_blocking(Route::Reads, Request::new(2), gated(gate.clone()))
        .await
    else {
        panic!("over the stream limit");
    };
    assert_eq!(refused.code(), Code::ResourceExhausted);
    assert_eq!(refused.message(), TOO_MANY_REQUESTS);
    assert_eq!(p.counters().streams_shed.load(Ordering::Relaxed), 1);
    // Unary requests still have their own limit.
    let quick = gated(Arc::new(Semaphore::new(1)));
    let unary = p.unary(Route::Reads, Request::new(5), quick).await;
    assert_eq!(unary.map(Response::into_inner).ok(), Some(6));
    gate.add_permits(10);
    let answer = held.await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(answer.map(Response::into_inner).ok(), Some(2));
    assert_eq!(p.streams_open(), 0);
    assert_eq!(p.counters().shed.load(Ordering::Relaxed), 0);
}
