//! Bounded exhaustive exploration: for a small cluster and a couple of client operations, every
//! interleaving of message delivery, loss, duplication, disk-write completion, elections, leader
//! ticks and crash-restart, up to a depth, checked after every step with the same safety checkers
//! as the random simulator.
//!
//! Depth-first search over paths of `Action`s with state hashing: a state is reached by replaying
//! its path from the start (the core is deterministic, and `RawNode` cannot be cloned), and a
//! state whose fingerprint was already seen is not expanded again. Each kind of fault has a budget
//! per path, which keeps the space finite and small.
//!
//! Invariants: the exploration order is deterministic; the explored space is cut only by `depth`,
//! the per-path budgets and `max_states`, and the report says when `max_states` cut it.

use std::collections::HashMap;
use std::collections::hash_map::DefaultHasher;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::panic::{AssertUnwindSafe, catch_unwind};

use raftkv_raft::{ConfState, Config, Message, NodeId, Role};

use crate::checkers::{NamedLog, Property, SafetyCheckers, Violation};
use crate::kv::{Command, Op};
use crate::node::{HeldLog, NodeOutput, NodeSettings, SimNode};
use crate::sim::ConfigHook;

/// One step of a path.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Action {
    /// The node's election timeout fires.
    Campaign(NodeId),
    /// The leader ticks (heartbeats carry the commit index).
    Tick(NodeId),
    /// A client proposes its next operation at the node.
    Propose(NodeId),
    /// The pending message at this position is delivered.
    Deliver(usize),
    /// The pending message at this position is delivered and stays pending (a duplicate).
    Duplicate(usize),
    /// The pending message at this position is lost.
    Drop(usize),
    /// The node's oldest disk write completes.
    Persist(NodeId),
    /// The node crashes (losing unwritten data) and restarts at once.
    CrashRestart(NodeId),
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// Nodes in the explored cluster (the start of every path assumes three).
const NODES: usize = 3;

/// Bounds of the exploration.
#[derive(Clone)]
pub struct ExploreConfig {
    /// Most actions per path after the start.
    pub depth: usize,
    /// Most distinct states expanded.
    pub max_states: usize,
    /// Client operations per path.
    pub proposals: usize,
    /// Elections started per path.
    pub campaigns: usize,
    /// Leader ticks per path.
    pub ticks: usize,
    /// Messages duplicated per path.
    pub duplicates: usize,
    /// Messages lost per path.
    pub drops: usize,
    /// Crash-restarts per path.
    pub crashes: usize,
    /// Adjusts every node's Raft configuration (e.g. to set a mutation).
    pub configure: Option<ConfigHook>,
}

impl Default for ExploreConfig {
    fn default() -> Self {
        ExploreConfig {
            depth: 8,
            max_states: 40_000,
            proposals: 2,
            campaigns: 2,
            ticks: 1,
            duplicates: 1,
            drops: 1,
            crashes: 1,
            configure: None,
        }
    }
}

/// What the exploration found.
#[derive(Debug, Default)]
pub struct ExploreReport {
    /// Distinct states expanded.
    pub states: usize,
    /// Actions applied in total (replays included).
    pub steps: u64,
    /// Deepest path expanded.
    pub deepest: usize,
    /// Whether `max_states` stopped the search before the depth bound did.
    pub truncated: bool,
    /// The first violation and the path to it.
    pub violation: Option<(Vec<Action>, Violation)>,
}

/// Budgets used along a path.
#[derive(Clone, Copy, Debug, Default, Hash)]
struct Used {
    proposals: usize,
    campaigns: usize,
    ticks: usize,
    duplicates: usize,
    drops: usize,
    crashes: usize,
}

/// A cluster as a path left it.
struct World {
    nodes: Vec<SimNode>,
    /// Messages sent and not yet delivered or lost, in send order.
    network: Vec<Message>,
    checkers: SafetyCheckers,
    used: Used,
}

impl World {
    fn new(config: &ExploreConfig) -> Result<Self, Violation> {
        let ids: Vec<NodeId> = (1..=NODES as NodeId).collect();
        let mut nodes = Vec::new();
        for &id in &ids {
            let mut raft = Config::new(id, ids.clone());
            raft.pre_vote = false;
            raft.check_quorum = false;
            if let Some(hook) = &config.configure {
                hook(&mut raft);
            }
            // Disk writes complete only through `Action::Persist`.
            let node = SimNode::new(raft, NodeSettings::new(u64::MAX / 2))
                .map_err(|e| Violation::new(Property::CorePanic, e.to_string()))?;
            nodes.push(node);
        }
        Ok(World {
            nodes,
            network: Vec::new(),
            checkers: SafetyCheckers::new(
                ConfState::from_voters(ids.iter().copied()),
                raftkv_replica::State::new(raftkv_replica::state::limits()).digest(),
            ),
            used: Used::default(),
        })
    }

