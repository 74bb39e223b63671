//! The simulation loop: one cluster, one seed, one virtual clock, one event queue.
//!
//! Everything that happens is an event in a queue ordered by (virtual time, insertion number):
//! message deliveries, node ticks, disk-write completions, client polls and answers, fault
//! recoveries, and a per-tick control event that injects faults (membership changes and
//! leadership transfers among them), runs the whole-cluster checks and, after the fault period,
//! waits for the cluster to converge. There are no threads, no real time, no real I/O, and every
//! random draw comes from the seed, so a seed replays bit for bit.
//!
//! The cluster is a pool of node ids: the first `nodes` are the initial voters, the rest spares
//! that membership changes may add. Every node of the pool runs from the start; a node outside
//! the configuration (never added, or removed) keeps running and must not disrupt. A crash is a
//! power loss of the node's disk (drawn: unsynced bytes dropped or torn, zero-filled or not,
//! unsynced names kept or not); a node whose write or sync failed stops and loses power the same
//! way; both restart later from what their disk kept, and recovery is checked.
//!
//! Every node runs the real store (`raftkv_kv::KvStore`). The first application of each entry
//! anywhere is where its effects are checked: the value it wrote (exactly-once), the lease it
//! granted or revoked (lease safety), and the keys a revoke deleted (system deletes in the
//! history). Keep-alives go straight to the current leader's store.
//!
//! Invariants: events at equal times run in insertion order; only `BTreeMap`s, `BTreeSet`s and
//! `Vec`s are iterated; every node input is followed by the step checks (Election Safety, Leader
//! Completeness) and every state machine change by the State Machine Safety check.

use std::collections::{BTreeMap, BTreeSet};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::rc::Rc;

use raftkv_raft::{ConfState, Config, MemberChange, Message, NodeId, Raft, ReadMode, Role, Term};
use raftkv_wal::{Crash, Tear};

use crate::checkers::exactly_once::ExactlyOnce;
use crate::checkers::lease_safety::{LeaseSafety, Proposal};
use crate::checkers::linearizability::{self, Report};
use crate::checkers::liveness::{self, NodeSummary};
use crate::checkers::{NamedLog, Property, SafetyCheckers, StateMachineEvent, Violation};
use crate::client::{Client, ClientAction, ReadPath};
use crate::faults::Fault;
use crate::history::History;
use crate::kv::{Op, OpResult, ms};
use crate::network::{Network, NetworkConfig, TICK, Time, describe};
use crate::node::{HeldLog, KeepAliveOutcome, NodeOutput, NodeSettings, Reply, SimNode};
use crate::rng::SimRng;
use crate::swarm::SimConfig;
use crate::trace::Trace;
use raftkv_replica::Own;

mod draw;

/// A hook that adjusts each node's Raft `Config` (e.g. to set a mutation).
pub type ConfigHook = Rc<dyn Fn(&mut Config)>;
/// A hook that adjusts the configuration a seed drew (e.g. to favour some faults).
pub type SimConfigHook = Rc<dyn Fn(&mut SimConfig)>;

/// How to run one seed.
#[derive(Clone, Default)]
pub struct SimOptions {
    /// The seed.
    pub seed: u64,
    /// Cluster size instead of the swarm's choice.
    pub nodes: Option<usize>,
    /// Ticks of the fault period instead of the default.
    pub steps: Option<u64>,
    /// Keep the whole trace, not only its end.
    pub full_trace: bool,
    /// Adjusts every node's Raft configuration.
    pub configure: Option<ConfigHook>,
    /// Adjusts the drawn simulation configuration.
    pub adjust: Option<SimConfigHook>,
}

/// Counters of a run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Events handled.
    pub events: u64,
    /// Messages delivered to a node.
    pub delivered: u64,
    /// Messages lost on send or dropped by a partition.
    pub dropped: u64,
    /// Node crashes.
    pub crashes: u64,
    /// Partitions formed.
    pub partitions: u64,
    /// Distinct (term, leader) pairs seen.
    pub leaderships: u64,
    /// Operations answered.
    pub ops_ok: u64,
    /// Operations given up on.
    pub ops_abandoned: u64,
    /// Ticks from the end of the fault period until the cluster converged.
    pub converge_ticks: u64,
    /// Restarts of crashed or stopped nodes (each one a recovery of its storage).
    pub restarts: u64,
    /// Nodes stopped by a failed write or sync.
    pub sync_failures: u64,
    /// Restarts after a crash that kept no unsynced byte, where recovery had to give back
    /// exactly what was synced.
    pub exact_recoveries: u64,
    /// Recoveries that cut a torn record off a log's end.
    pub torn_tails: u64,
    /// Reads answered outside the log (ReadIndex, lease, follower).
    pub reads_ok: u64,
    /// Snapshots taken (logs compacted).
    pub snapshots: u64,
    /// Snapshots restored into a state machine (a leader's, or the node's own on restart).
    pub installs: u64,
    /// Membership changes a leader accepted.
    pub membership_changes: u64,
    /// Leadership transfers a leader accepted.
    pub transfers: u64,
    /// Leases granted.
    pub leases: u64,
    /// Leases revoked on expiry.
    pub leases_revoked: u64,
    /// Keep-alives the leader acknowledged.
    pub keep_alives: u64,
    /// Retried writes whose copy committed again and was answered from the session table.
    pub session_retries: u64,
    /// Joins a leader accepted (a learner added with its addresses).
    pub joins: u64,
    /// Learners the engine proposed to promote once caught up.
    pub promotions: u64,
    /// Joins that held their learner (proposed holds).
    pub held_joins: u64,
    /// Held learners promoted when asked.
    pub explicit_promotions: u64,
    /// Addresses the engine published for its node.
    pub publishes: u64,
    /// History compactions the engine proposed.
    pub history_compactions: u64,
}

