//! Node and network faults: what can go wrong, how often (the fault mix a seed draws), and the
//! fault events the simulator schedules.
//!
//! A fault is injected by the per-tick fault scheduler and, when it has an end, its recovery is
//! scheduled at once (a crash schedules its restart, a pause its resume, a slow disk its return to
//! normal, a partition its healing). New kinds of fault (snapshots, membership changes) join as
//! new `Fault` variants with their own probability in `FaultMix`.

use std::fmt;

use raftkv_raft::NodeId;

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
    /// The node's disk writes take this long to complete.
    SlowDisk(NodeId, Time),
    /// The node's disk is back to its normal latency.
    FastDisk(NodeId),
    /// A partition forms.
    Partition(PartitionShape),
    /// Every partition heals.
    Heal,
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fault::Crash(n) => write!(f, "crash node {n}"),
            Fault::Restart(n) => write!(f, "restart node {n}"),
            Fault::Pause(n) => write!(f, "pause node {n}"),
            Fault::Resume(n) => write!(f, "resume node {n}"),
            Fault::SlowDisk(n, latency) => write!(f, "slow disk on node {n} ({latency})"),
            Fault::FastDisk(n) => write!(f, "disk of node {n} back to normal"),
            Fault::Partition(shape) => write!(f, "partition: {shape}"),
            Fault::Heal => write!(f, "heal all partitions"),
        }
    }
}
