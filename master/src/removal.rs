//! A master removed from the group may never hear of it: the leader stops replicating to it
//! once the membership without it is appended, so its own log still lists it as a voter, and
//! it would campaign for ever with a rising term, telling clients that no leader is known.
//!
//! A leader that removes itself steps down knowing the new membership, in which it is no
//! voter: it does not campaign, but no leader replicates to it either, so it knows none.
//!
//! The other masters' probe replies carry their committed membership. The leader's, when it
//! is at least as new as this master's own and leaves it out, means this master was removed:
//! it stops campaigning and sends clients and executors to the leader. Added back (its own
//! membership moves past the one that removed it), it takes part again. Only the leader's
//! word counts: a follower still catching up may hold a membership from before this master
//! was added, and a master with an empty disk holds none.

use std::sync::Mutex;

use wasmgrid_proto as pb;

use crate::node::Metrics;
use crate::raft::NodeId;

#[derive(Default)]
pub struct Removal {
    state: Mutex<Option<Removed>>,
}

struct Removed {
    /// The (term, log index) of the membership that left this master out.
    membership: (u64, u64),
    /// Where clients reach the group's leader, as the last reply said.
    leader_api_addr: String,
}

/// What a probe reply says of this master's membership.
#[derive(Debug, PartialEq, Eq)]
pub enum Change {
    None,
    /// It was removed: stop campaigning.
    Removed,
    /// It is a member again: campaign as any voter.
    Restored,
}

impl Removal {
    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Removed>> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The group leader's client address when this master was removed from the group.
    pub fn leader_hint(&self) -> Option<String> {
        self.lock().as_ref().map(|r| r.leader_api_addr.clone())
    }

    /// Weighs a peer's probe reply against this master's own view `m` of the membership.
    pub fn note(&self, me: NodeId, m: &Metrics, reply: &pb::ProbeReply) -> Change {
        let ours = m.membership_config.log_id().map_or((0, 0), |l| (l.leader_id.term, l.index));
        let theirs = (reply.membership_term, reply.membership_index);
        let mut state = self.lock();
        match state.as_mut() {
            None => {
                // A master never in a group (a new one waiting to be added) holds no membership.
                let was_member = m.membership_config.log_id().is_some();
                let from_leader = !reply.name.is_empty() && reply.leader == reply.name && !reply.member_ids.is_empty();
                if was_member && from_leader && theirs >= ours && !reply.member_ids.contains(&me) {
                    let leader_api_addr = reply.leader_api_addr.clone();
                    *state = Some(Removed { membership: theirs, leader_api_addr });
                    return Change::Removed;
                }
                Change::None
            }
            Some(r) if ours > r.membership => {
                *state = None;
                Change::Restored
            }
            Some(r) => {
                if !reply.leader_api_addr.is_empty() {
                    r.leader_api_addr.clone_from(&reply.leader_api_addr);
                }
                Change::None
            }
        }
    }
}

