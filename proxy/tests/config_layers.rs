//! mango-proxy's configuration layers, checked on the real binary for every flag: a flag
//! wins over the environment (`ETCD_*` for etcd's flags, `MANGO_*` for mango's), which wins
//! over the `--config-file`; an unknown key in the file stops start-up, named.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use clap::CommandFactory as _;
use mango_boot::Layered as _;

#[test]
fn every_flag_layers_flag_over_environment_over_file() {
    let bin = mango_testkit::proxy_bin();
    let cmd = mango_proxy::config::Config::command();
    let n = mango_testkit::layers::check_every_flag(
        &bin,
        &cmd,
        mango_proxy::config::Config::ETCD_FLAGS,
    );
    assert!(n >= 10, "only {n} flags checked");
}

#[test]
fn an_unknown_key_in_the_file_is_refused_by_name() {
    mango_testkit::layers::check_unknown_key_refused(
        &mango_testkit::proxy_bin(),
        "listen-clinet-urls",
    );
}
