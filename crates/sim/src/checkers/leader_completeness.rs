//! Leader Completeness (Raft paper §5.4, Figure 3): if a log entry is committed in a given term,
//! that entry will be present in the logs of the leaders for all higher-numbered terms.
//!
//! Owns the record of every committed entry: its term and the term of the leader that committed
//! it ("commit term"), learned from leaders' commit indexes as they advance. A leader of term T
//! must hold every entry committed in a term below T; it is checked when first seen leading and
//! again periodically (an old leader may commit after a newer one was elected). A leader whose log
//! was compacted holds the entries up to its snapshot in that snapshot: they are checked from the
//! snapshot's own (index, term) on, and the snapshot's content is State Machine Safety's to check.

use std::collections::BTreeSet;

use raftkv_raft::{Index, NodeId, Raft, Role, Storage, Term};

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
    /// After a step: a leader's new commits are recorded, a new leader is checked. `applied_term`
    /// gives the term of an entry some node applied, for commits a leader already compacted away.
    pub fn observe<S: Storage>(
        &mut self,
        raft: &Raft<S>,
        applied_term: impl Fn(Index) -> Option<Term>,
    ) -> CheckResult {
        if raft.role() != Role::Leader {
            return Ok(());
        }
        if self.checked.insert((raft.term(), raft.id())) {
            self.check_leader(raft)?;
        }
        self.record_commits(raft, applied_term)
    }

    fn record_commits<S: Storage>(
        &mut self,
        raft: &Raft<S>,
        applied_term: impl Fn(Index) -> Option<Term>,
    ) -> CheckResult {
        let log = raft.raft_log();
        for index in self.committed.len() as Index + 1..=log.committed() {
            let term = log
                .term(index)
                .ok()
                .or_else(|| applied_term(index))
                .ok_or_else(|| {
                    Violation::new(
                        Property::LeaderCompleteness,
                        format!(
                            "leader {} cannot tell the term of its committed entry {index}",
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

    /// Checks that `raft`, a leader, holds every entry committed in an earlier term (in its log,
    /// or up to its snapshot's point).
    pub fn check_leader<S: Storage>(&self, raft: &Raft<S>) -> CheckResult {
        let log = raft.raft_log();
        // The snapshot point (first index - 1) is the first index whose term the log still knows.
        let skip = log.first_index().saturating_sub(2) as usize;
        for (position, c) in self.committed.iter().enumerate().skip(skip) {
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
