//! Liveness once faults stop (Raft paper §5.6, "timing and availability"): after the final quiet
//! period begins (partitions healed, crashed nodes restarted, no loss), a leader is elected and
//! every pending proposal commits and is applied everywhere within a bound of ticks.
//!
//! "Everywhere" is every member of the leader's configuration (voters and learners): nodes that
//! were removed, or never added, keep running but need not follow; they must not stop the members
//! from converging either (a removed node that missed its removal must not disrupt, thesis §4.2.3).
//!
//! Owns the definition of "converged"; the simulator checks it every tick of the quiet period and
//! reports a violation when the bound passes first.

use raftkv_raft::{Index, NodeId, Role, Term};

use super::{Property, Violation};

/// What the liveness check needs to know about one node.
#[derive(Clone, Debug)]
pub struct NodeSummary {
    /// The node.
    pub id: NodeId,
    /// Whether it is running (not crashed, not paused).
    pub live: bool,
    /// Its role.
    pub role: Role,
    /// Its term.
    pub term: Term,
    /// The leader it knows of.
    pub leader: Option<NodeId>,
    /// Its last log index.
    pub last_index: Index,
    /// Its commit index.
    pub committed: Index,
    /// The last index its state machine applied.
    pub applied: Index,
    /// The members (voters of either half, learners) of its configuration.
    pub members: Vec<NodeId>,
}

/// `Ok` when the cluster converged: one leader, of the highest term any leader has, that every
/// member of its configuration follows in its term, the leader's whole log committed and applied
/// on every member, and no client operation waiting. Otherwise, why not.
pub fn converged(nodes: &[NodeSummary], pending_ops: usize) -> Result<(), String> {
    let leader = nodes
        .iter()
        .filter(|n| n.live && n.role == Role::Leader)
        .max_by_key(|n| n.term)
        .ok_or_else(|| "no leader".to_string())?;
    for id in &leader.members {
        let Some(n) = nodes.iter().find(|n| n.id == *id) else {
            return Err(format!("member {id} does not exist"));
        };
        if !n.live {
            return Err(format!("member {} is not running", n.id));
        }
        if n.term != leader.term || n.leader != Some(leader.id) {
            return Err(format!(
                "member {} (term {}, leader {:?}) does not follow leader {} of term {}",
                n.id, n.term, n.leader, leader.id, leader.term
            ));
        }
        if n.committed < leader.last_index || n.applied < leader.last_index {
            return Err(format!(
                "member {} committed {} and applied {} of the leader's {} entries",
                n.id, n.committed, n.applied, leader.last_index
            ));
        }
    }
    if pending_ops > 0 {
        return Err(format!("{pending_ops} client operations still pending"));
    }
    Ok(())
}

/// The violation when the quiet period's bound passed before convergence.
pub fn violation(bound_ticks: u64, reason: &str, nodes: &[NodeSummary]) -> Violation {
    let states: Vec<String> = nodes
        .iter()
        .filter(|n| n.live || n.last_index > 0)
        .map(|n| {
            format!(
                "  node {}: live={} {:?} term {} leader {:?} last {} commit {} applied {} \
                 members {:?}",
                n.id,
                n.live,
                n.role,
                n.term,
                n.leader,
                n.last_index,
                n.committed,
                n.applied,
                n.members
            )
        })
        .collect();
    Violation::new(
        Property::Liveness,
        format!(
            "not converged {bound_ticks} ticks after faults stopped: {reason}\n{}",
            states.join("\n")
        ),
    )
}
