//! State Machine Safety (Raft paper §5.4.3, Figure 3): if a server has applied a log entry at a
//! given index to its state machine, no other server will ever apply a different log entry for the
//! same index. Also checks that each node applies in log order, one index after the other (a
//! restarted node starts again from index 1 with an empty state machine).
//!
//! Owns the first entry applied at every index, cluster-wide, and each node's last applied index.

use std::collections::BTreeMap;

use raftkv_raft::{Entry, Index, NodeId};

use super::{CheckResult, Property, Violation};

/// Applied entries, cluster-wide and per node.
#[derive(Debug, Default)]
pub struct StateMachineSafety {
    /// The entry first applied at index `i` is `applied[i - 1]`.
    applied: Vec<Entry>,
    /// Each node's last applied index since it (re)started.
    last_applied: BTreeMap<NodeId, Index>,
}

impl StateMachineSafety {
    /// `node` applied `entry`.
    pub fn on_apply(&mut self, node: NodeId, entry: &Entry) -> CheckResult {
        let last = self.last_applied.entry(node).or_insert(0);
        if entry.index != *last + 1 {
            return Err(Violation::new(
                Property::StateMachineSafety,
                format!(
                    "node {node} applied index {} right after index {}: not in log order",
                    entry.index, *last
                ),
            ));
        }
        *last = entry.index;
        match self.applied.get(entry.index as usize - 1) {
            Some(first) if first != entry => Err(Violation::new(
                Property::StateMachineSafety,
                format!(
                    "node {node} applied (index {}, term {}) where (index {}, term {}) was applied \
                     before{}",
                    entry.index,
                    entry.term,
                    first.index,
                    first.term,
                    if first.term == entry.term {
                        " with other data"
                    } else {
                        ""
                    }
                ),
            )),
            Some(_) => Ok(()),
            None => {
                self.applied.push(entry.clone());
                Ok(())
            }
        }
    }

    /// `node` restarted with an empty state machine.
    pub fn on_restart(&mut self, node: NodeId) {
        self.last_applied.insert(node, 0);
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;

    #[test]
    fn different_entries_at_one_index_are_caught() {
        let mut sms = StateMachineSafety::default();
        let e = |i, t| Entry::new(i, t, Bytes::new());
        assert!(sms.on_apply(1, &e(1, 1)).is_ok());
        assert!(sms.on_apply(2, &e(1, 1)).is_ok());
        assert!(sms.on_apply(3, &e(1, 2)).is_err());
        assert!(sms.on_apply(1, &e(3, 1)).is_err(), "skipped index 2");
    }
}
