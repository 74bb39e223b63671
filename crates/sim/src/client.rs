//! Simulated clients: each issues one operation at a time against the cluster, sends it to the
//! node it believes leads (following `NotLeader` hints), retries the same request on timeout, and
//! gives up after a while.
//!
//! A client first opens a session in the store (`Op::SessionOpen`, again if the outcome of the
//! open is unknown); every later command carries the session and the operation's number as its
//! sequence number, and a retry is the same command, so the store applies it once however many
//! copies commit. Writes are puts (some attached to one of the client's leases), deletes and
//! compare-and-swaps expecting the value the client last saw in the register; every value written
//! is unique (client and operation number).
//!
//! Leases: a client sometimes grants one (TTL drawn from the workload's range) and, for most of
//! them, keeps it alive every third of its TTL; it stops keeping a lease alive at random (and all
//! of them once faults stop), after which the lease must expire. Keep-alives do not go through the
//! log: the simulator hands them to the current leader's store at once.
//!
//! A get takes one of four paths (`ReadPath`), drawn per operation from the workload's weights:
//! through the log like a write, or outside it: ReadIndex or a lease read on the leader, or a
//! follower read (any node, which asks the leader for the read index; retries go where writes
//! go). Each attempt of a read outside the log carries its own context, so a late answer to an
//! earlier attempt is harmless.
//!
//! Invariant: every operation is recorded in the history when invoked and ends at most once: `Ok`
//! on an answer, `Fail` on giving up when no node ever accepted a proposal of it (so it cannot have
//! happened), `Unknown` on giving up after some node accepted it (it may commit later or never).

use std::collections::BTreeMap;

use raftkv_raft::NodeId;

use crate::history::History;
use crate::kv::{
    ClientId, Command, Key, LeaseId, MS_PER_TIME, Op, OpResult, RequestId, SessionId, Value,
};
use crate::network::{TICK, Time};
use crate::node::KeepAliveOutcome;
use crate::rng::SimRng;

/// The clients' workload.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ClientConfig {
    /// Number of concurrent clients.
    pub count: usize,
    /// Probability per tick that an idle client starts an operation.
    pub op_rate: f64,
    /// Number of registers the clients share (few keys: more contention).
    pub keys: u32,
    /// Fraction of operations that are gets.
    pub get_ratio: f64,
    /// Fraction of writes that are deletes.
    pub delete_ratio: f64,
    /// Fraction of the other writes that are compare-and-swaps (the rest are puts).
    pub cas_ratio: f64,
    /// How long a client waits for an answer before retrying.
    pub request_timeout: Time,
    /// How long after invoking an operation a client gives up on it (fault period only).
    pub give_up_after: Time,
    /// Relative weights of the read paths, in `ReadPath::ALL` order.
    pub read_weights: [u32; 4],
    /// Leases.
    pub leases: LeaseWorkload,
    /// Commands carry the client's session (off only where a test proves that the exactly-once
    /// check notices retries applied twice).
    pub sessions: bool,
}

/// How clients use leases.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LeaseWorkload {
    /// Fraction of operations that grant a lease (0: no leases).
    pub grant_ratio: f64,
    /// TTL of a lease, in milliseconds: [min, max].
    pub ttl_ms: (u64, u64),
    /// Fraction of puts attached to one of the client's leases.
    pub put_ratio: f64,
    /// Probability that a granted lease is kept alive (else it is left to expire at once).
    pub keep_ratio: f64,
    /// Probability per tick that a kept lease stops being kept alive.
    pub abandon_rate: f64,
    /// Most leases a client keeps alive at once.
    pub kept_max: usize,
}

impl LeaseWorkload {
    /// No leases.
    pub fn none() -> Self {
        LeaseWorkload {
            grant_ratio: 0.0,
            ttl_ms: (1000, 1000),
            put_ratio: 0.0,
            keep_ratio: 0.0,
            abandon_rate: 0.0,
            kept_max: 0,
        }
    }
}

/// A lease a client was granted.
#[derive(Clone, Copy, Debug)]
struct HeldLease {
    /// Whether the client still keeps it alive.
    kept: bool,
    /// When the next keep-alive is due.
    next_keep_alive: Time,
}

/// Most leases a client remembers (kept alive or not) for its puts.
const HELD_LEASES_MAX: usize = 8;