/// This master's membership as its probe replies tell it: only once it is committed
/// (applied), since an uncommitted one may yet be undone by a new leader.
pub fn fill_reply(m: &Metrics, reply: &mut pb::ProbeReply) {
    let applied = m.last_applied.map_or(0, |l| l.index);
    if let Some(l) = m.membership_config.log_id().filter(|l| l.index <= applied) {
        reply.membership_term = l.leader_id.term;
        reply.membership_index = l.index;
        reply.member_ids = m.membership_config.membership().nodes().map(|(id, _)| *id).collect();
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};
    use std::sync::Arc;

    use openraft::{CommittedLeaderId, LogId, Membership, RaftMetrics, StoredMembership};

    use super::*;
    use crate::raft::Member;

    /// This master's (id 1) metrics with a membership of `voters` at `(term, index)`.
    fn metrics(voters: &[NodeId], term: u64, index: u64) -> Metrics {
        let nodes: BTreeMap<NodeId, Member> = voters
            .iter()
            .map(|id| (*id, Member { name: format!("m{id}"), peer_addr: String::new(), api_addr: String::new() }))
            .collect();
        let membership = Membership::new(vec![voters.iter().copied().collect::<BTreeSet<_>>()], nodes);
        let log_id = (!voters.is_empty()).then(|| LogId::new(CommittedLeaderId::new(term, 0), index));
        let mut m = RaftMetrics::new_initial(1);
        m.membership_config = Arc::new(StoredMembership::new(log_id, membership));
        m
    }

    /// The leader's reply, its committed membership being `voters` at `(term, index)`.
    fn reply(voters: &[NodeId], term: u64, index: u64, leader: &str) -> pb::ProbeReply {
        pb::ProbeReply {
            name: "m2".into(),
            leader: "m2".into(),
            membership_term: term,
            membership_index: index,
            member_ids: voters.to_vec(),
            leader_api_addr: leader.into(),
            ..Default::default()
        }
    }

    #[test]
    fn a_newer_membership_without_this_master_removes_it_until_it_is_added_back() {
        let r = Removal::default();
        let mine = metrics(&[1, 2, 3], 1, 5);
        // Older, or listing this master, or not committed yet: nothing to learn.
        assert_eq!(r.note(1, &mine, &reply(&[2, 3], 1, 4, "a")), Change::None);
        assert_eq!(r.note(1, &mine, &reply(&[1, 2, 3, 4], 2, 9, "a")), Change::None);
        assert_eq!(r.note(1, &mine, &reply(&[], 0, 0, "")), Change::None);
        assert_eq!(r.leader_hint(), None);

        assert_eq!(r.note(1, &mine, &reply(&[2, 3], 2, 9, "leader:1")), Change::Removed);
        assert_eq!(r.leader_hint().as_deref(), Some("leader:1"));
        assert_eq!(r.note(1, &mine, &reply(&[2, 3], 3, 11, "leader:2")), Change::None);
        assert_eq!(r.leader_hint().as_deref(), Some("leader:2"), "the hint follows the leader");
        // Its own log reaching the removing entry changes nothing; one past it is a re-add.
        assert_eq!(r.note(1, &metrics(&[2, 3], 2, 9), &reply(&[2, 3], 2, 9, "")), Change::None);
        assert_eq!(r.note(1, &metrics(&[1, 2, 3], 3, 14), &reply(&[1, 2, 3], 3, 14, "")), Change::Restored);
        assert_eq!(r.leader_hint(), None);
    }

    #[test]
    fn only_the_leaders_committed_membership_counts() {
        let r = Removal::default();
        let mine = metrics(&[1, 2, 3], 0, 0);
        // A master with an empty disk (say, being replaced) holds no membership at all.
        let empty = pb::ProbeReply { name: "m3".into(), ..Default::default() };
        assert_eq!(r.note(1, &mine, &empty), Change::None);
        let empty_leader = pb::ProbeReply { name: "m2".into(), leader: "m2".into(), ..Default::default() };
        assert_eq!(r.note(1, &mine, &empty_leader), Change::None);
        // A follower's view may predate this master's membership.
        let follower = pb::ProbeReply { name: "m3".into(), ..reply(&[2, 3], 1, 9, "a") };
        assert_eq!(r.note(1, &mine, &follower), Change::None);
        assert_eq!(r.leader_hint(), None);
    }

    #[test]
    fn a_master_that_is_not_a_member_yet_is_never_removed() {
        // A new master waiting to be added knows no membership; the group's leaves it out.
        let r = Removal::default();
        assert_eq!(r.note(1, &metrics(&[], 0, 0), &reply(&[2, 3], 1, 9, "a")), Change::None);
    }

    #[test]
    fn a_leader_that_removed_itself_learns_it_from_the_same_membership() {
        // It appended the membership without itself, so its own is as new as the group's.
        let r = Removal::default();
        assert_eq!(r.note(1, &metrics(&[2, 3], 2, 9), &reply(&[2, 3], 2, 9, "leader:2")), Change::Removed);
        assert_eq!(r.leader_hint().as_deref(), Some("leader:2"));
    }
}
