//! Log Matching (Raft paper §5.3, Figure 3): if two logs contain an entry with the same index and
//! term, the logs are identical in all entries up through that index.
//!
//! Checked over every log the cluster holds: each live node's whole log (durable part and
//! in-memory tail) and each node's disk. Logs may start after a snapshot, so the check is over
//! what each log still holds: every log records, for each entry, the entry itself and the term of
//! the entry just before it (for its first entry, the term of the snapshot it follows). Two logs
//! holding the same (index, term) must hold the same entry there *and* the same term just before
//! it; by induction down to where either log starts, their common part up to that index is then
//! identical, which is Log Matching restricted to what is held.

use std::collections::BTreeMap;

use raftkv_raft::{Entry, Index, NodeId, Term};

use super::{CheckResult, Property, Violation};

/// One log to compare, and whose it is.
#[derive(Clone, Copy, Debug)]
pub struct NamedLog<'a> {
    /// The node holding it.
    pub node: NodeId,
    /// "log" for a live node's whole log, "disk" for its durable entries.
    pub kind: &'static str,
    /// Term of the entry just before `entries` (the snapshot's term; 0 before index 1).
    pub prev_term: Term,
    /// Contiguous entries.
    pub entries: &'a [Entry],
}

/// What the first log holding an (index, term) said about it.
struct Seen<'a> {
    entry: &'a Entry,
    prev_term: Term,
    position: usize,
}

/// Checks Log Matching over `logs`.
pub fn check(logs: &[NamedLog<'_>]) -> CheckResult {
    let mut seen: BTreeMap<(Index, Term), Seen<'_>> = BTreeMap::new();
    for (position, log) in logs.iter().enumerate() {
        let mut prev_term = log.prev_term;
        for entry in log.entries {
            let first = seen.entry((entry.index, entry.term)).or_insert(Seen {
                entry,
                prev_term,
                position,
            });
            if first.entry != entry || first.prev_term != prev_term {
                return Err(mismatch(
                    &logs[first.position],
                    log,
                    entry.index,
                    entry.term,
                ));
            }
            prev_term = entry.term;
        }
    }
    Ok(())
}

fn mismatch(a: &NamedLog<'_>, b: &NamedLog<'_>, index: Index, term: Term) -> Violation {
    Violation::new(
        Property::LogMatching,
        format!(
            "node {} {} and node {} {} both hold (index {index}, term {term}) but differ at or \
             before it: terms {} vs {}",
            a.node,
            a.kind,
            b.node,
            b.kind,
            terms(a, index),
            terms(b, index),
        ),
    )
}

/// The terms of a log up to `index` (the last few), for a violation report.
fn terms(log: &NamedLog<'_>, index: Index) -> String {
    let held: Vec<&Entry> = log
        .entries
        .iter()
        .take_while(|e| e.index <= index)
        .collect();
    let start = held.len().saturating_sub(12);
    let terms: Vec<String> = held[start..]
        .iter()
        .map(|e| format!("{}:{}", e.index, e.term))
        .collect();
    let first = log.entries.first().map_or(0, |e| e.index);
    format!(
        "[{}] (log from index {first}, after term {})",
        terms.join(" "),
        log.prev_term
    )
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;

    fn log(first: Index, terms: &[Term], tag: &'static str) -> Vec<Entry> {
        terms
            .iter()
            .enumerate()
            .map(|(i, &t)| Entry::new(first + i as u64, t, Bytes::from(tag)))
            .collect()
    }

    fn named(node: NodeId, prev_term: Term, entries: &[Entry]) -> NamedLog<'_> {
        NamedLog {
            node,
            kind: "log",
            prev_term,
            entries,
        }
    }

    #[test]
    fn matching_prefixes_pass_and_divergent_ones_fail() {
        let a = log(1, &[1, 1, 2], "x");
        let b = log(1, &[1, 1, 2, 3], "x");
        assert!(check(&[named(1, 0, &a), named(2, 0, &b)]).is_ok());
        let mut c = log(1, &[1, 1, 2], "x");
        c[0].data = Bytes::from("y");
        let err = check(&[named(1, 0, &a), named(3, 0, &c)]).unwrap_err();
        assert_eq!(err.property, Property::LogMatching);
    }

    #[test]
    fn compacted_logs_are_compared_over_what_they_hold() {
        let a = log(1, &[1, 1, 2, 2, 3], "x");
        // Compacted up to index 3 (term 2): holds 4 and 5.
        let b = log(4, &[2, 3], "x");
        assert!(check(&[named(1, 0, &a), named(2, 2, &b)]).is_ok());
        // Same (5, 3) but a different term just before it: the prefixes differ.
        let c = log(4, &[1, 3], "x");
        assert!(check(&[named(1, 0, &a), named(3, 2, &c)]).is_err());
        // The snapshot's term disagrees with the other log's entry before the first held one.
        let d = log(4, &[2, 3], "x");
        assert!(check(&[named(1, 0, &a), named(4, 1, &d)]).is_err());
    }
}
