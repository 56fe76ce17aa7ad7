//! etcd's gRPC server metrics (go-grpc-prometheus' names and labels):
//! `grpc_server_started_total` and `grpc_server_handled_total` by `grpc_type`,
//! `grpc_service`, `grpc_method` (and `grpc_code` for handled), counted by a tower layer
//! that [`crate::grpc::server`] puts under every service of every binary.
//!
//! An RPC is handled when its status is known: from the response head for a trailers-only
//! answer (an error before any message), else from the trailers at the end of the response
//! body; a response dropped before its trailers (the client went away) counts as
//! `Canceled`. The counters are process-wide: one process serves one binary.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};

use crate::prom::Text;

/// The methods that are not unary (etcd's streams, the health watch, mango's peer streams).
const STREAMS: &[(&str, &str, &str)] = &[
    ("etcdserverpb.Watch", "Watch", "bidi_stream"),
    ("etcdserverpb.Lease", "LeaseKeepAlive", "bidi_stream"),
    ("etcdserverpb.Maintenance", "Snapshot", "server_stream"),
    ("v3electionpb.Election", "Observe", "server_stream"),
    ("grpc.health.v1.Health", "Watch", "server_stream"),
    ("mangopb.Peer", "Stream", "client_stream"),
    ("mangopb.Peer", "Snapshot", "client_stream"),
];

/// gRPC status codes by number, as go's `codes.Code.String()` names them.
const CODES: [&str; 17] = [
    "OK",
    "Canceled",
    "Unknown",
    "InvalidArgument",
    "DeadlineExceeded",
    "NotFound",
    "AlreadyExists",
    "PermissionDenied",
    "ResourceExhausted",
    "FailedPrecondition",
    "Aborted",
    "OutOfRange",
    "Unimplemented",
    "Internal",
    "Unavailable",
    "DataLoss",
    "Unauthenticated",
];

#[derive(Default)]
struct MethodCounts {
    started: u64,
    handled: BTreeMap<&'static str, u64>,
}

type Key = (String, String);

static COUNTS: Mutex<BTreeMap<Key, MethodCounts>> = Mutex::new(BTreeMap::new());

fn with_counts<T>(f: impl FnOnce(&mut BTreeMap<Key, MethodCounts>) -> T) -> T {
    let mut guard = COUNTS.lock().unwrap_or_else(|p| p.into_inner());
    f(&mut guard)
}

fn grpc_type(service: &str, method: &str) -> &'static str {
    STREAMS
        .iter()
        .find(|(s, m, _)| *s == service && *m == method)
        .map_or("unary", |(_, _, t)| t)
}

fn code_name(value: &http::HeaderValue) -> &'static str {
    value
        .to_str()
        .ok()
        .and_then(|v| v.trim().parse::<usize>().ok())
        .and_then(|i| CODES.get(i).copied())
        .unwrap_or("Unknown")
}

/// `/pkg.Service/Method` as (service, method); other paths as ("unknown", "unknown"),
/// so a scanner cannot grow the table without bound.
fn split_path(path: &str) -> Key {
    let mut parts = path.trim_start_matches('/').splitn(2, '/');
    match (parts.next(), parts.next()) {
        (Some(s), Some(m)) if !s.is_empty() && !m.is_empty() && s.len() + m.len() <= 128 => {
            (s.to_string(), m.to_string())
        }
        _ => ("unknown".into(), "unknown".into()),
    }
}

fn handled(key: &Key, code: &'static str) {
    with_counts(|c| {
        if let Some(m) = c.get_mut(key) {
            *m.handled.entry(code).or_default() += 1;
        }
    });
}

