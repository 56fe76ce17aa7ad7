//! etcd's Cluster service: membership changes and the member list. Every answer carries the
//! member list after the change, and a header without a revision, as etcd's does.

use std::sync::Arc;

use mango_proto::etcdserverpb::cluster_server::Cluster;
use mango_proto::etcdserverpb::{
    MemberAddRequest, MemberAddResponse, MemberListRequest, MemberListResponse,
    MemberPromoteRequest, MemberPromoteResponse, MemberRemoveRequest, MemberRemoveResponse,
    MemberUpdateRequest, MemberUpdateResponse, ResponseHeader,
};
use tonic::Status;

use crate::auth::authorize_admin;
use crate::error::{bad_member_urls, node_status};
use crate::node::EtcdNode;

/// The Cluster service over a node.
pub struct ClusterService<N> {
    /// The node that changes and lists the membership.
    node: Arc<N>,
}

impl<N: EtcdNode> ClusterService<N> {
    /// A Cluster service over `node`.
    pub fn new(node: Arc<N>) -> Self {
        Self { node }
    }

    /// etcd's cluster header: cluster, member and term, no revision.
    fn header(&self) -> Option<ResponseHeader> {
        Some(self.node.header(0))
    }
}

/// etcd's check of peer URLs (`types.NewURLs`): at least one, each `scheme://host:port` with
/// scheme http, https, unix or unixs and no path. Returns them trimmed and sorted, as etcd
/// stores them.
pub(crate) fn parse_peer_urls(urls: Vec<String>) -> Result<Vec<String>, Status> {
    if urls.is_empty() {
        return Err(bad_member_urls());
    }
    let mut out = Vec::with_capacity(urls.len());
    for url in urls {
        let url = url.trim();
        if !is_valid_peer_url(url) {
            return Err(bad_member_urls());
        }
        out.push(url.to_string());
    }
    out.sort();
    Ok(out)
}

fn is_valid_peer_url(url: &str) -> bool {
    let Some((scheme, rest)) = url.split_once("://") else {
        return false;
    };
    if !matches!(scheme, "http" | "https" | "unix" | "unixs") {
        return false;
    }
    // Userinfo, if any, is not part of the host.
    let host_port = rest.rsplit_once('@').map_or(rest, |(_, h)| h);
    // No path, query or fragment.
    if host_port.contains(['/', '?', '#']) {
        return false;
    }
    // Go's net.SplitHostPort: `host:port`, or `[v6]:port`; an unbracketed host has no colon.
    if let Some(after_bracket) = host_port.strip_prefix('[') {
        let Some((_, after)) = after_bracket.split_once(']') else {
            return false;
        };
        return after
            .strip_prefix(':')
            .is_some_and(|port| !port.contains(':'));
    }
    match host_port.split_once(':') {
        Some((host, port)) => !host.contains(['[', ']']) && !port.contains([':', '[', ']']),
        None => false,
    }
}

#[tonic::async_trait]
impl<N: EtcdNode> Cluster for ClusterService<N> {
    async fn member_add(
        &self,
        request: tonic::Request<MemberAddRequest>,
    ) -> Result<tonic::Response<MemberAddResponse>, Status> {
        let caller = authorize_admin(&*self.node, &request).await?;
        let req = request.into_inner();
        let urls = parse_peer_urls(req.peer_ur_ls)?;
        let member = self
            .node
            .member_add(urls, req.is_learner, &caller)
            .await
            .map_err(node_status)?;
        Ok(tonic::Response::new(MemberAddResponse {
            header: self.header(),
            member: Some(member),
            members: self.node.members(),
        }))
    }

    async fn member_remove(
        &self,
        request: tonic::Request<MemberRemoveRequest>,
    ) -> Result<tonic::Response<MemberRemoveResponse>, Status> {
        let caller = authorize_admin(&*self.node, &request).await?;
        let req = request.into_inner();
        self.node
            .member_remove(req.id, &caller)
            .await
            .map_err(node_status)?;
        Ok(tonic::Response::new(MemberRemoveResponse {
            header: self.header(),
            members: self.node.members(),
        }))
    }

    /// Unlike etcd, the new URLs are checked as for MemberAdd: a member whose peer URLs do not
    /// parse could never be reached again.
    async fn member_update(
        &self,
        request: tonic::Request<MemberUpdateRequest>,
    ) -> Result<tonic::Response<MemberUpdateResponse>, Status> {
        let caller = authorize_admin(&*self.node, &request).await?;
        let req = request.into_inner();
        let urls = parse_peer_urls(req.peer_ur_ls)?;
        self.node
            .member_update(req.id, urls, &caller)
            .await
            .map_err(node_status)?;
        Ok(tonic::Response::new(MemberUpdateResponse {
            header: self.header(),
            members: self.node.members(),
        }))
    }

    /// A linearizable list (etcd 3.5's option) first waits for a ReadIndex round, so it shows
    /// every membership change committed before the call.
    async fn member_list(
        &self,
        request: tonic::Request<MemberListRequest>,
    ) -> Result<tonic::Response<MemberListResponse>, Status> {
        if request.into_inner().linearizable {
            self.node.linearizable_view().await.map_err(node_status)?;
        }
        let members = self.node.members();
        if members.is_empty() {
            // A member that joined an existing cluster learns the members with its first
            // snapshot; until then it must not claim the cluster has none. Unavailable makes
            // etcd's clients ask another endpoint.
            return Err(mango_rpctypes::NOT_STARTED.status());
        }
        Ok(tonic::Response::new(MemberListResponse {
            header: self.header(),
            members,
        }))
    }

    async fn member_promote(
        &self,
        request: tonic::Request<MemberPromoteRequest>,
    ) -> Result<tonic::Response<MemberPromoteResponse>, Status> {
        let caller = authorize_admin(&*self.node, &request).await?;
        let req = request.into_inner();
        self.node
            .member_promote(req.id, &caller)
            .await
            .map_err(node_status)?;
        Ok(tonic::Response::new(MemberPromoteResponse {
            header: self.header(),
            members: self.node.members(),
        }))
    }
}

#[cfg(test)]
mod tests {
    use tonic::Code;

    use super::*;

    #[test]
    fn peer_urls_are_checked_as_etcd_does() {
        for good in [
            "http://127.0.0.1:2380",
            "https://node-1.example:2380",
            "http://[::1]:2380",
            "unix://localhost:1",
            "http://user@host:1",
            "http://host:",
        ] {
            assert!(is_valid_peer_url(good), "{good}");
        }
        for bad in [
            "",
            "127.0.0.1:2380",
            "ftp://host:1",
            "http://host",
            "http://host:1/",
            "http://host:1/path",
            "http://host:1?x",
            "http://::1:2380",
            "http://[::1]",
            "http://[::1:2380",
        ] {
            assert!(!is_valid_peer_url(bad), "{bad}");
        }
    }

    #[test]
    fn peer_urls_are_trimmed_sorted_and_not_empty() {
        let urls = parse_peer_urls(vec![" http://b:2 ".into(), "http://a:1".into()]);
        assert_eq!(
            urls.expect("valid"),
            vec!["http://a:1".to_string(), "http://b:2".to_string()]
        );
        let err = parse_peer_urls(Vec::new()).expect_err("no URL");
        assert_eq!(err.code(), Code::InvalidArgument);
        assert_eq!(err.message(), "etcdserver: given member URLs are invalid");
        assert!(parse_peer_urls(vec!["http://a:1".into(), "nope".into()]).is_err());
    }
}