impl Stats {
    /// Adds `other`'s counters to these (for totals over many seeds).
    pub fn add(&mut self, other: &Stats) {
        self.events += other.events;
        self.delivered += other.delivered;
        self.dropped += other.dropped;
        self.crashes += other.crashes;
        self.partitions += other.partitions;
        self.leaderships += other.leaderships;
        self.ops_ok += other.ops_ok;
        self.ops_abandoned += other.ops_abandoned;
        self.converge_ticks += other.converge_ticks;
        self.sync_failures += other.sync_failures;
        self.restarts += other.restarts;
        self.exact_recoveries += other.exact_recoveries;
        self.torn_tails += other.torn_tails;
        self.reads_ok += other.reads_ok;
        self.snapshots += other.snapshots;
        self.installs += other.installs;
        self.membership_changes += other.membership_changes;
        self.transfers += other.transfers;
        self.leases += other.leases;
        self.leases_revoked += other.leases_revoked;
        self.keep_alives += other.keep_alives;
        self.session_retries += other.session_retries;
        self.joins += other.joins;
        self.promotions += other.promotions;
        self.held_joins += other.held_joins;
        self.explicit_promotions += other.explicit_promotions;
        self.publishes += other.publishes;
        self.history_compactions += other.history_compactions;
    }
}

/// The result of one run.
pub struct RunReport {
    /// The configuration the seed drew.
    pub config: SimConfig,
    /// The first property broken, if any.
    pub violation: Option<Violation>,
    /// The trace (its end, or all of it in full mode) and its hash.
    pub trace: Trace,
    /// Counters.
    pub stats: Stats,
    /// The linearizability checker's report, when the run got that far.
    pub linearizability: Option<Report>,
    /// The clients' history.
    pub history: History,
}

/// Runs one seed.
pub fn run(options: &SimOptions) -> RunReport {
    let mut config = SimConfig::swarm(options.seed, options.nodes, options.steps);
    if let Some(adjust) = &options.adjust {
        adjust(&mut config);
    }
    let mut sim = Simulation::new(config, options);
    let violation = sim.run().err();
    RunReport {
        config: sim.config,
        violation,
        trace: sim.trace,
        stats: sim.stats,
        linearizability: sim.linearizability,
        history: sim.history,
    }
}

/// Something scheduled to happen.
#[derive(Debug)]
enum Event {
    /// A message reaches its receiver (if the link is up then).
    Deliver(Message),
    /// A node's clock ticks.
    Tick(NodeId),
    /// A node's pending disk writes may have completed (ignored after a crash of that incarnation).
    Disk(NodeId, u64),
    /// A client polls.
    Client(usize),
    /// An answer reaches a client.
    Reply(usize, Reply),
    /// A scheduled fault recovery.
    Fault(Fault),
    /// Once per tick: faults, checks, phases.
    Control,
}

/// Where the run is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Faults strike.
    Faulty,
    /// No more faults; the cluster must converge by `deadline`.
    Quiet {
        /// When it started.
        since: Time,
        /// The liveness bound.
        deadline: Time,
    },
    /// Converged and checked.
    Done,
}

struct Simulation {
    config: SimConfig,
    now: Time,
    rng: SimRng,
    /// Pending events by (time, insertion number).
    queue: BTreeMap<(Time, u64), Event>,
    next_seq: u64,
    nodes: Vec<SimNode>,
    /// Per node: the time of the disk event already scheduled.
    disk_event_at: Vec<Option<Time>>,
    /// Per node: the (role, term) last traced.
    last_role: Vec<(Role, Term)>,
    clients: Vec<Client>,
    network: Network,
    history: History,
    checkers: SafetyCheckers,
    trace: Trace,
    stats: Stats,
    phase: Phase,
    linearizability: Option<Report>,
    /// Set when a node could not be built (invalid configuration from a hook).
    setup_error: Option<Violation>,
    /// Nodes that ever were members: the ones faults and partitions pick from.
    involved: BTreeSet<NodeId>,
    /// Learners added held: until a change names them, the engine must not promote them.
    held: BTreeSet<NodeId>,
    /// When the latest partition forms (one forms at a time).
    partition_at: Option<Time>,
    /// Lease safety and expiry.
    leases: LeaseSafety,
    /// Exactly-once writes.
    exactly_once: ExactlyOnce,
    /// Per node: when it last became leader.
    leader_since: Vec<Time>,
}

