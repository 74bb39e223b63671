//! Leader Completeness (Raft paper §5.4, Figure 3): if a log entry is committed in a given term,
//! that entry will be present in the logs of the leaders for all higher-numbered terms.
//!
//! Owns the record of every committed entry: its term and the term of the leader that committed
//! it ("commit term"), learned from leaders' commit indexes as they advance. A leader of term T
//! must hold every entry committed in a term below T; it is checked when first seen leading and
//! again periodically (an old leader may commit after a newer one was elected).

use std::collections::BTreeSet;

use raftkv_raft::{Index, MemStorage, NodeId, Raft, Role, Term};

use super::{CheckResult, Property, Violation};

/// One committed entry.
#[derive(Clone, Copy, Debug)]
struct Committed {
    /// The entry's term.
    term: Term,
    /// The term of the leader that committed it.
    commit_term: Term,
}

/// Committed entries and the leaders already checked against them.
#[derive(Debug, Default)]
pub struct LeaderCompleteness {
    /// The committed entry at index `i` is `committed[i - 1]`.
    committed: Vec<Committed>,
    /// Leaderships (term, node) already checked when first seen.
    checked: BTreeSet<(Term, NodeId)>,
}

impl LeaderCompleteness {
    /// After a step: a leader's new commits are recorded, a new leader is checked.
    pub fn observe(&mut self, raft: &Raft<MemStorage>) -> CheckResult {
        if raft.role() != Role::Leader {
            return Ok(());
        }
        if self.checked.insert((raft.term(), raft.id())) {
            self.check_leader(raft)?;
        }
        self.record_commits(raft)
    }

    fn record_commits(&mut self, raft: &Raft<MemStorage>) -> CheckResult {
        let log = raft.raft_log();
        for index in self.committed.len() as Index + 1..=log.committed() {
            let term = log.term(index).map_err(|e| {
                Violation::new(
                    Property::LeaderCompleteness,
                    format!(
                        "leader {} cannot read its committed entry {index}: {e}",
                        raft.id()
                    ),
                )
            })?;
            self.committed.push(Committed {
                term,
                commit_term: raft.term(),
            });
        }
        Ok(())
    }

    /// Checks that `raft`, a leader, holds every entry committed in an earlier term.
    pub fn check_leader(&self, raft: &Raft<MemStorage>) -> CheckResult {
        let log = raft.raft_log();
        for (position, c) in self.committed.iter().enumerate() {
            let index = position as Index + 1;
            if c.commit_term >= raft.term() {
                continue;
            }
            let held = log.term(index).ok();
            if held != Some(c.term) {
                return Err(Violation::new(
                    Property::LeaderCompleteness,
                    format!(
                        "leader {} of term {} lacks entry {index} (term {}) committed in term {}; \
                         its log has {}",
                        raft.id(),
                        raft.term(),
                        c.term,
                        c.commit_term,
                        held.map_or("nothing".to_string(), |t| format!("term {t}")),
                    ),
                ));
            }
        }
        Ok(())
    }
}
