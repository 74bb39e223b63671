//! The simulated network: per-message latency, loss, duplication and reordering, and partitions.
//!
//! Messages are not held here: the simulator's event queue holds them until their delivery time,
//! and asks the network at delivery whether the link is up then (a partition that starts while a
//! message is in flight drops it). Reordering comes from independent random latencies plus rare
//! long delays.
//!
//! Invariant: the network only draws randomness from the generator it is given, in a fixed order.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use raftkv_raft::{Message, MessageBody, NodeId};

use crate::rng::SimRng;

/// Virtual time, in units of `TICK / 10`.
pub type Time = u64;

/// Virtual time between two Raft ticks of one node.
pub const TICK: Time = 10;

/// How messages fare on the wire.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct NetworkConfig {
    /// Shortest one-way latency.
    pub latency_min: Time,
    /// Longest ordinary one-way latency.
    pub latency_max: Time,
    /// Probability that a message is delayed ten times longer (overtaken by later ones).
    pub long_delay: f64,
    /// Probability that a message is lost.
    pub loss: f64,
    /// Probability that a message is delivered twice.
    pub duplicate: f64,
    /// Each link delivers in send order (like one TCP connection); otherwise messages overtake.
    pub fifo: bool,
}

impl NetworkConfig {
    /// A reliable, prompt network: the one of the final quiet period.
    pub fn reliable() -> Self {
        NetworkConfig {
            latency_min: 1,
            latency_max: TICK / 2,
            long_delay: 0.0,
            loss: 0.0,
            duplicate: 0.0,
            fifo: false,
        }
    }
}

/// A shape of partition, named by what it cuts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PartitionShape {
    /// One node cut off from all others (both directions).
    Isolate(NodeId),
    /// The cluster split into two sides that cannot talk to each other.
    Split(Vec<NodeId>, Vec<NodeId>),
    /// Messages from the first node to the second are lost; the other direction works.
    OneWay(NodeId, NodeId),
    /// Two sides that cannot talk to each other, and a bridge node that talks to both.
    Bridge {
        /// The node that sees both sides.
        bridge: NodeId,
        /// One side.
        left: Vec<NodeId>,
        /// The other side.
        right: Vec<NodeId>,
    },
}

impl PartitionShape {
    /// The directed links this shape cuts.
    pub fn cut_links(&self, nodes: &[NodeId]) -> BTreeSet<(NodeId, NodeId)> {
        let mut cut = BTreeSet::new();
        let mut cut_between = |a: &[NodeId], b: &[NodeId]| {
            for &x in a {
                for &y in b {
                    cut.insert((x, y));
                    cut.insert((y, x));
                }
            }
        };
        match self {
            PartitionShape::Isolate(n) => {
                let others: Vec<NodeId> = nodes.iter().copied().filter(|m| m != n).collect();
                cut_between(&[*n], &others);
            }
            PartitionShape::Split(a, b) => cut_between(a, b),
            PartitionShape::Bridge { left, right, .. } => cut_between(left, right),
            PartitionShape::OneWay(from, to) => {
                cut.insert((*from, *to));
            }
        }
        cut
    }
}

impl fmt::Display for PartitionShape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PartitionShape::Isolate(n) => write!(f, "isolate {n}"),
            PartitionShape::Split(a, b) => write!(f, "split {a:?} | {b:?}"),
            PartitionShape::OneWay(a, b) => write!(f, "one-way cut {a} -> {b}"),
            PartitionShape::Bridge {
                bridge,
                left,
                right,
            } => write!(f, "bridge {bridge} between {left:?} | {right:?}"),
        }
    }
}

/// The network's state: its behaviour and the links currently cut.
#[derive(Debug)]
pub struct Network {
    /// How messages fare.
    pub config: NetworkConfig,
    /// Directed links (from, to) that drop everything.
    cut: BTreeSet<(NodeId, NodeId)>,
    /// Latest delivery time scheduled on each link (for FIFO links).
    last_delivery: BTreeMap<(NodeId, NodeId), Time>,
}

impl Network {
    /// A network with no partition.
    pub fn new(config: NetworkConfig) -> Self {
        Network {
            config,
            cut: BTreeSet::new(),
            last_delivery: BTreeMap::new(),
        }
    }

    /// Whether `from` can currently reach `to`.
    pub fn link_up(&self, from: NodeId, to: NodeId) -> bool {
        !self.cut.contains(&(from, to))
    }

    /// Adds the cuts of a partition to the current ones.
    pub fn partition(&mut self, shape: &PartitionShape, nodes: &[NodeId]) {
        self.cut.extend(shape.cut_links(nodes));
    }

    /// Heals every partition.
    pub fn heal(&mut self) {
        self.cut.clear();
    }

    /// Whether any link is cut.
    pub fn partitioned(&self) -> bool {
        !self.cut.is_empty()
    }

    /// The delivery times of the copies of a message from `from` to `to` sent at `now`: none if
    /// lost, two if duplicated.
    pub fn transmit(&mut self, from: NodeId, to: NodeId, now: Time, rng: &mut SimRng) -> Vec<Time> {
        let c = self.config;
        if rng.chance(c.loss) {
            return Vec::new();
        }
        let copies = if rng.chance(c.duplicate) { 2 } else { 1 };
        let mut times = Vec::with_capacity(copies);
        for _ in 0..copies {
            let mut latency = rng.range(c.latency_min, c.latency_max);
            if rng.chance(c.long_delay) {
                latency *= 10;
            }
            let mut at = now + latency;
            if c.fifo {
                let last = self.last_delivery.entry((from, to)).or_insert(0);
                at = at.max(*last);
                *last = at;
            }
            times.push(at);
        }
        times
    }
}

/// A compact one-line rendering of a message for the trace.
pub fn describe(m: &Message) -> String {
    let head = format!("{}->{} {} t{}", m.from, m.to, m.body.name(), m.term);
    match &m.body {
        MessageBody::RequestVote(r) => {
            format!("{head} last=({},{})", r.last_log_index, r.last_log_term)
        }
        MessageBody::RequestVoteResponse(r) => format!("{head} granted={}", r.granted),
        MessageBody::AppendEntries(a) => {
            let terms: Vec<String> = a.entries.iter().map(|e| e.term.to_string()).collect();
            format!(
                "{head} prev=({},{}) entries=[{}] commit={}",
                a.prev_log_index,
                a.prev_log_term,
                terms.join(" "),
                a.leader_commit
            )
        }
        MessageBody::AppendEntriesResponse(r) => format!("{head} {r:?}"),
        MessageBody::Heartbeat(h) => format!("{head} commit={}", h.commit),
        _ => head,
    }
}