/// The position of node `id` in the node list.
fn index_of(id: NodeId) -> usize {
    id as usize - 1
}

/// Most voters a membership change may lead to.
const VOTERS_MAX: usize = 7;

impl Simulation {
    fn new(config: SimConfig, options: &SimOptions) -> Self {
        let rng = SimRng::new(options.seed).fork(2);
        let voters: Vec<NodeId> = (1..=config.nodes as NodeId).collect();
        let pool = config.pool.max(config.nodes);
        let settings = NodeSettings {
            disk_latency: config.disk_latency,
            snapshot_every: config.snapshot_every,
            storage: config.storage,
            engine_mutation: config.engine_mutation,
        };
        let mut nodes = Vec::new();
        let mut setup_error = None;
        for id in 1..=pool as NodeId {
            // A spare knows no configuration: it learns one from the log or a snapshot once added.
            let bootstrap = if voters.contains(&id) {
                voters.clone()
            } else {
                Vec::new()
            };
            let mut raft = Config::new(id, bootstrap);
            raft.seed = options.seed;
            raft.pre_vote = config.raft.pre_vote;
            raft.check_quorum = config.raft.check_quorum;
            raft.msg_entries_max = config.raft.msg_entries_max;
            raft.inflight_msgs_max = config.raft.inflight_msgs_max;
            raft.snapshot_chunk_bytes_max = config.raft.snapshot_chunk_bytes_max;
            if let Some(hook) = &options.configure {
                hook(&mut raft);
            }
            match SimNode::new(raft, settings) {
                Ok(node) => nodes.push(node),
                Err(e) => setup_error = Some(Violation::new(Property::CorePanic, e.to_string())),
            }
        }
        let clients = (1..=config.clients.count as u32)
            .map(|c| Client::new(c, pool, 1 + (c as NodeId - 1) % config.nodes as NodeId))
            .collect();
        Simulation {
            now: 0,
            rng,
            queue: BTreeMap::new(),
            next_seq: 0,
            disk_event_at: vec![None; nodes.len()],
            last_role: vec![(Role::Follower, 0); nodes.len()],
            nodes,
            clients,
            network: Network::new(config.network),
            history: History::new(),
            checkers: SafetyCheckers::new(
                ConfState::from_voters(voters.iter().copied()),
                raftkv_replica::State::new(raftkv_replica::state::limits()).digest(),
            ),
            trace: Trace::new(options.full_trace),
            stats: Stats::default(),
            phase: Phase::Faulty,
            linearizability: None,
            setup_error,
            involved: voters.into_iter().collect(),
            held: BTreeSet::new(),
            partition_at: None,
            leases: LeaseSafety::new(),
            exactly_once: ExactlyOnce::new(),
            leader_since: vec![0; pool],
            config,
        }
    }

    fn schedule(&mut self, at: Time, event: Event) {
        self.queue.insert((at, self.next_seq), event);
        self.next_seq += 1;
    }

    fn log(&mut self, text: String) {
        let line = format!("{:>5}.{} {text}", self.now / TICK, self.now % TICK);
        self.trace.record(line);
    }

    fn run(&mut self) -> Result<(), Violation> {
        if let Some(error) = self.setup_error.take() {
            return Err(error);
        }
        self.log(format!("seed {} config {}", self.config.seed, self.config));
        for id in 1..=self.nodes.len() as NodeId {
            let offset = self.rng.range(0, TICK - 1);
            self.schedule(offset, Event::Tick(id));
        }
        for c in 0..self.clients.len() {
            let offset = self.rng.range(0, TICK - 1);
            self.schedule(TICK + offset, Event::Client(c));
        }
        self.schedule(0, Event::Control);
        while let Some(((time, _), event)) = self.queue.pop_first() {
            self.now = time;
            self.stats.events += 1;
            self.handle(event)?;
            if self.phase == Phase::Done {
                break;
            }
        }
        Ok(())
    }

    fn handle(&mut self, event: Event) -> Result<(), Violation> {
        match event {
            Event::Deliver(message) => self.deliver(message),
            Event::Tick(id) => {
                self.schedule(self.now + TICK, Event::Tick(id));
                self.on_node(id, |node, now, out| node.tick(now, out))
            }
            Event::Disk(id, incarnation) => {
                let index = id as usize - 1;
                if self.disk_event_at[index] == Some(self.now) {
                    self.disk_event_at[index] = None;
                }
                if self.nodes[index].incarnation != incarnation {
                    return Ok(());
                }
                self.on_node(id, |node, now, out| node.on_disk(now, out))
            }
            Event::Client(c) => {
                self.schedule(self.now + TICK, Event::Client(c));
                self.client_poll(c)
            }
            Event::Reply(c, reply) => self.client_reply(c, reply),
            Event::Fault(fault) => self.apply_fault(fault),
            Event::Control => {
                self.schedule(self.now + TICK, Event::Control);
                self.control()
            }
        }
    }

