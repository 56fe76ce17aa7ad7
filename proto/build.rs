//! Compiles the .proto files under `proto/` with tonic-prost-build (messages, clients and
//! servers), with the `protoc` that `protoc-bin-vendored` ships, so nothing needs installing;
//! `PROTOC` set by the caller still wins. Never sets `PROTOC` for anyone else.

const PROTO_ROOT: &str = "proto";

const PROTOS: &[&str] = &[
    "proto/etcd/api/mvccpb/kv.proto",
    "proto/etcd/api/authpb/auth.proto",
    "proto/etcd/api/etcdserverpb/rpc.proto",
    "proto/etcd/server/etcdserver/api/v3lock/v3lockpb/v3lock.proto",
    "proto/etcd/server/etcdserver/api/v3election/v3electionpb/v3election.proto",
    "proto/mango/mango.proto",
    "proto/mango/logstream.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed={PROTO_ROOT}");
    for proto in PROTOS {
        println!("cargo:rerun-if-changed={proto}");
    }
    let mut config = prost_build::Config::new();
    if std::env::var_os("PROTOC").is_none() {
        config.protoc_executable(protoc_bin_vendored::protoc_bin_path()?);
    }
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        // Entry data and snapshot chunks decode as slices of the received frame, not copies.
        .bytes(".mangologpb")
        .compile_with_config(config, PROTOS, &[PROTO_ROOT])?;
    Ok(())
}
