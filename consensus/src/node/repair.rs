//! A repair of raft-rs 0.7's message batching, applied to every message the leader sends.

use raft::eraftpb::{Message, MessageType};

/// Repairs appends that raft-rs 0.7's `batch_append` merged wrongly.
///
/// raft-rs merges new entries into an append already queued for the same follower when the
/// two are "continuous", but counts a queued append with no entries as continuous with
/// anything. After a rejection lowers a follower's next index within one pass, an empty probe
/// `(index 66)` and the resent entries `[66, ...]` become one append claiming prev index 66
/// with entry 66 first. A follower that has 66 then acknowledges 67, an entry it does not
/// hold (found by the simulator, seed 1: the leader counted it towards a quorum, and the
/// follower panicked on the next commit index). An append's entries must start right after
/// its prev index; this sets the prev index and term from the first entry, and drops the
/// append (Raft sends it again) if the leader's log no longer has that term.
pub(crate) fn repair_batched_appends<T: raft::Storage>(
    log: &raft::RaftLog<T>,
    msgs: &mut Vec<Message>,
) {
    msgs.retain_mut(|m| {
        if m.get_msg_type() != MessageType::MsgAppend {
            return true;
        }
        let Some(first) = m.entries.first().map(|e| e.index) else {
            return true;
        };
        if first == m.index + 1 {
            return true;
        }
        let prev = first.saturating_sub(1);
        if prev > log.last_index() {
            return false;
        }
        match log.term(prev) {
            Ok(term) => {
                m.index = prev;
                m.log_term = term;
                true
            }
            Err(_) => false,
        }
    });
}

#[cfg(test)]
mod tests {
    use raft::RaftLog;
    use raft::eraftpb::Entry;
    use raft::storage::MemStorage;

    use super::*;

    fn entry(index: u64, term: u64) -> Entry {
        Entry {
            index,
            term,
            ..Default::default()
        }
    }

    fn append(index: u64, log_term: u64, entries: &[(u64, u64)]) -> Message {
        let mut m = Message::default();
        m.set_msg_type(MessageType::MsgAppend);
        m.index = index;
        m.log_term = log_term;
        m.set_entries(
            entries
                .iter()
                .map(|&(i, t)| entry(i, t))
                .collect::<Vec<_>>()
                .into(),
        );
        m
    }

    fn log() -> RaftLog<MemStorage> {
        let store = MemStorage::new();
        let ents: Vec<Entry> = (1..=5)
            .map(|i| entry(i, if i < 4 { 1 } else { 2 }))
            .collect();
        store.wl().append(&ents).expect("append");
        RaftLog::new(store, slog::Logger::root(slog::Discard, slog::o!()))
    }

    #[test]
    fn a_probe_merged_with_resent_entries_gets_the_right_prev_index() {
        // The bug: an empty probe at 4 merged with the resent entries from 4.
        let mut msgs = vec![append(4, 2, &[(4, 2), (5, 2)])];
        repair_batched_appends(&log(), &mut msgs);
        assert_eq!((msgs[0].index, msgs[0].log_term), (3, 1));
        assert_eq!(msgs[0].entries.len(), 2);
        // A probe far behind merged with new entries: prev must move up to them.
        let mut msgs = vec![append(1, 1, &[(5, 2)])];
        repair_batched_appends(&log(), &mut msgs);
        assert_eq!((msgs[0].index, msgs[0].log_term), (4, 2));
    }

    #[test]
    fn well_formed_messages_are_left_alone() {
        let ok = vec![append(3, 1, &[(4, 2)]), append(5, 2, &[])];
        let mut msgs = ok.clone();
        let mut hb = Message::default();
        hb.set_msg_type(MessageType::MsgHeartbeat);
        msgs.push(hb.clone());
        repair_batched_appends(&log(), &mut msgs);
        assert_eq!(msgs[..2], ok[..]);
        assert_eq!(msgs[2], hb);
    }

    #[test]
    fn an_append_whose_prev_term_is_gone_is_dropped() {
        // Entries from 9: the log does not know the term of 8.
        let mut msgs = vec![append(5, 2, &[(9, 2)])];
        repair_batched_appends(&log(), &mut msgs);
        assert!(msgs.is_empty());
    }
}