    /// Runs `f` on node `id`, turning a core panic into a violation, then handles the output and
    /// runs the step checks.
    fn on_node<R>(
        &mut self,
        id: NodeId,
        f: impl FnOnce(&mut SimNode, Time, &mut NodeOutput) -> R,
    ) -> Result<R, Violation> {
        let now = self.now;
        let node = &mut self.nodes[id as usize - 1];
        let mut out = NodeOutput::default();
        let result = catch_unwind(AssertUnwindSafe(|| f(node, now, &mut out))).map_err(|p| {
            let message = p
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| p.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            Violation::new(
                Property::CorePanic,
                format!("node {id} panicked: {message}"),
            )
        })?;
        self.process_output(id, out)?;
        self.after_step(id)?;
        Ok(result)
    }

    fn process_output(&mut self, id: NodeId, out: NodeOutput) -> Result<(), Violation> {
        for line in out.persisted {
            self.log(format!("node {id} {line}"));
        }
        for own in &out.proposed {
            match own {
                Own::Promotion(node) if self.held.contains(node) => {
                    return Err(Violation {
                        property: Property::LearnerHold,
                        detail: format!(
                            "leader {id} promoted learner {node} on its own, though it was added \
                             held (to be promoted only when asked)"
                        ),
                    });
                }
                Own::Promotion(_) => self.stats.promotions += 1,
                Own::Hold(_) => self.stats.held_joins += 1,
                Own::Publish(_) => self.stats.publishes += 1,
                Own::HistoryCompaction(_) => self.stats.history_compactions += 1,
                Own::LeaseExpiry { .. } | Own::Transfer(_) => {}
            }
        }
        // A revoke is proposed before anything it leads to is applied.
        for revoke in &out.revokes {
            let proposal = Proposal {
                lease: revoke.lease,
                at_ms: ms(self.now),
                stamp: self.history.stamp(),
            };
            self.leases.on_proposed(revoke.entry, proposal);
        }
        for event in &out.state_machine {
            let first = match event {
                StateMachineEvent::Snapshotted { .. } => {
                    self.stats.snapshots += 1;
                    false
                }
                StateMachineEvent::Restored { index, .. } => {
                    self.stats.installs += u64::from(*index > 0);
                    false
                }
                StateMachineEvent::Applied { entry, .. } => {
                    entry.index > self.checkers.state_machine.applied_index()
                }
            };
            self.checkers.on_state_machine(id, event)?;
            if let StateMachineEvent::Applied { entry, effect, .. } = event {
                if first {
                    self.on_first_application(entry, effect)?;
                } else if let Some((lease, _)) = effect.granted {
                    self.leases.on_grant_applied(lease, ms(self.now));
                }
            }
        }
        for message in out.messages {
            self.send(message);
        }
        for reply in out.replies {
            let latency = self.rng.range(1, self.network.config.latency_max);
            let client = reply.command.client as usize - 1;
            self.schedule(self.now + latency, Event::Reply(client, reply));
        }
        let index = id as usize - 1;
        if let Some(reason) = out.stopped {
            // The WAL's contract: a failed write or sync is fatal. The node stops; what its disk
            // keeps is what a power loss keeps; it restarts from there later.
            self.stats.sync_failures += 1;
            self.log(format!("node {id} stopped: {reason}"));
            self.power_loss(id);
            let at = self.now + self.ticks(self.config.faults.downtime);
            self.schedule(at, Event::Fault(Fault::Restart(id)));
            return Ok(());
        }
        if let Some(at) = out.next_write
            && self.disk_event_at[index] != Some(at)
        {
            self.disk_event_at[index] = Some(at);
            let incarnation = self.nodes[index].incarnation;
            self.schedule(at, Event::Disk(id, incarnation));
        }
        Ok(())
    }

    /// The first application of an entry anywhere: what it wrote, granted or revoked.
    fn on_first_application(
        &mut self,
        entry: &raftkv_raft::Entry,
        effect: &crate::kv::Applied,
    ) -> Result<(), Violation> {
        let now_ms = ms(self.now);
        self.stats.session_retries += u64::from(effect.retry);
        if let Some((key, value)) = effect.wrote {
            self.exactly_once.on_write(key, value, entry.index)?;
        }
        if let Some((lease, ttl_ms)) = effect.granted {
            self.stats.leases += 1;
            let stamp = self.history.stamp();
            self.leases.on_granted(lease, ttl_ms, now_ms, stamp);
        }
        for (lease, keys) in &effect.revoked {
            self.stats.leases_revoked += 1;
            let stamp = self.history.stamp();
            let proposal =
                self.leases
                    .on_revoked(entry.index, entry.term, *lease, now_ms, stamp)?;
            self.log(format!(
                "lease {lease} revoked at ({},{}), deleting {keys:?}",
                entry.index, entry.term
            ));
            for &key in keys {
                let op = Op::Revoke { key, lease: *lease };
                self.history
                    .system(op, proposal.stamp, OpResult::Deleted(true));
            }
        }
        Ok(())
    }

