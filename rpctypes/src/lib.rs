//! etcd's error codes and texts, defined once (as etcd's `api/v3rpc/rpctypes`), and mango's
//! own request metadata: the consistency level a client picks and the metadata names.
//!
//! Every server, the proxy and `mangoctl` answer and match errors through these constants, so
//! a client that matches on etcd's code or exact message keeps working whichever tier
//! answered. Without the default `tonic` feature the crate has no dependency at all: the
//! store uses the texts for its own error type.
#![forbid(unsafe_code)]

mod consistency;
mod errors;

pub use consistency::{
    AUTH_ENABLED_HEADER, CONSISTENCY_HEADER, Consistency, KEYSPACE_HEADER, LAG_ENTRIES_HEADER,
    LAG_MS_HEADER, MIN_REVISION_HEADER,
};
pub use errors::*;