/// Writes both families.
pub fn render(out: &mut Text) {
    with_counts(|counts| {
        out.family(
            "grpc_server_started_total",
            "counter",
            "Total number of RPCs started on the server.",
        );
        for ((service, method), m) in counts.iter() {
            let t = grpc_type(service, method);
            let labels = [
                ("grpc_method", method.as_str()),
                ("grpc_service", service.as_str()),
                ("grpc_type", t),
            ];
            out.sample("grpc_server_started_total", &labels, m.started as f64);
        }
        out.family(
            "grpc_server_handled_total",
            "counter",
            "Total number of RPCs completed on the server, regardless of success or failure.",
        );
        for ((service, method), m) in counts.iter() {
            let t = grpc_type(service, method);
            for (code, n) in &m.handled {
                let labels = [
                    ("grpc_code", *code),
                    ("grpc_method", method.as_str()),
                    ("grpc_service", service.as_str()),
                    ("grpc_type", t),
                ];
                out.sample("grpc_server_handled_total", &labels, *n as f64);
            }
        }
    });
}

/// The layer.
#[derive(Clone, Copy, Debug, Default)]
pub struct GrpcMetricsLayer;

impl<S> tower::Layer<S> for GrpcMetricsLayer {
    type Service = GrpcMetrics<S>;

    fn layer(&self, inner: S) -> Self::Service {
        GrpcMetrics { inner }
    }
}

/// The service the layer wraps around the server's routes.
#[derive(Clone, Debug)]
pub struct GrpcMetrics<S> {
    inner: S,
}

type BoxFuture<T, E> = Pin<Box<dyn Future<Output = Result<T, E>> + Send>>;

impl<S, ReqBody, ResBody> tower::Service<http::Request<ReqBody>> for GrpcMetrics<S>
where
    S: tower::Service<http::Request<ReqBody>, Response = http::Response<ResBody>>,
    S::Future: Send + 'static,
    ResBody: Body<Data = Bytes> + Send + 'static,
{
    type Response = http::Response<CountedBody<ResBody>>;
    type Error = S::Error;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<ReqBody>) -> Self::Future {
        let key = split_path(req.uri().path());
        with_counts(|c| c.entry(key.clone()).or_default().started += 1);
        let fut = self.inner.call(req);
        Box::pin(async move {
            let response = match fut.await {
                Ok(r) => r,
                Err(e) => {
                    handled(&key, "Unknown");
                    return Err(e);
                }
            };
            let (parts, body) = response.into_parts();
            let key = match parts.headers.get("grpc-status") {
                Some(code) => {
                    handled(&key, code_name(code));
                    None
                }
                None => Some(key),
            };
            Ok(http::Response::from_parts(
                parts,
                CountedBody {
                    body: Box::pin(body),
                    key,
                },
            ))
        })
    }
}

/// A response body that counts its RPC handled when its trailers pass (or when it is
/// dropped without them).
pub struct CountedBody<B> {
    body: Pin<Box<B>>,
    /// The RPC, until it is counted.
    key: Option<Key>,
}

impl<B> Drop for CountedBody<B> {
    fn drop(&mut self) {
        if let Some(key) = self.key.take() {
            handled(&key, "Canceled");
        }
    }
}

impl<B: Body<Data = Bytes>> Body for CountedBody<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        let polled = this.body.as_mut().poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(code) = frame.trailers_ref().and_then(|t| t.get("grpc-status"))
                    && let Some(key) = this.key.take()
                {
                    handled(&key, code_name(code));
                }
            }
            Poll::Ready(Some(Err(_))) | Poll::Ready(None) => {
                if let Some(key) = this.key.take() {
                    handled(&key, "Unknown");
                }
            }
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_types_and_codes() {
        assert_eq!(
            split_path("/etcdserverpb.KV/Range"),
            ("etcdserverpb.KV".into(), "Range".into())
        );
        assert_eq!(split_path("/x"), ("unknown".into(), "unknown".into()));
        assert_eq!(grpc_type("etcdserverpb.Watch", "Watch"), "bidi_stream");
        assert_eq!(grpc_type("etcdserverpb.KV", "Range"), "unary");
        assert_eq!(
            code_name(&http::HeaderValue::from_static("14")),
            "Unavailable"
        );
        assert_eq!(code_name(&http::HeaderValue::from_static("99")), "Unknown");
    }
}