    /// Step checks, and a trace line when the node's role or term changed.
    fn after_step(&mut self, id: NodeId) -> Result<(), Violation> {
        let index = id as usize - 1;
        let Some(raft) = self.nodes[index].raft() else {
            return Ok(());
        };
        let now = (raft.role(), raft.term());
        let leader = raft.leader();
        let result = self.checkers.after_step(raft);
        if self.last_role[index] != now {
            self.last_role[index] = now;
            if now.0 == Role::Leader {
                self.stats.leaderships += 1;
                self.leader_since[index] = self.now;
            }
            self.log(format!(
                "node {id} is {:?} in term {} (leader {leader:?})",
                now.0, now.1
            ));
        }
        result
    }

    fn send(&mut self, message: Message) {
        let copies = self
            .network
            .transmit(message.from, message.to, self.now, &mut self.rng);
        if copies.is_empty() {
            self.stats.dropped += 1;
            self.log(format!("lost {}", describe(&message)));
            return;
        }
        if copies.len() > 1 {
            self.log(format!("duplicated {}", describe(&message)));
        }
        for at in copies {
            self.schedule(at, Event::Deliver(message.clone()));
        }
    }

    fn deliver(&mut self, message: Message) -> Result<(), Violation> {
        if !self.network.link_up(message.from, message.to) {
            self.stats.dropped += 1;
            self.log(format!("partition drops {}", describe(&message)));
            return Ok(());
        }
        self.stats.delivered += 1;
        self.log(format!("deliver {}", describe(&message)));
        let to = message.to;
        if to == 0 || to as usize > self.nodes.len() {
            self.log(format!("no node {to}: dropped"));
            return Ok(());
        }
        if let Some(error) = self.on_node(to, |node, now, out| node.receive(message, now, out))? {
            self.log(format!("node {to} refused a message: {error}"));
        }
        Ok(())
    }

    /// A client's keep-alives due now go to the current leader's store.
    fn keep_alives(&mut self, c: usize) {
        let due = self.clients[c].keep_alives_due(self.now, &self.config.clients, &mut self.rng);
        for lease in due {
            let outcome = match self.current_leader() {
                Some(leader) => self.nodes[index_of(leader)].keep_alive(lease, self.now),
                None => KeepAliveOutcome::Unreachable,
            };
            if let KeepAliveOutcome::Renewed(_) = outcome {
                self.stats.keep_alives += 1;
                let stamp = self.history.stamp();
                self.leases.on_keep_alive(lease, ms(self.now), stamp);
            }
            self.log(format!(
                "client c{} keeps lease {lease} alive: {outcome:?}",
                self.clients[c].id
            ));
            self.clients[c].on_keep_alive(lease, outcome, self.now);
        }
    }

    fn client_poll(&mut self, c: usize) -> Result<(), Violation> {
        let faulty = self.phase == Phase::Faulty;
        if faulty {
            self.keep_alives(c);
        }
        let action = self.clients[c].poll(
            self.now,
            &self.config.clients,
            &mut self.rng,
            &mut self.history,
            faulty,
            faulty,
        );
        match action {
            ClientAction::Idle => Ok(()),
            ClientAction::Submit {
                node,
                command,
                path,
                context,
            } => {
                let outcome = match path {
                    ReadPath::Log => self.on_node(node, |n, now, out| n.propose(command, now, out)),
                    ReadPath::ReadIndex | ReadPath::Follower => self
                        .on_node(node, |n, now, out| {
                            n.read(command, ReadMode::ReadIndex, now, out)
                        }),
                    ReadPath::Lease => self.on_node(node, |n, now, out| {
                        n.read(command, ReadMode::Lease, now, out)
                    }),
                }?;
                let how = match path {
                    ReadPath::Log => String::new(),
                    _ => format!(" ({path:?} read, context {context:x})"),
                };
                self.log(format!("client {command} at node {node}{how}: {outcome:?}"));
                self.clients[c].on_submitted(self.now, node, outcome, &self.config.clients);
                Ok(())
            }
            ClientAction::GaveUp { command, maybe } => {
                self.stats.ops_abandoned += 1;
                let outcome = if maybe { "unknown" } else { "fail" };
                self.log(format!("client {command} gave up ({outcome})"));
                Ok(())
            }
        }
    }

    fn client_reply(&mut self, c: usize, reply: Reply) -> Result<(), Violation> {
        let command = reply.command;
        let Some(id) = self.clients[c].on_reply(command.request, reply.result, self.now) else {
            return Ok(());
        };
        self.stats.ops_ok += 1;
        if reply.term == 0 {
            self.stats.reads_ok += 1;
        }
        self.history.ok(id, reply.result);
        self.log(format!(
            "client {command} ok: {} at ({},{})",
            reply.result, reply.index, reply.term
        ));
        if reply.term > 0 {
            self.checkers
                .on_acknowledged(reply.index, reply.term, command.to_string());
        }
        if reply.result == OpResult::Refused {
            return Err(Violation::new(
                Property::ExactlyOnce,
                format!(
                    "the store refused {command} of a live session at ({},{}) (the node's trace \
                     line says why)",
                    reply.index, reply.term
                ),
            ));
        }
        Ok(())
    }

