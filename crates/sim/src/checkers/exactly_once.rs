//! Exactly-once writes: a client's write takes effect at most once, however many copies of it
//! commit (a client retries with the same session and sequence number after an unknown outcome,
//! and the store must answer the retries from its session table without applying them again).
//!
//! Every value a client writes is unique (client and sequence number), so the check is that no
//! value is ever written twice: each entry's first application reports the value it wrote, if
//! its store's revision went up and the key's last change is that revision. The same check fails
//! when the store refuses a live client's write for a session reason (a session that should
//! exist, a sequence number that should be fresh): the simulator reports those answers here too.
//!
//! Owns the set of values written so far, with the index that wrote each.

use std::collections::BTreeMap;

use raftkv_raft::Index;

use super::{CheckResult, Property, Violation};
use crate::kv::{Key, Value};

/// The values written so far.
#[derive(Debug, Default)]
pub struct ExactlyOnce {
    written: BTreeMap<Value, (Key, Index)>,
}

impl ExactlyOnce {
    /// Nothing written yet.
    pub fn new() -> Self {
        ExactlyOnce::default()
    }

    /// The entry at `index`, first applied, wrote `value` into `key`.
    pub fn on_write(&mut self, key: Key, value: Value, index: Index) -> CheckResult {
        match self.written.insert(value, (key, index)) {
            Some((first_key, first)) => Err(Violation::new(
                Property::ExactlyOnce,
                format!(
                    "value {value:x} was written into k{key} at index {index}, after it was \
                     written into k{first_key} at index {first}: a write took effect twice"
                ),
            )),
            None => Ok(()),
        }
    }

    /// Number of distinct writes seen.
    pub fn writes(&self) -> usize {
        self.written.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_value_written_twice_is_caught() {
        let mut once = ExactlyOnce::new();
        assert!(once.on_write(1, 10, 3).is_ok());
        assert!(once.on_write(1, 11, 4).is_ok());
        let violation = once.on_write(1, 10, 9).unwrap_err();
        assert_eq!(violation.property, Property::ExactlyOnce);
    }
}