/// How a get reaches the state machine.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ReadPath {
    /// As a command in the log, like a write.
    Log,
    /// ReadIndex on the leader: a heartbeat round confirms leadership (thesis §6.4).
    ReadIndex,
    /// A lease read on the leader: no round trip while its lease holds.
    Lease,
    /// At any node: a follower asks the leader for the read index and serves it locally.
    Follower,
}

impl ReadPath {
    /// Every path, in the order of `ClientConfig::read_weights`.
    pub const ALL: [ReadPath; 4] = [
        ReadPath::Log,
        ReadPath::ReadIndex,
        ReadPath::Lease,
        ReadPath::Follower,
    ];
}

/// What a node said to a proposal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProposeOutcome {
    /// Appended to the leader's log at this index; an answer may follow.
    Accepted(u64),
    /// Not the leader; maybe it knows who is.
    NotLeader(Option<NodeId>),
    /// The leader refused for now (too much uncommitted).
    Overloaded,
    /// The node is down or paused; nothing happened.
    Unreachable,
}

/// Where the current operation stands.
#[derive(Clone, Copy, Debug)]
enum Attempt {
    /// Send (again) at the first poll at or after this time.
    SendAt(Time),
    /// Sent to `node`; retry if no answer by `deadline`.
    Waiting {
        /// The node that accepted it.
        node: NodeId,
        /// When to stop waiting.
        deadline: Time,
    },
}

/// The operation a client is working on.
#[derive(Clone, Copy, Debug)]
struct InFlight {
    /// Its id in the history.
    history_id: usize,
    /// The command, the same on every retry.
    command: Command,
    /// When it was invoked.
    invoked: Time,
    /// Whether some node ever accepted a proposal of it.
    accepted_once: bool,
    /// How it reaches the state machine (`Log` for writes).
    path: ReadPath,
    /// It was sent at least once.
    tried: bool,
    /// For a grant: whether the lease will be kept alive.
    keep: bool,
    /// Where it stands.
    attempt: Attempt,
}

/// What a client wants the simulator to do on a poll.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientAction {
    /// Nothing now.
    Idle,
    /// Propose `command` at `node`, or read there outside the log.
    Submit {
        /// Where.
        node: NodeId,
        /// What.
        command: Command,
        /// Through the log, or which read path.
        path: ReadPath,
        /// Identifies this attempt of a read outside the log.
        context: u64,
    },
    /// The client gave up on `command`.
    GaveUp {
        /// What.
        command: Command,
        /// Whether it may have happened (recorded `Unknown`, else `Fail`).
        maybe: bool,
    },
}

/// One client.
#[derive(Clone, Debug)]
pub struct Client {
    /// Its id.
    pub id: ClientId,
    /// Its session in the store (0: none yet).
    session: SessionId,
    /// Per register, the value it last saw there (what its compare-and-swaps expect).
    seen: BTreeMap<Key, Option<Value>>,
    /// Leases it was granted and has not seen gone, by id.
    leases: BTreeMap<LeaseId, HeldLease>,
    /// Cluster size (node ids are 1..=nodes).
    nodes: usize,
    /// The node it believes leads.
    leader_guess: NodeId,
    /// Where the round-robin search for the leader stands: hints are followed one hop from it,
    /// so stale hints of removed nodes pointing at each other cannot trap the client.
    scan: NodeId,
    /// The current guess came from a hint (a second hint in a row is not followed).
    followed_hint: bool,
    /// The next request id.
    next_request: RequestId,
    /// The operation in progress.
    current: Option<InFlight>,
    /// Attempts of reads outside the log so far (makes each attempt's context unique).
    attempts: u64,
}

impl Client {
    /// A client of a cluster of `nodes` that first talks to `first_guess`.
    pub fn new(id: ClientId, nodes: usize, first_guess: NodeId) -> Self {
        Client {
            id,
            session: 0,
            seen: BTreeMap::new(),
            leases: BTreeMap::new(),
            nodes,
            leader_guess: first_guess,
            scan: first_guess,
            followed_hint: false,
            next_request: 1,
            current: None,
            attempts: 0,
        }
    }

    /// Whether an operation is in progress.
    pub fn busy(&self) -> bool {
        self.current.is_some()
    }