    fn control(&mut self) -> Result<(), Violation> {
        let tick = self.now / TICK;
        match self.phase {
            Phase::Faulty if tick >= self.config.fault_ticks => {
                self.begin_quiet()?;
                self.periodic_checks()
            }
            Phase::Faulty => {
                self.inject_faults()?;
                if tick % self.config.check_every == 0 {
                    self.periodic_checks()?;
                }
                Ok(())
            }
            Phase::Quiet { since, deadline } => self.await_convergence(since, deadline),
            Phase::Done => Ok(()),
        }
    }

    fn summaries(&self) -> Vec<NodeSummary> {
        self.nodes.iter().map(SimNode::summary).collect()
    }

    fn await_convergence(&mut self, since: Time, deadline: Time) -> Result<(), Violation> {
        let pending = self.clients.iter().filter(|c| c.busy()).count();
        if let Some(leader) = self.current_leader() {
            let extension = self.nodes.iter().map(SimNode::election_timeout_ms).max();
            self.leases.check_expiry(
                ms(self.now),
                ms(since),
                ms(self.leader_since[index_of(leader)]),
                extension.unwrap_or(0),
            )?;
        }
        let live_leases = self.leases.live();
        let converged =
            liveness::converged(&self.summaries(), pending).and_then(|()| match live_leases {
                0 => Ok(()),
                n => Err(format!("{n} leases not revoked yet")),
            });
        match converged {
            Ok(()) => {
                self.stats.converge_ticks = (self.now - since) / TICK;
                self.log(format!(
                    "converged after {} ticks",
                    self.stats.converge_ticks
                ));
                self.final_checks()?;
                self.phase = Phase::Done;
                Ok(())
            }
            Err(reason) if self.now >= deadline => Err(liveness::violation(
                self.config.quiet_ticks,
                &reason,
                &self.summaries(),
            )),
            Err(_) => {
                if (self.now / TICK) % self.config.check_every == 0 {
                    self.periodic_checks()?;
                }
                Ok(())
            }
        }
    }

