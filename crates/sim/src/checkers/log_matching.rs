//! Log Matching (Raft paper §5.3, Figure 3): if two logs contain an entry with the same index and
//! term, the logs are identical in all entries up through that index.
//!
//! Checked over every log the cluster holds: each live node's whole log (durable part and
//! in-memory tail) and each node's disk. Each log gets a rolling hash of its prefixes; all logs
//! holding an entry with a given (index, term) must have the same prefix hash there. Logs start at
//! index 1 (no snapshots yet; with snapshots the hash would start at the snapshot point).

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
    /// Entries from index 1, contiguous.
    pub entries: &'a [Entry],
}

/// FNV-1a over the entry's index, term and payload, chained onto the prefix's hash.
fn chain(prefix: u64, entry: &Entry) -> u64 {
    let mut hash = prefix ^ 0xCBF2_9CE4_8422_2325;
    let bytes = entry
        .index
        .to_le_bytes()
        .into_iter()
        .chain(entry.term.to_le_bytes())
        .chain(entry.data.iter().copied());
    for byte in bytes {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01B3);
    }
    hash
}

/// Checks Log Matching over `logs`.
pub fn check(logs: &[NamedLog<'_>]) -> CheckResult {
    // (index, term) -> (prefix hash, position in `logs` of the first log holding it)
    let mut seen: BTreeMap<(Index, Term), (u64, usize)> = BTreeMap::new();
    for (position, log) in logs.iter().enumerate() {
        let mut hash = 0;
        for entry in log.entries {
            hash = chain(hash, entry);
            let (first_hash, first) = *seen
                .entry((entry.index, entry.term))
                .or_insert((hash, position));
            if first_hash != hash {
                return Err(mismatch(&logs[first], log, entry.index, entry.term));
            }
        }
    }
    Ok(())
}

fn mismatch(a: &NamedLog<'_>, b: &NamedLog<'_>, index: Index, term: Term) -> Violation {
    let differ = a
        .entries
        .iter()
        .zip(b.entries)
        .find(|(x, y)| x != y)
        .map_or(0, |(x, _)| x.index);
    Violation::new(
        Property::LogMatching,
        format!(
            "node {} {} and node {} {} both hold (index {index}, term {term}) but differ at index \
             {differ}: terms {} vs {}",
            a.node,
            a.kind,
            b.node,
            b.kind,
            terms(a.entries, index),
            terms(b.entries, index),
        ),
    )
}

/// The terms of `entries` up to `index`, for a violation report.
fn terms(entries: &[Entry], index: Index) -> String {
    let terms: Vec<String> = entries
        .iter()
        .take_while(|e| e.index <= index)
        .map(|e| e.term.to_string())
        .collect();
    format!("[{}]", terms.join(" "))
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;

    fn log(terms: &[Term], tag: &'static str) -> Vec<Entry> {
        terms
            .iter()
            .enumerate()
            .map(|(i, &t)| Entry::new(i as u64 + 1, t, Bytes::from(tag)))
            .collect()
    }

    #[test]
    fn matching_prefixes_pass_and_divergent_ones_fail() {
        let a = log(&[1, 1, 2], "x");
        let b = log(&[1, 1, 2, 3], "x");
        let named = |node, entries| NamedLog {
            node,
            kind: "log",
            entries,
        };
        assert!(check(&[named(1, &a), named(2, &b)]).is_ok());
        let mut c = log(&[1, 1, 2], "x");
        c[0].data = Bytes::from("y");
        let err = check(&[named(1, &a), named(3, &c)]).unwrap_err();
        assert_eq!(err.property, Property::LogMatching);
    }
}
