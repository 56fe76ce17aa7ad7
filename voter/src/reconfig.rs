//! Membership safety as etcd 3.4 (`--strict-reconfig-check`, on by default): a change that
//! would leave the cluster without a quorum of started, reachable voters is refused before
//! it is proposed, and a learner is promoted only once its log is within 10% of the
//! leader's.
//!
//! "Started" is etcd's rule: the member has published its name. "Connected" is the leader's
//! view (a member that answered within the last two election timeouts; the leader itself
//! always is). A member that is not the leader has no such view, and checks only the started
//! counts; etcd's followers use their own transport's.

use mango_api::NodeError;
use mango_consensus::node::PeerProgress;
use mango_proto::mangopb::MemberInfo;

/// etcd's `readyPercent`: a learner is ready once its log matches 90% of the leader's.
const READY_PERCENT: f64 = 0.9;

/// What the checks read.
pub struct View<'a> {
    /// The member registry.
    pub members: &'a [MemberInfo],
    /// This member's id.
    pub me: u64,
    /// The leader's progress of every other member, if this member leads.
    pub progress: Option<&'a [PeerProgress]>,
    /// The leader's own last index (its match), if this member leads.
    pub leader_last_index: u64,
}

fn started(m: &MemberInfo) -> bool {
    !m.name.is_empty()
}

