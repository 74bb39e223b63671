//! Swarm testing (Groce et al., "Swarm Testing", ISSTA 2012): each seed draws its own cluster
//! size, Raft settings, network behaviour, fault mix (membership changes, transfers, torn writes
//! and failed syncs among them), snapshot frequency, storage (the WAL, or `MemStorage` for one
//! seed in five) and workload (read paths included), so that different seeds stress different
//! things instead of every seed spreading a thin mix of everything.
//!
//! Invariant: the configuration is a pure function of the seed and the caller's overrides, drawn
//! from its own random stream.

use std::fmt;

use crate::client::{ClientConfig, LeaseWorkload};
use crate::disk::StorageKind;
use crate::faults::FaultMix;
use crate::network::{NetworkConfig, TICK, Time};
use crate::node::EngineMutation;
use crate::rng::SimRng;

/// Raft settings a seed varies (the rest are the core's defaults).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RaftKnobs {
    /// PreVote on.
    pub pre_vote: bool,
    /// CheckQuorum on.
    pub check_quorum: bool,
    /// Most entries per AppendEntries (small values split replication into many messages).
    pub msg_entries_max: usize,
    /// Most AppendEntries in flight per follower.
    pub inflight_msgs_max: usize,
    /// Most snapshot bytes per InstallSnapshot chunk (small values send snapshots in many chunks).
    pub snapshot_chunk_bytes_max: u64,
}

impl RaftKnobs {
    /// A server removed by an entry it never received times out and campaigns with a higher term
    /// for ever; without PreVote or CheckQuorum's lease nothing stops it from deposing every leader
    /// (thesis §4.2.3), so membership changes need one of them: CheckQuorum is switched on.
    fn protect_membership_changes(&mut self, faults: &FaultMix) {
        if faults.membership > 0.0 && !self.pre_vote && !self.check_quorum {
            self.check_quorum = true;
        }
    }
}

/// Everything that defines one simulated run.
#[derive(Clone, Debug, PartialEq)]
pub struct SimConfig {
    /// The seed everything is drawn from.
    pub seed: u64,
    /// Cluster size at the start: 1, 3, 5 or 7 voters, ids 1..=nodes.
    pub nodes: usize,
    /// Node ids that exist, 1..=pool: the voters, then spare nodes that membership changes can
    /// add (they run from the start, members of nothing until added).
    pub pool: usize,
    /// Ticks of the fault period.
    pub fault_ticks: u64,
    /// Bound, in ticks, for the cluster to converge once faults stop.
    pub quiet_ticks: u64,
    /// Ticks between whole-cluster checks (Log Matching, Durability) during the fault period.
    pub check_every: u64,
    /// The network during the fault period.
    pub network: NetworkConfig,
    /// The node faults and partitions of the fault period.
    pub faults: FaultMix,
    /// The clients' workload.
    pub clients: ClientConfig,
    /// Raft settings.
    pub raft: RaftKnobs,
    /// Normal latency of a disk write.
    pub disk_latency: Time,
    /// Each node snapshots its state machine and compacts its log every this many applied
    /// entries (0: never).
    pub snapshot_every: u64,
    /// The nodes' stable storage.
    pub storage: StorageKind,
    /// A rule of the engine broken on purpose (never drawn; set by tests).
    pub engine_mutation: Option<EngineMutation>,
}

/// Default length of the fault period, in ticks.
pub const DEFAULT_FAULT_TICKS: u64 = 300;

impl SimConfig {
    /// The configuration of `seed`, with the cluster size and fault period length overridden
    /// when given.
    pub fn swarm(seed: u64, nodes: Option<usize>, fault_ticks: Option<u64>) -> Self {
        let mut rng = SimRng::new(seed).fork(1);
        let nodes = nodes.unwrap_or_else(|| rng.pick(&[1, 3, 3, 3, 5, 5, 7]).unwrap_or(3));
        let raft = RaftKnobs {
            pre_vote: rng.chance(0.8),
            check_quorum: rng.chance(0.8),
            msg_entries_max: rng.pick(&[1, 2, 4, 1024]).unwrap_or(1024),
            inflight_msgs_max: rng.pick(&[1, 4, 256]).unwrap_or(256),
            // Snapshots of the store are a few kilobytes: 64 and 256 bytes split them into many
            // chunks.
            snapshot_chunk_bytes_max: rng.pick(&[64, 256, 1 << 20]).unwrap_or(1 << 20),
        };
        let faults = swarm_faults(&mut rng);
        let mut raft = raft;
        raft.protect_membership_changes(&faults);
        let spares = if faults.membership > 0.0 {
            rng.range(1, 3) as usize
        } else {
            0
        };
        let mut config = SimConfig {
            seed,
            nodes,
            pool: nodes + spares,
            fault_ticks: fault_ticks.unwrap_or(DEFAULT_FAULT_TICKS),
            quiet_ticks: 300,
            check_every: 5,
            network: swarm_network(&mut rng),
            faults,
            clients: ClientConfig {
                count: rng.range(1, 4) as usize,
                op_rate: rng.pick_f64(&[0.1, 0.3, 0.6]),
                keys: rng.range(1, 3) as u32,
                get_ratio: rng.pick_f64(&[0.2, 0.5]),
                delete_ratio: 0.0,
                cas_ratio: 0.0,
                request_timeout: rng.range(15, 40) * TICK,
                give_up_after: rng.range(40, 120) * TICK,
                read_weights: rng
                    .pick(&[
                        [1, 0, 0, 0],
                        [1, 1, 1, 1],
                        [0, 1, 0, 0],
                        [0, 0, 1, 0],
                        [0, 0, 0, 1],
                        [1, 2, 2, 2],
                    ])
                    .unwrap_or([1, 0, 0, 0]),
                leases: LeaseWorkload::none(),
                sessions: true,
            },
            raft,
            disk_latency: rng.pick(&[0, 0, 1, 3]).unwrap_or(0),
            snapshot_every: rng.pick(&[0, 0, 3, 10, 40]).unwrap_or(0),
            storage: if rng.chance(0.8) {
                StorageKind::Wal {
                    segment_bytes_max: rng.pick(&[1024, 4096, 1 << 16]).unwrap_or(4096),
                    snapshots_kept: rng.range(1, 2) as usize,
                }
            } else {
                StorageKind::Mem
            },
            engine_mutation: None,
        };
        // Drawn last, so the draws above stay what they were before the workload had them.
        let clients = &mut config.clients;
        clients.delete_ratio = rng.pick_f64(&[0.0, 0.1, 0.25]);
        clients.cas_ratio = rng.pick_f64(&[0.0, 0.25, 0.5]);
        if rng.chance(0.5) {
            // TTLs of 2 to 10 election timeouts (the core's default: 10 ticks of 100 ms).
            let low = rng.range(2, 6) * 1000;
            clients.leases = LeaseWorkload {
                grant_ratio: rng.pick_f64(&[0.05, 0.15]),
                ttl_ms: (low, low + rng.range(0, 4) * 1000),
                put_ratio: rng.pick_f64(&[0.3, 0.7]),
                keep_ratio: rng.pick_f64(&[0.5, 0.8]),
                abandon_rate: rng.pick_f64(&[0.0, 0.005, 0.02]),
                kept_max: rng.range(1, 3) as usize,
            };
        }
        config
    }
}

