//! Simulated clients: each issues one operation at a time against the cluster, sends it to the
//! node it believes leads (following `NotLeader` hints), retries the same request on timeout
//! (the state machine deduplicates retries by client and request id), and gives up after a while.
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

use raftkv_raft::NodeId;

use crate::history::History;
use crate::kv::{ClientId, Command, Op, OpResult, RequestId};
use crate::network::Time;
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
    /// How long a client waits for an answer before retrying.
    pub request_timeout: Time,
    /// How long after invoking an operation a client gives up on it (fault period only).
    pub give_up_after: Time,
    /// Relative weights of the read paths, in `ReadPath::ALL` order.
    pub read_weights: [u32; 4],
}

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
    /// Its id (also its session in the state machine).
    pub id: ClientId,
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

    fn start(&mut self, now: Time, config: &ClientConfig, rng: &mut SimRng, history: &mut History) {
        let request = self.next_request;
        self.next_request += 1;
        let key = rng.below(config.keys.max(1) as usize) as u32;
        let mut path = ReadPath::Log;
        let op = if rng.chance(config.get_ratio) {
            let total: u32 = config.read_weights.iter().sum();
            let mut draw = rng.below(total.max(1) as usize) as u32;
            for (&weight, &candidate) in config.read_weights.iter().zip(&ReadPath::ALL) {
                if draw < weight {
                    path = candidate;
                    break;
                }
                draw -= weight;
            }
            Op::Get { key }
        } else {
            // Unique per put, so a read tells exactly which write it saw.
            let value = (u64::from(self.id) << 32) | request;
            Op::Put { key, value }
        };
        let history_id = history.invoke(self.id, request, op);
        self.current = Some(InFlight {
            history_id,
            command: Command {
                client: self.id,
                request,
                op,
            },
            invoked: now,
            accepted_once: false,
            path,
            tried: false,
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
    pub fn on_reply(&mut self, request: RequestId, _result: OpResult) -> Option<usize> {
        let current = self.current?;
        if current.command.request != request {
            return None;
        }
        self.current = None;
        Some(current.history_id)
    }
}
