//! Node and network faults, and the operator's actions that stress Raft like faults do
//! (membership changes, leadership transfers): what can happen, how often (the fault mix a seed
//! draws), and the fault events the simulator schedules.
//!
//! A fault is injected by the per-tick fault scheduler and, when it has an end, its recovery is
//! scheduled at once (a crash schedules its restart, a pause its resume, a slow disk its return to
//! normal, a partition its healing). A membership change or a transfer is asked of the current
//! leader and has no end; the core may refuse it (one change at a time, not while transferring).

use std::fmt;

use raftkv_raft::{MemberChange, NodeId};

use crate::network::{PartitionShape, Time};

/// How often each fault strikes, per tick of the fault period, and how long it lasts (in ticks).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct FaultMix {
    /// Probability per tick that a running node crashes.
    pub crash: f64,
    /// How long a crashed node stays down, in ticks: [min, max].
    pub downtime: (u64, u64),
    /// Probability per tick that a running node pauses (stops ticking and handling input).
    pub pause: f64,
    /// How long a pause lasts, in ticks.
    pub pause_length: (u64, u64),
    /// Probability per tick that a node's disk turns slow.
    pub slow_disk: f64,
    /// Latency of a slow disk's writes, in virtual time.
    pub slow_disk_latency: (Time, Time),
    /// How long a disk stays slow, in ticks.
    pub slow_disk_length: (u64, u64),
    /// Probability per tick that a partition forms (when none is active).
    pub partition: f64,
    /// How long a partition lasts, in ticks.
    pub partition_length: (u64, u64),
    /// Probability that a node fault or a partition targets the current leader.
    pub leader_bias: f64,
    /// Probability that a crash keeps a random prefix of each file's unsynced bytes (a torn
    /// write) instead of none of them.
    pub torn_write: f64,
    /// Probability per tick that a running node's next sync fails (WAL storage only).
    pub sync_failure: f64,
    /// Probability per tick that the leader is asked to change the membership.
    pub membership: f64,
    /// Probability that a membership change is about two nodes at once instead of one.
    pub multi_member: f64,
    /// Probability per tick that the leader is asked to hand leadership to another voter.
    pub transfer: f64,
}

impl FaultMix {
    /// No faults at all.
    pub fn none() -> Self {
        FaultMix {
            crash: 0.0,
            downtime: (1, 1),
            pause: 0.0,
            pause_length: (1, 1),
            slow_disk: 0.0,
            slow_disk_latency: (0, 0),
            slow_disk_length: (1, 1),
            partition: 0.0,
            partition_length: (1, 1),
            leader_bias: 0.0,
            torn_write: 0.0,
            sync_failure: 0.0,
            membership: 0.0,
            multi_member: 0.0,
            transfer: 0.0,
        }
    }
}

/// One fault event, as injected or recovered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    /// The node crashes: it loses everything not yet durable.
    Crash(NodeId),
    /// A crashed node restarts from its disk.
    Restart(NodeId),
    /// The node stops ticking and handling input; its state is kept.
    Pause(NodeId),
    /// A paused node resumes and handles what arrived meanwhile.
    Resume(NodeId),
    /// The node's next sync fails: its WAL stops, and so does the node.
    SyncFailure(NodeId),
    /// The node's disk writes take this long to complete.
    SlowDisk(NodeId, Time),
    /// The node's disk is back to its normal latency.
    FastDisk(NodeId),
    /// A partition forms.
    Partition(PartitionShape),
    /// Every partition heals.
    Heal,
    /// The leader is asked to change the membership.
    Membership(NodeId, Vec<MemberChange>),
    /// The leader (first) is asked to hand leadership to the voter (second).
    Transfer(NodeId, NodeId),
    /// The leader (first) is asked to add a node (second) that is not a member, as a learner
    /// (the engine promotes it once it caught up, unless the third says it is held: then only
    /// when asked, as etcd's `member add --learner`).
    Join(NodeId, NodeId, bool),
    /// The leader (first) is asked to promote a held learner (second).
    Promote(NodeId, NodeId),
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fault::Crash(n) => write!(f, "crash node {n}"),
            Fault::Restart(n) => write!(f, "restart node {n}"),
            Fault::Pause(n) => write!(f, "pause node {n}"),
            Fault::Resume(n) => write!(f, "resume node {n}"),
            Fault::SyncFailure(n) => write!(f, "the next sync of node {n} fails"),
            Fault::SlowDisk(n, latency) => write!(f, "slow disk on node {n} ({latency})"),
            Fault::FastDisk(n) => write!(f, "disk of node {n} back to normal"),
            Fault::Partition(shape) => write!(f, "partition: {shape}"),
            Fault::Heal => write!(f, "heal all partitions"),
            Fault::Membership(leader, changes) => {
                write!(f, "leader {leader} asked to change membership: {changes:?}")
            }
            Fault::Transfer(leader, target) => {
                write!(
                    f,
                    "leader {leader} asked to transfer leadership to {target}"
                )
            }
            Fault::Join(leader, node, false) => {
                write!(f, "node {node} asks leader {leader} to join")
            }
            Fault::Join(leader, node, true) => {
                write!(
                    f,
                    "node {node} asks leader {leader} to join as a held learner"
                )
            }
            Fault::Promote(leader, node) => {
                write!(f, "leader {leader} asked to promote held learner {node}")
            }
        }
    }
}