    fn node(&mut self, id: NodeId) -> &mut SimNode {
        &mut self.nodes[id as usize - 1]
    }

    /// Applies one action, then runs every safety check.
    fn apply(&mut self, action: Action) -> Result<(), Violation> {
        let mut out = NodeOutput::default();
        let touched = match action {
            Action::Campaign(id) => {
                self.used.campaigns += 1;
                self.node(id).campaign(0, &mut out);
                Some(id)
            }
            Action::Tick(id) => {
                self.used.ticks += 1;
                self.node(id).tick(0, &mut out);
                Some(id)
            }
            Action::Propose(id) => {
                self.used.proposals += 1;
                let request = self.used.proposals as u64;
                let command = Command {
                    client: 1,
                    session: 0,
                    request,
                    op: Op::Put {
                        key: 0,
                        value: request,
                        lease: 0,
                    },
                };
                self.node(id).propose(command, 0, &mut out);
                Some(id)
            }
            Action::Deliver(i) | Action::Duplicate(i) => {
                let message = if action == Action::Deliver(i) {
                    self.network.remove(i)
                } else {
                    self.used.duplicates += 1;
                    self.network[i].clone()
                };
                let to = message.to;
                self.node(to).receive(message, 0, &mut out);
                Some(to)
            }
            Action::Drop(i) => {
                self.used.drops += 1;
                self.network.remove(i);
                None
            }
            Action::Persist(id) => {
                self.node(id).complete_oldest_write(&mut out);
                Some(id)
            }
            Action::CrashRestart(id) => {
                self.used.crashes += 1;
                self.node(id).crash(raftkv_wal::Crash::clean());
                self.node(id)
                    .restart(0, &mut out)
                    .map_err(|e| e.violation(id))?;
                Some(id)
            }
        };
        if let Some(id) = touched {
            self.absorb(id, out)?;
        }
        self.check()
    }

    /// Takes a node's output: messages onto the network, applied entries to the checker.
    fn absorb(&mut self, id: NodeId, out: NodeOutput) -> Result<(), Violation> {
        for event in &out.state_machine {
            self.checkers.on_state_machine(id, event)?;
        }
        self.network.extend(out.messages);
        if let Some(raft) = self.nodes[id as usize - 1].raft() {
            self.checkers.after_step(raft)?;
        }
        Ok(())
    }

    fn check(&mut self) -> Result<(), Violation> {
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
        let leaders: Vec<_> = self
            .nodes
            .iter()
            .filter_map(SimNode::raft)
            .filter(|r| r.role() == Role::Leader)
            .collect();
        self.checkers.periodic(&named, &disks, &leaders)
    }

    /// Every action possible now within the budgets. Identical pending messages are offered once.
    fn enabled(&self, config: &ExploreConfig) -> Vec<Action> {
        let mut actions = Vec::new();
        let used = &self.used;
        for node in &self.nodes {
            let id = node.id;
            let leader = node.raft().is_some_and(|r| r.role() == Role::Leader);
            if !leader && used.campaigns < config.campaigns {
                actions.push(Action::Campaign(id));
            }
            if leader && used.ticks < config.ticks {
                actions.push(Action::Tick(id));
            }
            if leader && used.proposals < config.proposals {
                actions.push(Action::Propose(id));
            }
            if node.pending_writes() > 0 {
                actions.push(Action::Persist(id));
            }
            if used.crashes < config.crashes {
                actions.push(Action::CrashRestart(id));
            }
        }
        for (i, message) in self.network.iter().enumerate() {
            if self.network[..i].contains(message) {
                continue;
            }
            actions.push(Action::Deliver(i));
            if used.duplicates < config.duplicates {
                actions.push(Action::Duplicate(i));
            }
            if used.drops < config.drops {
                actions.push(Action::Drop(i));
            }
        }
        actions
    }

