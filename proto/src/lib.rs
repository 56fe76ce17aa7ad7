//! Wire types of mango.
//!
//! - etcd's v3 API, generated from `.proto` files written for this project with etcd's exact
//!   package, service, message and field names and numbers, so that any etcd client talks to
//!   mango unchanged: [`mvccpb`], [`authpb`], [`etcdserverpb`], [`v3lockpb`] and
//!   [`v3electionpb`]. Each service comes with a tonic client (`*_client`) and server
//!   (`*_server`) module.
//! - mango's own messages, used only between mango nodes: [`mangopb`] (Raft entries and the
//!   peer transport) and [`mangologpb`] (the committed-log stream to learners).
//!
//! This crate holds no logic; `tests/wire_compat.rs` checks the encoding byte for byte against
//! the `etcd-client` crate's own generated types.

// Generated code is not held to the workspace's clippy lints or doc requirements.
macro_rules! generated {
    ($(#[$doc:meta])* $name:ident, $package:literal) => {
        $(#[$doc])*
        #[allow(
            clippy::all,
            clippy::pedantic,
            clippy::nursery,
            missing_docs,
            rustdoc::all,
            unreachable_pub
        )]
        pub mod $name {
            tonic::include_proto!($package);
        }
    };
}

generated!(
    /// etcd's MVCC types (`mvccpb`): `KeyValue` and `Event`.
    mvccpb,
    "mvccpb"
);
generated!(
    /// etcd's auth store types (`authpb`): `User`, `Role`, `Permission`, `UserAddOptions`.
    authpb,
    "authpb"
);
generated!(
    /// etcd's v3 client API (`etcdserverpb`): services KV, Watch, Lease, Cluster, Maintenance
    /// and Auth with all their messages.
    etcdserverpb,
    "etcdserverpb"
);
generated!(
    /// etcd's lock service (`v3lockpb`).
    v3lockpb,
    "v3lockpb"
);
generated!(
    /// etcd's election service (`v3electionpb`).
    v3electionpb,
    "v3electionpb"
);
generated!(
    /// mango's own messages (`mangopb`), used only between mango nodes.
    mangopb,
    "mangopb"
);
generated!(
    /// The frames of the committed-log stream between voters and learners (`mangologpb`),
    /// carried over QUIC by `mango-logstream`.
    mangologpb,
    "mangologpb"
);