    /// Log Matching over every log and disk, Durability over the disks, Leader Completeness of
    /// current leaders.
    fn periodic_checks(&mut self) -> Result<(), Violation> {
        let logs: Vec<(NodeId, &'static str, HeldLog)> = self
            .nodes
            .iter()
            .flat_map(|n| {
                [
                    (n.id, "log", n.log()),
                    (n.id, "disk", HeldLog::of_disk(n.disk())),
                ]
            })
            .collect();
        let named: Vec<NamedLog<'_>> = logs
            .iter()
            .map(|(node, kind, log)| NamedLog {
                node: *node,
                kind,
                prev_term: log.prev_term,
                entries: &log.entries,
            })
            .collect();
        let disks: Vec<_> = self.nodes.iter().map(|n| (n.id, n.disk())).collect();
        let leaders: Vec<&Raft<_>> = self
            .nodes
            .iter()
            .filter_map(SimNode::raft)
            .filter(|r| r.role() == Role::Leader)
            .collect();
        self.checkers.periodic(&named, &disks, &leaders)
    }

    /// After convergence: every check once more, acknowledged writes everywhere, linearizability.
    fn final_checks(&mut self) -> Result<(), Violation> {
        self.periodic_checks()?;
        let members: BTreeSet<NodeId> = self
            .current_leader()
            .and_then(|leader| self.nodes[leader as usize - 1].conf_state())
            .map(ConfState::members)
            .unwrap_or_default();
        let logs: Vec<(NodeId, HeldLog)> = self
            .nodes
            .iter()
            .filter(|n| members.contains(&n.id))
            .map(|n| (n.id, n.log()))
            .collect();
        let views: Vec<_> = logs
            .iter()
            .map(|(id, log)| (*id, log.first_index, log.entries.as_slice()))
            .collect();
        self.checkers.durability.check_final(&views)?;
        let (granted, revoked) = self.leases.counts();
        self.log(format!(
            "{} distinct writes, each applied once; {granted} leases granted, {revoked} revoked, \
             {} keep-alives",
            self.exactly_once.writes(),
            self.leases.keep_alives
        ));
        self.history.close();
        let report = linearizability::check(&self.history)?;
        self.log(format!(
            "linearizable: {} ops over {} keys ({} inconclusive)",
            report.ops,
            report.keys,
            report.inconclusive.len()
        ));
        self.linearizability = Some(report);
        Ok(())
    }

    fn begin_quiet(&mut self) -> Result<(), Violation> {
        self.log("fault period over: heal, restart, resume, reliable network".to_string());
        self.network.heal();
        self.network.config = NetworkConfig::reliable();
        for client in &mut self.clients {
            client.abandon_leases();
        }
        for id in 1..=self.nodes.len() as NodeId {
            self.apply_fault(Fault::Restart(id))?;
            self.apply_fault(Fault::Resume(id))?;
            self.apply_fault(Fault::FastDisk(id))?;
        }
        let deadline = self.now + self.config.quiet_ticks * TICK;
        self.phase = Phase::Quiet {
            since: self.now,
            deadline,
        };
        Ok(())
    }

    fn current_leader(&self) -> Option<NodeId> {
        self.nodes
            .iter()
            .filter_map(SimNode::raft)
            .filter(|r| r.role() == Role::Leader)
            .max_by_key(|r| r.term())
            .map(Raft::id)
    }

    /// A node satisfying `eligible`: the leader with probability `leader_bias`, else any.
    fn pick_target(&mut self, eligible: impl Fn(&SimNode) -> bool) -> Option<NodeId> {
        let bias = self.config.faults.leader_bias;
        if let Some(leader) = self.current_leader()
            && eligible(&self.nodes[leader as usize - 1])
            && self.rng.chance(bias)
        {
            return Some(leader);
        }
        let candidates: Vec<NodeId> = self
            .involved
            .iter()
            .map(|&id| &self.nodes[id as usize - 1])
            .filter(|n| eligible(n))
            .map(|n| n.id)
            .collect();
        self.rng.pick(&candidates)
    }

    /// Node `id` loses power (its process stops if it was running): its disk keeps what was synced
    /// and, as drawn here, none or a random prefix of each file's unsynced bytes, the lost part
    /// zero-filled or not, unsynced file names kept or not.
    fn power_loss(&mut self, id: NodeId) {
        let tear = if self.rng.chance(self.config.faults.torn_write) {
            Tear::Random(self.rng.next_u64())
        } else {
            Tear::DropAll
        };
        let crash = Crash {
            tear,
            zero_fill: self.rng.chance(0.5),
            keep_unsynced_names: self.rng.chance(0.3),
        };
        self.log(format!("node {id} loses power: {crash:?}"));
        self.nodes[id as usize - 1].crash(crash);
    }

    fn ticks(&mut self, (low, high): (u64, u64)) -> Time {
        self.rng.range(low, high) * TICK
    }

    fn inject_faults(&mut self) -> Result<(), Violation> {
        let mix = self.config.faults;
        if self.rng.chance(mix.crash)
            && let Some(id) = self.pick_target(|n| n.is_up())
        {
            self.apply_fault(Fault::Crash(id))?;
            let at = self.now + self.ticks(mix.downtime);
            self.schedule(at, Event::Fault(Fault::Restart(id)));
        }
        if self.rng.chance(mix.pause)
            && let Some(id) = self.pick_target(|n| n.is_up() && !n.is_paused())
        {
            self.apply_fault(Fault::Pause(id))?;
            let at = self.now + self.ticks(mix.pause_length);
            self.schedule(at, Event::Fault(Fault::Resume(id)));
        }
        if self.rng.chance(mix.sync_failure)
            && let Some(id) = self.pick_target(|n| n.is_up() && n.node_disk().is_wal())
        {
            self.apply_fault(Fault::SyncFailure(id))?;
        }
        if self.rng.chance(mix.slow_disk)
            && let Some(id) = self.pick_target(|n| n.is_up())
        {
            let (low, high) = mix.slow_disk_latency;
            let latency = self.rng.range(low, high);
            self.apply_fault(Fault::SlowDisk(id, latency))?;
            let at = self.now + self.ticks(mix.slow_disk_length);
            self.schedule(at, Event::Fault(Fault::FastDisk(id)));
        }
        if self.involved.len() > 1
            && !self.network.partitioned()
            && self.partition_at.is_none_or(|at| at < self.now)
            && self.rng.chance(mix.partition)
        {
            // A partition forms at any instant, not only on a tick: a message already on its way
            // may or may not get through, whatever the latencies.
            let shape = self.draw_partition();
            let at = self.now + self.rng.range(0, TICK - 1);
            self.partition_at = Some(at);
            self.schedule(at, Event::Fault(Fault::Partition(shape)));
            let heal = at + self.ticks(mix.partition_length);
            self.schedule(heal, Event::Fault(Fault::Heal));
        }
        if self.rng.chance(mix.membership)
            && let Some(leader) = self.current_leader()
        {
            // Half the changes are joins (as `--join` makes them), when a node is outside; a third
            // of those hold the learner (etcd's `member add --learner`); a held learner is
            // promoted half the times a change comes up.
            let held = self
                .draw_held_learner(leader)
                .filter(|_| self.rng.chance(0.5));
            let joiner = self.draw_joiner(leader).filter(|_| self.rng.chance(0.5));
            if let Some(node) = held {
                self.apply_fault(Fault::Promote(leader, node))?;
            } else if let Some(node) = joiner {
                let held = self.rng.chance(1.0 / 3.0);
                self.apply_fault(Fault::Join(leader, node, held))?;
            } else if let Some(changes) = self.draw_membership_change(leader) {
                self.apply_fault(Fault::Membership(leader, changes))?;
            }
        }
        if self.rng.chance(mix.transfer)
            && let Some(leader) = self.current_leader()
            && let Some(target) = self.draw_transfer_target(leader)
        {
            self.apply_fault(Fault::Transfer(leader, target))?;
        }
        Ok(())
    }

    fn apply_fault(&mut self, fault: Fault) -> Result<(), Violation> {
        let index = match &fault {
            Fault::Crash(id)
            | Fault::Restart(id)
            | Fault::Pause(id)
            | Fault::Resume(id)
            | Fault::SlowDisk(id, _)
            | Fault::SyncFailure(id)
            | Fault::FastDisk(id)
            | Fault::Membership(id, _)
            | Fault::Transfer(id, _)
            | Fault::Join(id, ..)
            | Fault::Promote(id, _) => *id as usize - 1,
            Fault::Partition(_) | Fault::Heal => 0,
        };
        let up = self.nodes[index].is_up();
        let paused = self.nodes[index].is_paused();
        match fault {
            Fault::Restart(_) if up => return Ok(()),
            Fault::Resume(_) if !paused => return Ok(()),
            Fault::Heal if !self.network.partitioned() => return Ok(()),
            _ => {}
        }
        self.log(format!("fault: {fault}"));
        match fault {
            Fault::Crash(id) => {
                self.stats.crashes += 1;
                self.power_loss(id);
            }
            Fault::Restart(id) => {
                self.last_role[index] = (Role::Follower, 0);
                let exact = self.nodes[index].node_disk().exact_since_crash();
                self.on_node(id, |n, now, out| n.restart(now, out))?
                    .map_err(|e| e.violation(id))?;
                self.stats.restarts += 1;
                if exact {
                    self.stats.exact_recoveries += 1;
                }
                if self.nodes[index].node_disk().recovered_torn_tail() {
                    self.stats.torn_tails += 1;
                    self.log(format!("node {id} recovered: a torn tail was cut"));
                }
            }
            Fault::SyncFailure(_) => self.nodes[index].fail_next_sync(),
            Fault::Pause(_) => self.nodes[index].pause(),
            Fault::Resume(id) => {
                for error in self.on_node(id, |n, now, out| n.resume(now, out))? {
                    self.log(format!("node {id} refused a message: {error}"));
                }
            }
            Fault::SlowDisk(_, latency) => self.nodes[index].set_disk_latency(Some(latency)),
            Fault::FastDisk(_) => self.nodes[index].set_disk_latency(None),
            Fault::Partition(shape) => {
                self.stats.partitions += 1;
                let ids: Vec<NodeId> = self.involved.iter().copied().collect();
                self.network.partition(&shape, &ids);
            }
            Fault::Heal => self.network.heal(),
            Fault::Membership(id, changes) => {
                let added: Vec<NodeId> = changes
                    .iter()
                    .filter(|c| !matches!(c, MemberChange::Remove(_)))
                    .map(MemberChange::node)
                    .collect();
                let result =
                    self.on_node(id, |n, now, out| n.propose_conf_change(changes, now, out))?;
                match result {
                    Ok(index) => {
                        self.stats.membership_changes += 1;
                        for node in &added {
                            // Named by a change: no longer held, as far as the checker goes.
                            self.held.remove(node);
                        }
                        self.involved.extend(added);
                        let conf = self.nodes[index_of(id)].conf_state().cloned();
                        self.log(format!(
                            "node {id} appended the joint configuration at {index}: {conf:?}"
                        ));
                    }
                    Err(e) => self.log(format!("node {id} refused: {e}")),
                }
            }
            Fault::Transfer(id, target) => {
                match self.on_node(id, |n, now, out| n.transfer_leader(target, now, out))? {
                    Ok(()) => self.stats.transfers += 1,
                    Err(e) => self.log(format!("node {id} refused: {e}")),
                }
            }
            Fault::Join(id, node, held) => {
                match self.on_node(id, |n, now, out| n.join(node, held, now, out))? {
                    Ok(index) => {
                        self.stats.joins += 1;
                        self.involved.insert(node);
                        if held {
                            self.held.insert(node);
                        } else {
                            self.held.remove(&node);
                        }
                        self.log(format!("node {id} added learner {node} at {index}"));
                    }
                    Err(e) => self.log(format!("node {id} refused the join: {e}")),
                }
            }
            Fault::Promote(id, node) => {
                match self.on_node(id, |n, now, out| n.promote(node, now, out))? {
                    Ok(index) => {
                        self.stats.explicit_promotions += 1;
                        self.held.remove(&node);
                        self.log(format!("node {id} promotes learner {node} at {index}"));
                    }
                    Err(e) => self.log(format!("node {id} refused the promotion: {e}")),
                }
            }
        }
        Ok(())
    }
}