    /// Called once per tick. `may_start`: new operations allowed; `may_give_up`: giving up allowed.
    pub fn poll(
        &mut self,
        now: Time,
        config: &ClientConfig,
        rng: &mut SimRng,
        history: &mut History,
        may_start: bool,
        may_give_up: bool,
    ) -> ClientAction {
        if self.current.is_none() && may_start && rng.chance(config.op_rate) {
            self.start(now, config, rng, history);
        }
        let nodes = self.nodes as NodeId;
        let Some(current) = self.current.as_mut() else {
            return ClientAction::Idle;
        };
        let due = match current.attempt {
            Attempt::SendAt(at) => now >= at,
            Attempt::Waiting { node, deadline } => {
                if now >= deadline && node == self.leader_guess {
                    self.scan = self.scan % nodes + 1;
                    self.leader_guess = self.scan;
                    self.followed_hint = false;
                }
                now >= deadline
            }
        };
        if !due {
            return ClientAction::Idle;
        }
        if may_give_up && now.saturating_sub(current.invoked) >= config.give_up_after {
            let (command, maybe) = (current.command, current.accepted_once);
            if maybe {
                history.unknown(current.history_id);
            } else {
                history.fail(current.history_id);
            }
            self.current = None;
            return ClientAction::GaveUp { command, maybe };
        }
        let (command, path) = (current.command, current.path);
        // A follower read goes to any node first; a retry goes where writes go (a node that was
        // removed forwards reads to the leader but never applies far enough to serve them).
        let node = match path {
            ReadPath::Follower if !current.tried => rng.range(1, nodes),
            _ => self.leader_guess,
        };
        current.tried = true;
        self.attempts += 1;
        ClientAction::Submit {
            node,
            command,
            path,
            context: (u64::from(self.id) << 40) | self.attempts,
        }
    }

    /// The keep-alives due now (called once per tick while faults strike; once they stop, no
    /// lease is kept alive). A kept lease stops being kept alive with probability
    /// `abandon_rate`.
    pub fn keep_alives_due(
        &mut self,
        now: Time,
        config: &ClientConfig,
        rng: &mut SimRng,
    ) -> Vec<LeaseId> {
        let mut due = Vec::new();
        for (&id, lease) in &mut self.leases {
            if !lease.kept {
                continue;
            }
            if rng.chance(config.leases.abandon_rate) {
                lease.kept = false;
                continue;
            }
            if now >= lease.next_keep_alive {
                due.push(id);
            }
        }
        due
    }

    /// What the leader said to a keep-alive of `lease`.
    pub fn on_keep_alive(&mut self, lease: LeaseId, outcome: KeepAliveOutcome, now: Time) {
        match outcome {
            KeepAliveOutcome::Renewed(ttl_ms) => {
                if let Some(held) = self.leases.get_mut(&lease) {
                    held.next_keep_alive = now + keep_alive_interval(ttl_ms);
                }
            }
            KeepAliveOutcome::NotFound => {
                self.leases.remove(&lease);
            }
            KeepAliveOutcome::NotLeader | KeepAliveOutcome::Unreachable => {
                if let Some(held) = self.leases.get_mut(&lease) {
                    held.next_keep_alive = now + TICK;
                }
            }
        }
    }

    /// The op a new operation does (not a session open).
    fn draw_op(&mut self, request: RequestId, config: &ClientConfig, rng: &mut SimRng) -> Op {
        let leases = config.leases;
        let kept = self.leases.values().filter(|l| l.kept).count();
        if leases.grant_ratio > 0.0 && kept < leases.kept_max && rng.chance(leases.grant_ratio) {
            let (low, high) = leases.ttl_ms;
            return Op::LeaseGrant {
                ttl_ms: rng.range(low, high),
            };
        }
        let key = rng.below(config.keys.max(1) as usize) as u32;
        if rng.chance(config.get_ratio) {
            return Op::Get { key };
        }
        // Unique per write, so a read tells exactly which write it saw.
        let value = (u64::from(self.id) << 32) | request;
        if rng.chance(config.delete_ratio) {
            return Op::Delete { key };
        }
        if rng.chance(config.cas_ratio) {
            let expected = match rng.chance(0.2) {
                true => None,
                false => self.seen.get(&key).copied().flatten(),
            };
            return Op::Cas {
                key,
                expected,
                value,
            };
        }
        let ids: Vec<LeaseId> = self.leases.keys().copied().collect();
        let lease = match rng.chance(leases.put_ratio) {
            true => rng.pick(&ids).unwrap_or(0),
            false => 0,
        };
        Op::Put { key, value, lease }
    }

