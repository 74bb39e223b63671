//! Replicated alarms (etcd's `NOSPACE` and `CORRUPT`): raised and cleared only by entries in the
//! log, so every member refuses the same writes from the same index on. While `NOSPACE` is
//! raised, a write that may need more space (a put, a transaction that puts, a lease grant) is
//! refused at apply time; deletes, compaction and revokes still apply, so an operator can make
//! room and then disarm it. While `CORRUPT` is raised (a member's state hash differed from the
//! others' at the same index), every key-value request is refused at apply time: no write lands
//! on a cluster whose replicas disagree until an operator has looked and disarmed it.
//!
//! Invariant: the set changes only in [`Alarms::apply`], as a function of the entries applied.

use std::collections::BTreeSet;

use raftkv_raft::NodeId;

/// etcd's `AlarmType` values.
pub const NOSPACE: i32 = 1;
/// A member whose state differs from the others' (etcd's `CORRUPT`).
pub const CORRUPT: i32 = 2;

/// One raised alarm: which member raised it, and which.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, prost::Message)]
pub struct Alarm {
    /// The member that raised it.
    #[prost(uint64, tag = "1")]
    pub member: NodeId,
    /// [`NOSPACE`] or [`CORRUPT`].
    #[prost(int32, tag = "2")]
    pub kind: i32,
}

impl Alarm {
    /// The alarm's name as etcd prints it.
    pub fn name(&self) -> &'static str {
        match self.kind {
            NOSPACE => "NOSPACE",
            CORRUPT => "CORRUPT",
            _ => "NONE",
        }
    }
}

/// An entry's change of the alarms.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct AlarmChange {
    /// Raise (`true`) or clear it.
    #[prost(bool, tag = "1")]
    pub activate: bool,
    /// The alarm.
    #[prost(message, optional, tag = "2")]
    pub alarm: Option<Alarm>,
}

/// The raised alarms.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Alarms {
    /// By member, then kind.
    raised: BTreeSet<(NodeId, i32)>,
}

impl Alarms {
    /// The alarms in `list`.
    pub fn from_list(list: impl IntoIterator<Item = Alarm>) -> Self {
        Alarms {
            raised: list.into_iter().map(|a| (a.member, a.kind)).collect(),
        }
    }

    /// Applies a change; returns whether anything changed.
    pub fn apply(&mut self, change: &AlarmChange) -> bool {
        let Some(alarm) = change.alarm else {
            return false;
        };
        let key = (alarm.member, alarm.kind);
        if change.activate {
            self.raised.insert(key)
        } else {
            self.raised.remove(&key)
        }
    }

    /// Every raised alarm, by member and kind.
    pub fn list(&self) -> Vec<Alarm> {
        self.raised
            .iter()
            .map(|&(member, kind)| Alarm { member, kind })
            .collect()
    }

    /// Whether `NOSPACE` is raised (by any member).
    pub fn no_space(&self) -> bool {
        self.raised.iter().any(|&(_, kind)| kind == NOSPACE)
    }

    /// Whether `CORRUPT` is raised (for any member).
    pub fn corrupt(&self) -> bool {
        self.raised.iter().any(|&(_, kind)| kind == CORRUPT)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alarms_are_raised_and_cleared_per_member_and_kind() {
        let mut alarms = Alarms::default();
        let raise = |member, kind| AlarmChange {
            activate: true,
            alarm: Some(Alarm { member, kind }),
        };
        assert!(alarms.apply(&raise(1, NOSPACE)));
        assert!(!alarms.apply(&raise(1, NOSPACE)));
        assert!(alarms.apply(&raise(2, CORRUPT)));
        assert!(alarms.no_space());
        let clear = AlarmChange {
            activate: false,
            ..raise(1, NOSPACE)
        };
        assert!(alarms.apply(&clear));
        assert!(!alarms.no_space());
        assert_eq!(
            alarms.list(),
            [Alarm {
                member: 2,
                kind: CORRUPT
            }]
        );
    }
}
