//! etcd 3.4's layout.
