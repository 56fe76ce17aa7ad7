//! What the stack's errors look like to an etcd client: etcd's own codes and texts.

use std::sync::atomic::Ordering;

use tonic::Status;
use tower::load_shed::error::Overloaded;
use tower::timeout::error::Elapsed;

use super::limit::TooManyStreams;
use super::retry::is_transport;
use super::{BoxError, Failure};
use crate::route::Proxy;

/// etcd's `ErrTooManyRequests` (code `ResourceExhausted`).
pub const TOO_MANY_REQUESTS: &str = "etcdserver: too many requests";

/// etcd's `ErrTimeout` (code `Unavailable`): what etcd answers when a request runs out of
/// time inside the server.
pub const REQUEST_TIMED_OUT: &str = "etcdserver: request timed out";

/// The client's status for an error out of a stack; counts what the limits shed.
pub fn to_status(e: BoxError, proxy: &Proxy) -> Status {
    let counters = proxy.counters();
    if e.is::<Overloaded>() {
        counters.shed.fetch_add(1, Ordering::Relaxed);
        return Status::resource_exhausted(TOO_MANY_REQUESTS);
    }
    if e.is::<TooManyStreams>() {
        counters.streams_shed.fetch_add(1, Ordering::Relaxed);
        return Status::resource_exhausted(TOO_MANY_REQUESTS);
    }
    if e.is::<Elapsed>() {
        return Status::unavailable(REQUEST_TIMED_OUT);
    }
    match e.downcast::<Failure>() {
        Ok(f) => failure_status(*f),
        Err(e) => Status::internal(format!("mango-proxy: {e}")),
    }
}

/// A failed attempt's status as etcd clients expect it: a transport failure becomes
/// `Unavailable` (tonic reports a reset connection as `Unknown`) naming the upstream; an
/// upstream's own answer is kept as is.
fn failure_status(f: Failure) -> Status {
    match f.upstream {
        Some(up) if is_transport(&f.status) && f.status.code() != tonic::Code::Unavailable => {
            Status::unavailable(format!(
                "mango-proxy: upstream {}: {}",
                up.url,
                f.status.message()
            ))
        }
        _ => f.status,
    }
}
