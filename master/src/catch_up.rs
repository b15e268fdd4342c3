//! A master far behind the leader (started on an empty disk, or back after a long time away)
//! cannot win an election: the majority that holds the committed entries will not vote for
//! its shorter log. But openraft 0.9 has no pre-vote, so each campaign still raises its term,
//! and the leader steps down when its replication meets that higher term. Catching up on a
//! large state (a snapshot built, sent and installed) takes longer than an election timeout,
//! so such a master used to campaign all along and unseat every leader in turn, and never
//! catch up.
//!
//! So while a peer that is the leader answers this master's probes with a log more than
//! [`FAR_BEHIND`] entries ahead of this master's, this master does not stand for election.
//! Once it has caught up, or when no leader answers, it does again; it votes as usual all along.

use std::sync::atomic::{AtomicBool, Ordering};

use wasmgrid_proto as pb;

/// Entries behind the leader's log from which a master holds back from elections. A follower
/// keeping up is at most a few batches behind; one this far behind needs seconds to catch up.
pub const FAR_BEHIND: u64 = 1_000;

#[derive(Default)]
pub struct CatchUp {
    holding: AtomicBool,
}

impl CatchUp {
    /// Whether this master holds back from elections now.
    pub fn holding(&self) -> bool {
        self.holding.load(Ordering::Relaxed)
    }

    /// Weighs one round of probe replies against this master's own log end; returns the
    /// new verdict when it changed.
    pub fn note(&self, last_log_index: u64, replies: &[pb::ProbeReply]) -> Option<bool> {
        let leader_far_ahead = replies.iter().any(|r| {
            !r.name.is_empty() && r.leader == r.name && r.last_log_index > last_log_index.saturating_add(FAR_BEHIND)
        });
        let was = self.holding.swap(leader_far_ahead, Ordering::Relaxed);
        (was != leader_far_ahead).then_some(leader_far_ahead)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(name: &str, leader: &str, last_log_index: u64) -> pb::ProbeReply {
        pb::ProbeReply { name: name.into(), leader: leader.into(), last_log_index, ..Default::default() }
    }

    #[test]
    fn holds_back_only_while_the_leader_answers_far_ahead() {
        let c = CatchUp::default();
        // A follower a little behind, or a follower far ahead: nothing changes.
        assert_eq!(c.note(0, &[reply("m1", "m1", 900), reply("m2", "m1", 50_000)]), None);
        assert!(!c.holding());
        // The leader far ahead (an empty disk): hold back, once.
        assert_eq!(c.note(0, &[reply("m1", "m1", 50_000), reply("m2", "m1", 50_000)]), Some(true));
        assert_eq!(c.note(10, &[reply("m1", "m1", 50_000)]), None);
        assert!(c.holding());
        // Caught up (the snapshot installed): stand again.
        assert_eq!(c.note(49_990, &[reply("m1", "m1", 50_000)]), Some(false));
        // Far behind again, then the leader stops answering: stand again.
        assert_eq!(c.note(49_990, &[reply("m1", "m1", 90_000)]), Some(true));
        assert_eq!(c.note(49_990, &[reply("m2", "", 50_000)]), Some(false));
    }
}