    /// A hash of everything that decides what can happen next.
    fn fingerprint(&self) -> u64 {
        let mut hasher = DefaultHasher::new();
        self.used.hash(&mut hasher);
        for node in &self.nodes {
            node.id.hash(&mut hasher);
            node.applied().hash(&mut hasher);
            node.log().hash(&mut hasher);
            node.disk().all_entries().hash(&mut hasher);
            format!("{:?}", node.summary()).hash(&mut hasher);
            if let Some(raft) = node.raft() {
                format!("{:?}{:?}", raft.hard_state(), raft.tracker()).hash(&mut hasher);
            }
            node.hash_pending_writes(&mut hasher);
        }
        let mut messages: Vec<String> = self.network.iter().map(|m| format!("{m:?}")).collect();
        messages.sort();
        messages.hash(&mut hasher);
        hasher.finish()
    }
}

/// The start of every path: node 1 is elected and every message and write settles.
fn start() -> Vec<Action> {
    vec![
        Action::Campaign(1),
        Action::Persist(1),
        Action::Deliver(0),
        Action::Deliver(0),
        Action::Persist(2),
        Action::Persist(3),
        Action::Deliver(0),
        Action::Deliver(0),
    ]
}

/// Replays `path` after the start. A core panic is a violation like any other.
fn replay(config: &ExploreConfig, path: &[Action]) -> Result<World, Violation> {
    let mut world = World::new(config)?;
    let start = start();
    for (step, &action) in start.iter().chain(path).enumerate() {
        if step == start.len() {
            // The start is not charged to the path's budgets.
            world.used = Used::default();
        }
        catch_unwind(AssertUnwindSafe(|| world.apply(action))).map_err(|panic| {
            let message = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            Violation::new(Property::CorePanic, format!("{action} panicked: {message}"))
        })??;
    }
    Ok(world)
}

/// Explores every path of up to `config.depth` actions, depth first. A state seen before is
/// expanded again only when reached with more depth left than before, so the depth bound, not the
/// visiting order, decides what is covered.
pub fn explore(config: &ExploreConfig) -> ExploreReport {
    let mut report = ExploreReport::default();
    // Fingerprint -> most depth left when it was expanded.
    let mut visited: HashMap<u64, usize> = HashMap::new();
    let mut frontier: Vec<Vec<Action>> = vec![Vec::new()];
    while let Some(path) = frontier.pop() {
        if report.states >= config.max_states {
            report.truncated = true;
            break;
        }
        let world = match replay(config, &path) {
            Ok(world) => world,
            Err(violation) => {
                report.violation = Some((path, violation));
                break;
            }
        };
        report.steps += (start().len() + path.len()) as u64;
        let left = config.depth.saturating_sub(path.len());
        let best = visited.entry(world.fingerprint()).or_insert(usize::MAX);
        if *best != usize::MAX && *best >= left {
            continue;
        }
        *best = left;
        report.states += 1;
        report.deepest = report.deepest.max(path.len());
        if path.len() >= config.depth {
            continue;
        }
        for action in world.enabled(config).into_iter().rev() {
            let mut next = path.clone();
            next.push(action);
            frontier.push(next);
        }
    }
    report
}

/// Replays `path` after the start and describes every step: the action, then each node's role,
/// term and log length, and the messages in flight. For reading a path the search reported.
pub fn describe_path(config: &ExploreConfig, path: &[Action]) -> String {
    let mut lines = Vec::new();
    let mut world = match World::new(config) {
        Ok(world) => world,
        Err(violation) => return violation.to_string(),
    };
    let start = start();
    for (step, &action) in start.iter().chain(path).enumerate() {
        if step == start.len() {
            world.used = Used::default();
        }
        let result = catch_unwind(AssertUnwindSafe(|| world.apply(action)));
        let nodes: Vec<String> = world
            .nodes
            .iter()
            .map(|n| {
                let s = n.summary();
                format!(
                    "{}:{:?}/t{}/last{}/c{}",
                    s.id, s.role, s.term, s.last_index, s.committed
                )
            })
            .collect();
        let messages: Vec<String> = world.network.iter().map(crate::network::describe).collect();
        lines.push(format!(
            "{step:>3} {action}: [{}] in flight: [{}]",
            nodes.join(" "),
            messages.join("; ")
        ));
        match result {
            Ok(Ok(())) => {}
            Ok(Err(violation)) => {
                lines.push(format!("    violation: {violation}"));
                break;
            }
            Err(_) => {
                lines.push("    the core panicked".to_string());
                break;
            }
        }
    }
    lines.join("\n")
}