    fn start(&mut self, now: Time, config: &ClientConfig, rng: &mut SimRng, history: &mut History) {
        let request = self.next_request;
        self.next_request += 1;
        let mut path = ReadPath::Log;
        let op = match self.session {
            0 if config.sessions => Op::SessionOpen,
            _ => self.draw_op(request, config, rng),
        };
        if let Op::Get { .. } = op {
            let total: u32 = config.read_weights.iter().sum();
            let mut draw = rng.below(total.max(1) as usize) as u32;
            for (&weight, &candidate) in config.read_weights.iter().zip(&ReadPath::ALL) {
                if draw < weight {
                    path = candidate;
                    break;
                }
                draw -= weight;
            }
        }
        let keep = matches!(op, Op::LeaseGrant { .. }) && rng.chance(config.leases.keep_ratio);
        let history_id = history.invoke(self.id, request, op);
        self.current = Some(InFlight {
            history_id,
            command: Command {
                client: self.id,
                session: self.session,
                request,
                op,
            },
            invoked: now,
            accepted_once: false,
            path,
            tried: false,
            keep,
            attempt: Attempt::SendAt(now),
        });
    }

    /// The node after `node`, round robin.
    fn next_after(&self, node: NodeId) -> NodeId {
        node % self.nodes as NodeId + 1
    }

    /// The answer of the node the client submitted to.
    pub fn on_submitted(
        &mut self,
        now: Time,
        node: NodeId,
        outcome: ProposeOutcome,
        config: &ClientConfig,
    ) {
        let next_node = self.next_after(self.scan);
        let Some(current) = self.current.as_mut() else {
            return;
        };
        current.attempt = match outcome {
            ProposeOutcome::Accepted(_) => {
                current.accepted_once = true;
                self.followed_hint = false;
                Attempt::Waiting {
                    node,
                    deadline: now + config.request_timeout,
                }
            }
            ProposeOutcome::NotLeader(Some(leader)) if leader != node && !self.followed_hint => {
                self.leader_guess = leader;
                self.followed_hint = true;
                Attempt::SendAt(now)
            }
            ProposeOutcome::NotLeader(_)
            | ProposeOutcome::Overloaded
            | ProposeOutcome::Unreachable => {
                self.scan = next_node;
                self.leader_guess = next_node;
                self.followed_hint = false;
                Attempt::SendAt(now)
            }
        };
    }

    /// An answer arrived for `request`; returns the operation's history id if it is the one in
    /// progress (later copies of an answer are ignored).
    pub fn on_reply(&mut self, request: RequestId, result: OpResult, now: Time) -> Option<usize> {
        let current = self.current?;
        if current.command.request != request {
            return None;
        }
        self.current = None;
        let op = current.command.op;
        if let Some(key) = op.key() {
            match (op, result) {
                (_, OpResult::Read(seen) | OpResult::NotSwapped(seen)) => {
                    self.seen.insert(key, seen);
                }
                (
                    Op::Put { value, .. } | Op::Cas { value, .. },
                    OpResult::Written | OpResult::Swapped,
                ) => {
                    self.seen.insert(key, Some(value));
                }
                (_, OpResult::Deleted(_)) => {
                    self.seen.insert(key, None);
                }
                _ => {}
            }
        }
        match (op, result) {
            (_, OpResult::Opened(session)) => self.session = session,
            (Op::LeaseGrant { ttl_ms }, OpResult::Granted(lease)) => {
                self.leases.insert(
                    lease,
                    HeldLease {
                        kept: current.keep,
                        next_keep_alive: now + keep_alive_interval(ttl_ms),
                    },
                );
                while self.leases.len() > HELD_LEASES_MAX {
                    let forgotten = self
                        .leases
                        .iter()
                        .find(|(_, l)| !l.kept)
                        .or_else(|| self.leases.iter().next())
                        .map(|(&id, _)| id);
                    if let Some(id) = forgotten {
                        self.leases.remove(&id);
                    }
                }
            }
            (Op::Put { lease, .. }, OpResult::NoLease) => {
                self.leases.remove(&lease);
            }
            _ => {}
        }
        Some(current.history_id)
    }

    /// Stops keeping every lease alive (faults stopped: every lease must now expire).
    pub fn abandon_leases(&mut self) {
        for lease in self.leases.values_mut() {
            lease.kept = false;
        }
    }
}

/// How often a lease of `ttl_ms` is kept alive: every third of its TTL.
fn keep_alive_interval(ttl_ms: u64) -> Time {
    (ttl_ms / MS_PER_TIME / 3).max(TICK)
}