impl View<'_> {
    fn voters(&self) -> impl Iterator<Item = &MemberInfo> {
        self.members.iter().filter(|m| !m.is_learner)
    }

    /// Whether `id` answered the leader lately; `None` when this member does not lead.
    fn connected(&self, id: u64) -> Option<bool> {
        let progress = self.progress?;
        Some(id == self.me || progress.iter().any(|p| p.id == id && p.recent_active))
    }

    /// etcd's `isConnectedFullySince` over the voters (true when unknown here).
    fn all_voters_connected(&self) -> bool {
        self.voters().all(|m| self.connected(m.id).unwrap_or(true))
    }

    /// etcd's `mayAddMember`.
    pub fn may_add(&self, is_learner: bool) -> Result<(), NodeError> {
        if !is_learner {
            let nmembers = self.voters().count() + 1;
            let nstarted = self.voters().filter(|m| started(m)).count();
            if !(nstarted == 1 && nmembers == 2) && nstarted < nmembers / 2 + 1 {
                return Err(NodeError::Etcd(mango_rpctypes::MEMBER_NOT_ENOUGH_STARTED));
            }
        }
        if !self.all_voters_connected() {
            return Err(NodeError::Etcd(mango_rpctypes::UNHEALTHY));
        }
        Ok(())
    }

    /// etcd's `mayRemoveMember`.
    pub fn may_remove(&self, id: u64) -> Result<(), NodeError> {
        if self.members.iter().any(|m| m.id == id && m.is_learner) {
            return Ok(());
        }
        let others: Vec<&MemberInfo> = self.voters().filter(|m| m.id != id).collect();
        let nstarted = others.iter().filter(|m| started(m)).count();
        if nstarted < others.len() / 2 + 1 {
            return Err(NodeError::Etcd(mango_rpctypes::MEMBER_NOT_ENOUGH_STARTED));
        }
        // A member that is down is safe to remove: it is not part of the active quorum.
        if id != self.me && self.connected(id) == Some(false) {
            return Ok(());
        }
        if self.progress.is_some() {
            let voters = self.voters().count();
            let active = self
                .voters()
                .filter(|m| self.connected(m.id) == Some(true))
                .count();
            if active.saturating_sub(1) < 1 + (voters.saturating_sub(1)) / 2 {
                return Err(NodeError::Etcd(mango_rpctypes::UNHEALTHY));
            }
        }
        Ok(())
    }

    /// etcd's `mayPromoteMember`: the learner's log within 10% of the leader's, and (strict)
    /// a quorum of started members after the promotion. Only the leader knows the former.
    pub fn may_promote(&self, id: u64, strict: bool) -> Result<(), NodeError> {
        let Some(progress) = self.progress else {
            return Err(NodeError::NotLeader);
        };
        if let Some(p) = progress.iter().find(|p| p.id == id) {
            #[allow(clippy::cast_precision_loss)] // indexes far below 2^52
            let behind = (p.matched as f64) < (self.leader_last_index as f64) * READY_PERCENT;
            if behind {
                return Err(NodeError::LearnerNotReady);
            }
        }
        if !strict {
            return Ok(());
        }
        let nmembers = self.voters().count() + 1;
        let nstarted = self.voters().filter(|m| started(m)).count() + 1;
        if nstarted < nmembers / 2 + 1 {
            return Err(NodeError::Etcd(mango_rpctypes::MEMBER_NOT_ENOUGH_STARTED));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(id: u64, name: &str, is_learner: bool) -> MemberInfo {
        MemberInfo {
            id,
            name: name.into(),
            is_learner,
            ..Default::default()
        }
    }

    fn progress(id: u64, matched: u64, recent_active: bool) -> PeerProgress {
        PeerProgress {
            id,
            matched,
            recent_active,
        }
    }

    fn code(r: Result<(), NodeError>) -> String {
        match r {
            Ok(()) => "ok".into(),
            Err(e) => e.to_string(),
        }
    }

    const NOT_STARTED: &str =
        "etcdserver: re-configuration failed due to not enough started members";
    const UNHEALTHY: &str = "etcdserver: unhealthy cluster";

    #[test]
    fn adding_a_voter_needs_a_quorum_of_started_and_every_voter_connected() {
        let members = [
            member(1, "a", false),
            member(2, "b", false),
            member(3, "", false),
        ];
        let all_up = [progress(2, 10, true), progress(3, 10, true)];
        let v = View {
            members: &members,
            me: 1,
            progress: Some(&all_up),
            leader_last_index: 10,
        };
        // 4 voters after the add, 2 started: below a quorum of 3.
        assert_eq!(code(v.may_add(false)), NOT_STARTED);
        // A learner does not count towards the quorum.
        assert_eq!(code(v.may_add(true)), "ok");
        let members = [
            member(1, "a", false),
            member(2, "b", false),
            member(3, "c", false),
        ];
        let one_down = [progress(2, 10, true), progress(3, 4, false)];
        let v = View {
            members: &members,
            me: 1,
            progress: Some(&one_down),
            leader_last_index: 10,
        };
        assert_eq!(code(v.may_add(false)), UNHEALTHY);
        assert_eq!(code(v.may_add(true)), UNHEALTHY);
        // A single started member may add its second.
        let members = [member(1, "a", false)];
        let v = View {
            members: &members,
            me: 1,
            progress: Some(&[]),
            leader_last_index: 10,
        };
        assert_eq!(code(v.may_add(false)), "ok");
    }

    #[test]
    fn removing_keeps_a_connected_quorum_but_a_down_member_may_go() {
        let members = [
            member(1, "a", false),
            member(2, "b", false),
            member(3, "c", false),
        ];
        let one_down = [progress(2, 10, true), progress(3, 4, false)];
        let v = View {
            members: &members,
            me: 1,
            progress: Some(&one_down),
            leader_last_index: 10,
        };
        // Removing the live follower would leave 1 of 2 active: refused.
        assert_eq!(code(v.may_remove(2)), UNHEALTHY);
        // The down member is not part of the active quorum.
        assert_eq!(code(v.may_remove(3)), "ok");
        // Learners always may go.
        let members = [member(1, "a", false), member(9, "", true)];
        let v = View {
            members: &members,
            me: 1,
            progress: Some(&[]),
            leader_last_index: 10,
        };
        assert_eq!(code(v.may_remove(9)), "ok");
        // Two of three never started: removing the started one leaves none.
        let members = [
            member(1, "a", false),
            member(2, "", false),
            member(3, "", false),
        ];
        let v = View {
            members: &members,
            me: 2,
            progress: None,
            leader_last_index: 0,
        };
        assert_eq!(code(v.may_remove(1)), NOT_STARTED);
    }

    #[test]
    fn a_learner_is_promoted_only_when_in_sync_and_only_by_the_leader() {
        let members = [
            member(1, "a", false),
            member(2, "b", false),
            member(3, "c", false),
            member(9, "l", true),
        ];
        let behind = [
            progress(2, 1000, true),
            progress(3, 1000, true),
            progress(9, 899, true),
        ];
        let v = View {
            members: &members,
            me: 1,
            progress: Some(&behind),
            leader_last_index: 1000,
        };
        assert_eq!(
            code(v.may_promote(9, true)),
            "etcdserver: can only promote a learner member which is in sync with leader"
        );
        let caught_up = [
            progress(2, 1000, true),
            progress(3, 1000, true),
            progress(9, 900, true),
        ];
        let v = View {
            progress: Some(&caught_up),
            ..v
        };
        assert_eq!(code(v.may_promote(9, true)), "ok");
        let v = View {
            progress: None,
            ..v
        };
        assert_eq!(code(v.may_promote(9, true)), "etcdserver: not leader");
    }
}