impl SimConfig {
    /// Forces PreVote on or off (for soaks of one setting); the rest of the seed's draw stays,
    /// except that CheckQuorum is switched on where membership changes then need it.
    pub fn force_pre_vote(&mut self, pre_vote: bool) {
        self.raft.pre_vote = pre_vote;
        self.raft.protect_membership_changes(&self.faults);
    }
}

fn swarm_network(rng: &mut SimRng) -> NetworkConfig {
    let latency_max = rng.pick(&[TICK / 2, TICK, 3 * TICK]).unwrap_or(TICK);
    NetworkConfig {
        latency_min: 1,
        latency_max,
        long_delay: rng.pick_f64(&[0.0, 0.01, 0.05]),
        loss: rng.pick_f64(&[0.0, 0.0, 0.02, 0.1, 0.3]),
        duplicate: rng.pick_f64(&[0.0, 0.02, 0.1]),
        fifo: rng.chance(0.3),
    }
}

fn swarm_faults(rng: &mut SimRng) -> FaultMix {
    FaultMix {
        crash: rng.pick_f64(&[0.0, 0.005, 0.02, 0.05]),
        downtime: (5, rng.range(10, 60)),
        pause: rng.pick_f64(&[0.0, 0.005, 0.02]),
        pause_length: (5, rng.range(10, 50)),
        slow_disk: rng.pick_f64(&[0.0, 0.01, 0.05]),
        slow_disk_latency: (TICK, rng.range(2, 20) * TICK),
        slow_disk_length: (10, rng.range(20, 80)),
        partition: rng.pick_f64(&[0.0, 0.01, 0.03, 0.08]),
        partition_length: (5, rng.range(10, 80)),
        leader_bias: rng.pick_f64(&[0.0, 0.5, 0.9]),
        membership: rng.pick_f64(&[0.0, 0.0, 0.01, 0.04]),
        multi_member: rng.pick_f64(&[0.0, 0.2, 0.5]),
        transfer: rng.pick_f64(&[0.0, 0.0, 0.01, 0.04]),
        torn_write: rng.pick_f64(&[0.0, 0.5, 1.0]),
        sync_failure: rng.pick_f64(&[0.0, 0.0, 0.002, 0.01]),
    }
}

impl fmt::Display for SimConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (n, fm, r) = (&self.network, &self.faults, &self.raft);
        write!(
            f,
            "nodes={} pool={} ticks={} | raft pre_vote={} check_quorum={} msg_entries_max={} \
             inflight_max={} chunk={} | net latency={}..{} fifo={} long={} loss={} dup={} | faults \
             crash={} pause={} slow_disk={} partition={} leader_bias={} membership={} multi={} \
             transfer={} torn={} sync_failure={} | clients={} rate={} keys={} reads={:?} \
             get={} delete={} cas={} leases={:?} | disk_latency={} snapshot_every={} storage={:?}",
            self.nodes,
            self.pool,
            self.fault_ticks,
            r.pre_vote,
            r.check_quorum,
            r.msg_entries_max,
            r.inflight_msgs_max,
            r.snapshot_chunk_bytes_max,
            n.latency_min,
            n.latency_max,
            n.fifo,
            n.long_delay,
            n.loss,
            n.duplicate,
            fm.crash,
            fm.pause,
            fm.slow_disk,
            fm.partition,
            fm.leader_bias,
            fm.membership,
            fm.multi_member,
            fm.transfer,
            fm.torn_write,
            fm.sync_failure,
            self.clients.count,
            self.clients.op_rate,
            self.clients.keys,
            self.clients.read_weights,
            self.clients.get_ratio,
            self.clients.delete_ratio,
            self.clients.cas_ratio,
            self.clients.leases,
            self.disk_latency,
            self.snapshot_every,
            self.storage,
        )
    }
}
